"""Text fidelity of ingest on small PDFs built here: owner-only encryption, filled form values,
line-end hyphens in compounds, and running headers/footers taken out of the pages."""
from __future__ import annotations

import doctest
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ingest import forms, furniture, text
from ingest.chunk import chunk_pages
from ingest.errors import NeedsPassword, WrongPassword
from ingest.furniture import strip_furniture
from ingest.load import load_document
from ingest.pdf import read_pdf
from ingest.records import Page
from ingest.text import normalize_text

ALGORITHMS = ["RC4-40", "RC4-128", "AES-128", "AES-256"]


def _obj(value: object) -> object:
    """A pypdf object from plain Python: "/Name", "text", numbers, lists and dicts."""
    from pypdf.generic import ArrayObject, DictionaryObject, FloatObject, NameObject, NumberObject, TextStringObject

    if isinstance(value, dict):
        return DictionaryObject({NameObject(k): _obj(v) for k, v in value.items()})
    if isinstance(value, list):
        return ArrayObject(_obj(v) for v in value)
    if isinstance(value, str):
        return NameObject(value) if value.startswith("/") else TextStringObject(value)
    return NumberObject(value) if isinstance(value, int) else FloatObject(value)


def _escape(line: str) -> bytes:
    return line.encode("cp1252").replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def build_pdf(pages: list[list[tuple[float, float, str]]], widgets: dict[int, list[dict]] | None = None,
              encrypt: dict | None = None) -> bytes:
    """A PDF with one page per list of (x, y, text) lines in Helvetica (WinAnsi: "–" works),
    the given widget annotations per page index, optionally encrypted with pypdf."""
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, NameObject

    writer = PdfWriter()
    font = {"/Type": "/Font", "/Subtype": "/Type1", "/BaseFont": "/Helvetica", "/Encoding": "/WinAnsiEncoding"}
    for index, lines in enumerate(pages):
        page = writer.add_blank_page(612, 792)
        stream = DecodedStreamObject()
        stream.set_data(b"\n".join(b"BT /F1 11 Tf %.1f %.1f Td (%s) Tj ET" % (x, y, _escape(s)) for x, y, s in lines))
        page.replace_contents(stream)
        page[NameObject("/Resources")] = _obj({"/Font": {"/F1": font}})
        for widget in (widgets or {}).get(index, []):
            writer.add_annotation(index, _obj({"/Type": "/Annot", "/Subtype": "/Widget", **widget}))
    if widgets:
        fields = [a for page in writer.pages for a in page.get("/Annots", [])]
        writer.root_object[NameObject("/AcroForm")] = _obj({"/Fields": []})
        writer.root_object["/AcroForm"]["/Fields"].extend(fields)
    if encrypt:
        writer.encrypt(**encrypt)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _save(tmp_path: Path, data: bytes, name: str = "doc.pdf") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------- 1. owner-only encryption

CARD = [[(72, 700, "Warranty card for the HV320 heat pump."), (72, 680, "Registration code 4471-XK.")]]


@pytest.mark.parametrize("owner", ["x", ""])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_owner_only_encrypted_pdfs_open_without_a_password(tmp_path: Path, algorithm: str, owner: str) -> None:
    from pypdf import PasswordType, PdfReader

    data = build_pdf(CARD, encrypt={"user_password": "", "owner_password": owner, "algorithm": algorithm})
    reader = PdfReader(io.BytesIO(data))
    expected = PasswordType.USER_PASSWORD if owner else PasswordType.OWNER_PASSWORD  # the case that was refused
    assert reader.is_encrypted and reader.decrypt("") == expected
    for password in (None, "not-needed"):
        doc = load_document(_save(tmp_path, data), password=password)
        assert doc.pages[0].text == "Warranty card for the HV320 heat pump.\nRegistration code 4471-XK."


@pytest.mark.parametrize("owner", ["0wner", ""])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_user_password_is_still_needed(tmp_path: Path, algorithm: str, owner: str) -> None:
    """An empty owner password with a user password: pypdf's decrypt("") says OWNER_PASSWORD, but
    viewers ask for the user password, so ingest does too (encrypted_aes256_user_password.pdf)."""
    path = _save(tmp_path, build_pdf(CARD, encrypt={"user_password": "u5er", "owner_password": owner,
                                                    "algorithm": algorithm}))
    with pytest.raises(NeedsPassword, match="--password"):
        load_document(path)
    with pytest.raises(WrongPassword, match="--password"):
        load_document(path, password="wrong")
    for password in ("u5er", owner or "u5er"):  # the user password, or the owner password (full access)
        assert "Registration code 4471-XK." in load_document(path, password=password).pages[0].text


