"""The ingest pipeline of a knowledge base: files -> documents -> chunks -> vectors -> store.

Small documents are pooled so that each ``encode`` call embeds about ``BATCH_CHUNKS`` chunks
(one call per tiny document would starve the model of batch parallelism); each document is
then committed in its own SQLite transaction, so an interrupted batch keeps every document
finished before the interruption and the next run completes the rest.

The functions take the pieces they write with (a :class:`~index.store.Store`, an embedder and
the :class:`~index.config.IndexConfig` with the chunk settings), not the knowledge base:
``index.kb`` calls them under its write lock and then refreshes the derived indexes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from index.config import IndexConfig
from index.report import AddReport, FileResult, load_failure
from index.store import DocInfo, Store
from ingest.records import Chunk, Document

BATCH_CHUNKS = 256  # chunks per encode call


@dataclass
class _Prepared:
    order: int
    doc: Document
    chunks: list[Chunk]
    tokens: list[str]
    size: int  # bytes of the source file (text bytes for in-memory documents)


@dataclass(frozen=True)
class _Sink:
    """What one run writes with: the store, the embedder (``index.embedder.Embedder``), the settings."""

    store: Store
    embedder: Any
    config: IndexConfig  # max_tokens and overlap resolved (as ``KnowledgeBase.open`` leaves them)


def add_files(store: Store, embedder: Any, config: IndexConfig, args: Sequence[str], *,
              password: str | None, progress: bool) -> AddReport:
    """Add files/globs/folders; returns one result per file (and per unmatched argument).

    The caller holds the write lock and refreshes the derived indexes afterwards.
    """
    from tqdm import tqdm

    from ingest.files import DEFAULT_SUFFIXES, expand

    sink = _Sink(store, embedder, config)
    found = expand(args)
    paths = found.paths
    results: dict[int, FileResult] = {}
    order = 0
    for problem in found.problems:
        results[order] = FileResult(path=problem.path, status="failed", reason=problem.reason)
        order += 1
    for other in found.unsupported:  # in a folder or glob: listed, not a failure
        results[order] = FileResult(path=str(other), status="skipped", reason="not a supported file type "
                                    f"(supported: {', '.join(DEFAULT_SUFFIXES)})")
        order += 1
    batch = _Batch(sink, results)
    seen: dict[str, str] = {}  # sha256 -> path, for identical files within one batch
    for path in tqdm(paths, desc="reading", unit="file", disable=not progress):
        item = _prepare_file(sink, path, order, password, seen)
        if isinstance(item, FileResult):
            results[order] = item
        else:
            batch.push(item, progress)
        order += 1
    batch.flush(progress)
    return AddReport(files=tuple(results[i] for i in sorted(results)))


def add_loaded(store: Store, embedder: Any, config: IndexConfig, docs: Sequence[Document], *,
               progress: bool, sizes: dict[str, int] | None = None) -> AddReport:
    """Add documents already loaded in memory (BEIR corpora, reindexing).

    ``sizes`` maps a document's sha256 to its source file's bytes (default: its text's UTF-8
    bytes). The caller holds the write lock and refreshes the derived indexes afterwards.
    """
    from tqdm import tqdm

    sink = _Sink(store, embedder, config)
    results: dict[int, FileResult] = {}
    batch = _Batch(sink, results)
    for order, doc in enumerate(tqdm(docs, desc="chunking", unit="doc", disable=not progress)):
        if store.has_document(doc.sha256):
            results[order] = FileResult(path=str(doc.path), status="unchanged", doc_sha256=doc.sha256,
                                        pages=len(doc.pages))
            continue
        size = (sizes or {}).get(doc.sha256) or sum(len(p.text.encode()) for p in doc.pages)
        batch.push(_chunk(sink, doc, order, size), progress)
    batch.flush(progress)
    return AddReport(files=tuple(results[i] for i in sorted(results)))


class _Batch:
    """Pending documents whose chunks are embedded together, then stored one by one."""

    def __init__(self, sink: _Sink, results: dict[int, FileResult]) -> None:
        self.sink, self.results, self.items = sink, results, []  # type: list[_Prepared]

    def push(self, item: _Prepared, progress: bool) -> None:
        if not item.chunks:
            self.results[item.order] = FileResult(
                path=str(item.doc.path), status="failed", doc_sha256=item.doc.sha256,
                pages=len(item.doc.pages), ocr_pages=item.doc.ocr_pages,
                reason="no text found (no text layer, and OCR found none or was off)")
            return
        self.items.append(item)
        if sum(len(i.chunks) for i in self.items) >= BATCH_CHUNKS:
            self.flush(progress)

    def flush(self, progress: bool) -> None:
        items, self.items = self.items, []
        if not items:
            return
        texts = [c.text for i in items for c in i.chunks]
        try:
            vectors = self.sink.embedder.encode_passages(texts, show_progress=progress and len(texts) > 64)
        except Exception as e:  # noqa: BLE001 - a model failure fails these files, not the batch
            for i in items:
                self.results[i.order] = _failed(i.doc.path, f"embedding failed: {e}")
            return
        start = 0
        for i in items:
            vecs = vectors[start:start + len(i.chunks)]
            start += len(i.chunks)
            self.results[i.order] = self._store(i, vecs)

    def _store(self, i: _Prepared, vecs: object) -> FileResult:
        store = self.sink.store
        old = [s for s in store.shas_at_path(str(i.doc.path)) if s != i.doc.sha256]
        store.put_document(i.doc, i.chunks, i.tokens, vecs, size=i.size, replaces=old)
        return FileResult(path=str(i.doc.path), status="replaced" if old else "added",
                          doc_sha256=i.doc.sha256, pages=len(i.doc.pages), ocr_pages=i.doc.ocr_pages,
                          chunks=len(i.chunks), reason="; ".join(i.doc.warnings))


def _prepare_file(sink: _Sink, path: Path, order: int, password: str | None,
                  seen: dict[str, str]) -> _Prepared | FileResult:
    from common.files import file_sha256
    from ingest.load import load_document

    path = path.resolve()
    try:
        sha = file_sha256(path)
    except OSError as e:
        return _failed(path, f"cannot read: {e.strerror or e}")
    if sha in seen:
        return FileResult(path=str(path), status="unchanged", doc_sha256=sha,
                          reason=f"same content as {seen[sha]}")
    seen[sha] = str(path)
    if sink.store.has_document(sha):
        return FileResult(path=str(path), status="unchanged", doc_sha256=sha)
    try:
        doc = load_document(path, password=password, ocr=sink.config.ocr)
    except Exception as e:  # noqa: BLE001 - one unreadable file must not stop the batch
        return load_failure(str(path), e, sha)
    return _chunk(sink, doc, order, path.stat().st_size)


def _chunk(sink: _Sink, doc: Document, order: int, size: int) -> _Prepared:
    from index.bm25 import tokenize
    from ingest.chunk import chunk_pages

    chunks = chunk_pages(doc.pages, doc_sha256=doc.sha256, max_tokens=sink.config.max_tokens,
                         overlap=sink.config.overlap, count_tokens=sink.embedder.count_tokens)
    return _Prepared(order=order, doc=doc, chunks=chunks,
                     tokens=[" ".join(tokenize(c.text)) for c in chunks], size=size)


def _failed(path: object, reason: str) -> FileResult:
    return FileResult(path=str(path), status="failed", reason=reason)


def removed_under(store: Store, folder: Path) -> list[DocInfo]:
    """Documents stored from inside ``folder`` whose file no longer exists."""
    root = str(folder.resolve()) + os.sep
    return [d for d in store.documents() if d.path.startswith(root) and not Path(d.path).exists()]
