"""Office, web, e-book, table and image files -> pages of text, with Markdown headings and tables.

Which converter, and why (each imported inside its reader, so ``import ingest.load`` stays light):

* .docx: mammoth maps Word's styles to HTML headings, lists and tables (python-docx only gives
  paragraphs and their style names); markdownify then writes Markdown. One page: Word's page
  breaks depend on its layout engine, and numbering hard breaks only would cite wrong pages.
* .html/.htm and each .epub chapter: BeautifulSoup (scripts, styles, navigation and images
  removed) + markdownify, first table row as the header. No readability extractor: on the short
  pages people save for a knowledge base they drop real content, and trafilatura pulls a
  dozen date/URL packages.
* .pptx: python-pptx, one page per slide (title as a heading, text boxes, tables, speaker notes).
* .xlsx: openpyxl (read-only, cached formula values), one page per sheet as a Markdown table.
* .csv: the standard library's csv (dialect sniffed), one page.
* .epub: ebooklib, one page per reading-order (spine) item, title from the Dublin Core metadata.
* images: Pillow, then RapidOCR (``ingest.ocr``); a multi-page TIFF gives one page per frame.

markitdown (Microsoft) wraps mostly the same libraries but returns one string per file, so slides,
sheets and chapters could not be pages, and it adds magika and its model.
"""
from __future__ import annotations

import codecs
import csv
import io
import re
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, time
from pathlib import Path
from typing import Any

from ingest.errors import CorruptDocument, UnsupportedFile
from ingest.ocr import ocr_image
from ingest.pdf import meaningful_title
from ingest.records import Page
from ingest.text import normalize_text

TEXT_KINDS = ("text", "csv", "html")  # kinds read from decoded text; the others from bytes
_OFFICE_DEFAULT_TITLE = re.compile(r"^(PowerPoint Presentation|Presentation|Book|Sheet|Workbook)\s*\d*$", re.I)
_HTML_DROP = ("head", "title", "script", "style", "noscript", "template", "nav", "svg", "img", "iframe", "button",
              "select")
_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([\w.:-]+)""", re.I)
_DC_TITLE = "{http://purl.org/dc/elements/1.1/}title"
_BROWSER_CODECS = {"latin-1": "cp1252", "iso8859-1": "cp1252", "ascii": "cp1252", "gb2312": "gb18030", "gbk": "gb18030"}


@dataclass(frozen=True)
class Content:
    """What a reader found: pages in order (1-based numbers), warnings, the document's own title."""

    pages: tuple[Page, ...]
    warnings: tuple[str, ...] = ()
    title: str | None = None


def _title(value: object) -> str | None:
    title = meaningful_title(value)
    return None if title is None or _OFFICE_DEFAULT_TITLE.match(title) else title


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime) and value.time() == time(0):
        value = value.date()
    elif isinstance(value, float) and value.is_integer():
        value = int(value)
    return " ".join(str(value).split()).replace("|", "\\|")


def markdown_table(rows: Sequence[Sequence[object]]) -> str:
    """Rows of cells -> a Markdown table whose first non-empty row is the header ("" if no cell has text).

    Empty rows and columns are dropped, short rows padded, cells put on one line, "|" escaped.

    >>> print(markdown_table([["Years", None, "Days"], [], [1.0, None, "5 | 6"], ["10"]]))
    | Years | Days |
    | --- | --- |
    | 1 | 5 \\| 6 |
    | 10 |  |
    """
    cells = [[_cell(v) for v in row] for row in rows]
    cells = [row for row in cells if any(row)]
    width = max((len(row) for row in cells), default=0)
    cells = [row + [""] * (width - len(row)) for row in cells]
    keep = [i for i in range(width) if any(row[i] for row in cells)]
    if not keep:
        return ""
    lines = ["| " + " | ".join(row[i] for i in keep) + " |" for row in cells]
    lines.insert(1, "| " + " | ".join("---" for _ in keep) + " |")
    return "\n".join(lines)