# ---------------------------------------------------------------- 2. filled form values

def _text_field(name: str, value: str | None, rect: list[float], **extra: object) -> dict:
    field = {"/FT": "/Tx", "/T": name, "/Rect": rect, **extra}
    return field if value is None else {**field, "/V": value}


FORM_LABELS = [(72, 700, "Customer name:"), (72, 670, "Serial number:"), (72, 640, "Purchase date:"),
               (300, 640, "Store:"), (72, 610, "Comments:"), (72, 580, "Extended warranty"),
               (72, 550, "Delivery: Standard Express")]
FORM_FIELDS = [
    _text_field("customer_name", "Ingrid Solberg", [170, 695, 400, 715]),
    _text_field("serial", "HV320-88412", [170, 665, 400, 685]),
    _text_field("date", "2024-03-15", [170, 635, 290, 655]),
    _text_field("store", "Nordhaven Outlet Oslo", [340, 635, 560, 655]),
    _text_field("comments", None, [170, 605, 560, 625]),  # left empty: nothing is added
    {"/FT": "/Btn", "/T": "ext_warranty", "/TU": "Extended warranty", "/V": "/Yes", "/AS": "/Yes",
     "/Rect": [180, 575, 192, 587]},
    {"/Parent": {"/FT": "/Btn", "/Ff": 49152, "/T": "delivery", "/V": "/Express"}, "/AS": "/Off",
     "/Rect": [150, 545, 162, 557]},
    {"/Parent": {"/FT": "/Btn", "/Ff": 49152, "/T": "delivery", "/V": "/Express"}, "/AS": "/Express",
     "/Rect": [230, 545, 242, 557]},
]


def test_form_values_go_next_to_their_labels(tmp_path: Path) -> None:
    page2 = [(72, 700, "Technician notes:")]
    data = build_pdf([FORM_LABELS, page2], widgets={
        0: FORM_FIELDS, 1: [_text_field("notes", "Replaced the\ndefrost sensor", [200, 695, 500, 715])]})
    doc = load_document(_save(tmp_path, data, "registration.pdf"))
    assert doc.pages[0].text.splitlines() == [
        "Customer name: Ingrid Solberg", "Serial number: HV320-88412",
        "Purchase date: 2024-03-15 Store: Nordhaven Outlet Oslo", "Comments:", "Extended warranty",
        "Delivery: Standard Express", "Extended warranty: Yes", "delivery: Express"]
    assert doc.pages[1].text == "Technician notes: Replaced the defrost sensor"  # on the widget's own page
    chunks = chunk_pages(doc.pages, doc_sha256=doc.sha256, count_tokens=lambda s: len(s.split()))
    assert any("HV320-88412" in c.text for c in chunks) and doc.warnings == ()


def test_form_value_already_in_the_text_layer_is_not_repeated(tmp_path: Path) -> None:
    flattened = FORM_LABELS[:2] + [(175, 670, "HV320-88412")]  # a flattened form draws the value
    data = build_pdf([flattened], widgets={0: [_text_field("serial", "HV320-88412", [170, 665, 400, 685]),
                                              _text_field("customer_name", "", [170, 695, 400, 715])]})
    page = load_document(_save(tmp_path, data)).pages[0].text
    assert page.count("HV320-88412") == 1 and page.startswith("Customer name:\n")


def test_two_fields_with_the_same_label_fill_their_own_lines(tmp_path: Path) -> None:
    labels = [(72, 700, "Seller"), (72, 680, "Name:"), (72, 640, "Buyer"), (72, 620, "Name:")]
    widgets = [_text_field("buyer", "Ola Nordmann", [120, 615, 400, 635]),  # listed first, printed second
               _text_field("seller", "Kari Hansen", [120, 675, 400, 695])]
    page = load_document(_save(tmp_path, build_pdf([labels], widgets={0: widgets}))).pages[0].text
    assert page.splitlines() == ["Seller", "Name: Kari Hansen", "Buyer", "Name: Ola Nordmann"]


