"""Retrieval quality of the default hybrid mode (multilingual-e5-small + BM25) on fixed subsets
of the three dev sets, through the real knowledge base (chunking, FAISS, BM25, fusion).

Subsets (``index.beir.subset``, seed 0): the queries below, every document their qrels name,
the best-matching non-relevant documents of each query by BM25 over the whole corpus (hard
negatives; without them a subset is far easier than the full set) and seeded random ones.
Thresholds are the measured subset nDCG@10 less ~0.03 (figures in
the comment below); full-set figures come from ``bench/retrieval_eval.py``.
Cold (model folder to build, ~140k tokens to embed) this file took 430 s on the shared 2-core
machine under a load of 2.5-4 from other jobs (scifact 103 s incl. the e5 build, zh_rgb 129 s,
cmrc 195 s); less on free cores.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from index.beir import evaluate, load_beir, subset, to_documents

pytestmark = pytest.mark.integration

# name: (queries, random distractors, hard negatives per query, seed, minimum hybrid nDCG@10).
# Measured hybrid / dense / bm25 nDCG@10 (bench/retrieval_eval.py --subset Q,R,H):
#   scifact 0.807 / 0.862 / 0.778 (163 docs), zh_rgb 0.830 / 0.866 / 0.756 (285 docs),
#   zh_cmrc2018_dev 0.991 / 0.982 / 0.973 (114 docs). The hard negatives are mined with BM25,
#   which handicaps BM25 (and so hybrid) against dense on these subsets; on the full dev sets
#   hybrid beats both (README, "Retrieval quality"), so no "hybrid >= dense" here.
SUBSETS = {
    "scifact": (30, 40, 3, 0, 0.78),
    "zh_rgb": (20, 30, 5, 0, 0.80),
    "zh_cmrc2018_dev": (40, 10, 2, 0, 0.96),
}


@pytest.fixture(scope="module")
def e5():
    from index.embedder import load_embedder

    return load_embedder()  # builds the offline folder on first use


@pytest.mark.parametrize("name", list(SUBSETS))
def test_hybrid_quality_on_dev_subset(name: str, e5, shared_data: Path, tmp_path: Path):
    from index.kb import KnowledgeBase

    n_queries, n_random, n_hard, seed, minimum = SUBSETS[name]
    data = subset(load_beir(shared_data / "retrieval" / name), n_queries, n_random, seed,
                  hard_negatives=n_hard)
    with KnowledgeBase.open(tmp_path / "kb", embedder=e5) as kb:
        kb.add_documents(to_documents(data))
        figures = {mode: evaluate(lambda q, n, mode=mode: kb.search(q, k=n, mode=mode), data,
                                  lambda hit: Path(hit.path).name)
                   for mode in ("hybrid", "dense", "bm25")}
    ndcg = {mode: round(f["ndcg@10"], 4) for mode, f in figures.items()}
    assert ndcg["hybrid"] >= minimum, ndcg
    assert ndcg["hybrid"] > ndcg["bm25"], ndcg  # the dense half of the fusion adds something
    assert ndcg["hybrid"] >= min(ndcg["dense"], ndcg["bm25"]), ndcg
