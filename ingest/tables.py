"""PDF tables -> Markdown tables, in reading order with the rest of the page's text.

pypdf's text layer keeps a table's numbers but loses which row and column each belongs to. For a
page that may hold a ruled table, pdfplumber finds the tables from the page's ruling lines and
rectangles (``Page.find_tables``, its default "lines" strategy) with each cell's box and text. Each
table becomes a Markdown table (one header row, the ``|---|`` separator line, one line per row)
that takes the place of the text pypdf read inside its area; the rest of the page is pypdf's text
as it was (its spacing, its order, its repairs of glyph-id fonts).

Why pdfplumber: well kept, pure Python over pdfminer.six (wheels only, works offline), and it gives
the cell boxes as well as their text, which merged header cells need. camelot's lattice mode needs
OpenCV and Ghostscript and its stream mode guesses columns from white space. Tables drawn without
ruling lines are not detected (pdfplumber's "text" strategy makes tables out of ordinary
paragraphs); their rows stay text lines as pypdf reads them.

Cost: pdfplumber (pdfminer in pure Python) parses a table page in 0.1-0.5 s against pypdf's
0.03-0.1 s, so it only runs on pages whose content stream draws rulings at ``MIN_RULINGS`` or more
distinct x and y positions (one regex over the decoded stream, well under 1 ms a page); the other
pages, papers' figures included, keep pypdf's text alone. ``bench/tables.py`` measures both.
"""
from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from common import cjk

MIN_RULINGS = 3  # distinct x and y of rulings: a 2 x 2 grid has 3 of each, a frame around text 2
MAX_HEADER_ROWS = 3
MIN_FILLED = 0.25  # share of a table's cells that hold text (see _real)
_NUM = rb"(?<![\w.])(-?(?:\d+(?:\.\d*)?|\.\d+))"  # one way to match a number: no backtracking
# "x y m", "x y l", "x y w h re" (not a clipping rectangle: "re W n")
_PATH_OPS = re.compile(_NUM + rb"\s+" + _NUM + rb"(?:\s+" + _NUM + rb"\s+" + _NUM + rb")?\s+(m|l|re(?!\s+W))(?=\s|$)")
_WIDE = f"{cjk.SPACELESS}{cjk.PUNCT}"  # characters written without spaces between them
_CJK_CHAR = re.compile(f"[{_WIDE}]")
_SPACE_IN_CJK = re.compile(f"(?<=[{_WIDE}])\\s+(?=[{_WIDE}])")
_NUMBER = re.compile(r"[-+−(（]?[$¥€£]?\d+(?:\.\d+)?[)）]?%?")
_YEAR = re.compile(r"(?:19|20)\d\d")
_MARK = "\uffff"  # a noncharacter: never in a page's text
_AROUND_TABLE = re.compile(f"[\n{_MARK}]*{_MARK}[\n{_MARK}]*")
_LINE_TOLERANCE = 3.0  # points: words whose tops differ less are on one line


@dataclass(frozen=True)
class Cell:
    """One cell of a table grid: its text (lines kept), how many columns it spans, and for a merged
    cell whose words sit under several of its columns (sub-headers written in one box), the label
    of each spanned column (else ``parts`` is empty)."""

    text: str
    span: int = 1
    parts: tuple[str, ...] = ()


Grid = Sequence[Sequence["Cell | None"]]  # rows x columns; None: covered by a merged cell (left or above)


def cell_text(raw: str) -> str:
    """A cell's text on one line: wrapped lines joined (no space between CJK characters), blanks
    collapsed, "|" escaped for Markdown.

    >>> cell_text("偿还债务的能力很强，受不利经济\\n环境的 影响"), cell_text("分级31\\n号计划")
    ('偿还债务的能力很强，受不利经济环境的影响', '分级31号计划')
    >>> cell_text("Long-\\nterm  debt\\nA|B")
    'Long-term debt A\\\\|B'
    """
    lines = [line.strip() for line in raw.split("\n") if line.strip()]
    text = ""
    for line in lines:  # a line wrapped next to a CJK character (or after a hyphen) needs no blank
        glue = "" if not text or text.endswith("-") or _CJK_CHAR.match(text[-1]) or _CJK_CHAR.match(line) else " "
        text += glue + line
    text = _SPACE_IN_CJK.sub("", " ".join(text.split()))
    return text.replace("|", "\\|")


def _data_like(text: str) -> bool:
    """A number as data cells hold it ("1,234.5", "-16.55%", "(12)"); a year alone is a label."""
    text = text.strip()
    return bool(_NUMBER.fullmatch(text.replace(",", ""))) and not _YEAR.fullmatch(text)


