"""``--compare-embedder``: ``assistant eval`` scores retrieval with a second embedder over a cached re-embedded
copy of the knowledge base (the KB itself untouched, the copy reused), and ``index eval`` scores a BEIR folder
with two embedders in one table; exact fakes throughout (``hash-64`` builds, ``hash-32`` is compared)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from test_index_eval_subset import beir  # noqa: F401 - the tiny BEIR folder fixture
from typer.testing import CliRunner

from assistant.answer import Assistant
from assistant.evaluation.metrics import gold_rank, reciprocal_rank
from assistant.evaluation.run import EvalConfig, run_eval
from assistant.qa import read_qa
from common.files import file_sha256
from index.embedder import HashEmbedder
from index.evaluate import default_eval_kb, embedder_version, evaluate_beir
from index.kb import KnowledgeBase

from fixtures_assistant import KB_MAX_TOKENS, handbook_document

GOLD = [
    {"question": "How long is the warranty on company laptops?", "answer": "two years", "doc": "handbook", "page": 2},
    {"question": "What does the refund policy allow?", "answer": "thirty days", "doc": "refund_policy.txt"},
    {"question": "退货政策规定多少天内可以退货？", "answer": "三十天"},
    {"question": "Which side effects does aspirin have?", "answer": "bleeding", "doc": "aspirin_side_effects.txt"},
    {"question": "Who won the football world cup in 1998?", "answerable": False},
]


@pytest.fixture()
def gold(tmp_path: Path) -> Path:
    path = tmp_path / "gold.jsonl"
    path.write_text("\n".join(json.dumps(g, ensure_ascii=False) for g in GOLD) + "\n", encoding="utf-8")
    return path


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("QDA_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def fingerprint(folder: Path) -> dict[str, str]:
    """sha256 of every file of a knowledge-base folder (relative path -> digest)."""
    return {p.relative_to(folder).as_posix(): file_sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def expected(gold: Path, kb_dir: Path, k: int) -> dict[str, float]:
    """hit@1, hit@k and MRR of the gold over ``kb_dir``, searched directly (hybrid, top k)."""
    items = [i for i in read_qa([gold])[0] if i.answerable]
    with KnowledgeBase.open(kb_dir) as kb:
        ranks = [gold_rank(kb.search(i.question, k=k, mode="hybrid"), i) for i in items]
    return {"hit@1": float(np.mean([r == 1 for r in ranks])),
            f"hit@{k}": float(np.mean([r is not None for r in ranks])),
            "mrr": float(np.mean([reciprocal_rank(r) for r in ranks]))}


def reference_kb(folder: Path, assistant_docs: Path, embedder: str) -> Path:
    """The knowledge base of the ``assistant_kb`` fixture, built from scratch with ``embedder``."""
    with KnowledgeBase.open(folder, embedder=embedder, max_tokens=KB_MAX_TOKENS, overlap=0) as kb:
        assert kb.add([assistant_docs]).ok and kb.add_documents([handbook_document()]).ok
    return folder


def count_passage_encodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Texts embedded as passages by any hash embedder (queries are embedded without counting)."""
    seen: list[int] = []
    encode = HashEmbedder.encode_passages

    def passages(self, texts, **kwargs):
        seen.append(len(texts))
        return encode(self, texts, **kwargs)

    monkeypatch.setattr(HashEmbedder, "encode_passages", passages)
    monkeypatch.setattr(HashEmbedder, "encode_queries",
                        lambda self, texts: np.asarray([self._one(t) for t in texts], dtype=np.float32))
    return seen


