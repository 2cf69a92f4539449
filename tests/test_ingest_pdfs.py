"""ingest.load on real PDFs (../shared/data/pdfs) and on small PDFs built here; text clean-up; OCR layout."""
from __future__ import annotations

import doctest
import hashlib
import json
import re
from pathlib import Path

import pytest
from pdf_bytes import assemble

from ingest import ocr, pdf, render, text
from ingest.errors import CorruptDocument, IngestError, NeedsPassword, UnsupportedFile, WrongPassword
from ingest.load import decode_text, load_document
from ingest.ocr import OcrBox, layout_text
from ingest.text import assess_text_layer, normalize_text

ROOT = Path(__file__).resolve().parents[1]

# file -> (expected status, pages or password). Statuses: text (text layer), ocr (page 1 OCR'd),
# password (needs the given password), corrupt (CorruptDocument).
EXPECTED = {
    "en_text_tracemonkey_14p.pdf": ("text", 14),
    "en_text_react_paper_31p.pdf": ("text", 31),
    "zh_text_tables_quarterly_report_22p.pdf": ("text", 22),
    "zh_text_xiaobiaosong_1p.pdf": ("text", 1),
    "zh_tables_bond_prospectus_1p.pdf": ("text", 1),
    "en_table_nics_background_checks_1p.pdf": ("text", 1),
    "en_table_multicolumn_header_1p.pdf": ("text", 1),
    "en_scan_with_ocr_layer_6p.pdf": ("text", 6),
    "encrypted_rc4_owner_only.pdf": ("text", 1),
    "scan_image_only_letter_1p.pdf": ("ocr", 1),
    "scan_image_only_known_text_1p.pdf": ("ocr", 1),
    "zh_scan_ocr_test_1p.pdf": ("ocr", 1),
    "encrypted_aes256_user_password.pdf": ("password", "asdfzxcv"),
    "encrypted_user_password_4p.pdf": ("password", "test"),
    "corrupt_empty_0bytes.pdf": ("corrupt", "empty (0 bytes)"),
    "corrupt_fuzzed_unopenable.pdf": ("corrupt", "cannot be parsed"),
    "corrupt_fuzzed_partially_readable.pdf": ("corrupt", "cannot be parsed"),
    "corrupt_truncated_tracemonkey_first40pct.pdf": ("corrupt", "truncated"),
}
BIG = {"en_text_tracemonkey_14p.pdf", "en_text_react_paper_31p.pdf", "zh_text_tables_quarterly_report_22p.pdf"}
SCANS = sorted(name for name, (status, _) in EXPECTED.items() if status == "ocr")


def _param(name: str) -> object:
    slow = name in BIG or EXPECTED[name][0] == "ocr"
    return pytest.param(name, marks=pytest.mark.integration) if slow else name


@pytest.fixture(scope="module")
def pdfs(shared_data: Path) -> Path:
    return shared_data / "pdfs"


@pytest.fixture(scope="module")
def ocr_docs(pdfs: Path) -> dict:
    """Each scan loaded (and OCR'd) once for the whole module: OCR takes seconds per page."""
    return {name: load_document(pdfs / name) for name in SCANS}


@pytest.fixture(scope="module")
def big_docs(pdfs: Path) -> dict:
    """The multi-page papers and report, each loaded once for the module (seconds each)."""
    return {name: load_document(pdfs / name) for name in sorted(BIG)}


def _visible(s: str) -> int:
    return len("".join(s.split()))


# ---------------------------------------------------------------- real PDFs: expected status

def test_expectations_cover_the_manifest(pdfs: Path) -> None:
    manifest = json.loads((pdfs / "pdfs_manifest.json").read_text(encoding="utf-8"))
    assert {entry["file"] for entry in manifest} == set(EXPECTED)


