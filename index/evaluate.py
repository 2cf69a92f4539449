"""``index eval``: score retrieval on a BEIR folder (or a seeded subset of it).

Dense and hybrid modes build (or reuse) a knowledge base of the corpus, cached per BEIR folder,
embedder and subset. BM25 mode embeds nothing and builds no knowledge base: it chunks the corpus
as a new knowledge base would (the embedder's tokenizer counts the tokens; its model is never
loaded) and searches a BM25 index of those chunks in memory, so its figures are those of the
knowledge base's BM25 side.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Callable

from index.beir import BeirSet
from index.records import Hit

CACHE_ENV = "QDA_CACHE"


def cache_root() -> Path:
    """Where built artefacts are cached: ``$QDA_CACHE`` or ``~/.cache/qwen-domain-assistant``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "qwen-domain-assistant")


def default_eval_kb(beir_dir: Path, embedder: str, subset: str = "") -> Path:
    """A cache folder per (BEIR folder, embedder, ``subset`` tag), so a second ``index eval`` re-embeds nothing.

    >>> name = default_eval_kb(Path("/data/scifact"), "BAAI/bge-small", "d500-q50-s0").name
    >>> name.startswith("scifact-d500-q50-s0-"), name.endswith("-BAAI_bge-small")
    (True, True)
    """
    key = hashlib.sha256(str(beir_dir.resolve()).encode()).hexdigest()[:10]
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", embedder)[-60:]
    return cache_root() / "beir" / "-".join(p for p in (beir_dir.name, subset, key, safe) if p)


def evaluate_beir(beir_dir: Path, *, split: str | None = None, mode: str = "hybrid", k: int = 10,
                  kb: Path | None = None, embedder: str | None = None, progress: bool = False,
                  max_queries: int | None = None, max_docs: int | None = None, seed: int = 0) -> dict:
    """nDCG@k, Recall@k, Recall@100 and MRR@k of ``mode`` retrieval on a BEIR folder, with
    ``mode``, ``queries`` and ``docs`` (the counts scored, after ``index.beir.limit``).

    Documents longer than one chunk are chunked like any other document; a document's score
    is its best chunk's, so the figures are document-level like BEIR's. ``max_queries`` /
    ``max_docs`` / ``seed``: a seeded subset (:func:`index.beir.limit`). ``kb`` (default: a
    cache folder) is where dense and hybrid modes build the index; bm25 mode builds none.
    Raises FileNotFoundError when ``beir_dir`` has no corpus.jsonl, ValueError for a limit below 1.

    >>> evaluate_beir(Path("../shared/data/retrieval/zh_cmrc2018_dev"))  # doctest: +SKIP
    {'ndcg@10': 0.97, 'recall@10': 0.99, 'recall@100': 1.0, 'mrr@10': 0.96, ...}
    """
    from index.beir import evaluate, limit, load_beir
    from index.config import DEFAULT_EMBEDDER

    beir_dir = Path(beir_dir)
    if not (beir_dir / "corpus.jsonl").exists():
        raise FileNotFoundError(f"{beir_dir} is not a BEIR folder (no corpus.jsonl)")
    data = limit(load_beir(beir_dir, split), max_queries, max_docs, seed)
    name = embedder or DEFAULT_EMBEDDER
    doc_id = lambda hit: Path(hit.path).name  # noqa: E731 - to_documents ends every path with the corpus id
    if mode == "bm25":
        figures = evaluate(bm25_search(data, name, progress=progress), data, doc_id, k=k, progress=progress)
    else:
        tag = "" if max_docs is None else f"d{max_docs}-q{max_queries or 'all'}-s{seed}"
        figures = _evaluate_kb(data, kb or default_eval_kb(beir_dir, name, tag), embedder, mode, k, progress)
    return figures | {"mode": mode, "queries": len(data.queries), "docs": len(data.corpus)}


def _evaluate_kb(data: BeirSet, kb: Path, embedder: str | None, mode: str, k: int, progress: bool) -> dict:
    """Figures of ``mode`` search over the knowledge base at ``kb``, after adding ``data``'s corpus to it."""
    from index.beir import evaluate, to_documents
    from index.kb import KnowledgeBase

    with KnowledgeBase.open(kb, embedder=embedder) as base:
        base.add_documents(to_documents(data), progress=progress)
        return evaluate(lambda q, n: base.search(q, k=n, mode=mode), data, lambda hit: Path(hit.path).name,
                        k=k, progress=progress)


def bm25_search(data: BeirSet, embedder: str, *, progress: bool = False) -> Callable[[str, int], list[Hit]]:
    """``search(query, n)`` -> the ``n`` best chunks by BM25 (hits without ``similarity``), over the
    chunks of ``data``'s corpus a new knowledge base built with ``embedder`` would hold: its chunk
    settings (:func:`index.kb.new_kb_chunking`), its token counter, ``index.bm25`` tokens and
    weights. Nothing is embedded (``embedder``'s model never loads; its tokenizer does).

    >>> data = BeirSet("t", "dev", {"a": ("", "green tea"), "b": ("", "black coffee")}, {"q": "tea"}, {"q": {"a": 1}})
    >>> [(h.path, round(h.score, 3)) for h in bm25_search(data, "hash-64")("green tea", 5)]
    [('beir/t/a', 0.73)]
    """
    from tqdm import tqdm

    from index.beir import to_documents
    from index.bm25 import BM25Index, tokenize
    from index.embedder import load_embedder
    from index.kb import new_kb_chunking
    from ingest.chunk import chunk_pages

    emb = load_embedder(embedder)  # name, settings and tokenizer only: the model loads on the first encode
    max_tokens, overlap = new_kb_chunking(emb)
    chunks: list[Hit] = []
    for doc in tqdm(to_documents(data), desc="chunking", unit="doc", disable=not progress):
        chunks += [Hit(c.chunk_id, c.text, 0.0, doc.sha256, doc.title, str(doc.path), c.page_start, c.page_end,
                       c.char_start, c.char_end)
                   for c in chunk_pages(doc.pages, doc_sha256=doc.sha256, max_tokens=max_tokens, overlap=overlap,
                                        count_tokens=emb.count_tokens)]
    index = BM25Index.build([str(i) for i in range(len(chunks))], [tokenize(c.text) for c in chunks])

    def search(query: str, n: int) -> list[Hit]:
        return [replace(chunks[int(i)], score=s) for i, s in index.search(tokenize(query), n)]

    return search
