"""What happened to each file of an ``ingest add`` / ``sync`` batch."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Sequence

from index.store import DocInfo

STATUSES = ("added", "replaced", "unchanged", "removed", "skipped", "failed")


@dataclass(frozen=True)
class FileResult:
    """One file's outcome. ``reason`` says why a file was skipped or failed, and how to fix it."""

    path: str
    status: str  # one of STATUSES
    doc_sha256: str = ""
    pages: int = 0
    ocr_pages: tuple[int, ...] = ()
    chunks: int = 0
    reason: str = ""


def load_failure(path: str, err: Exception, doc_sha256: str = "") -> FileResult:
    """The row of a file that did not load (``err``: an ``ingest.errors.IngestError``, or anything else).

    *skipped* when it only needs a password that was not given (``--password`` adds it later);
    *failed* otherwise, a wrong password included: a file that was asked for and not added is a
    failure for scripts (exit status 1).

    >>> from ingest.errors import NeedsPassword, WrongPassword
    >>> load_failure("a.pdf", NeedsPassword("a.pdf", "is password-protected")).status
    'skipped'
    >>> load_failure("a.pdf", WrongPassword("a.pdf", "the password given does not open it")).status
    'failed'
    """
    from ingest.errors import IngestError, NeedsPassword

    if isinstance(err, IngestError):
        status = "skipped" if isinstance(err, NeedsPassword) else "failed"
        return FileResult(path=path, status=status, doc_sha256=doc_sha256, reason=err.reason)
    return FileResult(path=path, status="failed", doc_sha256=doc_sha256,
                      reason=f"unexpected error while reading: {type(err).__name__}: {err}")


def removed_row(path: str, sha256: str, deleted: DocInfo | None, stays_under: str = "") -> FileResult:
    """The row of a stored ``path`` of document ``sha256`` that ``sync`` found gone from its folder.

    ``deleted``: the document as it was, when it went with this path (the row then counts its
    pages and chunks); ``stays_under``: a path the document is still stored under, when it stays.

    >>> removed_row("/d/b.txt", "ab12", None, stays_under="/d/a.txt").reason
    'the document stays under /d/a.txt (its chunks are kept)'
    """
    if deleted is not None:
        return FileResult(path=path, status="removed", doc_sha256=sha256, pages=deleted.n_pages,
                          chunks=deleted.n_chunks)
    reason = f"the document stays under {stays_under} (its chunks are kept)" if stays_under else ""
    return FileResult(path=path, status="removed", doc_sha256=sha256, reason=reason)


@dataclass(frozen=True)
class LockHold:
    """One stretch of an ``add`` / ``sync`` under the write lock.

    ``kind``: "commit" (embedded documents stored, each in its own transaction, and paths of
    known bytes linked) or "finish" (paths settled, derived indexes refreshed); ``seconds`` held
    (waiting for the lock not counted); ``files``: how many files' rows it wrote.
    """

    kind: str
    seconds: float
    files: int


@dataclass(frozen=True)
class AddReport:
    """Every file of a batch, in input order. ``ok`` is False when any file failed.

    ``lock_holds``: how long the run held the write lock, each time (not in :meth:`to_json`).
    """

    files: tuple[FileResult, ...]
    lock_holds: tuple[LockHold, ...] = ()

    @property
    def ok(self) -> bool:
        return not any(f.status == "failed" for f in self.files)

    def count(self, status: str) -> int:
        return sum(f.status == status for f in self.files)

    def with_rows(self, rows: Sequence[FileResult]) -> "AddReport":
        """This report with ``rows`` (e.g. :func:`removed_row` rows) after its own."""
        return replace(self, files=self.files + tuple(rows))

    def to_json(self) -> dict:
        return {"ok": self.ok,
                "counts": {s: self.count(s) for s in STATUSES},
                "files": [asdict(f) | {"ocr_pages": list(f.ocr_pages)} for f in self.files]}

    def render(self) -> "object":
        """A rich Table: file, status, pages, OCR'd pages, chunks, reason."""
        from rich.table import Table

        table = Table(title="ingest summary", show_lines=False)
        for col in ("file", "status", "pages", "OCR'd pages", "chunks", "reason"):
            table.add_column(col, overflow="fold")
        colour = {"added": "green", "replaced": "green", "unchanged": "dim", "removed": "yellow",
                  "skipped": "yellow", "failed": "red"}
        for f in self.files:
            table.add_row(f.path, f"[{colour[f.status]}]{f.status}[/]", str(f.pages or ""),
                          _pages(f.ocr_pages), str(f.chunks or ""), f.reason)
        summary = ", ".join(f"{self.count(s)} {s}" for s in STATUSES if self.count(s))
        table.caption = summary or "no files"
        return table


def _pages(pages: tuple[int, ...]) -> str:
    if not pages:
        return ""
    return ",".join(map(str, pages)) if len(pages) <= 6 else f"{len(pages)} pages"
