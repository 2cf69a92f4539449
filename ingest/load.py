"""Load one file into a ``Document``: PDFs page by page, other formats through ``ingest.formats``.

``KINDS`` is the one list of what can be ingested (``ingest.files``, the CLI and the web upload
check read it): suffix -> the ``Document.kind`` it loads as.
"""
from __future__ import annotations

import codecs
import hashlib
from pathlib import Path
from typing import Any

from ingest.errors import CorruptDocument, IngestError, UnsupportedFile
from ingest.formats import TEXT_KINDS, declared_charset, read_binary, read_text
from ingest.pdf import read_pdf
from ingest.records import Document

KINDS = {".pdf": "pdf", ".txt": "text", ".md": "text", ".markdown": "text",
         ".docx": "docx", ".pptx": "pptx", ".xlsx": "xlsx", ".csv": "csv", ".html": "html", ".htm": "html",
         ".epub": "epub", ".png": "image", ".jpg": "image", ".jpeg": "image", ".tif": "image", ".tiff": "image",
         ".bmp": "image", ".webp": "image"}
SUPPORTED_SUFFIXES = tuple(KINDS)

_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))  # UTF-32 LE first: it starts like UTF-16 LE
_GB = ("gb18030", "gbk", "gb2312")
# When the detector cannot tell candidates apart (short texts; Latin code pages that differ in a few
# letters), the code page more people save files in wins: Chinese, Japanese and Korean Windows
# defaults first, then Western, Central European and Cyrillic ones.
_PREFERRED = ("gb18030", "big5", "cp950", "big5hkscs", "cp932", "shift_jis", "shift_jis_2004", "euc_jp",
              "euc_jis_2004", "cp949", "euc_kr", "johab", "cp1252", "latin_1", "iso8859-15", "cp1250", "cp1251",
              "koi8_r", "cp1253", "cp1254", "cp1255", "cp1256", "cp1257", "cp1258", "utf-16-le", "utf-16-be")
# Scripts that GBK bytes of Chinese text almost never decode to, but Big5, Shift-JIS, Korean or
# UTF-16 bytes read as GB18030 do: kana, Greek/Cyrillic, box drawing, bopomofo, Hangul, private use.
_NOT_CHINESE = ((0x0370, 0x04FF), (0x2500, 0x257F), (0x3040, 0x30FF), (0x3100, 0x312F), (0xAC00, 0xD7AF),
                (0xE000, 0xF8FF))
_MAGIC = ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
          (b"%PDF-", "a PDF"), (b"PK\x03\x04", "a ZIP package (.docx, .xlsx, .pptx, .epub, .zip)"),
          (b"\xd0\xcf\x11\xe0", "an old Office file (.doc, .xls, .ppt)"), (b"\x1f\x8b", "a gzip archive"))


def _gb18030_plausible(text: str) -> bool:
    """Most non-ASCII characters of real GBK/GB18030 text are GB2312 hanzi and punctuation; other
    encodings read as GB18030 land in rare extension blocks or in kana, Cyrillic, private use..."""
    odd = total = 0
    for ch in text[:200_000]:  # a sample is enough, and keeps huge files fast
        if ord(ch) > 0x7F:
            total += 1
            code = ord(ch)
            if any(lo <= code <= hi for lo, hi in _NOT_CHINESE):
                odd += 1
                continue
            try:
                ch.encode("gb2312")
            except UnicodeEncodeError:
                odd += 1
    return total == 0 or odd <= 0.1 * total


def _rank(encoding: str) -> int:
    return _PREFERRED.index(encoding) if encoding in _PREFERRED else len(_PREFERRED)


def _decodes(data: bytes, encoding: str) -> bool:
    try:
        data.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return False
    return True


def _candidates(data: bytes, matches: list[Any]) -> list[tuple[float, float, str]]:
    """(coherence, chaos, codec name) of every encoding that reads ``data`` as text; GB18030 only
    when the Chinese it gives is plausible (detectors err on short Chinese texts: our own check)."""
    found = []
    for match in matches:
        name = codecs.lookup(match.encoding).name
        if name not in _GB and _decodes(data, name):
            found.append((match.coherence, match.chaos, name))
    if _decodes(data, "gb18030") and _gb18030_plausible(data.decode("gb18030")):
        gb = next((m for m in matches if codecs.lookup(m.encoding).name in _GB), None)
        found.append((gb.coherence, gb.chaos, "gb18030") if gb else (0.0, 0.0, "gb18030"))
    return found


