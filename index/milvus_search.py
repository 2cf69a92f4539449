"""Searching a Milvus knowledge base: dense in Milvus (HNSW), BM25 in this process.

Dense: Milvus's HNSW index over the chunk vectors (inner product on L2-normalised vectors, the
cosine, as the folder backend's FAISS index), ``ef`` at least the candidates asked for.

BM25 is the project's own (:class:`index.bm25.BM25Index`: jieba words for Chinese, stemmed
English, k1/b as the folder backend), computed here from the term lists the chunks store, not
Milvus's BM25 function: Milvus Lite's BM25 statistics are per segment and its analysers are not
this tokenizer, so scores (and the hybrid fusion of :mod:`index.fusion`) would differ from the
folder backend's. The index is built on first use and caught up by chunk-key diffs whenever the
store's generation token changes (as :mod:`index.derived` does with SQLite row ids).

Both retrievers drop chunks of documents a search may not show (:meth:`MilvusStore.visible`:
uncommitted, replaced, removed), asking Milvus for more when that left fewer than wanted.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from index.milvus_schema import HNSW_EF_SEARCH
from index.milvus_store import MilvusStore

REBUILD_FRACTION = 0.5


@dataclass
class MilvusView:
    """One state of the BM25 index (never changed once made) and the store to ask for the rest."""

    store: MilvusStore
    generation: int
    sparse: Any  # index.bm25.BM25Index over every stored chunk (hidden ones filtered per search)
    doc_of: dict[str, str]  # str(chunk key) -> document sha256
    n_chunks: int

    def dense_search(self, qvec: np.ndarray, n: int) -> list[tuple[int, float]]:
        """The ``n`` nearest visible chunks to one query vector: (chunk key, inner product)."""
        want = n
        while True:
            res = self.store.client.search(
                self.store.c["chunks"], data=[np.asarray(qvec, dtype=np.float32).tolist()], anns_field="vector",
                limit=want, output_fields=["doc_sha256"],
                search_params={"metric_type": "IP", "params": {"ef": max(want, HNSW_EF_SEARCH)}},
                **self.store.read_level())[0]
            found = [(int(r["id"]), float(r["distance"]), r["entity"]["doc_sha256"]) for r in res]
            live = self.store.visible(s for _, _, s in found)
            kept = [(i, d) for i, d, s in found if s in live]
            if len(kept) >= n or len(found) < want or want >= 16384:
                return kept[:n]
            want = min(want * 2, 16384)

    def sparse_search(self, tokens: list[str], n: int) -> list[tuple[int, float]]:
        """The ``n`` best visible chunks by BM25: (chunk key, score)."""
        if not tokens or len(self.sparse) == 0:
            return []
        want = n
        while True:
            found = self.sparse.search(tokens, want)
            live = self.store.visible(self.doc_of[i] for i, _ in found)
            kept = [(int(i), float(s)) for i, s in found if self.doc_of[i] in live]
            if len(kept) >= n or len(found) < want:
                return kept[:n]
            want *= 2


class MilvusCache:
    """The BM25 index of one open Milvus knowledge base, shared by its threads; the same interface
    as :class:`index.derived.Cache` (writers have nothing to warm or save: Milvus indexes itself)."""

    def __init__(self, store: MilvusStore) -> None:
        self.store = store
        self.current: MilvusView | None = None
        self._lock = threading.Lock()

    def fresh(self) -> MilvusView:
        """The index at the store's current generation (built, or caught up by a key diff)."""
        with self._lock:
            gen = self.store.generation()
            if self.current is not None and self.current.generation == gen:
                return self.current
            self.current = self._catch_up(gen, self.current)
            return self.current

    def _catch_up(self, gen: int, base: MilvusView | None) -> MilvusView:
        from index.bm25 import BM25Index

        ids, shas = self.store.chunk_docs()
        doc_of = dict(zip(map(str, ids.tolist()), shas))
        if base is None or base.sparse.tf is None:
            return MilvusView(self.store, gen, BM25Index.build(*self.store.all_tokens(ids)), doc_of, len(ids))
        have = np.fromiter(map(int, base.sparse.ids), dtype=np.int64, count=len(base.sparse.ids))
        gone = np.setdiff1d(have, ids, assume_unique=True)
        new = np.setdiff1d(ids, have, assume_unique=True)
        if len(new) > REBUILD_FRACTION * max(len(ids), 1):
            sparse = BM25Index.build(*self.store.all_tokens(ids))
        elif len(gone) or len(new):
            add_ids, tokens = self.store.all_tokens(new)
            sparse = base.sparse.update({str(i) for i in gone.tolist()}, add_ids, tokens)
        else:
            sparse = base.sparse
        return MilvusView(self.store, gen, sparse, doc_of, len(ids))

    def warm(self) -> None:
        return None

    def refresh(self) -> None:
        """At the end of a write run: finish replacements a killed writer left half done."""
        self.store.settle_replaced()
