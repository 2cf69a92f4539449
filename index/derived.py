"""Derived search indexes (FAISS dense, BM25 sparse), kept in step with the SQLite store.

Both are caches of ``kb.sqlite``: each is saved with the store generation it reflects
(``derived.json``, written last), written to a temporary name first and moved into place with
``os.replace``. SQLite stays the truth; a missing, unreadable or old-format index is rebuilt.

Updates are incremental: chunk row ids are never reused (``index.store``), so comparing an
index's ids with the store's says exactly which chunks came and went, whatever happened in
between (several writes, a ``kill -9`` between the SQLite commit and the save, a writer in
another process). ``update`` removes the gone ids and adds the new ones: FAISS
``remove_ids`` / ``add_with_ids`` on a copy of the IDMap2, BM25 ``BM25Index.update`` (the new
chunks' tokens come from SQLite; all weights are recomputed from the kept term frequencies,
so the scores equal a rebuild's exactly). A ``Derived`` is never changed once made, so a
search running in another thread keeps a consistent pair. Each index is diffed on its own
ids, so a torn save that left one index newer than the other still converges. Readers catch
up in memory, to exactly the generation of their read transaction (a search reads its hits in
the same one: ``index.kb``); writers (holding the write lock) save the result.

Dense index type: exact inner product (``IndexFlatIP``) below ``HNSW_THRESHOLD`` chunks,
HNSW (M=32, efSearch=128) above it. Exact search over 100k x 384 float32 vectors takes a few
ms per query on 2 cores (see ``bench/search.py``), so HNSW only pays off past ~200k chunks.
HNSW cannot remove vectors: a removal (or crossing the threshold) rebuilds the dense index
from the stored vectors, which keeps the search path free of tombstones; adds are
incremental (the graph then differs from a rebuild's, as HNSW results may).

Measured (``bench/search.py --add-one``, 100k chunks, 2 cores at load average 4-5): adding
one 10-page document took 3.5 s wall / 2.1 s CPU (load the saved indexes ~0.8 s, BM25 update
~0.7 s, save ~1.2 s) against 19.5 s / 12.7 s for the full rebuild (ratio 0.18); removing it
3.0 s against 17.0 s. Both still write the whole files (~400 MB at 100k chunks).
"""
from __future__ import annotations

import json
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.files import atomic_path, atomic_write_text
from index.store import Store

HNSW_THRESHOLD = 200_000  # chunks; below it search is exact
HNSW_M = 32
HNSW_EF_SEARCH = 128
REBUILD_FRACTION = 0.5  # more new chunks than this share of the total: a rebuild is cheaper
FORMAT = 2  # derived.json "format"; 2: incremental updates (never-reused chunk ids)
SEARCH_THREADS = 1  # FAISS OpenMP threads for one query (0: leave FAISS's setting)


@dataclass
class Derived:
    """The loaded FAISS and BM25 indexes and the store generation they reflect."""

    generation: int
    dense: Any  # faiss.Index (IDMap2 over Flat or HNSW); ids are chunk row ids
    sparse: Any  # index.bm25.BM25Index; ids are str(chunk row id)
    n_chunks: int

    def dense_search(self, qvec: np.ndarray, n: int) -> list[tuple[int, float]]:
        """The ``n`` nearest chunks to one query vector, on ``SEARCH_THREADS`` FAISS threads: a
        single query splits badly, and on a busy machine 2 OpenMP threads took 60 ms instead of
        13 ms at 100k chunks (the OpenMP setting is per calling thread, restored after)."""
        import faiss

        if self.n_chunks == 0:
            return []
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(SEARCH_THREADS or threads)
        try:
            scores, ids = self.dense.search(np.ascontiguousarray(qvec.reshape(1, -1), dtype=np.float32),
                                            min(n, self.n_chunks))
        finally:
            faiss.omp_set_num_threads(threads)
        return [(int(i), float(s)) for i, s in zip(ids[0].tolist(), scores[0].tolist()) if i >= 0]

    def sparse_search(self, tokens: list[str], n: int) -> list[tuple[int, float]]:
        if self.n_chunks == 0 or not tokens:
            return []
        return [(int(i), float(s)) for i, s in self.sparse.search(tokens, n)]