def html_to_markdown(html: str | bytes) -> tuple[str, str | None]:
    """(Markdown of the visible content, the <title>) of an HTML or XHTML document.

    Links keep their text only; scripts, styles, navigation and images are dropped.

    >>> md, title = html_to_markdown("<title>Leave</title><h1>Annual leave</h1><p>Five <a href='x'>days</a>."
    ...     "<script>x()</script><table><tr><td>Years</td><td>Days</td></tr><tr><td>1</td><td>5</td></tr></table>")
    >>> title, normalize_text(md).splitlines()
    ('Leave', ['# Annual leave', '', 'Five days.', '', '| Years | Days |', '| --- | --- |', '| 1 | 5 |'])
    """
    from bs4 import BeautifulSoup, Comment, Declaration, Doctype, ProcessingInstruction
    from markdownify import MarkdownConverter

    soup = BeautifulSoup(html, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else None
    for tag in soup(list(_HTML_DROP)):
        tag.decompose()
    for node in soup.find_all(string=lambda s: isinstance(s, (Comment, Declaration, Doctype, ProcessingInstruction))):
        node.extract()  # an XHTML chapter's <?xml ...?> would otherwise come out as text
    converter = MarkdownConverter(heading_style="ATX", bullets="-", strip=["a"], table_infer_header=True,
                                  escape_asterisks=False, escape_underscores=False, escape_misc=False)
    return converter.convert_soup(soup), title


def declared_charset(data: bytes) -> str | None:
    """The codec for the charset an HTML file declares in a <meta> tag within its first 4 KB, if any.

    As in browsers (WHATWG Encoding), latin-1/ascii mean cp1252 and gb2312/gbk mean GB18030.

    >>> declared_charset(b'<meta charset="big5"><title>x'), declared_charset(b'<meta charset=GB2312>')
    ('big5', 'gb18030')
    >>> declared_charset(b'<meta http-equiv="Content-Type" content="text/html; charset=ISO-8859-1">')
    'cp1252'
    """
    found = _CHARSET.search(data[:4096])
    if not found:
        return None
    label = found.group(1).decode("ascii")
    try:
        name = codecs.lookup(label).name
    except LookupError:
        return label  # unknown: the caller falls back to detection
    return _BROWSER_CODECS.get(name, name)


def _csv_rows(text: str) -> list[list[str]]:
    try:
        dialect: Any = csv.Sniffer().sniff(text[:20_000], delimiters=",;\t|")
    except csv.Error:  # one column, or too irregular to tell: plain commas
        dialect = csv.excel
    return list(csv.reader(io.StringIO(text), dialect))


def read_text(kind: str, text: str) -> Content:
    """One page from decoded text: "text" as is, "csv" as a Markdown table, "html" as Markdown.

    >>> read_text("csv", "name;days\\nAnn;5\\n").pages[0].text
    '| name | days |\\n| --- | --- |\\n| Ann | 5 |'
    """
    title = None
    if kind == "csv":
        text = markdown_table(_csv_rows(text))
    elif kind == "html":
        text, title = html_to_markdown(text)
    return Content((Page(1, normalize_text(text)),), (), _title(title))


def _package(path: Path, data: bytes, suffix: str) -> None:
    """Check that ``data`` is a ZIP package (.docx/.pptx/.xlsx/.epub), saying what it is when not."""
    if not data:
        raise CorruptDocument(path, "the file is empty (0 bytes); re-export or re-download it")
    if data.startswith(b"\xd0\xcf\x11\xe0"):  # an OLE2 compound file: encrypted OOXML or a pre-2007 file
        if "EncryptedPackage".encode("utf-16-le") in data:
            raise UnsupportedFile(path, "is password-protected; open it, remove the password and save it again")
        raise CorruptDocument(path, f"is an old binary Office file (.doc, .xls or .ppt) named {suffix}; "
                                    f"open it and save it as {suffix}")
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise CorruptDocument(path, f"is not a {suffix} file (no ZIP package inside: truncated, or another file "
                                    "type renamed?); re-export or re-download it")


def _damaged(path: Path, suffix: str, exc: Exception) -> CorruptDocument:
    return CorruptDocument(path, f"cannot be read as a {suffix} file, it is damaged ({type(exc).__name__}: "
                                 f"{exc}); re-save it from its application or re-download it")


def _core_title(data: bytes) -> str | None:
    """dc:title of an Office file's core properties (docProps/core.xml), when meaningful."""
    import xml.etree.ElementTree as ElementTree

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as package:
            node = ElementTree.fromstring(package.read("docProps/core.xml")).find(_DC_TITLE)
    except Exception:  # a missing or damaged properties part only costs the title
        return None
    return _title(node.text if node is not None else None)


def _docx(path: Path, data: bytes) -> Content:
    """A Word .docx file as one page of Markdown."""
    import mammoth

    _package(path, data, ".docx")
    no_images = mammoth.images.img_element(lambda image: {})  # never base64 the pictures into the HTML
    try:
        html = mammoth.convert_to_html(io.BytesIO(data), convert_image=no_images).value
    except Exception as exc:  # damaged packages raise anything (KeyError, XML errors...)
        raise _damaged(path, ".docx", exc) from exc
    return Content((Page(1, normalize_text(html_to_markdown(html)[0])),), (), _core_title(data))


def _shape_text(shape: Any) -> list[str]:
    """The text of a slide shape: tables as Markdown, groups shape by shape."""
    from pptx.shapes.group import GroupShape

    if isinstance(shape, GroupShape):  # (shape_type raises for shapes python-pptx does not know)
        return [text for child in _reading_order(shape.shapes) for text in _shape_text(child)]
    if getattr(shape, "has_table", False):
        return [markdown_table([[cell.text for cell in row.cells] for row in shape.table.rows])]
    if getattr(shape, "has_text_frame", False):
        return [shape.text_frame.text]
    return []


def _reading_order(shapes: Any) -> list[Any]:
    return sorted(shapes, key=lambda s: (s.top if s.top is not None else -1, s.left if s.left is not None else -1))


def _slide_text(slide: Any) -> str:
    title = slide.shapes.title
    parts = [f"# {title.text_frame.text}"] if title is not None and title.text_frame.text.strip() else []
    for shape in _reading_order(slide.shapes):
        if title is None or shape.shape_id != title.shape_id:
            parts += _shape_text(shape)
    if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
        notes = slide.notes_slide.notes_text_frame.text
        parts += [f"Notes: {notes}"] if notes.strip() else []
    return normalize_text("\n\n".join(part for part in parts if part.strip()))


def _pptx(path: Path, data: bytes) -> Content:
    """A PowerPoint .pptx file, one page per slide."""
    from pptx import Presentation

    _package(path, data, ".pptx")
    try:
        pages = tuple(Page(n, _slide_text(slide)) for n, slide in enumerate(Presentation(io.BytesIO(data)).slides, 1))
    except Exception as exc:
        raise _damaged(path, ".pptx", exc) from exc
    if not pages:
        raise CorruptDocument(path, "the presentation has no slides")
    return Content(pages, (), _core_title(data))


def _xlsx(path: Path, data: bytes) -> Content:
    """An Excel .xlsx file, one page per worksheet: "## <sheet name>" and a Markdown table."""
    import warnings

    from openpyxl import load_workbook

    _package(path, data, ".xlsx")
    pages = []
    try:
        with warnings.catch_warnings():  # "extension is not supported and will be removed": not ours to fix
            warnings.simplefilter("ignore")
            book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)  # formulas: last values
        for number, sheet in enumerate(book.worksheets, 1):
            sheet.reset_dimensions()  # some writers record a wrong used range, which read-only mode trusts
            table = markdown_table(list(sheet.iter_rows(values_only=True)))
            pages.append(Page(number, normalize_text(f"## {sheet.title}\n\n{table}") if table else ""))
        book.close()
    except Exception as exc:
        raise _damaged(path, ".xlsx", exc) from exc
    if not pages:
        raise CorruptDocument(path, "the workbook has no worksheets")
    return Content(tuple(pages), (), _core_title(data))


