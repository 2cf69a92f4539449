"""The ingest pipeline of a knowledge base: files -> documents -> chunks -> vectors -> store.

Small documents are pooled so that each ``encode`` call embeds about ``BATCH_CHUNKS`` chunks
(one call per tiny document would starve the model of batch parallelism); each document is
then committed in its own SQLite transaction, so an interrupted batch keeps every document
finished before the interruption and the next run completes the rest.

The write lock. Hashing, reading, chunking and embedding run without the knowledge base's write
lock, so writers in other processes (or threads) embed at the same time. The lock
(``Sink.locked``) is taken once per encode batch, to commit its documents and to link the paths
of known bytes met since the last batch, and once at the end, to settle paths and refresh the
derived indexes (``Sink.settle``); one hold at a time, never nested (``flock`` would wait on
itself). Under it, what other writers did meanwhile is checked again: bytes one of them stored
are linked, not stored twice; a path whose stored bytes one of them removed before this run
could link them fails, saying so (add the file again). Each hold is timed
(``AddReport.lock_holds``).

Paths. A document is its bytes (sha256) and is stored under every path it was added under. A file
whose bytes are stored already is neither read nor embedded again: its path is added to that
document (a copy, a rename: *added*, or *unchanged* when it was there). A path whose file now
holds other bytes moves to the document of those bytes (*replaced*) in the transaction that
stores or links them, so a search sees the old document or the new one, never both or neither;
the old document goes when that was its last path. When the old bytes are another file's of the
same run (a rename, two files swapped), the path leaves them at the end of the run instead, all
such paths in one transaction, so bytes that move between files of one run are never deleted and
embedded again; a run killed before then leaves such a path on both documents until the next
``add`` or ``sync`` of it. A file that fails to load keeps what its path held.

The functions take what they write with (a :class:`Sink`: the store, an embedder, the
:class:`~index.config.IndexConfig` with the chunk settings, the lock, the refresh), not the
knowledge base: ``index.kb`` builds it.
"""
from __future__ import annotations

import os
import time
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from index.config import IndexConfig
from index.report import AddReport, FileResult, LockHold, load_failure, removed_row
from index.store_protocol import KBStore
from ingest.records import Chunk, Document

BATCH_CHUNKS = 256  # chunks per encode call
GONE_MEANWHILE = ("its bytes were stored when this run began, but another writer removed that document "
                  "meanwhile; add the file again")


@dataclass
class _Prepared:
    order: int
    doc: Document
    chunks: list[Chunk]
    tokens: list[str]
    size: int  # bytes of the source file (text bytes for in-memory documents)


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class Sink:
    """What one run writes with: the store, the embedder (``index.embedder.Embedder``), the settings
    (max_tokens and overlap resolved, as ``KnowledgeBase.open`` leaves them); ``locked()``, a context
    manager holding the write lock (not reentrant); ``warm()``, called without it before the last
    hold, and ``settle()``, called in it last (the knowledge base catches its derived indexes up,
    then saves them). The defaults suit a caller holding the lock throughout (``reindex``)."""

    store: KBStore
    embedder: Any
    config: IndexConfig
    locked: Callable[[], AbstractContextManager[Any]] = nullcontext
    warm: Callable[[], None] = _nothing
    settle: Callable[[], None] = _nothing


def add_files(sink: Sink, args: Sequence[str], *, password: str | None, progress: bool) -> AddReport:
    """Add files/globs/folders; returns one result per file (and per unmatched argument). Takes
    the write lock itself, per batch (module docstring); raises ``KBLocked`` when it waits too long."""
    from ingest.files import expand

    return _ingest(sink, expand(args), password, progress).finish()


def sync_folder(sink: Sink, folder: Path, *, password: str | None, progress: bool) -> AddReport:
    """Make the knowledge base hold exactly the files of ``folder`` that ``add`` finds in it.

    Every file is added under its path (new or changed bytes embedded, known bytes linked); then
    every path under ``folder`` that was stored when the run began and is none of those files now
    (deleted, renamed, hidden, of another type) is forgotten, one *removed* row each, and a
    document goes with its last path (paths another writer adds meanwhile stay). An emptied folder
    is mirrored, not an error. Raises ``FileNotFoundError`` when ``folder`` is not a folder
    (nothing changes), ``KBLocked`` as :func:`add_files`.
    """
    from ingest.files import expand

    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; `ingest sync` mirrors a folder "
                                "(`ingest add` takes files)")
    found = replace(expand([str(folder)]), problems=[])  # the only one: "holds no files"
    root, present = os.path.join(str(folder.resolve()), ""), {str(p) for p in found.paths}
    before = set(sink.store.paths_under(root))
    run = _ingest(sink, found, password, progress)
    return run.finish(gone=lambda: [(sha, p) for sha, p in sink.store.paths_under(root)
                                    if p not in present and (sha, p) in before])