def test_assistant_eval_compares_retrieval_and_leaves_the_kb_alone(assistant_kb: Path, assistant_docs: Path,
                                                                     gold: Path, cache: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    before = fingerprint(assistant_kb)
    encoded = count_passage_encodes(monkeypatch)
    cfg = EvalConfig(data=(gold,), out=tmp_path / "eval" / "r.json", compare_embedder="hash-32")
    bot = Assistant(kb=assistant_kb, retrieval_only=True, k=3)
    try:
        result = run_eval(cfg, bot)
    finally:
        bot.close()
    assert sum(encoded) > 0  # the copy was embedded with hash-32
    want_mine = expected(gold, assistant_kb, 3)
    want_other = expected(gold, reference_kb(tmp_path / "ref32", assistant_docs, "hash-32"), 3)
    assert want_mine != want_other  # the fakes rank differently here, so the rows are told apart
    mine, c = result.retrieval, result.compared
    assert c is not None and c["embedder"] == "hash-32" and mine["embedder"] == "hash-64" and not c["reused"]
    for key, value in want_mine.items():
        assert mine[key] == pytest.approx(value) and c["retrieval"][key] == pytest.approx(want_other[key]), key
    assert c["retrieval"]["items"] == 4 and len(c["retrieval_rows"]) == 4
    assert Path(c["kb"]).parent == cache / "compare"

    md = cfg.markdown_path.read_text(encoding="utf-8")
    row = lambda label, fig: f"| {label} | {100 * fig['hit@1']:.1f} | {100 * fig['hit@3']:.1f} | {fig['mrr']:.3f} |"  # noqa: E731
    assert row("`hash-64` (knowledge base)", want_mine) in md and row("`hash-32` (compared)", want_other) in md
    diff = (f"| difference (compared - knowledge base) | {100 * (want_other['hit@1'] - want_mine['hit@1']):+.1f} | "
            f"{100 * (want_other['hit@3'] - want_mine['hit@3']):+.1f} | {want_other['mrr'] - want_mine['mrr']:+.3f} |")
    assert diff in md and "Only retrieval is compared" in md
    data = json.loads(cfg.out.read_text(encoding="utf-8"))
    assert data["compared"]["retrieval"]["mrr"] == pytest.approx(want_other["mrr"])

    # the user's knowledge base: not one byte changed, still built with hash-64
    assert fingerprint(assistant_kb) == before
    with KnowledgeBase.open(assistant_kb) as kb:
        assert kb.store.meta()["embedder_name"] == "hash-64"


def test_a_second_eval_reuses_the_re_embedded_copy(assistant_kb: Path, gold: Path, cache: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = EvalConfig(data=(gold,), out=tmp_path / "r.json", compare_embedder="hash-32")

    def run() -> dict:
        bot = Assistant(kb=assistant_kb, retrieval_only=True, k=3)
        try:
            return run_eval(cfg, bot).compared or {}
        finally:
            bot.close()

    first = run()
    copy = Path(first["kb"])
    stamps = {name: os.stat(copy / name).st_mtime_ns for name in ("kb.sqlite", "compare.json", "faiss.index")}
    encoded = count_passage_encodes(monkeypatch)
    reindexed: list[object] = []
    reindex = KnowledgeBase.reindex
    monkeypatch.setattr(KnowledgeBase, "reindex", lambda self, *a, **kw: reindexed.append(a) or reindex(self, *a, **kw))
    second = run()
    assert second["reused"] and second["kb"] == first["kb"] and second["retrieval_rows"] != []
    assert [r["rank"] for r in second["retrieval_rows"]] == [r["rank"] for r in first["retrieval_rows"]]
    assert encoded == [] and reindexed == []  # nothing embedded, no reindex
    assert {name: os.stat(copy / name).st_mtime_ns for name in stamps} == stamps
    assert [p.name for p in (cache / "compare").iterdir() if not p.name.startswith(".")] == [copy.name]


def test_a_changed_kb_gets_a_new_copy(assistant_docs: Path, gold: Path, cache: Path, tmp_path: Path) -> None:
    kb_dir = tmp_path / "kb"
    with KnowledgeBase.open(kb_dir, embedder="hash-64", max_tokens=KB_MAX_TOKENS, overlap=0) as kb:
        kb.add([assistant_docs / "refund_policy.txt"])
    cfg = EvalConfig(data=(gold,), out=tmp_path / "r.json", compare_embedder="hash-32")
    folders = []
    for extra in (None, assistant_docs / "green_tea.txt"):
        if extra is not None:
            with KnowledgeBase.open(kb_dir) as kb:
                kb.add([extra])
        bot = Assistant(kb=kb_dir, retrieval_only=True, k=3)
        try:
            compared = run_eval(cfg, bot).compared or {}
        finally:
            bot.close()
        assert not compared["reused"]
        folders.append(compared["kb"])
    assert folders[0] != folders[1]


def test_compare_on_a_folder_and_a_milvus_kb(kb_where: Path | str, assistant_docs: Path, gold: Path, cache: Path,
                                            tmp_path: Path) -> None:
    kb = str(kb_where / "kb") if isinstance(kb_where, Path) else kb_where
    reference_kb(kb, assistant_docs, "hash-64")  # type: ignore[arg-type]
    bot = Assistant(kb=kb, retrieval_only=True, k=3)
    try:
        result = run_eval(EvalConfig(data=(gold,), out=tmp_path / "r.json", compare_embedder="hash-32"), bot)
    finally:
        bot.close()
    want = expected(gold, reference_kb(tmp_path / "ref32", assistant_docs, "hash-32"), 3)
    assert result.compared is not None and result.compared["embedder"] == "hash-32"
    assert {key: result.compared["retrieval"][key] for key in want} == pytest.approx(want)
    with KnowledgeBase.open(kb) as again:
        assert again.store.meta()["embedder_name"] == "hash-64"


def test_cli_assistant_eval_compare_embedder(assistant_kb: Path, gold: Path, cache: Path, tmp_path: Path) -> None:
    from ui.cli.assistant import app

    out = tmp_path / "r.json"
    args = ["eval", "--kb", str(assistant_kb), "--data", str(gold), "--out", str(out), "--retrieval-only",
            "--compare-embedder", "hash-32", "--no-progress", "-k", "3"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "| `hash-64` (knowledge base) |" in result.output and "| `hash-32` (compared) |" in result.output
    assert json.loads(out.read_text(encoding="utf-8"))["compared"]["embedder"] == "hash-32"
    help_text = CliRunner().invoke(app, ["eval", "--help"]).output
    assert "--compare-embedder" in help_text and "only retrieval" in " ".join(help_text.split())


# -- index eval on a BEIR folder ---------------------------------------------------------------------------
def test_index_eval_with_two_embedders_in_one_table(beir: Path, cache: Path) -> None:  # noqa: F811
    from ui.cli.index import app

    alone = [evaluate_beir(beir, mode="dense", embedder=name) for name in ("hash-64", "hash-32")]
    assert alone[0]["ndcg@10"] != alone[1]["ndcg@10"]
    args = ["eval", "--beir", str(beir), "--mode", "dense", "--embedder", "hash-64", "--compare-embedder", "hash-32"]
    got = json.loads(CliRunner().invoke(app, [*args, "--json"]).output)
    assert got["runs"] == [pytest.approx(alone[0]), pytest.approx(alone[1])]
    assert [r["embedder"] for r in got["runs"]] == ["hash-64", "hash-32"]
    metrics = ("ndcg@10", "recall@10", "recall@100", "mrr@10")
    assert got["difference"] == {m: pytest.approx(alone[1][m] - alone[0][m]) for m in metrics}
    table = CliRunner().invoke(app, args)
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert "| embedder | ndcg@10 | recall@10 | recall@100 | mrr@10 |" in lines
    assert f"| hash-64 | {alone[0]['ndcg@10']:.4f} |" in table.output
    assert f"| hash-32 | {alone[1]['ndcg@10']:.4f} |" in table.output
    assert f"| difference (hash-32 - hash-64) | {alone[1]['ndcg@10'] - alone[0]['ndcg@10']:+.4f} |" in table.output
    assert len(list((cache / "beir").iterdir())) == 2  # one cached index per embedder, reused by the CLI runs
    bad = CliRunner().invoke(app, [*args, "--kb", str(cache / "mine")])
    assert bad.exit_code == 2 and "--compare-embedder" in bad.output


def test_the_beir_cache_is_keyed_by_backend_and_weights(tmp_path: Path, cache: Path) -> None:
    model = tmp_path / "my-embedder"
    model.mkdir()
    (model / "config.json").write_text("{}")
    weights = model / "model.safetensors"
    weights.write_bytes(b"weights")
    torch_v, onnx_v = embedder_version(str(model), "torch"), embedder_version(str(model), "onnx")
    assert torch_v.startswith("torch-") and onnx_v.startswith("onnx-") and torch_v.split("-")[1] == onnx_v.split("-")[1]
    assert embedder_version(str(model)) == torch_v  # auto: torch for any folder
    os.utime(weights, ns=(1, 1))  # new weights (same size, other mtime)
    assert embedder_version(str(model), "torch") != torch_v
    kbs = {default_eval_kb(Path("/data/scifact"), str(model), "", v) for v in (torch_v, onnx_v)}
    assert len(kbs) == 2 and all(p.parent == cache / "beir" for p in kbs)
    assert embedder_version("hash-64") != embedder_version("hash-32")
