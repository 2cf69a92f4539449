"""Derived search indexes (FAISS dense, BM25 sparse), rebuilt from the SQLite store.

Both are caches of ``kb.sqlite``: each is saved with the store generation it was built from
(``derived.json``), written to a temporary name first and moved into place with
``os.replace``. A reader that finds a generation other than the store's (a crash between the
SQLite commit and the rebuild, or a concurrent writer) rebuilds in memory, so search results
always match the committed documents.

Dense index type: exact inner product (``IndexFlatIP``) below ``HNSW_THRESHOLD`` chunks,
HNSW (M=32, efSearch=128) above it. Exact search over 100k x 384 float32 vectors takes a few
ms per query on 2 cores (see ``bench/search.py``), so HNSW only pays off past ~200k chunks.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from index.store import Store

HNSW_THRESHOLD = 200_000  # chunks; below it search is exact
HNSW_M = 32
HNSW_EF_SEARCH = 128


@dataclass
class Derived:
    """The loaded FAISS and BM25 indexes and the store generation they reflect."""

    generation: int
    dense: Any  # faiss.Index (IDMap over Flat or HNSW); ids are chunk row ids
    sparse: Any  # index.bm25.BM25Index; ids are str(chunk row id)
    n_chunks: int

    def dense_search(self, qvec: np.ndarray, n: int) -> list[tuple[int, float]]:
        if self.n_chunks == 0:
            return []
        scores, ids = self.dense.search(np.ascontiguousarray(qvec.reshape(1, -1), dtype=np.float32),
                                        min(n, self.n_chunks))
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]

    def sparse_search(self, tokens: list[str], n: int) -> list[tuple[int, float]]:
        if self.n_chunks == 0 or not tokens:
            return []
        return [(int(i), float(s)) for i, s in self.sparse.search(tokens, n)]


def build(store: Store, dim: int) -> Derived:
    """Build both indexes from the store (in memory)."""
    import faiss

    from index.bm25 import BM25Index

    generation = store.generation()
    n = store.count_chunks()
    if n >= HNSW_THRESHOLD:
        base = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        base.hnsw.efSearch = HNSW_EF_SEARCH
    else:
        base = faiss.IndexFlatIP(dim)
    dense = faiss.IndexIDMap2(base)
    for ids, vecs in store.iter_vectors(dim):
        dense.add_with_ids(vecs, ids)
    ids, tokens = store.all_tokens()
    sparse = BM25Index.build(ids, tokens)
    return Derived(generation=generation, dense=dense, sparse=sparse, n_chunks=n)


def save(kb_dir: Path, d: Derived) -> None:
    """Write both indexes atomically; ``derived.json`` is replaced last."""
    import faiss

    kb_dir = Path(kb_dir)
    tmp_faiss = kb_dir / "faiss.index.tmp"
    faiss.write_index(d.dense, str(tmp_faiss))
    tmp_bm25 = kb_dir / "bm25.tmp"
    shutil.rmtree(tmp_bm25, ignore_errors=True)
    d.sparse.save(tmp_bm25)
    os.replace(tmp_faiss, kb_dir / "faiss.index")
    old = kb_dir / "bm25.old"
    shutil.rmtree(old, ignore_errors=True)
    if (kb_dir / "bm25").exists():
        os.replace(kb_dir / "bm25", old)
    os.replace(tmp_bm25, kb_dir / "bm25")
    shutil.rmtree(old, ignore_errors=True)
    _write_json(kb_dir / "derived.json", {"generation": d.generation, "n_chunks": d.n_chunks})


def load(kb_dir: Path) -> Derived | None:
    """Load the saved indexes, or None when they are missing or unreadable."""
    import faiss

    from index.bm25 import BM25Index

    kb_dir = Path(kb_dir)
    try:
        info = json.loads((kb_dir / "derived.json").read_text())
        dense = faiss.read_index(str(kb_dir / "faiss.index"))
        sparse = BM25Index.load(kb_dir / "bm25")
    except (OSError, ValueError, RuntimeError):
        return None
    if hasattr(faiss.downcast_index(dense.index), "hnsw"):
        faiss.downcast_index(dense.index).hnsw.efSearch = HNSW_EF_SEARCH
    if dense.ntotal != info["n_chunks"]:
        return None
    return Derived(generation=int(info["generation"]), dense=dense, sparse=sparse,
                   n_chunks=int(info["n_chunks"]))


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
