"""Load one file into a ``Document``: PDFs page by page, text and Markdown files as one page."""
from __future__ import annotations

import hashlib
from pathlib import Path

from ingest.errors import CorruptDocument, IngestError, UnsupportedFile
from ingest.pdf import read_pdf
from ingest.records import Document, Page
from ingest.text import normalize_text

KINDS = {".pdf": "pdf", ".txt": "text", ".md": "text", ".markdown": "text"}
SUPPORTED_SUFFIXES = tuple(KINDS)


def _gb18030_plausible(text: str) -> bool:
    """Most non-ASCII characters of real GBK/GB18030 text are GB2312 characters; Latin-1 or
    random bytes decoded as GB18030 land in rare extension blocks instead."""
    rare = total = 0
    for ch in text:
        if ord(ch) > 0x7F:
            total += 1
            try:
                ch.encode("gb2312")
            except UnicodeEncodeError:
                rare += 1
    return total == 0 or rare <= 0.2 * total


def decode_text(data: bytes) -> str:
    """Decode a text file: UTF-8 (with or without BOM), UTF-16 with BOM, else GB18030.

    Raises ValueError naming the encoding problem.

    >>> decode_text("东北电气".encode("gbk")), decode_text(b"\\xef\\xbb\\xbfhi")
    ('东北电气', 'hi')
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise ValueError(f"has a UTF-16 byte-order mark but invalid UTF-16 at byte {exc.start}") from exc
    if b"\x00" in data:
        raise ValueError("holds binary data (NUL bytes), not text; is it another file type renamed?")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as utf8_error:
        try:
            text = data.decode("gb18030")
        except UnicodeDecodeError:
            text = None
        if text is not None and _gb18030_plausible(text):
            return text
        bad = data[utf8_error.start:utf8_error.start + 1].hex()
        raise ValueError(f"is neither UTF-8 (invalid byte 0x{bad} at offset {utf8_error.start}) nor "
                         "GB18030 Chinese text; re-save it as UTF-8") from utf8_error


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise IngestError(path, "file not found") from None
    except IsADirectoryError:
        raise IngestError(path, "is a folder, not a file") from None
    except OSError as exc:
        raise IngestError(path, f"cannot be read ({exc.strerror or exc})") from exc


def load_document(path: Path, *, password: str | None = None, ocr: bool = True) -> Document:
    """Load a .pdf, .txt, .md or .markdown file into a Document with 1-based pages.

    PDFs keep one Page per PDF page (scanned or garbled pages OCR'd when ``ocr``, see
    ``ingest.pdf``); text files are a single page. ``sha256`` hashes the file bytes; ``title`` is
    the PDF metadata title when meaningful, else the file stem. Per-page problems that did not stop
    the document are in ``warnings``.

    Raises NeedsPassword / WrongPassword (encrypted PDF), CorruptDocument (empty, damaged,
    undecodable), UnsupportedFile (other suffixes), IngestError (missing or unreadable file).

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "notes.md").write_text("# 标题\\n\\n第一段。Second  paragraph.", encoding="utf-8")
    >>> doc = load_document(folder / "notes.md")
    >>> doc.kind, doc.title, doc.pages[0].number, doc.pages[0].text
    ('text', 'notes', 1, '# 标题\\n\\n第一段。Second paragraph.')
    """
    path = Path(path)
    kind = KINDS.get(path.suffix.lower())
    if kind is None:
        raise UnsupportedFile(path, f"unsupported file type {path.suffix or '(no suffix)'!r}; "
                                    f"supported: {', '.join(SUPPORTED_SUFFIXES)}")
    data = _read_bytes(path)
    sha256 = hashlib.sha256(data).hexdigest()
    title: str | None = None
    if kind == "pdf":
        content = read_pdf(path, data, password=password, ocr=ocr)
        pages, warnings, title = content.pages, list(content.warnings), content.title
    else:
        try:
            text = decode_text(data)
        except ValueError as exc:
            raise CorruptDocument(path, str(exc)) from exc
        pages, warnings = (Page(1, normalize_text(text)),), []
    if not any(page.text for page in pages):
        warnings.append("no text found in the document" + (" (OCR is off)" if kind == "pdf" and not ocr else ""))
    return Document(path=path, sha256=sha256, title=title or path.stem, kind=kind,
                    pages=tuple(pages), warnings=tuple(warnings))
