"""Tables: split Markdown tables repeat their header (ingest.chunk), PDF tables come out as Markdown
(ingest.tables, through ingest.pdf.read_page), and a search for a row finds the chunk holding it.

Table-pass cost and retrieval of table cells on real PDFs are measured in ``bench/tables.py``."""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
from pdf_bytes import assemble

from ingest import tables
from ingest.chunk import chunk_pages
from ingest.load import load_document
from ingest.records import Chunk, Document, Page

SYLLABLES = ["ka", "lo", "mir", "ven", "tas", "qui", "dor", "bel", "sun", "rex"]
NOUNS = ["valve", "bolt", "gasket", "flange"]
HEADER = "| Part code | Part name | Price | Stock | Supplier |\n|---|---|---|---|---|"


def part_name(i: int) -> str:
    """A made-up, unique word per row (three syllables from the row number) and a common noun."""
    word = "".join(SYLLABLES[int(d)] for d in f"{i:03d}")
    return f"{word.capitalize()} {NOUNS[i % 4]}"


def price_rows(n: int = 120) -> list[str]:
    return [f"| PX-{1000 + i} | {part_name(i)} | {(i * 37) % 500 + 1}.{i % 100:02d} | {i * 3 % 41} | "
            f"Acme Supply Co. No. {i % 7} |" for i in range(n)]


def hash_count(text: str) -> int:
    """The test embedder's exact count (``index.embedder.HashEmbedder``): words + CJK chars + 2."""
    from index.embedder import HashEmbedder

    return HashEmbedder().count_tokens(text)


def span_text(pages: list[Page], chunk: Chunk) -> str:
    """The page text a chunk's span covers (pages joined with "\\n")."""
    index = {page.number: i for i, page in enumerate(pages)}
    first, last = index[chunk.page_start], index[chunk.page_end]
    if first == last:
        return pages[first].text[chunk.char_start:chunk.char_end]
    return "\n".join([pages[first].text[chunk.char_start:], *(p.text for p in pages[first + 1:last]),
                      pages[last].text[:chunk.char_end]])


def check_chunks(pages: list[Page], chunks: list[Chunk], count: Callable[[str], int], max_tokens: int,
                 head: str = HEADER) -> None:
    """Every chunk fits; its text is its span, or the repeated header + "\\n" + its span."""
    for c in chunks:
        assert count(c.text) <= max_tokens, (count(c.text), c.text[:80])
        span = span_text(pages, c)
        assert c.text == span or (c.text == f"{head}\n{span}" and not span.startswith(head)), c.text[:120]


# ---------------------------------------------------------------- task 1: split tables repeat their header

@pytest.mark.parametrize(("counter", "max_tokens", "overlap"), [("hash", 160, 0), ("hash", 160, 20), ("e5", 500, 50)])
def test_split_table_chunks_each_start_with_the_header(counter: str, max_tokens: int, overlap: int,
                                                       request: pytest.FixtureRequest) -> None:
    count = hash_count if counter == "hash" else request.getfixturevalue("e5_count")
    rows = price_rows()
    page1 = "Price list 2024. All prices are in euros per piece.\n\n" + HEADER + "\n" + "\n".join(rows[:70])
    # page 2 goes on with rows only: pages are joined with "\n", so they are rows of the same table
    pages = [Page(1, page1), Page(2, "\n".join(rows[70:]) + "\n\nPrices change every quarter.")]
    chunks = chunk_pages(pages, doc_sha256="d", max_tokens=max_tokens, overlap=overlap, count_tokens=count)
    check_chunks(pages, chunks, count, max_tokens)
    holding = [c for c in chunks if "| PX-" in c.text]
    assert len(holding) >= 3
    assert all(c.text.startswith(HEADER) or c.text.startswith("Price list") for c in holding)
    assert all(c.text.startswith(HEADER) for c in holding[1:])
    for row in rows:  # every row whole in some chunk; never cut, since each fits
        assert any(row in c.text.split("\n") for c in chunks), row
    for c in chunks:
        assert all(line.endswith("|") for line in c.text.split("\n") if line.startswith("| PX-"))


