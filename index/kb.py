"""The knowledge base: a folder of documents, chunks and indexes that can be searched.

Files, globs and folders go in with ``add`` (idempotent: the same bytes are embedded once); here
with the exact hash-seeded test embedder (leave ``embedder`` out for multilingual-e5-small):

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> _ = (folder / "policy.md").write_text("退货政策：购买后三十天内可以退货。", encoding="utf-8")
>>> with KnowledgeBase.open(folder / "kb", embedder="hash-64") as kb:
...     first, again = kb.add([str(folder)]), kb.add([str(folder)])
...     hits = kb.search("退货政策是什么？", k=3)
>>> first.count("added"), again.count("unchanged")
(1, 1)
>>> [(hit.title, hit.page_start) for hit in hits]
[('policy', 1)]
"""
from __future__ import annotations

import os
import shutil
import threading
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from index import derived
from index.config import MODES, IndexConfig
from index.errors import BadQuery
from index.kb_settings import Recorded, check_meta, meta_for, resolve_embedder
from index.lock import WriteLock
from index.naming import find_target
from index.pipeline import Sink, add_files, add_loaded, sync_folder
from index.records import Hit, Removal
from index.report import AddReport
from index.store import DocInfo, Store, store_path
from index.store_protocol import KBStore
from ingest.chunk import MAX_TOKENS, OVERLAP

CANDIDATES = 100  # chunks each retriever contributes before fusion (or k, when larger)


