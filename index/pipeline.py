"""The ingest pipeline of a knowledge base: files -> documents -> chunks -> vectors -> store.

Small documents are pooled so that each ``encode`` call embeds about ``BATCH_CHUNKS`` chunks
(one call per tiny document would starve the model of batch parallelism); each document is
then committed in its own SQLite transaction, so an interrupted batch keeps every document
finished before the interruption and the next run completes the rest.

Paths. A document is its bytes (sha256) and is stored under every path it was added under. A file
whose bytes are stored already is neither read nor embedded again: its path is added to that
document (a copy, a rename: *added*, or *unchanged* when it was there). A path whose file now
holds other bytes moves to the document of those bytes (*replaced*); the old document goes
when that was its last path. Paths leave their old documents at the end of a run, all in one
transaction, so bytes that move between files of one run (a rename, two files swapped) are
never deleted and embedded again; a run killed before then leaves such a path on both documents
until the next ``add`` or ``sync`` of it. A file that fails to load keeps what its path held.

The functions take the pieces they write with (a :class:`~index.store.Store`, an embedder and
the :class:`~index.config.IndexConfig` with the chunk settings), not the knowledge base:
``index.kb`` calls them under its write lock and then refreshes the derived indexes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from index.config import IndexConfig
from index.report import AddReport, FileResult, load_failure, removed_row
from index.store import Store
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
    from ingest.files import expand

    run = _Run(_Sink(store, embedder, config))
    _ingest(run, expand(args), password, progress)
    return run.finish()


def sync_folder(store: Store, embedder: Any, config: IndexConfig, folder: Path, *,
                password: str | None, progress: bool) -> AddReport:
    """Make the knowledge base hold exactly the files of ``folder`` that ``add`` finds in it.

    Every file is added under its path (new or changed bytes embedded, known bytes linked); then
    every stored path under ``folder`` that is none of those files now (deleted, renamed, hidden,
    of another type) is forgotten, one *removed* row each, and a document goes with its last path.
    An emptied folder is mirrored, not an error. Raises ``FileNotFoundError`` when ``folder`` is
    not a folder (nothing changes). The caller holds the write lock and refreshes the indexes.
    """
    from ingest.files import expand

    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; `ingest sync` mirrors a folder "
                                "(`ingest add` takes files)")
    found = replace(expand([str(folder)]), problems=[])  # the only one: "holds no files"
    run = _Run(_Sink(store, embedder, config))
    _ingest(run, found, password, progress)
    root, present = os.path.join(str(folder.resolve()), ""), {str(p) for p in found.paths}
    return run.finish(gone=[(sha, p) for sha, p in store.paths_under(root) if p not in present])


def add_loaded(store: Store, embedder: Any, config: IndexConfig, docs: Sequence[Document], *,
               progress: bool, sizes: dict[str, int] | None = None) -> AddReport:
    """Add documents already loaded in memory (BEIR corpora, reindexing).

    ``sizes`` maps a document's sha256 to its source file's bytes (default: its text's UTF-8
    bytes). The caller holds the write lock and refreshes the derived indexes afterwards.
    """
    from tqdm import tqdm

    run = _Run(_Sink(store, embedder, config))
    batch = _Batch(run)
    for order, doc in enumerate(tqdm(docs, desc="chunking", unit="doc", disable=not progress)):
        if run.known(order, str(doc.path), doc.sha256, pages=len(doc.pages)):
            continue
        size = (sizes or {}).get(doc.sha256) or sum(len(p.text.encode()) for p in doc.pages)
        batch.push(_chunk(run.sink, doc, order, size), progress)
    batch.flush(progress)
    return run.finish()


class _Run:
    """One add or sync: its rows by input order, and the paths to settle at the end."""

    def __init__(self, sink: _Sink) -> None:
        self.sink = sink
        self.results: dict[int, FileResult] = {}
        self.stale: list[tuple[str, str]] = []  # (sha256, path): leaves that document at the end
        self.firsts: dict[str, tuple[int, str]] = {}  # sha256 -> (order, path) of its first file here
        self.twins: list[tuple[int, str, str]] = []  # (order, path, sha256) of later files with those bytes

    def known(self, order: int, path: str, sha: str, pages: int = 0) -> bool:
        """True when the file needs no loading: its bytes are stored (its row is set now) or are
        an earlier file's of this run (its row is set by :meth:`finish`)."""
        if self.sink.store.has_document(sha):
            self.results[order] = self.link(path, sha, pages)
            return True
        if sha in self.firsts:
            self.twins.append((order, path, sha))
            return True
        self.firsts[sha] = (order, path)
        return False

    def link(self, path: str, sha: str, pages: int = 0) -> FileResult:
        """Store ``path`` under the stored document ``sha`` (it leaves any other at the end)."""
        store = self.sink.store
        others = [s for s in store.shas_at_path(path) if s != sha]
        new = store.link_paths([(sha, path)])
        self.stale += [(s, path) for s in others]
        if not new and not others:
            return FileResult(path=path, status="unchanged", doc_sha256=sha, pages=pages)
        display = store.paths_of(sha)[0]
        reason = f"same content as {display}: stored once, nothing embedded" if display != path else ""
        return FileResult(path=path, status="replaced" if others else "added", doc_sha256=sha,
                          pages=pages, reason=reason)

    def put(self, item: _Prepared, vecs: object) -> FileResult:
        """Store a new document under its path (the path leaves its old document at the end)."""
        store, doc = self.sink.store, item.doc
        others = [s for s in store.shas_at_path(str(doc.path)) if s != doc.sha256]
        store.put_document(doc, item.chunks, item.tokens, vecs, size=item.size)
        self.stale += [(s, str(doc.path)) for s in others]
        return FileResult(path=str(doc.path), status="replaced" if others else "added",
                          doc_sha256=doc.sha256, pages=len(doc.pages), ocr_pages=doc.ocr_pages,
                          chunks=len(item.chunks), reason="; ".join(doc.warnings))

    def finish(self, gone: Sequence[tuple[str, str]] = ()) -> AddReport:
        """Settle the twins, take the stale and ``gone`` (sha256, path) pairs from their documents
        in one transaction (a document goes with its last path); the report, a row per gone path."""
        for order, path, sha in self.twins:
            self.results[order] = self._twin(path, sha)
        deleted = {d.sha256: d for d in self.sink.store.unlink_paths(self.stale + list(gone))}
        rows = tuple(self._removed(gone, deleted))
        return AddReport(files=tuple(self.results[i] for i in sorted(self.results)) + rows)

    def _removed(self, gone: Sequence[tuple[str, str]], deleted: dict[str, Any]) -> list[FileResult]:
        """A row per gone path; a deleted document's pages and chunks are counted on its first."""
        rows, counted = [], set()
        for sha, path in gone:
            if sha in deleted:
                rows.append(removed_row(path, sha, None if sha in counted else deleted[sha]))
                counted.add(sha)
            else:
                rows.append(removed_row(path, sha, None, next(iter(self.sink.store.paths_of(sha)), "")))
        return rows

    def _twin(self, path: str, sha: str) -> FileResult:
        if self.sink.store.has_document(sha):
            return self.link(path, sha)
        first_order, first_path = self.firsts[sha]
        first = self.results[first_order]  # its bytes did not make it into the store
        return FileResult(path=path, status=first.status, doc_sha256=sha,
                          reason=f"same content as {first_path}: {first.reason}")