class Cache:
    """The derived indexes of one open knowledge base, shared by its threads (one catch-up at a
    time): :meth:`fresh` for searches; writers :meth:`warm` them without the write lock, then
    :meth:`refresh` under it (a small catch-up, and the save)."""

    def __init__(self, kb_dir: Path, store: Store, dim: int) -> None:
        self.kb_dir, self.store, self.dim = Path(kb_dir), store, dim
        self.current: Derived | None = None  # the newest made; never changed, only replaced
        self._lock = threading.Lock()

    def fresh(self) -> Derived:
        """The indexes at exactly the generation this thread's store reads (inside a
        ``store.snapshot()``, the snapshot's: a search reads its hits in the same one, so every id
        it finds is a row): in memory, saved, or caught up (back, for a snapshot older than
        another thread's catch-up; only a newer one is kept)."""
        with self._lock, self.store.snapshot():
            gen, base = self.store.generation(), self.current
            if base is not None and base.generation == gen:
                return base
            if base is None or saved_generation(self.kb_dir) == gen:
                base = load(self.kb_dir) or base
            made = update(self.store, base, self.dim) if base is not None else build(self.store, self.dim)
            if self.current is None or made.generation > self.current.generation:
                self.current = made
            return made

    def warm(self) -> None:
        """Catch up in memory when the saved indexes are behind the store (the costly part of a
        refresh, done before the write lock is taken); nothing when nothing changed."""
        if self.current is not None or saved_generation(self.kb_dir) != self.store.generation():
            self.fresh()

    def refresh(self) -> None:
        """Bring the indexes up to the store and save them (the caller holds the write lock)."""
        with self._lock:
            saved, base = saved_generation(self.kb_dir), self.current
            if base is None and saved == self.store.generation():
                return  # nothing changed (e.g. every file unchanged): no need to load them
            base = base or load(self.kb_dir)
            current = update(self.store, base, self.dim) if base is not None else build(self.store, self.dim)
            if saved != current.generation:
                save(self.kb_dir, current)
            self.current = current


def build(store: Store, dim: int) -> Derived:
    """Build both indexes from the store (in memory)."""
    with store.snapshot():
        generation, n = store.generation(), store.count_chunks()
        return Derived(generation=generation, dense=_build_dense(store, dim, n),
                       sparse=_build_sparse(store), n_chunks=n)


def update(store: Store, base: Derived, dim: int) -> Derived:
    """``base`` (any other state of the store, earlier or later) brought to the generation the store
    reads (inside a ``store.snapshot()``: the snapshot's), as a new ``Derived`` (``base`` is left
    as it was).

    >>> d = update(store, d, dim)   # after kb writes                  # doctest: +SKIP
    """
    with store.snapshot():
        generation = store.generation()
        if generation == base.generation:
            return base
        ids = store.chunk_ids()
        return Derived(generation=generation, dense=_update_dense(store, base.dense, dim, ids),
                       sparse=_update_sparse(store, base.sparse, ids), n_chunks=len(ids))


def _build_dense(store: Store, dim: int, n: int) -> Any:
    import faiss

    if n >= HNSW_THRESHOLD:
        base = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        base.hnsw.efSearch = HNSW_EF_SEARCH
    else:
        base = faiss.IndexFlatIP(dim)
    dense = faiss.IndexIDMap2(base)
    for ids, vecs in store.iter_vectors(dim):
        dense.add_with_ids(vecs, ids)
    return dense


def _build_sparse(store: Store) -> Any:
    from index.bm25 import BM25Index

    return BM25Index.build(*store.all_tokens())