@pytest.mark.parametrize("name", [_param(n) for n in sorted(EXPECTED)])
def test_every_pdf_ends_in_its_expected_status(name: str, pdfs: Path, request: pytest.FixtureRequest) -> None:
    status, detail = EXPECTED[name]
    path = pdfs / name
    if status == "ocr":
        doc = request.getfixturevalue("ocr_docs")[name]
        assert doc.ocr_pages == (1,) and _visible(doc.pages[0].text) > 10, doc.warnings
    elif status == "text":
        doc = request.getfixturevalue("big_docs")[name] if name in BIG else load_document(path)
        assert [p.number for p in doc.pages] == list(range(1, detail + 1))
        assert doc.ocr_pages == () and doc.kind == "pdf"
        assert _visible("".join(p.text for p in doc.pages)) > 30 * detail or detail == 1
        assert doc.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    elif status == "password":
        with pytest.raises(NeedsPassword, match="--password") as info:
            load_document(path)
        assert info.value.path == str(path)
        with pytest.raises(WrongPassword, match="--password"):
            load_document(path, password=detail + "-wrong")
        doc = load_document(path, password=detail, ocr=False)  # page 4 of the brochure is a diagram
        assert doc.pages and _visible(doc.pages[0].text) > 10
    else:
        with pytest.raises(CorruptDocument, match=re.escape(detail)) as info:
            load_document(path)
        assert name in str(info.value) and "re-download" in info.value.reason


def test_owner_only_encryption_needs_no_password_and_ignores_one(pdfs: Path) -> None:
    path = pdfs / "encrypted_rc4_owner_only.pdf"
    for password in (None, "not-needed"):
        doc = load_document(path, password=password)
        assert doc.pages[0].text.startswith("pdf encryption test")


def test_encrypted_files_open_with_their_passwords(pdfs: Path) -> None:
    doc = load_document(pdfs / "encrypted_aes256_user_password.pdf", password="asdfzxcv")
    assert doc.pages[0].text == "pdf encryption test\npassword: asdfzxcv"
    doc = load_document(pdfs / "encrypted_user_password_4p.pdf", password="test", ocr=False)
    assert len(doc.pages) == 4 and "Backup4all" in doc.pages[0].text
    assert "• Education" in doc.pages[0].text  # a Symbol-font bullet, not a garbled line
    assert len(doc.warnings) == 1
    assert re.fullmatch(r"page 4: not OCR'd although it has \d+ characters of text and images over \d+% of it "
                        r"\(OCR is off\)", doc.warnings[0])


def test_cjk_font_page_read_through_pdfium_without_spaces(pdfs: Path) -> None:
    doc = load_document(pdfs / "zh_text_xiaobiaosong_1p.pdf")  # pypdf decodes it as GBK-in-Latin-1
    page = doc.pages[0].text
    assert page.startswith("目录\n关于红军作战的原则") and "（一九三七年八月一日）" in page
    assert not doc.ocr_pages


def test_chinese_table_page_keeps_rows(pdfs: Path) -> None:
    doc = load_document(pdfs / "zh_tables_bond_prospectus_1p.pdf")
    assert "盐城高新区投资集团有限公司" in doc.pages[0].text
    # the ruled table comes out as a Markdown table, row by row (ingest.tables)
    assert "\n| 1 | 工商银行 | 330,435.30 | 234,850.00 | 95,585.30 |\n" in doc.pages[0].text


def test_scan_with_ocr_layer_keeps_it_and_dehyphenates(pdfs: Path) -> None:
    doc = load_document(pdfs / "en_scan_with_ocr_layer_6p.pdf")
    assert doc.ocr_pages == () and doc.title == "en_scan_with_ocr_layer_6p"  # "Binder1.pdf" is no title
    assert "became too conspicuous and dangerous for use." in doc.pages[0].text


def test_scan_with_ocr_off_is_kept_empty_with_a_warning(pdfs: Path) -> None:
    doc = load_document(pdfs / "scan_image_only_letter_1p.pdf", ocr=False)
    assert doc.pages[0].text == "" and doc.ocr_pages == ()
    assert any("page 1: not OCR'd" in w and "OCR is off" in w for w in doc.warnings)
    assert doc.title == "Sample Scanned Image"


@pytest.mark.integration
def test_ocr_finds_the_known_text_of_scans(ocr_docs: dict) -> None:
    known = ocr_docs["scan_image_only_known_text_1p.pdf"].pages[0].text
    assert "This is an example of a non-text-searchable PDF" in known
    assert "regardless of how neatly it is organized" in known
    letter = ocr_docs["scan_image_only_letter_1p.pdf"].pages[0].text
    words = ["SLEREXE", "Cundall", "facsimile", "photocell", "raster scan", "Yours sincerely",
             "Facsimile Research", "demodulation", "1972"]
    assert sum(w in letter for w in words) >= len(words) - 1, letter
    assert letter.index("SLEREXE") < letter.index("Dear Pete") < letter.index("Yours sincerely")