def test_table_continued_on_the_next_page_repeats_the_first_part_header() -> None:
    rows = price_rows(60)
    blank = "|  |  |  |  |  |\n|---|---|---|---|---|"  # what ingest.tables writes for a headless part
    pages = [Page(1, "Parts.\n" + HEADER + "\n" + "\n".join(rows[:30]) + "\nPage 1 of 2"),
             Page(2, "Acme price list (continued)\n" + blank + "\n" + "\n".join(rows[30:]))]
    chunks = chunk_pages(pages, doc_sha256="d", max_tokens=120, overlap=0, count_tokens=hash_count)
    on_page_2 = [c for c in chunks if c.page_start == 2]
    assert on_page_2 and all(c.text.startswith(HEADER) for c in on_page_2)
    for c in chunks:
        span = span_text(pages, c)
        assert hash_count(c.text) <= 120 and c.text in (span, f"{HEADER}\n{span}")


def test_header_too_big_to_repeat_and_rows_too_long_to_fit() -> None:
    wide = "| " + " | ".join(f"column {i}" for i in range(30)) + " |\n|" + "---|" * 30
    rows = ["| " + " | ".join(f"v{r}x{i}" for i in range(30)) + " |" for r in range(6)]
    pages = [Page(1, wide + "\n" + "\n".join(rows))]
    chunks = chunk_pages(pages, doc_sha256="d", max_tokens=100, overlap=0, count_tokens=hash_count)
    assert all(hash_count(c.text) <= 100 and c.text == span_text(pages, c) for c in chunks)  # never repeated
    long_row = "| R-1 | " + " ".join(["very long description"] * 60) + " | 9.99 |"
    pages = [Page(1, HEADER + "\n" + "\n".join(price_rows(3)) + "\n" + long_row)]
    chunks = chunk_pages(pages, doc_sha256="d", max_tokens=60, overlap=0, count_tokens=hash_count)
    check_chunks(pages, chunks, hash_count, 60)
    assert sum("very long description" in c.text for c in chunks) > 2  # the long row alone is cut


def test_search_for_a_part_finds_the_chunk_holding_its_row(tmp_path: Path) -> None:
    from index.kb import KnowledgeBase

    rows = price_rows()
    text = "Spare parts price list. Prices in euros.\n\n" + HEADER + "\n" + "\n".join(rows)
    doc = Document(path=tmp_path / "prices.md", sha256=hashlib.sha256(text.encode()).hexdigest(), title="prices",
                   kind="text", pages=(Page(1, text),))
    with KnowledgeBase.open(tmp_path / "kb", embedder="hash-64", max_tokens=200, overlap=0) as kb:
        assert kb.add_documents([doc]).count("added") == 1
        stored = kb.store.db.execute("SELECT text FROM chunks ORDER BY id").fetchall()
        assert len(stored) >= 6 and all(t.startswith((HEADER, "Spare parts")) for (t,) in stored)
        # hybrid is asked the part name alone: the hash embedder's dense side is noise for a
        # question whose common words ("what", "price") are in every chunk (e5: bench/tables.py)
        for i in (0, 5, 47, 88, 119):
            for mode, query in (("bm25", f"What is the price of the {part_name(i)}?"), ("hybrid", part_name(i))):
                top = kb.search(query, k=3, mode=mode)[0]
                assert rows[i] in top.text.split("\n"), (mode, query)
                assert top.text.startswith((HEADER, "Spare parts"))


# ---------------------------------------------------------------- task 2: PDF tables as Markdown

