"""Scores of hits: ``Hit.score`` ranks one search (hybrid: min-max fused, 1.0 for every query's best hit),
``Hit.similarity`` is the dense cosine of the chunk to the query, comparable across queries; what the CLI,
the ``assistant ask`` sources table and the server's JSON show."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import index.kb as kb_module
from index.bm25 import tokenize
from index.kb import KnowledgeBase

DOCS = {
    "policy": "The refund policy allows returns within thirty days of purchase. Refunds go to the original card.",
    "shipping": "Shipping takes three to five business days. Express shipping costs extra.",
    "pets": "Cats and dogs are common pets. Parrots can learn words and mimic voices.",
    "tea": "Green tea and black tea come from the same plant, picked and dried differently.",
    "warranty": "The warranty covers manufacturing defects for two years from the date of purchase.",
    "travel": "Company travel policy: book economy class, keep receipts, file claims within a month. "
              "Refund of fares goes through finance.",
}
RELEVANT = "refund policy returns within thirty days"
IRRELEVANT = "quantum gluon dogs"  # shares one word with "pets": its best hit leads both lists


@pytest.fixture()
def kb(tmp_path: Path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / f"{name}.txt").write_text(text, encoding="utf-8")
    with KnowledgeBase.open(tmp_path / "kb", embedder="hash-64") as base:
        base.add([folder])
        yield base


def cosine(base: KnowledgeBase, query: str, text: str) -> float:
    """The cosine of the query's and the passage's vectors, embedded afresh (the fake embedder is exact)."""
    return float(base.embedder.encode_queries([query])[0] @ base.embedder.encode_passages([text])[0])


def fused_before(base: KnowledgeBase, query: str, k: int) -> list[tuple[str, float]]:
    """(chunk id, score) of hybrid search as it ranked before similarities existed: fuse, cut, look up."""
    d = base._fresh_derived()
    depth = max(k, kb_module.CANDIDATES)
    dense = d.dense_search(base.embedder.encode_queries([query])[0], depth)
    fused = kb_module._fuse(dense, d.sparse_search(tokenize(query), depth))
    return [(h.chunk_id, h.score) for h in base.store.hits(fused[:k])]


def test_the_top_hit_similarity_tells_a_relevant_query_from_an_irrelevant_one(kb: KnowledgeBase) -> None:
    relevant, irrelevant = kb.search(RELEVANT, k=3)[0], kb.search(IRRELEVANT, k=3)[0]
    assert (relevant.title, irrelevant.title) == ("policy", "pets")
    assert relevant.score == irrelevant.score == pytest.approx(1.0)  # both lead both lists: fused 1.0
    assert relevant.similarity > irrelevant.similarity + 0.3, (relevant.similarity, irrelevant.similarity)
    assert -1.0 <= irrelevant.similarity < relevant.similarity <= 1.0


@pytest.mark.parametrize("query", [RELEVANT, IRRELEVANT, "purchase"])
def test_hybrid_ranking_and_scores_are_unchanged(kb: KnowledgeBase, query: str) -> None:
    hits = kb.search(query, k=len(DOCS))
    assert [(h.chunk_id, h.score) for h in hits] == fused_before(kb, query, len(DOCS))
    for hit in hits:
        assert hit.similarity == pytest.approx(cosine(kb, query, hit.text), abs=1e-5)


def test_a_chunk_only_bm25_found_gets_its_cosine_from_the_stored_vector(kb: KnowledgeBase, monkeypatch) -> None:
    monkeypatch.setattr(kb_module, "CANDIDATES", 1)  # dense and BM25 each contribute k chunks
    query, k = "express refund", 2  # dense: policy, travel; BM25: shipping, policy
    dense_ids = {h.chunk_id for h in kb.search(query, k=k, mode="dense")}
    hits = kb.search(query, k=k)
    assert [(h.chunk_id, h.score) for h in hits] == fused_before(kb, query, k)
    assert any(h.chunk_id not in dense_ids for h in hits), "no hybrid hit came from BM25 alone"
    for hit in hits:
        assert hit.similarity == pytest.approx(cosine(kb, query, hit.text), abs=1e-5)


def test_dense_similarity_is_its_score_and_bm25_has_none(kb: KnowledgeBase) -> None:
    dense = kb.search(RELEVANT, k=3, mode="dense")
    assert [h.similarity for h in dense] == [h.score for h in dense]
    bm25 = kb.search(RELEVANT, k=3, mode="bm25")
    assert bm25 and all(h.similarity is None for h in bm25)


def test_a_reranked_hit_keeps_its_similarity(kb: KnowledgeBase, monkeypatch) -> None:
    import index.rerank

    class Reverse:  # stands in for the cross-encoder: worst first, scores replaced
        def __init__(self, model: str) -> None:
            pass

        def rerank(self, query, hits, top_k):
            return [replace(h, score=float(n)) for n, h in enumerate(reversed(hits))][:top_k]

    monkeypatch.setattr(index.rerank, "Reranker", Reverse)
    kb.config = replace(kb.config, reranker="reverse")
    hits = kb.search(RELEVANT, k=2)
    assert [h.score for h in hits] == [0.0, 1.0]
    for hit in hits:
        assert hit.similarity == pytest.approx(cosine(kb, RELEVANT, hit.text), abs=1e-5)


def test_index_search_shows_the_cosine_and_json_has_both(kb: KnowledgeBase) -> None:
    from ui.cli.index import app

    kb.close()
    run = CliRunner()
    table = run.invoke(app, ["search", RELEVANT, "--kb", str(kb.path), "--k", "2"], terminal_width=200)
    assert table.exit_code == 0, table.output
    assert "cosine" in table.output and "1.000" not in table.output
    rows = json.loads(run.invoke(app, ["search", IRRELEVANT, "--kb", str(kb.path), "--k", "2", "--json"]).output)
    assert rows[0]["score"] == pytest.approx(1.0) and 0.0 < rows[0]["similarity"] < 0.5
    bm25 = run.invoke(app, ["search", RELEVANT, "--kb", str(kb.path), "--mode", "bm25"], terminal_width=200)
    assert "score" in bm25.output and "cosine" not in bm25.output  # no query vector: the BM25 score


def test_sources_table_and_server_json_carry_the_similarity(kb: KnowledgeBase) -> None:
    from rich.console import Console

    from assistant.records import Answer
    from ui.cli.assistant import print_sources
    from ui.http import citations_json, sources_json

    hits = tuple(kb.search(IRRELEVANT, k=2))
    answer = Answer(text="Parrots mimic voices [1].", citations=(), hits=hits, sources=hits, question=IRRELEVANT)
    console = Console(record=True, width=200)
    print_sources(answer, console)
    shown = console.export_text()
    assert "cosine" in shown and f"{hits[0].similarity:.3f}" in shown and "1.000" not in shown
    sources = sources_json(answer)
    assert [s["similarity"] for s in sources] == [h.similarity for h in hits]
    assert [s["score"] for s in sources] == [h.score for h in hits]
    from assistant.citations import extract_citations

    cited = replace(answer, citations=extract_citations(answer.text, hits))
    assert citations_json(cited)[0]["similarity"] == pytest.approx(hits[0].similarity)
    assert np.isfinite(sources[0]["similarity"])
