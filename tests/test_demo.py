"""The demo: its documents load with the right text per page, and the demo finds the answers."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from ingest.load import load_document

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "demo" / "docs"


def _load_demo():
    spec = importlib.util.spec_from_file_location("run_demo", ROOT / "demo" / "run_demo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_demo"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


demo = _load_demo()

# (file, page, facts that must be extracted from that page)
FACTS = [
    ("yunshan_employee_handbook.pdf", 1, ["第一章 总则与工作时间", "上午9:00至下午18:00", "试用期一般为3个月"]),
    ("yunshan_employee_handbook.pdf", 2, ["第二章 休假制度", "第一年为7天", "次年3月31日", "产假158天"]),
    ("yunshan_employee_handbook.pdf", 3, ["每晚不超过600元", "每月10日和25日", "内线电话8000"]),
    ("nordhaven_hv320_manual.pdf", 1, ["Technical specifications", "45 minutes in Eco mode"]),
    ("nordhaven_hv320_manual.pdf", 2, ["Replace the HEPA filter", "Every 12 months"]),
    ("nordhaven_hv320_manual.pdf", 3, ["restocking fee of 15 percent", "0800 555 0132"]),
]


def _squash(text: str) -> str:
    return "".join(text.split())  # PDF line breaks fall anywhere inside Chinese sentences


@pytest.mark.parametrize("name", sorted({f for f, _, _ in FACTS}))
def test_demo_pdfs_load_page_by_page(name: str) -> None:
    doc = load_document(DOCS / name)
    assert doc.kind == "pdf" and not doc.ocr_pages and not doc.warnings
    assert [p.number for p in doc.pages] == [1, 2, 3]
    for file, page, facts in FACTS:
        if file == name:
            text = _squash(doc.pages[page - 1].text)
            assert [f for f in facts if _squash(f) not in text] == [], f"{name} page {page}"


def test_demo_docs_are_small_and_complete() -> None:
    files = sorted(p.name for p in DOCS.iterdir())
    assert files == ["hv320_service_faq.md", "nordhaven_hv320_manual.pdf", "yunshan_employee_handbook.pdf"]
    assert all((DOCS / f).stat().st_size < 100_000 for f in files)
    md = load_document(DOCS / "hv320_service_faq.md")
    assert [p.number for p in md.pages] == [1] and "HF-320" in md.pages[0].text
    assert {ex.file for ex in demo.EXAMPLES} <= set(files)


def test_snippet_shows_the_answer_sentence() -> None:
    zh, en = (load_document(DOCS / ex.file).pages[ex.page - 1].text for ex in demo.EXAMPLES)
    assert "第一年为7天" in _squash(demo.snippet(zh, demo.EXAMPLES[0].question, width=400))
    assert "restocking fee" in demo.snippet(en, demo.EXAMPLES[1].question, width=400)
    long = demo.snippet("word " * 100, "word", width=50)
    assert len(long) == 50 and long.endswith("…")


@pytest.mark.integration
def test_demo_finds_the_answers_with_the_default_embedder(tmp_path: Path, capsys) -> None:
    from index.kb import KnowledgeBase

    kb_dir = tmp_path / "kb"
    assert demo.main(["--kb", str(kb_dir)]) == 0
    out = capsys.readouterr().out
    assert "ingest summary" in out and "3 added" in out
    assert all(ex.question[:20] in out for ex in demo.EXAMPLES)
    with KnowledgeBase.open(kb_dir) as kb:  # the default embedder, as recorded
        assert kb.embedder.name == "multilingual-e5-small"
        again = demo.ingest(kb)
        assert [f.status for f in again.files] == ["unchanged"] * 3
        for ex in demo.EXAMPLES:
            top = demo.retrieve(kb, ex.question, k=3)[0]
            assert Path(top.path).name == ex.file, (ex.question, top.path, top.text[:200])
            assert top.page_start <= ex.page <= top.page_end, (ex.question, top.page_start, top.page_end)