def _ingest(run: _Run, found: Any, password: str | None, progress: bool) -> None:
    """Add the files of ``found`` (an ``ingest.files.Expansion``), a row each in ``run.results``."""
    from tqdm import tqdm

    from ingest.files import DEFAULT_SUFFIXES

    rows = [FileResult(path=problem.path, status="failed", reason=problem.reason) for problem in found.problems]
    rows += [FileResult(path=str(other), status="skipped",  # in a folder or glob: listed, not a failure
                        reason=f"not a supported file type (supported: {', '.join(DEFAULT_SUFFIXES)})")
             for other in found.unsupported]
    rows += [FileResult(path=odd.path, status="skipped", reason=odd.reason) for odd in found.special]  # links, pipes
    run.results.update(enumerate(rows))
    batch = _Batch(run)
    for order, path in enumerate(tqdm(found.paths, desc="reading", unit="file", disable=not progress),
                                 start=len(rows)):
        item = _prepare_file(run, path, order, password)
        if item is not None:
            batch.push(item, progress)
    batch.flush(progress)


def no_text_reason(doc: Any) -> str:
    """Why a loaded document (``ingest.records.Document``) gave no chunk: for pages that are images
    (PDF, scans, photos) OCR found nothing or was off; other files are empty or blank.

    >>> from ingest.records import Document, Page
    >>> no_text_reason(Document(Path("/nonexistent/a.txt"), "ab", "a", "text", (Page(1, ""),)))
    'no text found: the file holds only blank space'
    """
    if doc.kind in ("pdf", "image"):
        return "no text found (no text layer, and OCR found none or was off)"
    try:
        empty = Path(doc.path).stat().st_size == 0
    except OSError:
        empty = False
    return "no text found: the file is empty (0 bytes)" if empty else "no text found: the file holds only blank space"


