"""`finetune data check` never crashes on a bad record: each bad line is reported with file:line and
dropped, every good line is kept (generated files: truncation, huge numbers, deep nesting, bytes that
are not UTF-8, NaN, wrong types), in JSONL and in JSON arrays."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from finetune.data import prepare


def good(n: int) -> bytes:
    return json.dumps({"instruction": f"问题 {n}: what is item {n}?", "input": "",
                       "output": f"Answer number {n}."}, ensure_ascii=False).encode()


def bad_kind(kind: str, n: int) -> bytes:
    """One record that must be dropped (as its own line, for JSONL)."""
    line = good(n)
    return {
        "truncated": line[: len(line) // 2],
        "huge_int": line[:-1] + b', "id": ' + b"7" * 5000 + b"}",
        "deep": line[:-1] + b', "extra": ' + b"[" * 3000 + b"]" * 3000 + b"}",
        "bad_bytes": line.replace(b"Answer", b"Ans\xff\xfewer"),
        "nan": line[:-1] + b', "score": NaN}',
        "infinity": line[:-1] + b', "score": -Infinity}',
        "history_zero": line[:-1] + b', "history": 0}',
        "output_number": json.dumps({"instruction": "q", "input": "", "output": 42}).encode(),
        "not_object": b"[1, 2, 3]",
        "bare_string": b'"just text"',
    }[kind]


BAD_KINDS = ("truncated", "huge_int", "deep", "bad_bytes", "nan", "infinity", "history_zero", "output_number",
             "not_object", "bare_string")
LINES = st.lists(st.one_of(st.just("good"), st.sampled_from(BAD_KINDS)), min_size=1, max_size=12)


def _check(report, kinds: list[str], path: Path, first_line: int) -> None:
    kept = len(report.train) + len(report.validation)
    assert kept == kinds.count("good"), report.render()
    bad_lines = [first_line + i for i, kind in enumerate(kinds) if kind != "good"]
    reported = sorted(int(p.source.rsplit(":", 1)[1]) for p in report.problems)
    assert reported == bad_lines, report.render()
    assert all(p.source.startswith(str(path)) for p in report.problems)


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kinds=LINES)
def test_jsonl_keeps_every_good_line_and_reports_every_bad_one(tmp_path: Path, kinds: list[str]) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"\n".join(good(i) if k == "good" else bad_kind(k, i) for i, k in enumerate(kinds)) + b"\n")
    _check(prepare([path], val_ratio=0, dedup=False), kinds, path, first_line=1)


@settings(max_examples=30, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kinds=LINES.filter(lambda ks: "truncated" not in ks))  # a cut element swallows the next: tested apart
@example(kinds=["huge_int", "bare_string"])  # reading resumes at a value that is no object (found by a CI run)
def test_json_array_keeps_every_good_element(tmp_path: Path, kinds: list[str]) -> None:
    path = tmp_path / "data.json"
    elements = [good(i) if k == "good" else bad_kind(k, i) for i, k in enumerate(kinds)]
    path.write_bytes(b"[\n" + b",\n".join(b"  " + e for e in elements) + b"\n]\n")
    _check(prepare([path], val_ratio=0, dedup=False), kinds, path, first_line=2)


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_each_bad_kind_names_its_line_and_the_problem(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "one.jsonl"
    path.write_bytes(good(0) + b"\n" + bad_kind(kind, 1) + b"\n" + good(2) + b"\n")
    report = prepare([path], val_ratio=0, dedup=False)
    (problem,) = report.problems
    assert problem.source == f"{path}:2" and len(report.train) == 2
    needle = {"huge_int": "4,300 digits", "deep": "nested too deeply", "bad_bytes": "not UTF-8 text (byte 0xff",
              "nan": "NaN is not JSON", "infinity": "Infinity is not JSON", "history_zero": "'history' must be a list",
              "output_number": "'output' must be a string"}.get(kind, "")
    assert needle in problem.detail


def test_a_whole_json_document_with_a_bad_byte_is_one_problem(tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    path.write_bytes(b'{"data": [\n' + good(0) + b",\n" + bad_kind("bad_bytes", 1) + b"\n]}")
    report = prepare([path], val_ratio=0)
    assert [p.source for p in report.problems] == [f"{path}:3"] and not report.train
