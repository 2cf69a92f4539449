"""ingest.formats and ingest.load.decode_text: text encodings, Office/web/e-book/table files and images.

Every input is made here: paragraphs encoded in the test, documents written with python-docx,
python-pptx, openpyxl and ebooklib, an image drawn with Pillow's own font.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from ingest.errors import CorruptDocument, UnsupportedFile
from ingest.files import DEFAULT_SUFFIXES
from ingest.formats import _flatten
from ingest.load import KINDS, SUPPORTED_SUFFIXES, decode_text, load_document

ROOT = Path(__file__).resolve().parents[1]

GBK_LONG = ("员工每年享有带薪年假。入职满一年的员工可享受五天年假，满十年的员工可享受十天年假。年假应当在当年内休完，"
            "确因工作需要未能休完的，经部门负责人批准可以顺延至次年第一季度。本产品采用 Li-ion 电池，续航约 8 小时。")
BIG5_LONG = ("員工每年享有帶薪年假。入職滿一年的員工可享受五天年假，滿十年的員工可享受十天年假。年假應當在當年內休完，"
             "確因工作需要未能休完的，經部門負責人批准可以順延至次年第一季度。")
SJIS_LONG = ("従業員は毎年有給休暇を取得できます。入社一年以上の従業員は五日間の休暇を取ることができます。"
             "休暇は原則として当年度内に取得してください。製品の保証期間は購入日から一年間です。")
CP1252_LONG = ("The café’s naïve façade — “déjà vu” for every señor. Our returns policy: an opened vacuum carries "
               "a 15 % restocking fee; Zürich customers pay 5 € shipping. Crème brûlée is served à la carte.")
MIXED = "Hello world, this file has no byte-order mark. 员工每年享有带薪年假。"


# ---------------------------------------------------------------- text encodings

@pytest.mark.parametrize(("text", "encoding"), [
    ("东北电气", "gbk"),  # short Chinese: where detectors guess Big5 or Korean
    ("中文文本，GBK 编码。", "gbk"),
    (GBK_LONG, "gbk"),
    (GBK_LONG, "gb18030"),
    ("繁體中文測試", "big5"),
    (BIG5_LONG, "big5"),
    ("日本語のテキスト", "shift_jis"),
    (SJIS_LONG, "shift_jis"),
    ("café déjà vu, naïve façade", "cp1252"),
    (CP1252_LONG, "cp1252"),
    (MIXED, "utf-16-le"),
    (MIXED, "utf-16-be"),
    ("Hello", "utf-16-le"),
    (MIXED, "utf-8"),
    (MIXED, "utf-8-sig"),
    (MIXED, "utf-16"),  # with a byte-order mark
    (MIXED, "utf-32"),
])
def test_text_encodings_are_detected(tmp_path: Path, text: str, encoding: str) -> None:
    raw = text.encode(encoding)
    assert decode_text(raw) == text
    path = tmp_path / "note.txt"
    path.write_bytes(raw)
    doc = load_document(path)
    assert doc.pages[0].text == text and doc.sha256 == hashlib.sha256(raw).hexdigest()


def _random_bytes(n: int, low: int = 0) -> bytes:
    rng = random.Random(7)
    return bytes(rng.randrange(low, 256) for _ in range(n))


@pytest.mark.parametrize(("raw", "reason"), [
    (_random_bytes(3000), r"binary data \(NUL bytes\).*charset-normalizer finds no text encoding"),
    (_random_bytes(3000, low=1), r"no other text encoding reads it .*charset-normalizer"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + _random_bytes(300), r"starts like a PNG image"),
    (b"text\x00with\x00nul", r"binary data .*best guess: utf_8"),
    (b"\xff\xfe\x00\xd8", r"UTF-16 byte-order mark but invalid UTF-16"),
])
def test_what_is_not_text_is_refused_naming_the_guess(tmp_path: Path, raw: bytes, reason: str) -> None:
    path = tmp_path / "photo.txt"
    path.write_bytes(raw)
    with pytest.raises(CorruptDocument, match=reason) as info:
        load_document(path)
    assert info.value.path == str(path)


# ---------------------------------------------------------------- one owner of the supported types

def test_supported_suffixes_have_one_owner() -> None:
    assert DEFAULT_SUFFIXES is SUPPORTED_SUFFIXES == tuple(KINDS)
    for suffix in (".docx", ".pptx", ".xlsx", ".csv", ".html", ".htm", ".epub", ".png", ".jpg", ".jpeg"):
        assert suffix in SUPPORTED_SUFFIXES


# ---------------------------------------------------------------- documents made in the test

def make_docx(path: Path, title: str = "Employee Handbook") -> Path:
    import docx

    document = docx.Document()
    document.core_properties.title = title
    document.add_heading("Annual leave", level=1)
    document.add_paragraph("Employees get five days of paid leave after one year of service.")
    document.add_heading("Leave by seniority", level=2)
    table = document.add_table(rows=3, cols=2)
    for r, row in enumerate([("Years", "Days"), ("1", "5"), ("10", "10")]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    document.add_paragraph("年假没休完可以顺延到次年第一季度。")
    document.save(path)
    return path


def make_pptx(path: Path) -> Path:
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    deck.core_properties.title = "PowerPoint Presentation"  # PowerPoint's default: not a title
    first = deck.slides.add_slide(deck.slide_layouts[1])
    first.shapes.title.text = "Leave policy"
    first.placeholders[1].text = "Five days after one year\nTen days after ten years"
    first.notes_slide.notes_text_frame.text = "Mention the carry-over rule."
    second = deck.slides.add_slide(deck.slide_layouts[5])
    second.shapes.title.text = "Restocking fees"
    table = second.shapes.add_table(3, 2, Inches(1), Inches(2), Inches(6), Inches(2)).table
    for r, row in enumerate([("Product", "Fee"), ("Vacuum", "15 percent"), ("Kettle", "none")]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    group = second.shapes.add_group_shape()
    group.shapes.add_textbox(Inches(1), Inches(5), Inches(4), Inches(1)).text_frame.text = "Fees apply to opened boxes."
    deck.save(path)
    return path


def make_xlsx(path: Path) -> Path:
    from datetime import datetime

    from openpyxl import Workbook

    book = Workbook()
    staff = book.active
    staff.title = "Staff"
    for row in [("Name", "Days", "Since"), ("Ann", 5, datetime(2024, 3, 1)), ("Bo", 10.0, None)]:
        staff.append(row)
    book.create_sheet("Empty")
    fees = book.create_sheet("Fees")
    fees["B2"], fees["C2"], fees["B3"], fees["C3"] = "Product", "Fee", "Vacuum", "15 | 20 %"
    book.save(path)
    return path


def make_epub(path: Path) -> Path:
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("qda-test")
    book.set_title("The Leave Book")
    book.set_language("en")
    one = epub.EpubHtml(title="One", file_name="one.xhtml", lang="en")
    one.content = "<h1>Chapter one</h1><p>Employees get five days of paid leave.</p>"
    two = epub.EpubHtml(title="Two", file_name="two.xhtml", lang="zh")
    two.content = ("<h1>第二章</h1><p>年假可以顺延。</p><table><tr><th>Years</th><th>Days</th></tr>"
                   "<tr><td>10</td><td>10</td></tr></table>")
    for item in (one, two, epub.EpubNcx(), epub.EpubNav()):
        book.add_item(item)
    book.toc = [one, two]
    book.spine = ["nav", one, two]
    epub.write_epub(str(path), book)
    return path


HTML = """<!doctype html><html><head><title>Returns policy</title><style>p{color:red}</style></head>
<body><nav><a href="/">Home</a> | <a href="/shop">Shop</a></nav>
<h1>Returns</h1><p>An opened vacuum carries a <b>15 percent</b> restocking fee. See <a href="/x">terms</a>.</p>
<script>track("visit")</script>
<table><thead><tr><th>Product</th><th>Fee</th></tr></thead><tr><td>Vacuum</td><td>15 %</td></tr></table>
</body></html>"""


def make_png(path: Path, lines: tuple[str, ...] = ("Restocking fee: 15 percent", "Warranty lasts two years")) -> Path:
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (900, 110 * max(1, len(lines))), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=44)  # Pillow's own scalable font: on every machine
    for i, line in enumerate(lines):
        draw.text((30, 30 + 100 * i), line, fill="black", font=font)
    image.save(path)
    return path


def test_docx_headings_table_and_title(tmp_path: Path) -> None:
    doc = load_document(make_docx(tmp_path / "handbook.docx"))
    assert doc.kind == "docx" and doc.title == "Employee Handbook" and len(doc.pages) == 1
    lines = doc.pages[0].text.splitlines()
    assert lines[0] == "# Annual leave" and "## Leave by seniority" in lines
    header = lines.index("| Years | Days |")
    assert lines[header + 1:header + 4] == ["| --- | --- |", "| 1 | 5 |", "| 10 | 10 |"]
    assert lines[-1] == "年假没休完可以顺延到次年第一季度。" and doc.warnings == ()
    untitled = load_document(make_docx(tmp_path / "memo.docx", title=""))
    assert untitled.title == "memo"


def test_pptx_one_page_per_slide(tmp_path: Path) -> None:
    doc = load_document(make_pptx(tmp_path / "deck.pptx"))
    assert doc.kind == "pptx" and doc.title == "deck" and [p.number for p in doc.pages] == [1, 2]
    first, second = (p.text for p in doc.pages)
    assert first.startswith("# Leave policy\n\nFive days after one year\nTen days after ten years")
    assert first.endswith("Notes: Mention the carry-over rule.")
    assert second.splitlines() == ["# Restocking fees", "", "| Product | Fee |", "| --- | --- |",
                                   "| Vacuum | 15 percent |", "| Kettle | none |", "", "Fees apply to opened boxes."]


def test_xlsx_one_page_per_sheet(tmp_path: Path) -> None:
    doc = load_document(make_xlsx(tmp_path / "staff.xlsx"))
    assert doc.kind == "xlsx" and doc.title == "staff" and [p.number for p in doc.pages] == [1, 2, 3]
    assert doc.pages[0].text.splitlines() == ["## Staff", "", "| Name | Days | Since |", "| --- | --- | --- |",
                                              "| Ann | 5 | 2024-03-01 |", "| Bo | 10 | |"]
    assert doc.pages[1].text == ""  # an empty sheet keeps its page number
    assert doc.pages[2].text.splitlines()[2:] == ["| Product | Fee |", "| --- | --- |", "| Vacuum | 15 \\| 20 % |"]


def test_csv_is_one_table_in_any_encoding(tmp_path: Path) -> None:
    path = tmp_path / "leave.csv"
    csv_text = "姓名;年假天数;备注\n张三;5;\"入职满一年\n可顺延\"\n李四;10;\n"
    path.write_bytes(csv_text.encode("gbk"))  # what Excel saves on a Chinese Windows
    doc = load_document(path)
    assert doc.kind == "csv" and len(doc.pages) == 1
    assert doc.pages[0].text.splitlines() == ["| 姓名 | 年假天数 | 备注 |", "| --- | --- | --- |",
                                              "| 张三 | 5 | 入职满一年 可顺延 |", "| 李四 | 10 | |"]


def test_html_title_headings_table_without_chrome(tmp_path: Path) -> None:
    path = tmp_path / "returns.htm"
    path.write_text(HTML, encoding="utf-8")
    doc = load_document(path)
    assert doc.kind == "html" and doc.title == "Returns policy" and len(doc.pages) == 1
    assert doc.pages[0].text.splitlines() == [
        "# Returns", "", "An opened vacuum carries a **15 percent** restocking fee. See terms.", "",
        "| Product | Fee |", "| --- | --- |", "| Vacuum | 15 % |"]


def test_html_declared_charset_wins(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_bytes('<meta charset="big5"><title>年假制度說明</title><p>繁體中文測試</p>'.encode("big5"))
    doc = load_document(path)
    assert doc.title == "年假制度說明" and doc.pages[0].text == "繁體中文測試"
    path.write_bytes('<meta charset="iso-8859-1"><p>“Déjà vu”</p>'.encode("cp1252"))  # browsers read cp1252
    assert load_document(path).pages[0].text == "“Déjà vu”"


def test_epub_one_page_per_spine_item(tmp_path: Path) -> None:
    doc = load_document(make_epub(tmp_path / "book.epub"))
    assert doc.kind == "epub" and doc.title == "The Leave Book" and [p.number for p in doc.pages] == [1, 2, 3]
    assert doc.pages[0].text == ""  # the navigation document: its <nav> is dropped
    assert doc.pages[1].text == "# Chapter one\n\nEmployees get five days of paid leave."
    assert doc.pages[2].text.splitlines() == ["# 第二章", "", "年假可以顺延。", "", "| Years | Days |", "| --- | --- |",
                                              "| 10 | 10 |"]


def test_image_is_ocrd_as_one_page(tmp_path: Path) -> None:
    doc = load_document(make_png(tmp_path / "notice.png"))
    assert doc.kind == "image" and doc.title == "notice" and doc.ocr_pages == (1,)
    text = doc.pages[0].text.lower()
    assert "restocking fee" in text and "15 percent" in text and "warranty" in text and doc.warnings == ()
    blank = load_document(make_png(tmp_path / "blank.jpg", lines=()))
    assert blank.pages[0].text == "" and blank.warnings == ("no text found in the document",)
    off = load_document(tmp_path / "notice.png", ocr=False)
    assert off.ocr_pages == () and off.warnings == ("no text found in the document (OCR is off)",)


def test_a_multi_page_tiff_has_one_page_per_frame(tmp_path: Path) -> None:
    from PIL import Image

    frames = [Image.new("RGB", (40, 40), "white") for _ in range(3)]
    frames[0].save(tmp_path / "fax.tif", save_all=True, append_images=frames[1:])
    doc = load_document(tmp_path / "fax.tif", ocr=False)
    assert [p.number for p in doc.pages] == [1, 2, 3] and doc.kind == "image"


def test_transparent_images_are_flattened_on_white() -> None:
    from PIL import Image

    clear = Image.new("RGBA", (4, 4), (0, 0, 0, 0))  # black text on a transparent page would vanish on black
    assert _flatten(clear).getpixel((0, 0)) == (255, 255, 255)


# ---------------------------------------------------------------- damaged and renamed files

def _zip_bytes(members: dict[str, bytes]) -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as package:
        for name, data in members.items():
            package.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize("suffix", [".docx", ".pptx", ".xlsx", ".epub"])
@pytest.mark.parametrize(("data", "error", "reason"), [
    (b"", CorruptDocument, r"empty \(0 bytes\)"),
    (b"just some text saved with the wrong suffix", CorruptDocument, r"is not a \S+ file .*renamed"),
    (_zip_bytes({"hello.txt": b"hi"}), CorruptDocument, r"cannot be read as a \S+ file, it is damaged.*re-save"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512), CorruptDocument, r"old binary Office file .*save it as"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + "EncryptedPackage".encode("utf-16-le"), UnsupportedFile,
     "password-protected"),
])
def test_damaged_packages_name_the_file_and_the_fix(tmp_path: Path, suffix: str, data: bytes, error: type,
                                                     reason: str) -> None:
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(data)
    with pytest.raises(error, match=reason) as info:
        load_document(path)
    assert info.value.path == str(path)


def test_truncated_docx_and_drm_epub(tmp_path: Path) -> None:
    whole = make_docx(tmp_path / "whole.docx").read_bytes()
    (tmp_path / "cut.docx").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(CorruptDocument, match="cut.docx"):
        load_document(tmp_path / "cut.docx")
    (tmp_path / "drm.epub").write_bytes(_zip_bytes({
        "mimetype": b"application/epub+zip",
        "META-INF/encryption.xml": b'<encryption><EncryptedData><CipherReference URI="OEBPS/one.xhtml"/>'
                                   b"</EncryptedData></encryption>"}))
    with pytest.raises(UnsupportedFile, match="DRM"):
        load_document(tmp_path / "drm.epub")


@pytest.mark.parametrize("data", [b"", b"not an image at all", None])
def test_bad_images_are_corrupt(tmp_path: Path, data: bytes | None) -> None:
    path = tmp_path / "scan.png"
    if data is None:  # a truncated PNG
        whole = make_png(tmp_path / "whole.png").read_bytes()
        data = whole[: len(whole) // 2]
    path.write_bytes(data)
    with pytest.raises(CorruptDocument, match="scan.png"):
        load_document(path, ocr=False)


# ---------------------------------------------------------------- end to end

@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    make_docx(docs / "handbook.docx")
    make_pptx(docs / "deck.pptx")
    make_xlsx(docs / "staff.xlsx")
    make_epub(docs / "book.epub")
    (docs / "returns.html").write_text(HTML, encoding="utf-8")
    (docs / "leave.csv").write_bytes("name,days\nAnn,5\n".encode("utf-8"))
    (docs / "big5.txt").write_bytes(BIG5_LONG.encode("big5"))
    return docs


def test_knowledge_base_adds_every_format_once(tmp_path: Path, folder: Path) -> None:
    from index.kb import KnowledgeBase

    with KnowledgeBase.open(tmp_path / "kb", embedder="hash-64") as kb:
        report = kb.add([folder])
        again = kb.add([folder])
        hit = kb.search("Kettle restocking fees", k=1, mode="bm25")[0]
        zh = kb.search("帶薪年假", k=1, mode="bm25")[0]
    rows = {Path(f.path).name: f for f in report.files}
    assert {f.status for f in report.files} == {"added"} and len(rows) == 7, report.files
    assert (rows["deck.pptx"].pages, rows["staff.xlsx"].pages, rows["book.epub"].pages) == (2, 3, 3)
    assert {f.status for f in again.files} == {"unchanged"}
    assert (hit.title, hit.page_end) == ("deck", 2) and zh.title == "big5"  # chunks may start on slide 1


def test_cli_ingest_add_and_search(tmp_path: Path, folder: Path) -> None:
    env = os.environ | {"QDA_KB": str(tmp_path / "kb")}

    def run(app: str, *args: str) -> subprocess.CompletedProcess:
        code = f"import sys; from ui.cli.{app} import app; sys.argv[0] = {app!r}; app()"
        return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True)

    make_png(folder / "notice.png")
    (folder / "fake.docx").write_bytes(b"plain text renamed")
    added = run("ingest", "add", str(folder), "--embedder", "hash-64", "--json")
    assert added.returncode == 1, added.stderr  # fake.docx failed, the batch went on
    report = json.loads(added.stdout)
    assert report["counts"]["added"] == 8 and report["counts"]["failed"] == 1
    listed = {d["title"]: d for d in json.loads(run("ingest", "list", "--json").stdout)}
    assert listed["notice"]["ocr_pages"] == [1] and listed["The Leave Book"]["n_pages"] == 3
    hits = json.loads(run("index", "search", "Warranty two years", "--k", "1", "--mode", "bm25", "--json").stdout)
    assert hits[0]["title"] == "notice" and hits[0]["page_start"] == 1