class KnowledgeBase:
    """Documents, chunks, a FAISS index and a BM25 index in one folder (see ``index.store``), or the
    same in Milvus collections (``index.milvus_store``): ``store`` is either (:class:`KBStore`)."""

    def __init__(self, config: IndexConfig, store: KBStore, embedder: object | None) -> None:
        """``embedder``: an ``index.embedder.Embedder``, or None for the one the store records, loaded
        (and its fingerprint checked) on first use: a bm25 search never loads it."""
        self.config = config
        self.store = store
        self._embedder = embedder
        self._embedder_lock = threading.Lock()
        self.dim = int(store.meta().get("dim") or embedder.dim)  # type: ignore[union-attr]
        self.remote = store.remote  # a Milvus store (index.milvus_store): Milvus indexes the vectors
        self.path = store.path if self.remote else Path(config.kb)  # Milvus: its location, as a Path
        self._cache = _cache_for(self.path, store, self.dim, self.remote)  # shared by threads (UI: searches)
        self._reranker = None

    # -- opening ----------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path = "kb", *, embedder: object | str | None = None,
             config: IndexConfig | None = None, **fields: object) -> "KnowledgeBase":
        """Open (creating if needed) the knowledge base at ``path``.

        ``embedder`` is a model id/path or an ``Embedder``; None means the one the
        knowledge base was built with (the default e5 model for a new one). Other keyword
        arguments are :class:`IndexConfig` fields. An existing knowledge base opened with neither
        ``embedder`` nor ``max_tokens`` loads its embedder on first use (a bm25 search never does);
        a given one is loaded and checked here. Raises :class:`EmbedderMismatch` (here or on that
        first use) when the embedder or chunk settings differ from those it was built with.
        """
        config = replace(config or IndexConfig(), kb=Path(path), **fields)  # type: ignore[arg-type]
        path = Path(path)
        store, created = _open_store(path)
        meta = store.meta()
        if (meta and embedder is None and config.embedder is None and config.max_tokens is None
                and config.embedder_backend == "auto"):
            return cls._as_built(config, store, meta)
        emb = resolve_embedder(embedder if embedder is not None else config.embedder, meta, config.embedder_backend)
        # Chunk settings not given: the recorded ones (or a new KB's: new_kb_chunking).
        if config.max_tokens and config.max_tokens > emb.max_tokens:
            raise ValueError(f"max_tokens={config.max_tokens} exceeds what {emb.name} reads "
                             f"({emb.max_tokens} tokens); use --max-tokens {emb.max_tokens} or less")
        max_tokens = config.max_tokens or int(meta.get("max_tokens", new_kb_chunking(emb)[0]))
        overlap = config.overlap if config.overlap is not None else int(meta.get("overlap", OVERLAP))
        config = replace(config, max_tokens=max_tokens, overlap=overlap)
        check_meta(path, meta, emb, config)
        if created:  # a new Milvus knowledge base: its collections need the dim (the folder store: nothing to do)
            store.create(emb.dim)
        kb = cls(config, store, emb)
        if created:  # this call made the store: it records its settings (`assistant ui`'s empty KB)
            kb._record_settings()
        return kb  # an existing store without settings (a first add killed early) gets them at its first write

    @classmethod
    def _as_built(cls, config: IndexConfig, store: KBStore, meta: dict[str, str]) -> "KnowledgeBase":
        """An existing knowledge base opened with its recorded embedder, which loads on first use."""
        overlap = config.overlap if config.overlap is not None else int(meta.get("overlap", OVERLAP))
        config = replace(config, max_tokens=int(meta.get("max_tokens", MAX_TOKENS)), overlap=overlap)
        check_meta(Path(config.kb), meta, Recorded.of(meta), config)  # schema, chunking; the embedder on load
        return cls(config, store, None)

    @property
    def embedder(self) -> object:
        """The ``index.embedder.Embedder``; the recorded one is loaded here on first use. Raises
        :class:`EmbedderMismatch` when its weights no longer match the fingerprint the store records."""
        if self._embedder is None:
            with self._embedder_lock:
                if self._embedder is None:
                    meta = self.store.meta()
                    emb = resolve_embedder(None, meta, self.config.embedder_backend)
                    check_meta(self.path, meta, emb, self.config)
                    self._embedder = emb
        return self._embedder

    @embedder.setter
    def embedder(self, value: object) -> None:
        self._embedder = value

    def _record_settings(self) -> None:
        """Record the embedder and chunk settings in a store that has none yet (under the write lock,
        before the first write). Opening never records them, so a read (``index search`` of a knowledge
        base whose first ``ingest add --embedder X`` was killed) cannot lock in another embedder; a
        store another writer initialised meanwhile is checked against this one's settings instead."""
        meta = self.store.meta()
        if meta:
            check_meta(self.path, meta, self.embedder, self.config)
        else:
            self.store.set_meta(meta_for(self.embedder, self.config) | {"generation": "0"})

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "KnowledgeBase":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ----------------------------------------------------------------------
    def add(self, paths: Sequence[str | Path], *, password: str | None = None,
            progress: bool = False) -> AddReport:
        """Ingest files, globs and folders; every file ends as one row of the report. Files are read
        and embedded without the write lock, taken per batch to commit (:mod:`index.pipeline`);
        raises :class:`KBLocked` when one wait for it lasts ``lock_timeout_s``."""
        return add_files(self._sink(), [str(p) for p in paths], password=password or self.config.password,
                         progress=progress)

    def add_documents(self, docs: Iterable[object], *, progress: bool = False) -> AddReport:
        """Ingest documents already in memory (``ingest.records.Document``), e.g. a BEIR corpus (as :meth:`add`)."""
        return add_loaded(self._sink(), list(docs), progress=progress)

    def sync(self, folder: str | Path, *, password: str | None = None,
             progress: bool = False) -> AddReport:
        """Make the knowledge base mirror ``folder`` in one run: every file of it stored under its
        path (new and changed files embedded, copies and renames linked to the stored bytes), every
        other path from it forgotten, documents without a path left removed. Raises
        ``FileNotFoundError`` when ``folder`` is not a folder (see :func:`index.pipeline.sync_folder`).

        >>> import shutil, tempfile
        >>> docs, kb_dir = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
        >>> _ = (docs / "a.txt").write_text("退货政策：三十天内可以退货。", encoding="utf-8")
        >>> with KnowledgeBase.open(kb_dir, embedder="hash-64") as kb:
        ...     _ = kb.sync(docs)
        ...     _ = shutil.copy(docs / "a.txt", docs / "copy.txt"); _ = (docs / "a.txt").rename(docs / "b.txt")
        ...     report = kb.sync(docs)   # a copy and a rename: nothing embedded again
        ...     (doc,) = kb.documents()
        >>> [(Path(f.path).name, f.status) for f in report.files]
        [('b.txt', 'added'), ('copy.txt', 'added'), ('a.txt', 'removed')]
        >>> [Path(p).name for p in doc.paths], doc.title
        (['b.txt', 'copy.txt'], 'b')
        """
        return sync_folder(self._sink(), Path(folder), password=password or self.config.password, progress=progress)

    def _sink(self) -> Sink:
        """What a write run needs (:class:`index.pipeline.Sink`): the embedder, loaded here, outside
        the lock, and the settings, recorded (or checked) under it before anything is written."""
        embedder = self.embedder
        with self._locked():
            self._record_settings()
        return Sink(self.store, embedder, self.config, locked=self._locked, warm=self._cache.warm,
                    settle=self._refresh_derived)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """The write lock for one stretch of writing; never taken inside another (flock is not
        reentrant). Raises :class:`KBLocked` after ``lock_timeout_s``, and its ``StoreReplaced``
        when another process reindexed the store since this one opened it."""
        with nullcontext() if self.remote else WriteLock(self.path, timeout_s=self.config.lock_timeout_s):
            self.store.check_current()
            yield

    def remove(self, doc: str) -> Removal:
        """Remove what ``doc`` names (:func:`index.naming.find_target`): a path, file name or stem
        names one path of a document, which goes with its last path; a sha256 (prefix) or a title
        names the document itself, with every path. Raises :class:`DocumentNotFound` when ``doc``
        names nothing, or several documents or paths equally."""
        with self._locked():
            target = find_target(self.store.documents(), doc)
            info = target.doc
            if target.whole:
                self.store.delete_documents([info.sha256])
            else:
                self.store.unlink_paths([(info.sha256, p) for p in target.paths])
            left = self.store.paths_of(info.sha256)
            self._refresh_derived()
        return Removal(sha256=info.sha256, title=info.title, path=info.path, paths=target.paths,
                       n_chunks=0 if left else info.n_chunks, document_removed=not left, paths_left=left)

    def reindex(self, embedder: object | str | None = None, *, progress: bool = False,
                **fields: object) -> "KnowledgeBase":
        """Re-chunk and re-embed every document into a fresh store, then swap it in.

        ``embedder`` (None: this one) and ``fields`` (:class:`IndexConfig` fields, e.g.
        ``max_tokens``) are the new settings. Returns the reopened knowledge base; ``self`` is
        closed. The old store stays in place until the new one is complete; the swap is one
        ``os.replace`` of ``kb.sqlite`` (after removing ``derived.json``, so no stale index is
        ever taken for current), and the derived indexes are moved in after it.
        """
        if self.remote:
            from index.milvus_kb import reindex

            return reindex(self, embedder, progress=progress, **fields)
        root, tmp = self.path, self.path / "reindex.tmp"
        with self._locked():  # the whole run: nobody writes while every document is re-embedded
            shutil.rmtree(tmp, ignore_errors=True)
            config = replace(self.config, kb=tmp, embedder=None, **fields)  # type: ignore[arg-type]
            if embedder is None:  # this embedder; by name when another backend is asked for
                embedder = self.embedder if config.embedder_backend == "auto" else self.embedder.name
            new = KnowledgeBase.open(tmp, embedder=embedder, config=config)
            infos = self.documents()
            docs = [self.store.document_record(d.sha256) for d in infos]
            sizes = {d.sha256: self.store.document_size(d.sha256) for d in docs}
            with WriteLock(tmp, timeout_s=0):
                new._record_settings()
                add_loaded(Sink(new.store, new.embedder, new.config), docs, progress=progress, sizes=sizes)
                new.store.link_paths([(d.sha256, p) for d in infos for p in d.all_paths])  # every path, in order
                new._refresh_derived()
            new.close()
            self.close()
            (root / "derived.json").unlink(missing_ok=True)
            os.replace(store_path(tmp), store_path(root))
            os.replace(tmp / "faiss.index", root / "faiss.index")
            shutil.rmtree(root / "bm25", ignore_errors=True)
            os.replace(tmp / "bm25", root / "bm25")
            os.replace(tmp / "derived.json", root / "derived.json")
            shutil.rmtree(tmp, ignore_errors=True)
        return KnowledgeBase.open(root, config=replace(config, kb=root))

    def documents(self) -> list[DocInfo]:
        return self.store.documents()

    def collect_orphans(self) -> int | None:
        """Delete the chunks and pages of documents without a row: those of writers killed before their
        commit on a backend without transactions (Milvus: :meth:`index.milvus_store.MilvusStore.collect_orphans`;
        searches never show them). Returns how many documents' were deleted, or None when the backend
        cannot leave any (a folder: each document is written in one transaction). No writer may run meanwhile:
        a document being added would lose its chunks."""
        return self.store.collect_orphans()

    # -- searching --------------------------------------------------------------------
    def search(self, query: str, k: int | None = None, mode: str | None = None) -> list[Hit]:
        """The ``k`` best chunks for ``query``: ``hybrid`` (default), ``dense`` or ``bm25``."""
        k = self.config.k if k is None else k
        mode = mode or self.config.mode
        if not query or not query.strip():
            raise BadQuery("the query is empty")
        if k < 1:
            raise BadQuery(f"k={k} must be >= 1")
        if mode not in MODES:
            raise BadQuery(f"mode={mode!r} is not one of {', '.join(MODES)}")
        from index.bm25 import tokenize

        depth = max(k, CANDIDATES)
        qvec = self.embedder.encode_queries([query])[0] if mode in ("dense", "hybrid") else None
        with self.store.snapshot():  # one committed state for the indexes and the rows (_fresh_derived)
            d = self._fresh_derived()
            dense = d.dense_search(qvec, depth) if qvec is not None else []
            sparse = d.sparse_search(tokenize(query), depth) if mode in ("bm25", "hybrid") else []
            scored = dense if mode == "dense" else sparse if mode == "bm25" else _fuse(dense, sparse)
            hits = self._hits(scored[:depth if self.config.reranker else k], qvec, dict(dense))
        return self._rerank(query, hits, k) if self.config.reranker else hits

    def _hits(self, scored: list[tuple[int, float]], qvec: object | None,
              cosines: dict[int, float]) -> list[Hit]:
        """:class:`Hit` records of (chunk row id, score) pairs, in order, each with its ``similarity``:
        the cosine FAISS gave (``cosines``), else its stored vector (L2-normalised) dotted with
        ``qvec``, read in the read transaction that fetches the hits (only chunks BM25 alone
        found in hybrid mode need it; no chunk is embedded again). ``qvec`` None (bm25): no similarity.
        """
        if qvec is None:
            return self.store.hits(scored)
        with self.store.snapshot():  # the same rows for the vectors and the hits
            sims = {int(i): float(v @ qvec) for ids, vecs in
                    self.store.iter_vectors(self.dim, ids=[i for i, _ in scored]) for i, v in zip(ids, vecs)}
            kept = [(i, s) for i, s in scored if i in sims]  # rows deleted since the index was built
            hits = self.store.hits(kept)
        return [replace(h, similarity=cosines.get(i, sims[i])) for h, (i, _) in zip(hits, kept, strict=True)]

    def _rerank(self, query: str, hits: list[Hit], k: int) -> list[Hit]:
        from index.rerank import Reranker

        if self._reranker is None:
            self._reranker = Reranker(self.config.reranker)
        return self._reranker.rerank(query, hits, top_k=k)

    @property
    def _derived(self) -> derived.Derived | None:
        return self._cache.current

    def _fresh_derived(self) -> derived.Derived:
        """The indexes at the generation this thread's store reads (:meth:`index.derived.Cache.fresh`)."""
        return self._cache.fresh()

    def _refresh_derived(self) -> None:
        """Bring the derived indexes up to the store and save them (caller holds the write lock)."""
        self._cache.refresh()


