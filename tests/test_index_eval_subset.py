"""``index eval``: --max-queries / --max-docs seeded subsets keep every relevant document, and --mode bm25
embeds nothing (no knowledge base, no model), on a tiny BEIR folder written here."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from index.beir import limit, load_beir
from ui.cli.index import app

ROOT = Path(__file__).resolve().parents[1]
TOPICS = ["tea", "coffee", "bicycle", "violin", "glacier", "volcano", "orchid", "falcon"]


@pytest.fixture()
def beir(tmp_path: Path) -> Path:
    """8 queries, each with 2 relevant documents (one graded 2), plus 24 unrelated documents."""
    folder = tmp_path / "tiny"
    (folder / "qrels").mkdir(parents=True)
    corpus, qrels = [], ["query-id\tcorpus-id\tscore"]
    for n, topic in enumerate(TOPICS):
        for j in range(2):
            corpus.append({"_id": f"{topic}{j}", "title": topic.title(),
                           "text": f"Notes on the {topic}, part {j}: the {topic} is described here in detail."})
            qrels.append(f"q{n}\t{topic}{j}\t{2 - j}")
    corpus += [{"_id": f"filler{i}", "title": "", "text": f"Unrelated filler text number {i} about nothing much."}
               for i in range(24)]
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(r) for r in corpus), encoding="utf-8")
    (folder / "queries.jsonl").write_text("\n".join(json.dumps({"_id": f"q{n}", "text": f"what is a {t}?"})
                                                    for n, t in enumerate(TOPICS)), encoding="utf-8")
    (folder / "qrels" / "test.tsv").write_text("\n".join(qrels) + "\n", encoding="utf-8")
    return folder


def refuse_embedding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Embedding a text, loading a sentence-transformers model or opening a knowledge base raises."""
    from index.embedder import HashEmbedder, SentenceTransformerEmbedder
    from index.kb import KnowledgeBase

    def refuse(*args, **kwargs):
        raise AssertionError("bm25 evaluation embedded or built a knowledge base")

    for owner, name in ((HashEmbedder, "encode_passages"), (HashEmbedder, "encode_queries"),
                        (SentenceTransformerEmbedder, "_model"), (KnowledgeBase, "open")):
        monkeypatch.setattr(owner, name, refuse)


def test_a_subset_keeps_the_chosen_queries_relevant_documents(beir: Path) -> None:
    data = load_beir(beir)
    small = limit(data, max_queries=3, max_docs=10, seed=1)
    assert len(small.queries) == 3 and len(small.corpus) == 10
    relevant = {d for q in small.queries for d in data.qrels[q]}
    assert len(relevant) == 6 and relevant <= set(small.corpus)
    assert small.qrels == {q: data.qrels[q] for q in small.queries}
    assert limit(data, max_queries=3, max_docs=10, seed=1) == small  # seeded: the same subset again
    assert limit(data, max_queries=3, max_docs=10, seed=2).queries != small.queries
    tight = limit(data, max_queries=3, max_docs=2, seed=1)  # fewer than the relevant ones: all relevant kept
    assert set(tight.corpus) == relevant
    assert len(limit(data, max_docs=20).corpus) == 20 and len(limit(data, max_queries=2).corpus) == len(data.corpus)
    with pytest.raises(ValueError, match="max_docs=0"):
        limit(data, max_docs=0)


def test_bm25_eval_embeds_nothing_and_scores_the_subset(beir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    refuse_embedding(monkeypatch)
    result = CliRunner().invoke(app, ["eval", "--beir", str(beir), "--mode", "bm25", "--embedder", "hash-64",
                                      "--max-queries", "4", "--max-docs", "12", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert (figures["mode"], figures["queries"], figures["docs"]) == ("bm25", 4, 12)
    assert figures["recall@10"] == pytest.approx(1.0) and figures["ndcg@10"] > 0.9


def test_bm25_eval_with_the_default_embedder_imports_no_model_code(beir: Path) -> None:
    code = ("import sys, json\nfrom typer.testing import CliRunner\nfrom ui.cli.index import app\n"
            f"r = CliRunner().invoke(app, ['eval', '--beir', {str(beir)!r}, '--mode', 'bm25', '--json'])\n"
            "assert r.exit_code == 0, r.output\n"
            "print(json.dumps([m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_hybrid_eval_of_a_subset_indexes_only_the_subset(beir: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QDA_CACHE", str(tmp_path / "cache"))
    run = CliRunner()
    args = ["eval", "--beir", str(beir), "--embedder", "hash-64", "--json"]
    subset = json.loads(run.invoke(app, [*args, "--max-queries", "2", "--max-docs", "6"]).output)
    assert (subset["queries"], subset["docs"]) == (2, 6)
    assert json.loads(run.invoke(app, args).output)["docs"] == 40  # the full corpus: its own cached index
    built = sorted(p.name for p in (tmp_path / "cache" / "beir").iterdir())
    assert len(built) == 2 and any("-d6-q2-s0-" in name for name in built), built
    bad = run.invoke(app, [*args, "--max-docs", "0"])
    assert bad.exit_code == 2