def _drm(data: bytes) -> bool:
    """An EPUB whose chapters (not only its fonts) are listed as encrypted."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as package:
            if "META-INF/encryption.xml" not in package.namelist():
                return False
            listed = package.read("META-INF/encryption.xml")
    except Exception:  # a damaged package: ebooklib says what is wrong with it
        return False
    return re.search(rb"URI=[\"'][^\"']+\.x?html?[\"']", listed) is not None


def _epub(path: Path, data: bytes) -> Content:
    """An EPUB e-book, one page per reading-order (spine) item, chapter text as Markdown."""
    import warnings

    from ebooklib import ITEM_DOCUMENT, epub

    _package(path, data, ".epub")
    if _drm(data):
        raise UnsupportedFile(path, "is DRM-protected (its chapters are encrypted); use a DRM-free copy")
    try:
        with warnings.catch_warnings():  # ebooklib warns about its own future defaults
            warnings.simplefilter("ignore")
            book = epub.read_epub(io.BytesIO(data), options={"ignore_ncx": True})
        items = [book.get_item_with_id(idref) for idref, _linear in book.spine]
        texts = [html_to_markdown(item.get_content())[0] if item is not None and item.get_type() == ITEM_DOCUMENT
                 else "" for item in items]
    except Exception as exc:
        raise _damaged(path, ".epub", exc) from exc
    if not texts:
        raise CorruptDocument(path, "the e-book lists no chapters (empty spine); re-export it")
    titles = book.get_metadata("DC", "title")
    return Content(tuple(Page(n, normalize_text(t)) for n, t in enumerate(texts, 1)), (),
                   _title(titles[0][0]) if titles else None)


def _flatten(frame: Any) -> Any:
    """An RGB image upright (EXIF orientation), transparency on white (not on black)."""
    from PIL import Image, ImageOps

    frame = ImageOps.exif_transpose(frame)
    if frame.mode in ("RGBA", "LA", "PA") or "transparency" in frame.info:
        rgba = frame.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    return frame.convert("RGB")


def _image(path: Path, data: bytes, *, ocr: bool = True) -> Content:
    """An image OCR'd as one page (a multi-page TIFF: one page per frame); ``ocr=False`` leaves pages empty."""
    from PIL import Image, ImageSequence

    if not data:
        raise CorruptDocument(path, "the file is empty (0 bytes); re-export or re-download it")
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as exc:  # unidentified, truncated, or over Pillow's decompression-bomb limit
        raise CorruptDocument(path, f"cannot be read as an image ({type(exc).__name__}: {exc}); is it truncated "
                                    "or another file type renamed? re-export or re-download it") from exc
    frames = ImageSequence.Iterator(image) if image.format == "TIFF" else [image]
    pages: list[Page] = []
    warnings: list[str] = []
    for number, frame in enumerate(frames, 1):
        if not ocr:
            pages.append(Page(number, ""))
            continue
        try:
            pages.append(Page(number, normalize_text(ocr_image(_flatten(frame)), layout=True), ocr=True))
        except Exception as exc:
            pages.append(Page(number, ""))
            warnings.append(f"page {number}: OCR failed ({type(exc).__name__}: {exc})")
    return Content(tuple(pages), tuple(warnings), None)


