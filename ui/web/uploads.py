"""Uploaded files -> the knowledge base: type/size checks, content-hash storage, per-file report.

An upload is copied to ``<kb>/files/<sha256><suffix>``: nothing of the user's file name reaches
the disk (the suffix is one of the supported ones, lower-cased). The original file name stays
the document's title (or the PDF's own title when it has a meaningful one, as ``ingest add``
does), and it names the file in the report.

>>> from index.kb import KnowledgeBase                                    # doctest: +SKIP
>>> kb = KnowledgeBase.open("kb")                                          # doctest: +SKIP
>>> rows = ingest_uploads(kb, [Path("/tmp/gradio/x/manual.pdf")], max_bytes=50 << 20)  # doctest: +SKIP
>>> rows[0].status, rows[0].path                                           # doctest: +SKIP
('added', 'manual.pdf')
"""
from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from common.files import atomic_open, file_sha256
from index.report import FileResult, load_failure

if TYPE_CHECKING:
    from index.kb import KnowledgeBase
    from index.records import Removal
    from index.store import DocInfo
    from ingest.records import Document

DEFAULT_MAX_UPLOAD_MB = 100  # MB: the largest file the Documents tab accepts (`assistant ui --max-upload-mb`)

FILES_DIR = "files"  # inside the knowledge-base folder
COPY_BLOCK = 1 << 20  # bytes copied at a time

Progress = Callable[[int, int, str], None]  # (files done, files in all, file name)


class UploadRejected(Exception):
    """An upload that is not stored: unsupported type, too large, empty or unreadable."""


def supported_suffixes() -> tuple[str, ...]:
    from ingest.load import SUPPORTED_SUFFIXES

    return SUPPORTED_SUFFIXES


def check_upload(path: Path, name: str, max_bytes: int) -> str:
    """The upload's lower-cased suffix, or :class:`UploadRejected` saying what is wrong and what is allowed."""
    suffix = Path(name).suffix.lower()
    allowed = supported_suffixes()
    if suffix not in allowed:
        raise UploadRejected(f"unsupported file type {suffix or '(no suffix)'!r}; "
                             f"upload one of: {', '.join(allowed)}")
    try:
        size = path.stat().st_size
    except OSError as e:
        raise UploadRejected(f"cannot read the upload: {e.strerror or e}") from None
    if size == 0:
        raise UploadRejected("the file is empty (0 bytes)")
    if size > max_bytes:
        raise UploadRejected(f"the file is {human_size(size)}, over the {human_size(max_bytes)} "
                             "upload limit (start the UI with a larger --max-upload-mb, or use `ingest add`)")
    return suffix


def human_size(n: int) -> str:
    """``512 B``, ``2.0 KB``, ``100.0 MB``.

    >>> human_size(3000), human_size(100 << 20)
    ('2.9 KB', '100.0 MB')
    """
    if n < 1024:
        return f"{n} B"
    return f"{n / 1024:.1f} KB" if n < 1024**2 else f"{n / 1024**2:.1f} MB"


def store_upload(path: Path, suffix: str, kb_dir: Path) -> Path:
    """Copy ``path`` to ``<kb_dir>/files/<sha256><suffix>`` (atomically; kept if already there).

    >>> import tempfile
    >>> src = Path(tempfile.mkdtemp()) / "My Manual.txt"; _ = src.write_bytes(b"abc")
    >>> store_upload(src, ".txt", src.parent / "kb").relative_to(src.parent).as_posix()[:20]
    'kb/files/ba7816bf8f0'
    """
    target = Path(kb_dir) / FILES_DIR / f"{file_sha256(path)}{suffix}"
    if not target.exists():
        with open(path, "rb") as src, atomic_open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, COPY_BLOCK)
    return target


def load_upload(stored: Path, name: str, kb: "KnowledgeBase") -> "Document | FileResult":
    """The stored file as a Document titled after the original file, or the failure row."""
    from ingest.load import load_document

    try:
        doc = load_document(stored, password=kb.config.password, ocr=kb.config.ocr)
    except Exception as e:  # noqa: BLE001 - one unreadable upload must not stop the batch
        return load_failure(name, e)
    title = Path(name).stem if doc.title == stored.stem else doc.title
    return replace(doc, title=title)