@pytest.mark.integration
def test_ocr_of_chinese_image_text_boxes(ocr_docs: dict) -> None:
    page = ocr_docs["zh_scan_ocr_test_1p.pdf"].pages[0]
    assert page.ocr and page.number == 1
    for expected in ("我是文字", "横向文本框", "竖向文本框", "English text"):
        assert expected in page.text
    assert page.text.index("我是文字") < page.text.index("横向文本框") < page.text.index("竖向文本框")


@pytest.mark.integration
def test_chinese_report_text_extracted(big_docs: dict) -> None:
    doc = big_docs["zh_text_tables_quarterly_report_22p.pdf"]
    assert len(doc.pages) == 22 and doc.warnings == ()
    assert "东北电气发展股份有限公司" in doc.pages[0].text
    # a sentence wrapped at the margin is joined without inserting a space
    assert "保证季度报告内容的真实、准确、完整，不存在虚假记载" in doc.pages[1].text
    assert "\n| 营业收入（元） | 4,755,785.11 | 5,699,227.63 | -16.55% |\n" in doc.pages[2].text  # a table row


@pytest.mark.integration
def test_english_papers_extracted_and_glyph_id_figure_text_repaired(big_docs: dict) -> None:
    react = big_docs["en_text_react_paper_31p.pdf"]
    assert len(react.pages) == 31 and react.ocr_pages == ()
    assert "Act 1: Think[First I need to find a pepper shaker" in react.pages[1].text
    assert "Figure 1: (1) Comparison of four prompting methods" in react.pages[1].text
    assert all("page 2" in w or "page 9" in w for w in react.warnings)  # a few lines beyond repair
    trace = big_docs["en_text_tracemonkey_14p.pdf"]
    assert "Trace-based Just-in-Time Type Specialization" in trace.pages[0].text
    assert "ﬁ" not in "".join(p.text for p in trace.pages)


# ---------------------------------------------------------------- small PDFs built here

def make_pdf(streams: list[bytes], title: str | None = None, filters: dict[int, bytes] | None = None) -> bytes:
    """A minimal PDF: one page per content stream (Helvetica as /F1); ``filters`` maps a page
    index to a /Filter entry, to build pages whose stream cannot be decoded."""
    objs: list[bytes] = [b"<< /Type /Catalog /Pages 2 0 R >>", b"",
                         b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for i, data in enumerate(streams):
        kids.append(len(objs) + 1)
        objs.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                    b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (len(objs) + 2))
        extra = (filters or {}).get(i, b"")
        objs.append(b"<< /Length %d %s >>\nstream\n" % (len(data), extra) + data + b"\nendstream")
    objs[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(b"%d 0 R" % k for k in kids), len(kids))
    info = b""
    if title is not None:
        objs.append(b"<< /Title (%s) >>" % title.encode())
        info = b" /Info %d 0 R" % len(objs)
    return assemble(objs, info)


def text_stream(line: str) -> bytes:
    return b"BT /F1 12 Tf 72 720 Td (" + line.encode("latin-1") + b") Tj ET"


def test_small_pdf_pages_title_and_hash(tmp_path: Path) -> None:
    data = make_pdf([text_stream("First page of the report."), text_stream(""), text_stream("Third page.")],
                    title="Quarterly Report")
    path = tmp_path / "report.pdf"
    path.write_bytes(data)
    doc = load_document(path)
    assert [(p.number, p.text, p.ocr) for p in doc.pages] == [
        (1, "First page of the report.", False), (2, "", False), (3, "Third page.", False)]
    assert doc.title == "Quarterly Report" and doc.kind == "pdf" and doc.warnings == ()
    assert doc.sha256 == hashlib.sha256(data).hexdigest() and doc.path == path
    path.write_bytes(make_pdf([text_stream("x")], title="Untitled"))
    assert load_document(path).title == "report"