def pdf_bytes(content: bytes) -> bytes:
    """A one-page A4 PDF drawing ``content``; fonts: /F1 Helvetica, /F2 STSong-Light (Chinese,
    not embedded: both pdfminer and pypdf map its UCS-2 codes to Unicode)."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 6 0 R"
        b" /Resources << /Font << /F1 4 0 R /F2 5 0 R >> >> >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Type /Font /Subtype /Type0 /BaseFont /STSong-Light /Encoding /UniGB-UCS2-H /DescendantFonts [7 0 R] >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /CIDFontType0 /BaseFont /STSong-Light /DW 1000 /FontDescriptor 8 0 R"
        b" /CIDSystemInfo << /Registry (Adobe) /Ordering (GB1) /Supplement 4 >> >>",
        b"<< /Type /FontDescriptor /FontName /STSong-Light /Flags 6 /FontBBox [-25 -254 1000 880]"
        b" /ItalicAngle 0 /Ascent 880 /Descent -120 /CapHeight 880 /StemV 93 >>",
    ]
    return assemble(objects)


def show(x: float, y: float, text: str, size: int = 9) -> bytes:
    """Text at (x, y), PDF points from the bottom left; non-ASCII text in the Chinese font."""
    if text.isascii():
        return b"BT /F1 %d Tf %.1f %.1f Td (%s) Tj ET\n" % (size, x, y, text.encode())
    return b"BT /F2 %d Tf %.1f %.1f Td <%s> Tj ET\n" % (size, x, y, text.encode("utf-16-be").hex().encode())


def ruled_table(xs: list[float], top: float, row_height: float, rows: list[list[str]],
                merged: dict[tuple[int, int], int] | None = None, tall: frozenset = frozenset()) -> bytes:
    """Grid lines and cell texts; ``merged[(row, col)] = n``: that cell spans n columns (no inner
    vertical lines); ``(row, col)`` in ``tall``: that cell goes on into the row below (no line under
    it); a cell's text may hold "\\n" (lines 10 pt apart)."""
    merged = merged or {}
    ops = b""
    bottom = top - row_height * len(rows)
    for r in range(len(rows) + 1):
        y = top - r * row_height
        for c in range(len(xs) - 1):
            if (r - 1, c) not in tall:
                ops += b"%.1f %.1f m %.1f %.1f l S\n" % (xs[c], y, xs[c + 1], y)
    for c, x in enumerate(xs):
        inner = [r for (r, c0), n in merged.items() if c0 < c < c0 + n]
        for r in range(len(rows)):
            if r not in inner or c in (0, len(xs) - 1):
                ops += b"%.1f %.1f m %.1f %.1f l S\n" % (x, top - r * row_height, x, top - (r + 1) * row_height)
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            for k, line in enumerate(cell.split("\n")):
                ops += show(xs[c] + 3, top - r * row_height - 11 - 10 * k, line)
    assert bottom > 0
    return ops


def read(tmp_path: Path, content: bytes) -> str:
    path = tmp_path / "table.pdf"
    path.write_bytes(pdf_bytes(content))
    doc = load_document(path, ocr=False)
    assert doc.warnings == () and len(doc.pages) == 1
    return doc.pages[0].text


def test_pdf_table_becomes_markdown_in_reading_order(tmp_path: Path) -> None:
    rows = [["Part code", "Part name", "Price"], ["PX-1000", "Hex bolt M8", "0.10"], ["PX-1001", "Wing nut", "0.05"],
            ["PX-1002", "Spring washer", "12,300.50"]]
    content = show(60, 790, "Spare parts price list.") + ruled_table([60, 160, 360, 460], 760, 20, rows)
    text = read(tmp_path, content + show(60, 650, "Prices include VAT."))
    assert text == ("Spare parts price list.\n| Part code | Part name | Price |\n|---|---|---|\n"
                    "| PX-1000 | Hex bolt M8 | 0.10 |\n| PX-1001 | Wing nut | 0.05 |\n"
                    "| PX-1002 | Spring washer | 12,300.50 |\nPrices include VAT.")


