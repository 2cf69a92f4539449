"""PDF pages -> text: pypdf text layer, pdfium fallback, OCR for scanned or garbled pages.

Policy per page (1-based page numbers are kept):

* The pypdf text layer is split into usable and garbled lines (control/private-use glyphs, ``(cid:NN)``
  runs, GBK read as Latin-1). Garbled lines are dropped with a warning.
* When pypdf fails on the page or its layer is mostly garbled, pdfium's text layer is tried
  (it decodes some CJK fonts pypdf cannot).
* The page is OCR'd when its layer is still mostly garbled, or when it has fewer than
  ``MIN_PAGE_CHARS`` usable characters while images cover at least ``MIN_IMAGE_SHARE`` of it
  (a scan, or text boxes pasted as pictures). The OCR text replaces the layer when it is longer.
* Partially readable files: a page that cannot be read becomes an empty page plus a warning naming
  it; the document fails with CorruptDocument only when pypdf cannot parse the file at all (no
  usable xref/trailer, truncated, fuzzed) or when no page at all can be read.

Then, over the whole document: running headers, footers and page numbers are taken out
(``ingest.furniture``, documents of 3+ pages), and the values of filled form fields are put into
the text of the page that shows them, after their printed label or as "label: value" lines.
"""
from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass

from ingest.errors import CorruptDocument, IngestError, NeedsPassword, WrongPassword
from ingest.forms import add_form_values
from ingest.furniture import strip_furniture
from ingest.ocr import ocr_image
from ingest.records import Page
from ingest.render import PdfiumView
from ingest.text import TextLayer, assess_text_layer, normalize_text

MIN_PAGE_CHARS = 100  # fewer non-space characters than this on an image-bearing page: OCR it
MIN_IMAGE_SHARE = 0.02  # of the page area; smaller images are logos and icons, not text

_FILENAME_TITLE = re.compile(r"\.(pdf|docx?|tex|dvi|ps|indd|pptx?|xlsx?|rtf|odt|qxd)$", re.I)
_PLACEHOLDER_TITLE = re.compile(r"^(untitled|title|document|doc|unknown|none|binder|slide)\s*\d*$", re.I)
# The PDF libraries' warnings ("EOF marker not found", "invalid pdf header") belong in the application's
# log, not on stderr beside our report: without a handler of their own Python prints them there.
for _name in ("pypdf", "pdfminer"):
    logging.getLogger(_name).addHandler(logging.NullHandler())


@dataclass(frozen=True)
class PdfContent:
    """What ``read_pdf`` found: pages in order, per-page warnings, the metadata title and the
    running headers, footers and page numbers taken out of the pages (``ingest.furniture``)."""

    pages: tuple[Page, ...]
    warnings: tuple[str, ...]
    title: str | None
    furniture: tuple[str, ...] = ()


def meaningful_title(title: object) -> str | None:
    """The metadata title, or None when it is empty, a placeholder or a file name.

    >>> meaningful_title("Microsoft Word - Annual report.docx"), meaningful_title("Binder1.pdf")
    (None, None)
    >>> meaningful_title(" Trace-based JIT Type Specialization "), meaningful_title("example_table")
    ('Trace-based JIT Type Specialization', None)
    """
    if not isinstance(title, str):
        return None
    title = " ".join(title.replace("\x00", "").split())
    title = re.sub(r"^Microsoft (Word|PowerPoint|Excel) - ", "", title)
    if len(title) < 3 or not any(c.isalpha() for c in title):
        return None
    if _FILENAME_TITLE.search(title) or _PLACEHOLDER_TITLE.match(title):
        return None
    if " " not in title and "_" in title:  # an identifier such as "example_table"
        return None
    return title


def _parse_error(path: object, data: bytes, exc: Exception) -> CorruptDocument:
    if not data:
        return CorruptDocument(path, "the file is empty (0 bytes); re-export or re-download it")
    if b"%PDF-" not in data[:1024]:
        return CorruptDocument(path, "not a PDF (no %PDF- header): is it another file type renamed to .pdf?")
    hint = "the file is damaged"
    if b"%%EOF" not in data[-2048:]:
        hint = "the file looks truncated (no %EOF marker at its end)"
    return CorruptDocument(path, f"cannot be parsed as a PDF: {hint} ({type(exc).__name__}: {exc}); "
                                 "re-download or re-export it")