def test_partially_readable_pdf_keeps_good_pages_and_names_bad_ones(tmp_path: Path) -> None:
    path = tmp_path / "partly.pdf"
    path.write_bytes(make_pdf([text_stream("Good page one."), b"not zlib data", b"\xff\xff\xff\xff",
                               text_stream("Good page four.")],
                              filters={1: b"/Filter /FlateDecode", 2: b"/Filter /LZWDecode"}))
    doc = load_document(path)
    assert [p.text for p in doc.pages] == ["Good page one.", "", "", "Good page four."]
    assert len(doc.warnings) == 2
    assert doc.warnings[0].startswith("page 2 could not be read") and "left empty" in doc.warnings[0]
    assert doc.warnings[1].startswith("page 3 could not be read")


def test_pdf_whose_pages_all_fail_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "allbad.pdf"
    path.write_bytes(make_pdf([b"\xff\xff\xff\xff"] * 2, filters={0: b"/Filter /LZWDecode", 1: b"/Filter /LZWDecode"}))
    with pytest.raises(CorruptDocument, match="none of its 2 pages can be read"):
        load_document(path)


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "empty"),
    (b"PK\x03\x04 this is a zip file", "no %PDF- header"),
    (b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog", "truncated"),
    (b"%PDF-1.4\n" + bytes(range(256)) * 20 + b"\n%%EOF\n", "cannot be parsed as a PDF"),
])
def test_garbage_pdfs_are_corrupt_with_a_reason(tmp_path: Path, data: bytes, reason: str) -> None:
    path = tmp_path / "bad.pdf"
    path.write_bytes(data)
    with pytest.raises(CorruptDocument, match=reason) as info:
        load_document(path)
    assert info.value.path == str(path)


def test_unsupported_missing_and_folder_paths(tmp_path: Path) -> None:
    (tmp_path / "slides.odp").write_bytes(b"x")
    with pytest.raises(UnsupportedFile, match=r"'\.odp'.*\.pdf, \.txt, \.md, \.markdown, \.docx"):
        load_document(tmp_path / "slides.odp")
    with pytest.raises(IngestError, match="file not found"):
        load_document(tmp_path / "missing.pdf")
    (tmp_path / "dir.md").mkdir()
    with pytest.raises(IngestError, match="is a folder"):
        load_document(tmp_path / "dir.md")


# ---------------------------------------------------------------- text and Markdown files

@pytest.mark.parametrize(("raw", "expected"), [
    ("Hello  world\r\n\r\n\r\nNext".encode("utf-8"), "Hello world\n\nNext"),
    ("\ufeff# 标题\n正文，第一段。".encode("utf-8"), "# 标题\n正文，第一段。"),
    ("中文文本，GBK 编码。".encode("gbk"), "中文文本，GBK 编码。"),
    ("东北电气 UTF-16".encode("utf-16"), "东北电气 UTF-16"),
])
def test_text_files_decode(tmp_path: Path, raw: bytes, expected: str) -> None:
    path = tmp_path / "note.txt"
    path.write_bytes(raw)
    doc = load_document(path)
    assert doc.kind == "text" and [(p.number, p.text) for p in doc.pages] == [(1, expected)]
    assert doc.title == "note" and doc.sha256 == hashlib.sha256(raw).hexdigest()


def test_markdown_suffixes_and_empty_text(tmp_path: Path) -> None:
    for name in ("a.md", "b.MARKDOWN"):
        (tmp_path / name).write_text("Some *markdown* text.", encoding="utf-8")
        assert load_document(tmp_path / name).pages[0].text == "Some *markdown* text."
    (tmp_path / "empty.txt").write_bytes(b"")
    doc = load_document(tmp_path / "empty.txt")
    assert doc.pages[0].text == "" and doc.warnings == ("no text found in the document",)