_BINARY_READERS: dict[str, Callable[[Path, bytes], Content]] = {
    "docx": _docx, "pptx": _pptx, "xlsx": _xlsx, "epub": _epub}


def read_binary(kind: str, path: Path, data: bytes, *, ocr: bool = True) -> Content:
    """Read a file of ``kind`` ("docx", "pptx", "xlsx", "epub", "image") from its bytes; ``path`` names it
    in errors. Pages: .docx one; .pptx one per slide; .xlsx one per worksheet; .epub one per spine item;
    an image one (a TIFF one per frame; OCR'd unless ``ocr`` is False, then empty).

    Raises CorruptDocument (empty, damaged, another type renamed) or UnsupportedFile (password or DRM).

    >>> from openpyxl import Workbook
    >>> book = Workbook(); book.active.title = "Fees"; book.active.append(["Product", "Fee"])
    >>> book.active.append(["Vacuum", 15]); buffer = io.BytesIO(); book.save(buffer)
    >>> [(p.number, p.text) for p in read_binary("xlsx", Path("fees.xlsx"), buffer.getvalue()).pages]
    [(1, '## Fees\\n\\n| Product | Fee |\\n| --- | --- |\\n| Vacuum | 15 |')]
    >>> try:
    ...     read_binary("docx", Path("notes.docx"), b"plain text")
    ... except CorruptDocument as exc:
    ...     print(exc.reason[:48])
    is not a .docx file (no ZIP package inside: trun
    """
    if kind == "image":
        return _image(path, data, ocr=ocr)
    return _BINARY_READERS[kind](path, data)