def test_field_without_a_printed_label_is_appended_with_its_name(tmp_path: Path) -> None:
    data = build_pdf([[(72, 700, "Thank you for registering.")]],
                     widgets={0: [_text_field("order_number", "SO-99120", [300, 300, 400, 320])]})
    assert load_document(_save(tmp_path, data)).pages[0].text == "Thank you for registering.\norder number: SO-99120"


# ---------------------------------------------------------------- 3. line-end hyphens

COMPOUNDS = ["long-term", "self-cleaning", "anti-static", "state-of-the-art", "well-known", "non-negligible",
             "follow-up", "real-time", "multi-threaded", "high-quality", "x-ray", "3-year", "GPU-accelerated"]
WORD_BREAKS = {"mon-ths": "months", "exam-ple": "example", "infor-mation": "information",
               "tra-jectory": "trajectory", "pre-vious": "previous", "non-sense": "nonsense",
               "hot-ness": "hotness", "in-lined": "inlined", "Perfor-mance": "Performance",
               "TraceMon-key": "TraceMonkey", "multi-ple": "multiple", "imple-mentation": "implementation"}


@pytest.mark.parametrize("compound", COMPOUNDS)
def test_line_end_hyphen_of_a_compound_is_kept(compound: str) -> None:
    left, right = compound.rsplit("-", 1)
    broken = f"Use the {left}-\n{right} option."
    assert normalize_text(broken, layout=True) == f"Use the {compound} option."
    assert normalize_text(broken) == broken  # without layout nothing is joined


@pytest.mark.parametrize(("broken", "word"), sorted(WORD_BREAKS.items()))
def test_line_end_hyphen_of_a_word_break_is_joined(broken: str, word: str) -> None:
    left, right = broken.split("-")
    assert normalize_text(f"See the {left}-\n{right} here.", layout=True) == f"See the {word} here."


def test_cjk_and_other_hyphens_are_untouched() -> None:
    for raw in ("数据-\n处理方法", "第一-\n第二", "Wert-\nÄnderung", "item -\nnext", "a -- b", "名称-\nname"):
        assert normalize_text(raw, layout=True) == raw