def _open_store(path: Path) -> tuple[KBStore, bool]:
    """The store at ``path`` (a folder, or a Milvus location: :mod:`index.milvus_uri`) and whether
    this call makes it (a new Milvus knowledge base's collections are created once its dim is known)."""
    from index.milvus_uri import parse_kb_location

    if (loc := parse_kb_location(path)) is not None:
        from index.milvus_store import MilvusStore

        store = MilvusStore(loc)
        return store, not store.exists()
    path.mkdir(parents=True, exist_ok=True)
    created = not store_path(path).exists()
    return Store(store_path(path)), created


def _cache_for(path: Path, store: KBStore, dim: int, remote: bool) -> object:
    """The derived indexes: Milvus's own for a Milvus store, else the folder's FAISS + BM25 files."""
    if remote:
        from index.milvus_search import MilvusCache

        return MilvusCache(store)  # type: ignore[arg-type]
    return derived.Cache(path, store, dim)  # type: ignore[arg-type]


def new_kb_chunking(emb: object) -> tuple[int, int]:
    """(max_tokens, overlap) of a new knowledge base built with ``emb`` when none are given:
    ``ingest.chunk``'s defaults, the size capped at what ``emb`` reads (a longer chunk would be
    silently truncated when embedded).

    >>> from index.embedder import HashEmbedder
    >>> new_kb_chunking(HashEmbedder(max_tokens=256)), new_kb_chunking(HashEmbedder())
    ((256, 50), (500, 50))
    """
    return min(MAX_TOKENS, emb.max_tokens), OVERLAP  # type: ignore[attr-defined]


def _fuse(dense: list[tuple[int, float]], sparse: list[tuple[int, float]]) -> list[tuple[int, float]]:
    from index.fusion import fuse

    fused = fuse([(str(i), s) for i, s in dense], [(str(i), s) for i, s in sparse])
    return [(int(i), s) for i, s in fused]