def test_pdf_table_with_merged_header_and_chinese_cells(tmp_path: Path) -> None:
    rows = [["项 目", "金额", "", "说明"], ["", "2023年", "2022年", ""],
            ["营业收入（元）", "4,755,785.11", "5,699,227.63", "子公司货款\n增加"],
            ["净利润（元）", "-4,648,986.52", "-15,563,758.44", "清偿债务冲减\n预计负债"]]
    # "金额" spans the two year columns; the first and last columns are one box over two header rows
    content = show(60, 800, "主要会计数据") + ruled_table([60, 200, 300, 400, 540], 780, 24, rows, {(0, 1): 2},
                                                  frozenset({(0, 0), (0, 3)}))
    text = read(tmp_path, content)
    lines = text.split("\n")
    assert lines[0] == "主要会计数据"
    assert lines[1] == "| 项目 | 金额 2023年 | 金额 2022年 | 说明 |" and lines[2] == "|---|---|---|---|"
    assert lines[3:] == ["| 营业收入（元） | 4,755,785.11 | 5,699,227.63 | 子公司货款增加 |",
                         "| 净利润（元） | -4,648,986.52 | -15,563,758.44 | 清偿债务冲减预计负债 |"]


def test_a_centred_group_label_over_a_row_of_sub_labels_is_not_split(tmp_path: Path) -> None:
    rows = [["Region", "", "", ""], ["", "2022", "2023", "2024"], ["North", "1,200", "1,350", "1,410"]]
    content = ruled_table([60, 160, 240, 320, 400], 760, 24, rows, {(0, 1): 3}, frozenset({(0, 0)}))
    # a wide label centred over the three year columns: one of its words above each of them
    content += show(215, 749, "Net") + show(270, 749, "sales") + show(325, 749, "(euros)")
    label = "Net sales (euros)"
    assert read(tmp_path, content).split("\n") == [f"| Region | {label} 2022 | {label} 2023 | {label} 2024 |",
                                                    "|---|---|---|---|", "| North | 1,200 | 1,350 | 1,410 |"]


def test_sub_headers_written_in_one_merged_box_are_split_by_column(tmp_path: Path) -> None:
    rows = [["State", "Pre-Pawn\nHandgun", "", ""], ["Alabama", "14", "15", "0"], ["Alaska", "9", "3", "0"]]
    content = ruled_table([60, 160, 220, 280, 340], 760, 26, rows, {(0, 1): 3})
    content += show(223, 760 - 21, "Long Gun") + show(283, 760 - 21, "Other")  # on the "Handgun" line
    text = read(tmp_path, content)
    assert text.split("\n")[0] == "| State | Pre-Pawn Handgun | Pre-Pawn Long Gun | Pre-Pawn Other |"
    assert "| Alabama | 14 | 15 | 0 |" in text.split("\n")


def test_pages_without_ruling_lines_keep_pypdf_text_without_pdfplumber(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import pdfplumber

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("pdfplumber opened a page that draws no table")

    monkeypatch.setattr(pdfplumber, "open", fail)
    content = show(60, 790, "Part PX-1000 costs 0.10.") + b"60 780 m 300 780 l S\n"  # one rule is no table
    assert read(tmp_path, content) == "Part PX-1000 costs 0.10."
    framed = b"0 0 595 842 re W n 50 700 250 60 re S 50 730 m 300 730 l S\n"  # a clip, a box, a rule in it
    assert read(tmp_path, framed + show(60, 740, "Note: prices change.")) == "Note: prices change."


def test_a_page_pdfplumber_cannot_read_keeps_pypdf_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(page: object) -> str:
        raise ValueError("damaged content stream")

    monkeypatch.setattr(tables, "_found_tables", broken)
    rows = [["Part", "Price"], ["Bolt", "0.10"]]
    assert read(tmp_path, ruled_table([60, 160, 260], 760, 20, rows)) == "Part Price\nBolt 0.10"


def test_doctests() -> None:
    import doctest

    from ingest import chunk

    for module in (tables, chunk):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0