def _labels(row: Sequence[Cell | None], split: bool = True) -> list[str | None]:
    """Per column: the text of the cell covering it in this row ("" if empty), None when a cell of
    a row above covers it; a merged cell's ``parts`` are used when ``split``."""
    out: list[str | None] = [None] * len(row)
    for j, cell in enumerate(row):
        if cell is None:
            continue
        for k in range(j, min(len(row), j + max(1, cell.span))):
            part = cell.parts[k - j] if split and len(cell.parts) == cell.span else cell.text
            out[k] = cell_text(part)
    return out


def _unstack(row: Sequence[Cell | None]) -> list[list[Cell | None]]:
    """A band that holds several rows (every filled cell has the same n > 1 lines and all but the
    first column are numbers line by line, as some reports draw 5 states a band) -> n rows."""
    filled = [(j, c) for j, c in enumerate(row) if c is not None and c.text.strip()]
    counts = {len(c.text.strip().split("\n")) for _, c in filled}
    if len(filled) < 2 or len(counts) != 1 or counts == {1}:
        return [list(row)]
    lines = {j: c.text.strip().split("\n") for j, c in filled}
    if not all(_data_like(x) for j, c in filled if j > 0 for x in lines[j]):
        return [list(row)]
    n = counts.pop()
    return [[None if c is None else Cell(lines[j][i] if j in lines else "", c.span) for j, c in enumerate(row)]
            for i in range(n)]


def _full_width(row: Sequence[Cell | None]) -> str | None:
    """The text of a row holding one cell across the whole table (a title or section line)."""
    filled = [c for c in row if c is not None and c.text.strip()]
    if len(filled) == 1 and all(c is None or c is filled[0] or not c.text.strip() for c in row):
        if filled[0].span >= len(row) or sum(c is not None for c in row) == 1:
            return cell_text(filled[0].text)
    return None


def _is_header(labels: list[str | None]) -> bool:
    """Labels everywhere but the corner column, and no data number."""
    return all(labels[1:]) and not any(x and _data_like(x) for x in labels)


def _continues(above: Sequence[Cell | None], labels: list[str | None]) -> bool:
    """A second header row: sub-labels under the merged cells of ``above``, nothing elsewhere."""
    under = {k for j, c in enumerate(above) if c is not None and c.span > 1 for k in range(j, j + c.span)}
    if not under or any(x and _data_like(x) for x in labels):
        return False
    return any(labels[k] for k in under if k < len(labels)) and not any(
        labels[k] for k in range(len(labels)) if k not in under)


def markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table: the header row, the separator line, then one line per row.

    >>> print(markdown(["Part", "Price"], [["Bolt", "0.10"]]))
    | Part | Price |
    |---|---|
    | Bolt | 0.10 |
    """
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _block_markdown(block: list[list[Cell | None]]) -> str:
    """Rows of one table (no full-width rows) -> Markdown with a single header row."""
    ncols = len(block[0])
    head: list[list[str | None]] = []
    if _is_header(first := _labels(block[0])):
        head.append(first)
        while len(head) < min(MAX_HEADER_ROWS, len(block)) and _continues(block[len(head) - 1],
                                                                           nxt := _labels(block[len(head)])):
            head.append(nxt)
    # a merged cell with rows of sub-labels under it is a group label: split only in the last row
    head = [_labels(row, split=i == len(head) - 1) for i, row in enumerate(block[:len(head)])]
    header = []
    for k in range(ncols):  # each column: its labels from top to bottom, repeats dropped
        parts: list[str] = []
        for labels in head:
            if labels[k] and labels[k] not in parts:
                parts.append(labels[k])
        header.append(" ".join(parts))
    body = [[cell_text(c.text) if c is not None else "" for c in row] for row in block[len(head):]]
    # columns that only exist inside merged cells of this part of the table (its grid is finer
    # elsewhere) would repeat the header and stay empty: dropped
    keep = [k for k in range(ncols) if any(row[k] is not None for row in block)]
    return markdown([header[k] for k in keep], [[row[k] for k in keep] for row in body])


def grid_markdown(grid: Grid) -> str:
    """A table grid -> Markdown: a single header row per table (merged and stacked header cells
    combined, "Sales 2023"), rows of one line; rows holding one cell across the table become
    text lines (a title before the table, or a section splitting it in two). A first row of data
    numbers gets an empty header (the table continues one from the page before).

    >>> grid = [[Cell("Quarterly sales", 3), None, None],
    ...         [Cell("Region"), Cell("Sales", 2), None],
    ...         [None, Cell("2023"), Cell("2024")],
    ...         [Cell("North"), Cell("1,200"), Cell("1,350")]]
    >>> print(grid_markdown(grid))
    Quarterly sales
    | Region | Sales 2023 | Sales 2024 |
    |---|---|---|
    | North | 1,200 | 1,350 |
    >>> print(grid_markdown([[Cell("East"), Cell("7.5")], [Cell("West\\nSouth"), Cell("1\\n2")]]))
    |  |  |
    |---|---|
    | East | 7.5 |
    | West | 1 |
    | South | 2 |
    """
    out: list[str] = []
    block: list[list[Cell | None]] = []
    for row in (r for band in grid for r in _unstack(band)):
        if not any(c is not None and c.text.strip() for c in row):
            continue  # an empty row (rules drawn around a notes box) says nothing
        title = _full_width(row)
        if title is None:
            block.append(row)
            continue
        if block:
            out.append(_block_markdown(block))
            block = []
        out.append(title)
    if block:
        out.append(_block_markdown(block))
    return "\n".join(x for x in out if x)


# ---------------------------------------------------------------- pdfplumber side


def ruling_grid(page: Any) -> tuple[int, int]:
    """(distinct x of vertical, distinct y of horizontal rulings) drawn by a pypdf page: rectangle
    edges and axis-aligned line segments of its content stream, in whole points. Forms it places
    are read only when the page draws no text itself (its whole content wrapped in a form): on a
    page with text they are included figures, whose grids and boxes are no tables."""
    contents = page.get_contents()
    data = contents.get_data() if contents is not None else b""
    if b"BT" not in data:
        resources = page.get("/Resources")
        xobjects = resources.get_object().get("/XObject") if resources is not None else None
        for ref in (xobjects.get_object().values() if xobjects is not None else ()):
            if (form := ref.get_object()).get("/Subtype") == "/Form":  # images are never decoded here
                data += b"\n" + form.get_data()
    xs: set[int] = set()
    ys: set[int] = set()
    last: tuple[float, float] | None = None
    for a, b, w, h, op in _PATH_OPS.findall(data):
        x, y = float(a), float(b)
        if op == b"re":  # a box has two rulings each way; a thin one (a drawn line) one, along it
            wide, tall = abs(float(w)) >= 2, abs(float(h)) >= 2
            xs.update({round(x), round(x + float(w))} if wide and tall else {round(x)} if tall else ())
            ys.update({round(y), round(y + float(h))} if wide and tall else {round(y)} if wide else ())
        elif op == b"l" and last is not None:
            xs.update([round(x)] if abs(last[0] - x) < 0.5 else [])
            ys.update([round(y)] if abs(last[1] - y) < 0.5 else [])
        last = (x, y) if op != b"re" else None
    return len(xs), len(ys)


def _one_page_pdf(reader: Any, index: int) -> bytes:
    """Page ``index`` alone, written by pypdf from the decrypted reader: pdfminer needs no password
    and a damaged object elsewhere in the file cannot stop it (costs 2-15 ms: fonts are copied)."""
    from pypdf import PdfWriter

    writer, buffer = PdfWriter(), io.BytesIO()
    writer.add_page(reader.pages[index])
    writer.write(buffer)
    return buffer.getvalue()


def _column_edges(table: Any) -> list[float]:
    """x of each column's left edge, then the table's right edge (pdfplumber's column boxes also
    hold the merged cells starting there, so their right edges say nothing)."""
    return [c.bbox[0] for c in table.columns] + [table.bbox[2]]


def _column_of(x: float, edges: list[float]) -> int:
    for j in range(len(edges) - 1):
        if x < edges[j + 1]:
            return j
    return len(edges) - 2


def _split_merged(page: Any, box: tuple, first: int, span: int, edges: list[float]) -> tuple[str, ...]:
    """Labels per column of a merged cell whose last line has words under each of its columns
    ("Handgun Long Gun Other" under "Private Sale"): each column gets the cell's other lines (the
    group label) and its own words of the last line; () when the last line is not spread out."""
    from pdfplumber.utils import extract_words

    words = extract_words([c for c in page.chars if _inside(c, box)])
    lines: list[list[dict]] = []
    for word in sorted(words, key=lambda w: (w["top"], w["x0"])):
        if lines and abs(lines[-1][0]["top"] - word["top"]) < _LINE_TOLERANCE:
            lines[-1].append(word)
        else:
            lines.append([word])
    if not lines:
        return ()
    cols = [min(span - 1, max(0, _column_of((w["x0"] + w["x1"]) / 2, edges) - first)) for w in lines[-1]]
    if len(set(cols)) < span:  # every column has its own words, else one label centred over them
        return ()
    common = [w["text"] for line in lines[:-1] for w in line]
    return tuple(cell_text(" ".join(common + [w["text"] for w, c in zip(lines[-1], cols) if c == k]))
                 for k in range(span))


def table_grid(page: Any, table: Any) -> list[list[Cell | None]]:
    """A pdfplumber table -> grid of cells (text, columns spanned, per-column labels when merged)."""
    edges = _column_edges(table)
    grid = []
    for row, texts in zip(table.rows, table.extract()):
        cells: list[Cell | None] = []
        for box, text in zip(row.cells, texts):
            if box is None:
                cells.append(None)
                continue
            first, last = _column_of(box[0] + 1, edges), _column_of(box[2] - 1, edges)
            span = max(1, last - first + 1)
            parts = _split_merged(page, box, first, span, edges) if span > 1 and text else ()
            cells.append(Cell(text or "", span, parts))
        grid.append(cells)
    return grid


def _inside(char: dict, box: tuple) -> bool:
    x, y = (char["x0"] + char["x1"]) / 2, (char["top"] + char["bottom"]) / 2
    return box[0] <= x < box[2] and box[1] <= y < box[3]


def _real(grid: Grid) -> bool:
    """A table, not a ruled box around a figure or a paragraph nor a chart's grid: a quarter of its
    cells hold text (sparse income statements hold 38%, chart grids 0-17%), and two rows have two
    filled cells or one row fills all of three columns or more."""
    cells = [c for row in grid for c in row if c is not None]
    filled = [sum(1 for c in row if c is not None and c.text.strip()) for row in grid]
    if not cells or sum(filled) < MIN_FILLED * len(cells):
        return False
    return sum(f >= 2 for f in filled) >= 2 or any(f == len(grid[0]) >= 3 for f in filled)


def _found_tables(page: Any) -> list[tuple[tuple, str]]:
    """(box in pdfplumber's top-down points, Markdown) of each real table of a pdfplumber page, top
    to bottom; [] when a cell's font has no Unicode map in pdfminer ("(cid:12)"): pypdf, which
    repairs some of those, keeps the page."""
    out = []
    for table in sorted(page.find_tables(), key=lambda t: (t.bbox[1], t.bbox[0])):
        if len(table.rows) < 2 or len(table.columns) < 2:
            continue
        grid = table_grid(page, table)
        if any("(cid:" in c.text for row in grid for c in row if c is not None):
            return []
        if _real(grid):
            out.append((table.bbox, grid_markdown(grid)))
    return out


def _replace_areas(page: Any, found: list[tuple[tuple, str]], top: float) -> str | None:
    """pypdf's text of ``page`` with the text drawn inside each table's box replaced by the table's
    Markdown, where the first of it stood (``top``: the page's top in PDF points). pypdf reports
    its text in pieces with their text matrices, which say where each piece starts. None when a
    table's box holds no piece (a rotated or shifted page whose coordinates do not match)."""
    pieces: list[tuple[str, float, float]] = []

    def visit(text: str, cm: list, tm: list, font: object, size: object) -> None:
        x = tm[4] * cm[0] + tm[5] * cm[2] + cm[4]
        y = tm[4] * cm[1] + tm[5] * cm[3] + cm[5]
        pieces.append((text, x, top - y - 1))  # a point above the baseline: inside the cell

    page.extract_text(visitor_text=visit)
    out: list[str] = []
    placed: set[int] = set()
    where = -1  # table of the last piece with text; blanks and line breaks go with it
    for text, x, y in pieces:
        if text.strip():
            where = next((k for k, (b, _) in enumerate(found) if b[0] <= x < b[2] and b[1] <= y < b[3]), -1)
        if where < 0:
            out.append(text)
        elif where not in placed:
            placed.add(where)
            out.append(f"{_MARK}{found[where][1]}{_MARK}")
    text = _AROUND_TABLE.sub("\n", "".join(out)).strip("\n")  # a table is its own lines, no blank line
    return text if len(placed) == len(found) else None


def page_text_with_tables(reader: Any, index: int) -> str | None:
    """Text of page ``index`` (0-based) of a pypdf ``PdfReader``: pypdf's text with each ruled
    table's area replaced by the table as Markdown. None when the page draws rulings at fewer
    than ``MIN_RULINGS`` places each way (``ruling_grid``) or holds no table: pypdf's text then
    stands as it is. Raises nothing: a page pdfplumber cannot parse gives None as well.
    """
    try:
        page = reader.pages[index]
        if min(ruling_grid(page)) < MIN_RULINGS:
            return None
        import pdfplumber

        with pdfplumber.open(io.BytesIO(_one_page_pdf(reader, index))) as pdf:
            found = _found_tables(pdf.pages[0])
        return _replace_areas(page, found, float(page.mediabox.top)) if found else None
    except Exception:  # pdfminer raises many kinds on damaged streams; pypdf's text is still there
        return None