def test_hyphen_rule_needs_no_network() -> None:
    """wordfreq's English list ships in its wheel: a fresh interpreter without sockets still decides."""
    code = ("import socket\n"
            "def refuse(*a, **k): raise OSError('no network in this test')\n"
            "socket.socket = socket.create_connection = socket.getaddrinfo = refuse\n"
            "from ingest.text import normalize_text\n"
            "print(normalize_text('a self-\\ncleaning filter for mon-\\nths', layout=True))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[1])
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "a self-cleaning filter for months"


# ---------------------------------------------------------------- 4. running headers and footers

HEADER = "NORDHAVEN HV320 SERVICE MANUAL – CONFIDENTIAL – INTERNAL USE ONLY"
BODY = [
    ["1 Introduction", "This manual covers the installation and service of the HV320 heat pump.",
     "Read every safety note before you open the outdoor unit.", "Safety note",
     "Disconnect the mains supply and wait five minutes before touching the compressor terminals."],
    ["2 Maintenance", "Clean the evaporator fins every spring with a soft brush.", "Safety note",
     "The refrigerant circuit is sealed; only certified technicians may open it.",
     "The drive belt of the circulation fan must be checked for wear and"],
    ["replaced every 24 months of regular use, or sooner in coastal climates.", "Safety note",
     "Never run the fan with the service panel removed.", "3 Fault codes",
     "E1 means the water flow is too low; check the filter and the circulation pump."],
    ["E2 means the outdoor sensor reads out of range; check its cable.", "Safety note",
     "Replace a damaged sensor cable with the original part number 88-1204.", "4 Disposal",
     "Return the unit to an authorised recycling point at the end of its life."],
]
SPLIT_SENTENCE = ("The drive belt of the circulation fan must be checked for wear and replaced every 24 months "
                  "of regular use, or sooner in coastal climates.")


def manual_pdf() -> bytes:
    pages = []
    for number, body in enumerate(BODY, 1):
        lines = [(72, 760, HEADER)] + [(72, 720 - 18 * i, line) for i, line in enumerate(body)]
        pages.append(lines + [(72, 40, f"Page {number} of 4 – Nordhaven Appliances Ltd. – rev. 7")])
    return build_pdf(pages)


def test_running_header_and_footer_leave_every_chunk(tmp_path: Path) -> None:
    data = manual_pdf()
    content = read_pdf("manual.pdf", data)
    assert content.furniture[:2] == (HEADER, "Page 1 of 4 – Nordhaven Appliances Ltd. – rev. 7")
    assert len(content.furniture) == 8
    doc = load_document(_save(tmp_path, data, "manual.pdf"))
    assert [p.text.splitlines() for p in doc.pages] == BODY  # "Safety note" mid-page repeats: body text
    words = lambda s: len(s.split()) + 2  # noqa: E731 - a fake embedder: words plus 2 special tokens
    chunks = chunk_pages(doc.pages, doc_sha256=doc.sha256, max_tokens=40, overlap=0, count_tokens=words)
    assert len(chunks) >= 4
    for chunk in chunks:
        assert "CONFIDENTIAL" not in chunk.text and "Nordhaven Appliances" not in chunk.text
        assert "internal use only" not in chunk.text.lower() and not re.search(r"Page \d of 4", chunk.text)
    joined = [" ".join(c.text.split()) for c in chunks]
    assert any(SPLIT_SENTENCE in j for j in joined)  # the sentence over the page break is whole in a chunk
    spanning = next(c for c, j in zip(chunks, joined) if SPLIT_SENTENCE in j)
    assert (spanning.page_start, spanning.page_end) == (2, 3)


def _pages(*texts: str) -> list[Page]:
    return [Page(n, t) for n, t in enumerate(texts, 1)]


def test_page_number_lines_go_even_without_repeating() -> None:
    pages, removed = strip_furniture(_pages("第一章 总则\n本制度适用于全体员工。\n第 1 页 共 3 页",
                                            "- 2 -\n第二章 假期", "第三章 附则\nPage 3 of 3"))
    assert [p.text for p in pages] == ["第一章 总则\n本制度适用于全体员工。", "第二章 假期", "第三章 附则"]
    assert removed == ("第 1 页 共 3 页", "- 2 -", "Page 3 of 3")


def test_printed_page_numbers_with_an_offset_go_but_repeated_table_numbers_stay() -> None:
    journal = _pages(*(f"Body text of page {n}, different each time {'x' * n}.\n{n + 464}" for n in range(1, 6)))
    assert all(p.text.endswith("x.") for p in strip_furniture(journal)[0])
    names = ["pump", "valve", "filter", "sensor", "belt"]
    table = _pages(*(f"Item {name} costs\n{n * 7}" for n, name in enumerate(names, 1)))  # a cell, not a page number
    assert strip_furniture(table) == (tuple(table), ())


def test_header_run_into_a_heading_and_page_numbers_at_either_edge_go() -> None:
    pages, removed = strip_furniture(_pages("ACME SERVICE MANUAL\nIntro text one.\n1",
                                            "ACME SERVICE MANUAL2 Maintenance\nBody two.\n2",
                                            "ACME SERVICE MANUAL\n3\nBody three."))
    assert [p.text for p in pages] == ["Intro text one.", "2 Maintenance\nBody two.", "Body three."]
    assert removed == ("ACME SERVICE MANUAL", "1", "ACME SERVICE MANUAL", "2", "ACME SERVICE MANUAL", "3")


def test_body_lines_that_repeat_are_kept() -> None:
    # repeated in the middle of pages, below a body line at the edge, or on too few pages
    pages = _pages("Intro one.\nSafety note\nMore text one.", "Intro two.\nSafety note\nMore text two.",
                   "Intro three.\nSafety note\nMore text three.", "Continued\nFour.", "Five.\nContinued")
    assert strip_furniture(pages) == (tuple(pages), ())


def test_short_documents_are_left_alone() -> None:
    two = _pages("Same title\nPage one.\n1", "Same title\nPage two.\n2")
    assert strip_furniture(two) == (tuple(two), ())


def test_doctests_of_text_furniture_and_forms() -> None:
    for module in (text, furniture, forms):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__
