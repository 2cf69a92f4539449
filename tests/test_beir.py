"""BEIR loading, subsets, documents and the metrics (hand-computed, pytrec_eval definitions)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from index.beir import (
    BeirFormatError,
    BeirSet,
    dedupe_docs,
    evaluate,
    load_beir,
    mrr_at_k,
    ndcg_at_k,
    recall_at_k,
    score_rankings,
    subset,
    to_documents,
)
from index.records import Hit


def test_ndcg_graded_hand_case():
    # DCG = 0 + 1/log2(3) + 2/log2(4); ideal = 2/log2(2) + 1/log2(3)
    dcg = 1 / math.log2(3) + 2 / 2
    idcg = 2 + 1 / math.log2(3)
    assert ndcg_at_k(["d3", "d1", "d2"], {"d1": 1, "d2": 2}, 3) == pytest.approx(dcg / idcg)
    assert ndcg_at_k(["d3", "d1", "d2"], {"d1": 1, "d2": 2}, 1) == 0.0


def test_ndcg_cutoff_ideal_and_zero_relevance():
    # ideal at k=1 holds only the best doc: 2; the ranking puts d2 (rel 2) first -> 1.0
    assert ndcg_at_k(["d2", "d1"], {"d1": 1, "d2": 2}, 1) == 1.0
    assert ndcg_at_k(["d1"], {"d1": 0}, 10) == 0.0  # judged non-relevant only
    assert ndcg_at_k([], {"d1": 1}, 10) == 0.0


def test_recall_and_mrr_hand_cases():
    ranked = ["x", "a", "y", "b"]
    rels = {"a": 1, "b": 1, "c": 1, "n": 0}
    assert recall_at_k(ranked, rels, 2) == pytest.approx(1 / 3)
    assert recall_at_k(ranked, rels, 4) == pytest.approx(2 / 3)
    assert mrr_at_k(ranked, rels, 10) == 0.5
    assert mrr_at_k(ranked, rels, 1) == 0.0


def test_score_rankings_averages_over_all_qrels_queries():
    s = BeirSet("t", "dev", {}, {"q1": "", "q2": ""}, {"q1": {"a": 1}, "q2": {"b": 1}})
    got = score_rankings({"q1": ["a"]}, s, k=10, depth=100)  # q2 has no ranking: counts 0
    assert got == {"ndcg@10": 0.5, "recall@10": 0.5, "recall@100": 0.5, "mrr@10": 0.5}


def _write_beir(root: Path) -> Path:
    (root / "qrels").mkdir(parents=True)
    docs = [{"_id": "1", "title": "Green tea", "text": "Catechins."}, {"_id": "2", "title": "", "text": "咖啡"}]
    (root / "corpus.jsonl").write_text("\n".join(json.dumps(d, ensure_ascii=False) for d in docs) + "\n")
    (root / "queries.jsonl").write_text('{"_id": "q1", "text": "tea"}\n{"_id": "q9", "text": "unjudged"}\n')
    (root / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\nq1\t1\t1\n")
    return root


def test_load_beir_and_documents(tmp_path):
    s = load_beir(_write_beir(tmp_path / "mini"))
    assert s.split == "dev" and list(s.queries) == ["q1"] and s.qrels == {"q1": {"1": 1}}
    docs = to_documents(s)
    assert [d.path.as_posix() for d in docs] == ["beir/mini/1", "beir/mini/2"]
    assert docs[0].pages[0].text == "Green tea\nCatechins." and docs[1].pages[0].text == "咖啡"
    assert docs[1].title == "2" and len({d.sha256 for d in docs}) == 2


def test_load_beir_errors_name_file_and_line(tmp_path):
    root = _write_beir(tmp_path / "bad")
    with pytest.raises(BeirFormatError, match="test.tsv not found"):
        load_beir(root, "test")
    (root / "corpus.jsonl").write_text('{"_id": "1"}\nnot json\n')
    with pytest.raises(BeirFormatError, match=r"corpus.jsonl:2"):
        load_beir(root)


def test_subset_keeps_relevant_docs_and_is_seeded():
    corpus = {str(i): ("", f"doc {i}") for i in range(50)}
    qrels = {f"q{i}": {str(i): 1, str(i + 10): 1} for i in range(10)}
    s = BeirSet("t", "dev", corpus, {q: q for q in qrels}, qrels)
    a, b = subset(s, 3, 5, seed=7), subset(s, 3, 5, seed=7)
    assert a == b and len(a.queries) == 3 and len(a.corpus) == 3 * 2 + 5
    assert all(d in a.corpus for rel in a.qrels.values() for d in rel)
    assert subset(s, 3, 5, seed=8).queries != a.queries or subset(s, 3, 5, seed=8).corpus != a.corpus


def _hit(doc: str, chunk: int) -> Hit:
    return Hit(f"{doc}#{chunk}", "", 1.0, doc, "", f"beir/t/{doc}", 1, 1, 0, 0)


def test_dedupe_keeps_best_chunk_rank():
    hits = [_hit("a", 0), _hit("b", 0), _hit("a", 1), _hit("c", 0)]
    assert dedupe_docs(hits, lambda h: Path(h.path).name, 10) == ["a", "b", "c"]
    assert dedupe_docs(hits, lambda h: Path(h.path).name, 2) == ["a", "b"]


def test_evaluate_asks_for_twice_depth_and_scores():
    s = BeirSet("t", "dev", {"a": ("", ""), "b": ("", "")}, {"q": "x"}, {"q": {"b": 1}})
    asked = []

    def search(text: str, n: int) -> list[Hit]:
        asked.append(n)
        return [_hit("a", 0), _hit("a", 1), _hit("b", 0)]

    got = evaluate(search, s, lambda h: Path(h.path).name, k=10, depth=100)
    assert asked == [200]
    assert got["mrr@10"] == 0.5 and got["recall@100"] == 1.0
    assert got["ndcg@10"] == pytest.approx(1 / math.log2(3))


def test_subset_hard_negatives_are_bm25_matches_not_relevant():
    corpus = {"rel": ("", "green tea catechins"), "hard": ("", "green tea leaves"),
              "easy1": ("", "stock market"), "easy2": ("", "football match")}
    s = BeirSet("t", "dev", corpus, {"q": "green tea"}, {"q": {"rel": 1}})
    assert sorted(subset(s, 1, 0, hard_negatives=1).corpus) == ["hard", "rel"]
    assert sorted(subset(s, 1, 0).corpus) == ["rel"]