def add_loaded(sink: Sink, docs: Sequence[Document], *, progress: bool,
               sizes: dict[str, int] | None = None) -> AddReport:
    """Add documents already loaded in memory (BEIR corpora, reindexing).

    ``sizes`` maps a document's sha256 to its source file's bytes (default: its text's UTF-8
    bytes). Takes the write lock as :func:`add_files`.
    """
    from tqdm import tqdm

    run = _Run(sink, {doc.sha256 for doc in docs})
    batch = _Batch(run)
    for order, doc in enumerate(tqdm(docs, desc="chunking", unit="doc", disable=not progress)):
        if run.known(order, str(doc.path), doc.sha256, pages=len(doc.pages)):
            continue
        size = (sizes or {}).get(doc.sha256) or sum(len(p.text.encode()) for p in doc.pages)
        batch.push(_chunk(run.sink, doc, order, size), progress)
    batch.flush(progress)
    return run.finish()


class _Run:
    """One add or sync: its rows by input order, the paths to link and to settle, its lock holds."""

    def __init__(self, sink: Sink, shas: set[str]) -> None:
        self.sink = sink
        self.shas = shas  # the bytes of every file of this run: a path leaving one of them waits for the end
        self.results: dict[int, FileResult] = {}
        self.stale: list[tuple[str, str]] = []  # (sha256, path): leaves that document at the end
        self.firsts: dict[str, tuple[int, str]] = {}  # sha256 -> (order, path) of its first file here
        self.twins: list[tuple[int, str, str]] = []  # (order, path, sha256) of later files with those bytes
        self.links: list[tuple[int, str, str, int]] = []  # (order, path, sha256, pages) to link at the next hold
        self.holds: list[LockHold] = []

    def known(self, order: int, path: str, sha: str, pages: int = 0) -> bool:
        """True when the file needs no loading: its bytes are stored (its row is set now when its
        path holds them alone, else when it is linked) or are an earlier file's of this run (its
        row is set by :meth:`finish`)."""
        store = self.sink.store
        if store.has_document(sha):
            if store.shas_at_path(path) == [sha]:
                self.results[order] = FileResult(path=path, status="unchanged", doc_sha256=sha, pages=pages)
            else:
                self.links.append((order, path, sha, pages))
            return True
        if sha in self.firsts:
            self.twins.append((order, path, sha))
            return True
        self.firsts[sha] = (order, path)
        return False

    def commit(self, items: list[_Prepared], vectors: Any) -> None:
        """In one hold of the write lock: store each embedded document (``vectors``: its chunks'
        rows, in order), each in its own transaction, and link the paths met since the last hold."""
        with self._hold("commit", len(items) + len(self.links)):
            start = 0
            for item in items:
                self.results[item.order] = self._put(item, vectors[start:start + len(item.chunks)])
                start += len(item.chunks)
            self._link_pending()

    def finish(self, gone: Callable[[], Sequence[tuple[str, str]]] = tuple) -> AddReport:
        """Under the write lock: link the pending paths and the twins, take the stale and ``gone()``
        (sha256, path) pairs from their documents in one transaction (a document goes with its last
        path), settle; the report, a row per gone path."""
        self.sink.warm()
        with self._hold("finish", len(self.links) + len(self.twins)):
            self._link_pending()
            for order, path, sha in self.twins:
                self.results[order] = self._twin(path, sha)
            pairs = list(gone())
            deleted = {d.sha256: d for d in self.sink.store.unlink_paths(self.stale + pairs)}
            rows = tuple(self._removed(pairs, deleted))
            self.sink.settle()
        return AddReport(files=tuple(self.results[i] for i in sorted(self.results)) + rows,
                         lock_holds=tuple(self.holds))

    @contextmanager
    def _hold(self, kind: str, files: int) -> Iterator[None]:
        with self.sink.locked():
            start = time.perf_counter()
            try:
                yield
            finally:
                self.holds.append(LockHold(kind=kind, seconds=time.perf_counter() - start, files=files))

    def _put(self, item: _Prepared, vecs: Any) -> FileResult:
        """Store a new document under its path (under the lock); bytes another writer stored
        meanwhile are linked instead."""
        store, doc, path = self.sink.store, item.doc, str(item.doc.path)
        if store.has_document(doc.sha256):
            return self._link(path, doc.sha256, len(doc.pages))
        now, later = self._leaving(path, doc.sha256)
        store.put_document(doc, item.chunks, item.tokens, vecs, size=item.size, leaving=now)
        self.stale += later
        return FileResult(path=path, status="replaced" if now or later else "added",
                          doc_sha256=doc.sha256, pages=len(doc.pages), ocr_pages=doc.ocr_pages,
                          chunks=len(item.chunks), reason="; ".join(doc.warnings))

    def _link(self, path: str, sha: str, pages: int = 0) -> FileResult:
        """Store ``path`` under the stored document ``sha`` (under the lock)."""
        store = self.sink.store
        if not store.has_document(sha):
            return FileResult(path=path, status="failed", doc_sha256=sha, pages=pages, reason=GONE_MEANWHILE)
        now, later = self._leaving(path, sha)
        new = store.link_paths([(sha, path)], leaving=now)
        self.stale += later
        if not new and not now and not later:
            return FileResult(path=path, status="unchanged", doc_sha256=sha, pages=pages)
        display = store.paths_of(sha)[0]
        reason = f"same content as {display}: stored once, nothing embedded" if display != path else ""
        return FileResult(path=path, status="replaced" if now or later else "added", doc_sha256=sha,
                          pages=pages, reason=reason)

    def _leaving(self, path: str, sha: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """The (sha256, path) pairs ``path`` leaves for ``sha``: now (in the transaction that stores
        it), and at the end (bytes that another file of this run holds)."""
        others = [(s, path) for s in self.sink.store.shas_at_path(path) if s != sha]
        return [o for o in others if o[0] not in self.shas], [o for o in others if o[0] in self.shas]

    def _link_pending(self) -> None:
        links, self.links = self.links, []
        for order, path, sha, pages in links:
            self.results[order] = self._link(path, sha, pages)

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
            return self._link(path, sha)
        first_order, first_path = self.firsts[sha]
        first = self.results[first_order]  # its bytes did not make it into the store (or went meanwhile)
        if first.status in ("added", "replaced"):
            return FileResult(path=path, status="failed", doc_sha256=sha, reason=GONE_MEANWHILE)
        return FileResult(path=path, status=first.status, doc_sha256=sha,
                          reason=f"same content as {first_path}: {first.reason}")


def _ingest(sink: Sink, found: Any, password: str | None, progress: bool) -> _Run:
    """A run over the files of ``found`` (an ``ingest.files.Expansion``), a row each in its
    results, every document committed; not finished. The files are hashed first: the run's
    bytes decide which paths may leave their documents at once (:meth:`_Run._leaving`)."""
    from tqdm import tqdm

    from ingest.files import DEFAULT_SUFFIXES

    rows = [FileResult(path=problem.path, status="failed", reason=problem.reason) for problem in found.problems]
    rows += [FileResult(path=str(other), status="skipped",  # in a folder or glob: listed, not a failure
                        reason=f"not a supported file type (supported: {', '.join(DEFAULT_SUFFIXES)})")
             for other in found.unsupported]
    rows += [FileResult(path=odd.path, status="skipped", reason=odd.reason) for odd in found.special]  # links, pipes
    paths = [path.resolve() for path in found.paths]
    hashed = [_hash(path) for path in tqdm(paths, desc="hashing", unit="file", disable=not progress)]
    run = _Run(sink, {sha for sha in hashed if isinstance(sha, str)})
    run.results.update(enumerate(rows))
    batch = _Batch(run)
    for order, (path, sha) in enumerate(zip(tqdm(paths, desc="reading", unit="file", disable=not progress),
                                            hashed), start=len(rows)):
        if isinstance(sha, OSError):
            run.results[order] = _failed(path, f"cannot read: {sha.strerror or sha}")
        elif not run.known(order, str(path), sha) and (item := _load(run, path, order, sha, password)):
            batch.push(item, progress)
    batch.flush(progress)
    return run


def _hash(path: Path) -> str | OSError:
    from common.files import file_sha256

    try:
        return file_sha256(path)
    except OSError as e:
        return e


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
    """Pending documents whose chunks are embedded together (without the lock), then stored one
    by one (under it)."""

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
        self.run.commit(items, vectors)  # under the write lock; the embedding above was not


def _load(run: _Run, path: Path, order: int, sha: str, password: str | None) -> _Prepared | None:
    """The file's chunks to embed, or None when it failed to load (its row is set)."""
    from ingest.load import load_document

    try:
        doc = load_document(path, password=password, ocr=run.sink.config.ocr)
    except Exception as e:  # noqa: BLE001 - one unreadable file must not stop the batch
        run.results[order] = load_failure(str(path), e, sha)
        return None
    return _chunk(run.sink, doc, order, path.stat().st_size)


def _chunk(sink: Sink, doc: Document, order: int, size: int) -> _Prepared:
    from index.bm25 import tokenize
    from ingest.chunk import chunk_pages

    chunks = chunk_pages(doc.pages, doc_sha256=doc.sha256, max_tokens=sink.config.max_tokens,
                         overlap=sink.config.overlap, count_tokens=sink.embedder.count_tokens)
    return _Prepared(order=order, doc=doc, chunks=chunks,
                     tokens=[" ".join(tokenize(c.text)) for c in chunks], size=size)


def _failed(path: object, reason: str) -> FileResult:
    return FileResult(path=str(path), status="failed", reason=reason)