def _pick(candidates: list[tuple[float, float, str]]) -> str:
    """The language the detector recognised best, then any clean reading (chaos within 0.1 of the
    cleanest), then the preferred code page."""
    cleanest = min(chaos for _, chaos, _ in candidates)
    return min(candidates, key=lambda c: (-round(c[0], 1), c[1] > cleanest + 0.1, _rank(c[2])))[2]


def _not_text(data: bytes, matches: list[Any], what: str) -> ValueError:
    kind = next((name for magic, name in _MAGIC if data.startswith(magic)), None)
    guess = (f"charset-normalizer's best guess: {matches[0].encoding}" if matches
             else "charset-normalizer finds no text encoding that fits it")
    hint = (f"it starts like {kind}: give it that type's suffix" if kind
            else "is it another file type renamed? If it is text, re-save it as UTF-8")
    return ValueError(f"{what} ({guess}); {hint}")


def decode_text(data: bytes) -> str:
    """Decode the bytes of a text file, detecting the encoding.

    A byte-order mark (UTF-8/16/32) decides; else UTF-8; else charset-normalizer's candidates
    (UTF-16 without BOM, Big5, Shift-JIS, EUC-KR, cp1252...) plus GB18030 when its reading is
    plausible Chinese, picked by recognised language, cleanness, then how common the code page is
    (GBK first). Raises ValueError for binary data, naming the detector's best guess.

    >>> decode_text("东北电气".encode("gbk")), decode_text(b"\\xef\\xbb\\xbfhi")
    ('东北电气', 'hi')
    >>> decode_text("“Déjà vu” at the café".encode("cp1252")), decode_text("繁體中文測試".encode("big5"))
    ('“Déjà vu” at the café', '繁體中文測試')
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError as exc:
                raise ValueError(f"has a {encoding.upper()} byte-order mark but invalid {encoding.upper()} "
                                 f"at byte {exc.start}; re-save it as UTF-8") from exc
    if b"\x00" not in data:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    from charset_normalizer import from_bytes  # imported here: `import ingest.load` stays light

    matches = list(from_bytes(data))
    if b"\x00" in data:  # only UTF-16/32 text holds NUL bytes
        wide = [m for m in matches if m.encoding.startswith(("utf_16", "utf_32")) and _decodes(data, m.encoding)]
        if wide:
            return data.decode(wide[0].encoding)
        raise _not_text(data, matches, "holds binary data (NUL bytes), not text")
    candidates = _candidates(data, matches)
    if not candidates:
        raise _not_text(data, matches, "is not UTF-8 and no other text encoding reads it")
    return data.decode(_pick(candidates))


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise IngestError(path, "file not found") from None
    except IsADirectoryError:
        raise IngestError(path, "is a folder, not a file") from None
    except OSError as exc:
        raise IngestError(path, f"cannot be read ({exc.strerror or exc})") from exc


def _decode(path: Path, data: bytes, kind: str) -> str:
    """The text of a text-kind file; an HTML file's declared charset is believed when it decodes."""
    charset = declared_charset(data) if kind == "html" else None
    if charset and _decodes(data, charset):
        return data.decode(charset)
    try:
        return decode_text(data)
    except ValueError as exc:
        raise CorruptDocument(path, str(exc)) from exc


def load_document(path: Path, *, password: str | None = None, ocr: bool = True) -> Document:
    """Load a file of one of ``SUPPORTED_SUFFIXES`` into a Document with 1-based pages.

    A page is a PDF page (scanned or garbled pages OCR'd when ``ocr``, see ``ingest.pdf``), a
    slide (.pptx), a sheet (.xlsx), a reading-order item (.epub) or an image frame (OCR'd when
    ``ocr``); text, Markdown, .csv, .html and .docx files are one page (``ingest.formats``).
    ``sha256`` hashes the file bytes; ``title`` is the document's own title metadata when meaningful,
    else the file stem. Per-page problems that did not stop the document are in ``warnings``.

    Raises NeedsPassword / WrongPassword (encrypted PDF), CorruptDocument (empty, damaged, renamed,
    undecodable), UnsupportedFile (other suffixes, password-protected Office or DRM files),
    IngestError (missing or unreadable file).

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
    if kind == "pdf":
        content = read_pdf(path, data, password=password, ocr=ocr)
    elif kind in TEXT_KINDS:
        content = read_text(kind, _decode(path, data, kind))
    else:
        content = read_binary(kind, path, data, ocr=ocr)
    warnings = list(content.warnings)
    if not any(page.text for page in content.pages):
        off = " (OCR is off)" if kind in ("pdf", "image") and not ocr else ""
        warnings.append(f"no text found in the document{off}")
    return Document(path=path, sha256=hashlib.sha256(data).hexdigest(), title=content.title or path.stem,
                    kind=kind, pages=tuple(content.pages), warnings=tuple(warnings))