def open_pdf(path: object, data: bytes, password: str | None) -> tuple[object, str | None]:
    """Parse and, if needed, decrypt a PDF with pypdf; returns the reader and the password used.

    The empty password is tried after ``password``: files that PDF viewers open without asking
    (an empty user password, any owner password) need none. Raises CorruptDocument (unparsable file
    or encryption dictionary), NeedsPassword (no ``password`` and the file needs one), WrongPassword
    (``password`` does not open it) and IngestError (AES without the 'cryptography' package).
    """
    from pypdf import PasswordType, PdfReader
    from pypdf.errors import DependencyError

    if b"%PDF-" not in data[:1024]:  # no header where viewers look: reject at once (a 200 MB blank file took 104 s)
        raise _parse_error(path, data, ValueError("no %PDF- header"))
    try:
        reader = PdfReader(io.BytesIO(data))
        encrypted = reader.is_encrypted
    except Exception as exc:  # fuzzed files raise anything (KeyError, ValueError, zlib.error...)
        raise _parse_error(path, data, exc) from exc
    if not encrypted:
        return reader, None
    try:
        if password is not None and reader.decrypt(password) != PasswordType.NOT_DECRYPTED:
            return reader, password
        opened = reader.decrypt("")
        if opened == PasswordType.USER_PASSWORD or (opened == PasswordType.OWNER_PASSWORD and _opens_unasked(data)):
            return reader, ""  # owner-only protection: readable without a password
    except DependencyError as exc:
        raise IngestError(path, f"needs the 'cryptography' package to decrypt it ({exc})") from exc
    except Exception as exc:
        raise CorruptDocument(path, f"its encryption dictionary is damaged ({type(exc).__name__}: {exc})") from exc
    if password is None:
        raise NeedsPassword(path, "is password-protected; pass its password with --password")
    raise WrongPassword(path, "the password given with --password does not open it; check the password")


def _opens_unasked(data: bytes) -> bool:
    """Whether a viewer opens an encrypted PDF without asking for a password (its user password is
    empty), for a file whose owner password is empty.

    pypdf checks the owner password first, so with an empty owner password ``decrypt("")`` says
    OWNER_PASSWORD whether the user password is empty too (every viewer opens the file: pypdf's own
    ``encrypt("")`` writes such files) or not (viewers ask for it). pdfium, Chrome's viewer, tries
    the empty password as the user password only, so it tells the two apart.
    """
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    try:
        pdfium.PdfDocument(data).close()
    except pdfium.PdfiumError as exc:  # another failure than the password: pypdf decrypted it, go on
        return getattr(exc, "err_code", None) != pdfium_c.FPDF_ERR_PASSWORD
    return True