def ingest_one(kb: "KnowledgeBase", path: Path, name: str, max_bytes: int) -> FileResult:
    """Check, store and ingest one upload; every outcome is a row (nothing raises)."""
    try:
        stored = store_upload(path, check_upload(path, name, max_bytes), kb.path)
    except UploadRejected as e:
        return FileResult(path=name, status="failed", reason=str(e))
    except OSError as e:
        return FileResult(path=name, status="failed", reason=f"cannot store the upload: {e.strerror or e}")
    sha = stored.stem
    if any(d.sha256 == sha for d in kb.documents()):
        _drop_unused(kb, stored)  # the document came from elsewhere (`ingest add`): no second copy
        return FileResult(path=name, status="unchanged", doc_sha256=sha, reason="already in the knowledge base")
    loaded = load_upload(stored, name, kb)
    if isinstance(loaded, FileResult):
        _drop_unused(kb, stored)
        return loaded
    try:
        row = kb.add_documents([loaded]).files[0]
    except Exception as e:  # noqa: BLE001 - e.g. the KB is locked by a running `ingest add`
        _drop_unused(kb, stored)
        return FileResult(path=name, status="failed", doc_sha256=sha, reason=str(e))
    if row.status not in ("added", "replaced", "unchanged"):
        _drop_unused(kb, stored)
    return replace(row, path=name)


def ingest_uploads(kb: "KnowledgeBase", paths: Sequence[str | Path], *, max_bytes: int,
                   names: Sequence[str] | None = None, progress: Progress | None = None) -> list[FileResult]:
    """Ingest each upload in turn (``names``: the original file names; default: the paths' names)."""
    names = list(names) if names is not None else [Path(p).name for p in paths]
    rows = []
    for i, (path, name) in enumerate(zip(paths, names)):
        if progress:
            progress(i, len(names), name)
        rows.append(ingest_one(kb, Path(path), name, max_bytes))
    if progress:
        progress(len(names), len(names), "done")
    return rows


def discard_uploads(paths: Sequence[str | Path], upload_root: str | Path) -> int:
    """Delete Gradio's temporary copies of uploads once ingested (accepted ones were copied into the
    knowledge base, rejected ones are of no use), and their folders when left empty; paths outside
    ``upload_root`` (Gradio's upload folder) are never touched. Returns the files deleted.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp()); (root / "abc").mkdir(); _ = (root / "abc" / "a.pdf").write_bytes(b"")
    >>> discard_uploads([root / "abc" / "a.pdf", "/etc/hostname"], root), (root / "abc").exists()
    (1, False)
    """
    root, deleted = Path(upload_root).resolve(), 0
    for path in map(Path, paths):
        try:
            resolved = path.resolve()
            if root not in resolved.parents or not resolved.is_file():
                continue
            resolved.unlink()
            deleted += 1
            if resolved.parent != root and not any(resolved.parent.iterdir()):
                resolved.parent.rmdir()
        except OSError:  # already gone, or in use: Gradio's delete_cache removes it at shutdown
            continue
    return deleted


def remove_document(kb: "KnowledgeBase", sha256: str) -> "Removal":
    """Remove a document (every path it is stored under), and its stored uploads among them."""
    removal = kb.remove(sha256)
    for path in removal.paths:
        stored = Path(path)
        if stored.parent.resolve() == (Path(kb.path) / FILES_DIR).resolve():
            _drop_unused(kb, stored)
    return removal


def _drop_unused(kb: "KnowledgeBase", stored: Path) -> None:
    """Delete a stored upload that no document refers to (a failed or removed one)."""
    if not any(Path(p).resolve() == stored.resolve() for d in kb.documents() for p in d.all_paths):
        stored.unlink(missing_ok=True)


# -- tables (the same columns as ``ingest add``'s summary) -------------------------------
REPORT_COLUMNS = ["file", "status", "pages", "OCR'd pages", "chunks", "reason"]
DOC_COLUMNS = ["title", "pages", "chunks", "OCR'd pages", "kind", "size (KB)", "sha256"]


def pages_text(pages: Sequence[int]) -> str:
    """``1,3`` or ``12 pages`` (as the CLI table shows OCR'd pages)."""
    return ",".join(map(str, pages)) if len(pages) <= 6 else f"{len(pages)} pages"


def report_rows(rows: Sequence[FileResult]) -> list[list]:
    return [[r.path, r.status, r.pages or "", pages_text(r.ocr_pages), r.chunks or "", r.reason] for r in rows]


def report_summary(rows: Sequence[FileResult]) -> str:
    from index.report import STATUSES

    counts = [f"{sum(r.status == s for r in rows)} {s}" for s in STATUSES if any(r.status == s for r in rows)]
    return ", ".join(counts) or "no files"


def document_rows(docs: Sequence["DocInfo"]) -> list[list]:
    return [[d.title, d.n_pages, d.n_chunks, pages_text(d.ocr_pages), d.kind, round(d.size / 1024, 1), d.sha256[:12]]
            for d in sorted(docs, key=lambda d: d.title.lower())]