@pytest.mark.parametrize(("raw", "reason"), [
    # Latin-1/cp1252 text decodes now (test_ingest_formats); control bytes do not
    (bytes(range(1, 256)) * 4, "no other text encoding reads it.* re-save it as UTF-8"),
    (b"text\x00with\x00nul", "binary data"),
])
def test_undecodable_text_files_are_corrupt(tmp_path: Path, raw: bytes, reason: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(raw)
    with pytest.raises(CorruptDocument, match=reason):
        load_document(path)
    with pytest.raises(ValueError):
        decode_text(raw)


# ---------------------------------------------------------------- clean-up and quality checks

@pytest.mark.parametrize(("raw", "layout", "expected"), [
    ("The ﬁrst ﬂow", False, "The first flow"),
    ("soft\u00adhyphen and zero\u200bwidth", False, "softhyphen and zerowidth"),
    ("exam-\nple and well-\nKnown", True, "example and well-\nKnown"),
    ("exam-\nple", False, "exam-\nple"),
    ("bell\x07 tab\there\x0c page", False, "bell tab here\n\npage"),
    ("Ａ１２ full width，标点；保留。", False, "A12 full width，标点；保留。"),
    ("⼀⼆三 radicals", False, "一二三 radicals"),
    ("中文 文字 不加空格", False, "中文 文字 不加空格"),
    ("line one\n\n\n\n\nline two", False, "line one\n\nline two"),
    ("e\u0301t\u00e9 caf\u00e9", False, "\u00e9t\u00e9 caf\u00e9"),
    ("private\ue000use \ufffd gone", False, "privateuse gone"),
])
def test_normalize_text(raw: str, layout: bool, expected: str) -> None:
    assert normalize_text(raw, layout=layout) == expected


def test_wrapped_chinese_lines_join_but_headings_and_rows_do_not() -> None:
    wide = "公司董事会、监事会及董事、监事、高级管理人员保证季度报告内容的真"
    raw = (f"第一节 重要提示\n{wide}\n实、准确、完整。\n"
           "营业收入（元） 4,755,785.11 5,699,227.63 -16.55%\n归属于股东的净利润")
    out = normalize_text(raw, layout=True)
    assert out.splitlines() == ["第一节 重要提示", wide + "实、准确、完整。",
                                "营业收入（元） 4,755,785.11 5,699,227.63 -16.55%", "归属于股东的净利润"]


def test_text_layer_quality() -> None:
    layer = assess_text_layer("(cid:3)(cid:4)(cid:5)(cid:6)\n\ue001\ue002\ue003x\nÄ¿ ¡¡ Â¼ ¹Ø ÓÚ")
    assert layer.garbled and layer.chars == 0 and layer.garbled_lines == 3
    assert not assess_text_layer("An ordinary line of English.\nCAPITALS AND ACRONYMS: NFKC BM25").garbled
    assert assess_text_layer("QHHGWRILQGDSHSSHUVKDNHU").garbled  # glyph ids without control codes
    assert assess_text_layer("2EV\x03\x15\x1d\x032Q\x03WKH\x03FDELQHW").text == "Obs 2: On the cabinet"


def test_titles() -> None:
    assert pdf.meaningful_title("Microsoft Word - 2018年第一季度报告.doc") is None
    assert pdf.meaningful_title("东北电气2018年第一季度报告") == "东北电气2018年第一季度报告"
    assert pdf.meaningful_title("  ") is None and pdf.meaningful_title(None) is None


def test_ocr_layout_orders_lines_and_joins_chinese() -> None:
    boxes = [OcrBox(354, 430, 502, 467, "English text"), OcrBox(237, 397, 277, 548, "竖向文本框"),
             OcrBox(211, 336, 359, 372, "横向文本框"), OcrBox(178, 147, 268, 175, "我是文字"),
             OcrBox(10, 600, 100, 630, "第二"), OcrBox(101, 601, 160, 630, "段落")]
    assert layout_text(boxes) == "我是文字\n\n横向文本框\n竖向文本框 English text\n\n第二段落"
    assert layout_text([]) == ""


def test_doctests_of_pure_modules() -> None:
    for module in (text, render):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


@pytest.mark.integration
def test_doctests_of_pdf_and_ocr(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the examples name ../shared/data from the repository root
    for module in (pdf, ocr):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_library_warnings_stay_off_stderr_and_hopeless_files_fail_at_once(pdfs: Path, tmp_path: Path,
                                                                           capfd: pytest.CaptureFixture) -> None:
    """pypdf's "EOF marker not found" went to stderr beside the report; a 200 MB blank .pdf was parsed
    for 104 s before it was refused: now a file without the %PDF- header is refused before parsing."""
    with pytest.raises(CorruptDocument, match=r"truncated \(no %EOF marker"):
        load_document(pdfs / "corrupt_truncated_tracemonkey_first40pct.pdf")
    blank = tmp_path / "blank.pdf"
    with open(blank, "wb") as f:
        f.truncate(20 * 2**20)  # sparse: 20 MB of zeros
    with pytest.raises(CorruptDocument, match="no %PDF- header"):
        load_document(blank)
    assert capfd.readouterr().err == ""