class _StreamErrors(logging.Handler):
    """Collects what pypdf logs (without raising) when it cannot decode a content stream."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("pypdf.filters"):
            self.messages.append(record.getMessage())


def _extract(reader: object, index: int) -> tuple[str, str | None]:
    """pypdf text of page ``index`` and, when the page could not be read, why."""
    handler, logger = _StreamErrors(), logging.getLogger("pypdf")
    logger.addHandler(handler)
    try:
        text = reader.pages[index].extract_text() or ""  # type: ignore[attr-defined]
    except Exception as exc:  # a damaged page stream can raise anything; other pages go on
        return "", f"{type(exc).__name__}: {exc}"
    finally:
        logger.removeHandler(handler)
    if not text.strip() and handler.messages:  # pypdf gave up on the stream and logged it
        return "", f"undecodable content stream: {handler.messages[0]}"
    return text, None


def _pdfium_layer(view: PdfiumView, index: int, layer: TextLayer) -> TextLayer | None:
    """pdfium's text layer when it is better than pypdf's ``layer`` (else None)."""
    try:
        alt = assess_text_layer(view.text(index))
    except Exception:
        return None
    better = alt.chars > layer.chars and not alt.garbled
    return alt if better else None


def _ocr_reason(view: PdfiumView, index: int, layer: TextLayer) -> str | None:
    """Why the page needs OCR, or None when its text layer is good enough."""
    if layer.garbled:
        return "its text layer is garbled (a font without a Unicode map)"
    if layer.chars >= MIN_PAGE_CHARS:
        return None
    try:
        share = view.image_share(index)
    except Exception:
        return None
    if share >= MIN_IMAGE_SHARE:
        return f"it has {layer.chars} characters of text and images over {share:.0%} of it"
    return None


def _visible(text: str) -> int:
    return len("".join(text.split()))


def _ocr_page(view: PdfiumView, index: int, text: str, reason: str, ocr: bool) -> tuple[Page | None, str]:
    """OCR page ``index``; returns (the OCR'd page or None to keep the layer, a warning or "")."""
    number = index + 1
    if not ocr:
        return None, f"page {number}: not OCR'd although {reason} (OCR is off)"
    try:
        ocr_text = normalize_text(ocr_image(view.render(index)), layout=True)
    except Exception as exc:
        return None, f"page {number}: OCR failed ({type(exc).__name__}: {exc}); kept its text layer"
    if _visible(ocr_text) > _visible(text):
        return Page(number, ocr_text, ocr=True), ""
    return None, ""


def read_page(reader: object, view: PdfiumView, index: int, ocr: bool) -> tuple[Page, list[str], bool]:
    """Read page ``index`` (0-based): (page, warnings, failed) where failed means unreadable."""
    number = index + 1
    raw, error = _extract(reader, index)
    layer = assess_text_layer(raw)
    # -- tables (ingest.tables): a readable page that draws ruling lines gets its tables as Markdown
    # rows in place of pypdf's run-together cells; None (no table) keeps pypdf's text as it is.
    if not error and not layer.garbled:
        from ingest.tables import page_text_with_tables  # a light module; imported here to keep this edit local

        tabled = page_text_with_tables(reader, index)
        if tabled is not None and not (tabled_layer := assess_text_layer(tabled)).garbled:
            layer = tabled_layer
    # -- end tables
    if error or layer.garbled:
        alt = _pdfium_layer(view, index, layer)
        if alt is not None:
            layer, error = alt, None
    text = normalize_text(layer.text, layout=True)
    warnings: list[str] = []
    reason = _ocr_reason(view, index, layer)
    if reason:
        page, note = _ocr_page(view, index, text, reason, ocr)
        if page is not None:
            return page, warnings, False
        warnings += [note] if note else []
    elif layer.garbled_lines:
        warnings.append(f"page {number}: dropped {layer.garbled_lines} unreadable lines "
                        "(a font without a Unicode map)")
    if error and not text:
        warnings.append(f"page {number} could not be read ({error}); it is left empty")
        return Page(number, ""), warnings, True
    return Page(number, text), warnings, False


def read_pdf(path: object, data: bytes, *, password: str | None = None, ocr: bool = True) -> PdfContent:
    """Read every page of a PDF given as bytes (``path`` only names it in errors and warnings).

    Pages come without running headers/footers (listed in ``furniture``) and with their filled form
    values. Raises the errors of ``open_pdf``, and CorruptDocument when no page can be read.

    >>> from pathlib import Path
    >>> import pytest
    >>> pdf = Path("../shared/data/pdfs/encrypted_rc4_owner_only.pdf")  # from the repository root
    >>> pdf.is_file() or pytest.skip("../shared/data is not beside the repository")
    True
    >>> content = read_pdf(pdf, pdf.read_bytes())
    >>> len(content.pages), content.pages[0].text.splitlines()[0], content.pages[0].ocr
    (1, 'pdf encryption test', False)
    """
    reader, used = open_pdf(path, data, password)
    try:
        count = len(reader.pages)  # type: ignore[attr-defined]
    except Exception as exc:
        raise _parse_error(path, data, exc) from exc
    if count == 0:
        raise CorruptDocument(path, "the PDF has no pages")
    view = PdfiumView(data, used)
    pages: list[Page] = []
    warnings: list[str] = []
    failed: list[str] = []
    try:
        for index in range(count):
            page, notes, page_failed = read_page(reader, view, index, ocr)
            pages.append(page)
            warnings += notes
            failed += notes[-1:] if page_failed else []
    finally:
        view.close()
    if view.error:
        warnings.append(f"pdfium cannot open the file ({view.error}): pages without a text layer "
                        "were not checked for images or OCR'd")
    if len(failed) == count:
        raise CorruptDocument(path, f"none of its {count} pages can be read ({failed[0]})")
    # Furniture first: form values appended at a page's end must not hide its footer.
    kept, furniture = strip_furniture(pages)
    filled, notes = add_form_values(reader, kept)
    return PdfContent(tuple(filled), tuple(warnings + notes), _title(reader), furniture)


def _title(reader: object) -> str | None:
    try:
        meta = reader.metadata  # type: ignore[attr-defined]
        return meaningful_title(meta.title if meta else None)
    except Exception:  # a damaged Info dictionary only costs the title
        return None