def _update_dense(store: Store, dense: Any, dim: int, ids: np.ndarray) -> Any:
    import faiss

    have = faiss.vector_to_array(dense.id_map)
    gone = np.setdiff1d(have, ids, assume_unique=True)
    new = np.setdiff1d(ids, have, assume_unique=True)
    hnsw = _is_hnsw(dense)
    if (hnsw != (len(ids) >= HNSW_THRESHOLD) or (hnsw and len(gone))
            or len(new) > REBUILD_FRACTION * len(ids)):
        return _build_dense(store, dim, len(ids))
    if not len(gone) and not len(new):
        return dense
    dense = faiss.clone_index(dense)  # searches in other threads may still use the old one
    if hnsw:
        faiss.downcast_index(dense.index).hnsw.efSearch = HNSW_EF_SEARCH
    if len(gone):
        dense.remove_ids(gone)
    for add_ids, vecs in store.iter_vectors(dim, ids=new):
        dense.add_with_ids(vecs, add_ids)
    return dense


def _update_sparse(store: Store, sparse: Any, ids: np.ndarray) -> Any:
    have = np.fromiter(map(int, sparse.ids), dtype=np.int64, count=len(sparse.ids))
    gone = np.setdiff1d(have, ids, assume_unique=True)
    new = np.setdiff1d(ids, have, assume_unique=True)
    if sparse.tf is None or len(new) > REBUILD_FRACTION * len(ids):
        return _build_sparse(store)
    if not len(gone) and not len(new):
        return sparse
    add_ids, tokens = store.all_tokens(new)
    return sparse.update({str(i) for i in gone.tolist()}, add_ids, tokens)


def _is_hnsw(dense: Any) -> bool:
    import faiss

    return hasattr(faiss.downcast_index(dense.index), "hnsw")


def saved_generation(kb_dir: Path) -> int | None:
    """The generation of the saved indexes (None: none saved, or an older format)."""
    try:
        info = json.loads((Path(kb_dir) / "derived.json").read_text())
        return int(info["generation"]) if info.get("format") == FORMAT else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save(kb_dir: Path, d: Derived) -> None:
    """Write both indexes atomically; ``derived.json`` is replaced last."""
    import faiss

    kb_dir = Path(kb_dir)
    tmp_bm25 = kb_dir / "bm25.tmp"
    shutil.rmtree(tmp_bm25, ignore_errors=True)
    d.sparse.save(tmp_bm25)
    with atomic_path(kb_dir / "faiss.index") as tmp_faiss:
        faiss.write_index(d.dense, str(tmp_faiss))
    # bm25/ is a folder: swapped by two renames (a crash between them leaves no bm25/, rebuilt on load)
    old = kb_dir / "bm25.old"
    shutil.rmtree(old, ignore_errors=True)
    if (kb_dir / "bm25").exists():
        os.replace(kb_dir / "bm25", old)
    os.replace(tmp_bm25, kb_dir / "bm25")
    shutil.rmtree(old, ignore_errors=True)
    atomic_write_text(kb_dir / "derived.json",
                      json.dumps({"format": FORMAT, "generation": d.generation, "n_chunks": d.n_chunks}))


def load(kb_dir: Path) -> Derived | None:
    """Load the saved indexes, or None when they are missing, unreadable or of an older format."""
    import faiss

    from index.bm25 import BM25Index

    kb_dir = Path(kb_dir)
    if (generation := saved_generation(kb_dir)) is None:
        return None
    try:
        info = json.loads((kb_dir / "derived.json").read_text())
        dense = faiss.read_index(str(kb_dir / "faiss.index"))
        sparse = BM25Index.load(kb_dir / "bm25")
    except (OSError, ValueError, RuntimeError, KeyError):
        return None
    if not isinstance(dense, faiss.IndexIDMap2):
        return None
    if _is_hnsw(dense):
        faiss.downcast_index(dense.index).hnsw.efSearch = HNSW_EF_SEARCH
    # Counts that differ from derived.json: a save torn before derived.json was replaced.
    # (Equal counts from a torn save are harmless: update() diffs each index by its own ids.)
    if dense.ntotal != info["n_chunks"] or len(sparse) != info["n_chunks"]:
        return None
    return Derived(generation=generation, dense=dense, sparse=sparse, n_chunks=int(info["n_chunks"]))