class _Batch:
    """Pending documents whose chunks are embedded together, then stored one by one."""

    def __init__(self, run: _Run) -> None:
        self.run, self.items = run, []  # type: list[_Prepared]

    def push(self, item: _Prepared, progress: bool) -> None:
        if not item.chunks:
            self.run.results[item.order] = FileResult(
                path=str(item.doc.path), status="failed", doc_sha256=item.doc.sha256,
                pages=len(item.doc.pages), ocr_pages=item.doc.ocr_pages,
                reason=no_text_reason(item.doc))
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
            vectors = self.run.sink.embedder.encode_passages(texts, show_progress=progress and len(texts) > 64)
        except Exception as e:  # noqa: BLE001 - a model failure fails these files, not the batch
            for i in items:
                self.run.results[i.order] = _failed(i.doc.path, f"embedding failed: {e}")
            return
        start = 0
        for i in items:
            vecs = vectors[start:start + len(i.chunks)]
            start += len(i.chunks)
            self.run.results[i.order] = self.run.put(i, vecs)


def _prepare_file(run: _Run, path: Path, order: int, password: str | None) -> _Prepared | None:
    """The file's chunks to embed, or None when its row is set already (failed, or bytes known)."""
    from common.files import file_sha256
    from ingest.load import load_document

    path = path.resolve()
    try:
        sha = file_sha256(path)
    except OSError as e:
        run.results[order] = _failed(path, f"cannot read: {e.strerror or e}")
        return None
    if run.known(order, str(path), sha):
        return None
    try:
        doc = load_document(path, password=password, ocr=run.sink.config.ocr)
    except Exception as e:  # noqa: BLE001 - one unreadable file must not stop the batch
        run.results[order] = load_failure(str(path), e, sha)
        return None
    return _chunk(run.sink, doc, order, path.stat().st_size)


def _chunk(sink: _Sink, doc: Document, order: int, size: int) -> _Prepared:
    from index.bm25 import tokenize
    from ingest.chunk import chunk_pages

    chunks = chunk_pages(doc.pages, doc_sha256=doc.sha256, max_tokens=sink.config.max_tokens,
                         overlap=sink.config.overlap, count_tokens=sink.embedder.count_tokens)
    return _Prepared(order=order, doc=doc, chunks=chunks,
                     tokens=[" ".join(tokenize(c.text)) for c in chunks], size=size)


def _failed(path: object, reason: str) -> FileResult:
    return FileResult(path=str(path), status="failed", reason=reason)
