"""The UI in a real browser (Debian's chromium driven by Playwright).

* upload a PDF, see it ingested, the empty chat's summary and examples, ask a question and see the
  passages quoted with document and page (retrieval-only); click an example question (saves a screenshot);
* a slow fake model: the status says "generating…", Stop stops the answer (it stops growing, is marked
  stopped, the model's stream is closed), Regenerate replaces it, and clicking [1] opens the passage
  with the cited sentence highlighted;
* a topic change (Chinese handbook, then an English question about the vacuum manual) searches the
  new question as typed; "What about the HV500?" shows what was searched instead.

Waits are Playwright's (``expect``, generous timeouts); nothing measures time.
"""
from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from fixtures_assistant import SpyBackend
from test_ui import launched

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Page 1 fills most of a 64-token chunk (hash-64 counts words), so page 2 starts a chunk of its own.
PAGES = ("Nordhaven kettle manual. Fill the kettle with fresh water before each use and never above the "
         "maximum mark on the window. Place the kettle on its base, press the switch and wait until the light "
         "goes out. Keep the cord away from the edge of the worktop and out of the reach of children.",
         "Descaling: descale the kettle every four weeks with citric acid to remove limescale.")
TIMEOUT_MS = 60_000

pytestmark = pytest.mark.integration


def write_pdf(path: Path, pages: tuple[str, ...]) -> Path:
    """A minimal valid PDF: one line of Helvetica text per page (no PDF library needed)."""
    n = len(pages)
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(n))
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", f"<< /Type /Pages /Kids [{kids}] /Count {n} >>"]
    for i, text in enumerate(pages):
        stream = f"BT /F1 11 Tf 40 760 Td ({text}) Tj ET".encode()
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R "
                       f"/Resources << /Font << /F1 {3 + 2 * n} 0 R >> >> >>")
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream.decode()}\nendstream")
    objects.append("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{o:010d} 00000 n \n" for o in offsets).encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path.write_bytes(bytes(out))
    return path


def browser_page(p: Any, url: str) -> tuple[Any, Any]:
    """(browser, page) of headless chromium at ``url``."""
    browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    return browser, page


def ask(page: Any, question: str) -> None:
    page.locator("#question textarea").fill(question)
    page.locator("#question textarea").press("Enter")


def require_chromium() -> Any:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (apt-get install chromium)")
    return pytest.importorskip("playwright.sync_api")


def test_upload_ask_and_see_the_source(tmp_path: Path) -> None:
    playwright = require_chromium()
    from playwright.sync_api import expect

    from assistant.answer import Assistant
    from index.kb import KnowledgeBase
    from ui.web.app import build_app

    KnowledgeBase.open(tmp_path / "kb", embedder="hash-64", max_tokens=64, overlap=0).close()
    pdf = write_pdf(tmp_path / "Kettle Manual.pdf", PAGES)
    # retrieval-only with k=1 and bm25: the answer is exactly the best passage (deterministic, no model)
    bot = Assistant(kb=tmp_path / "kb", model="never-loaded", retrieval_only=True, k=1, mode="bm25", condense="off")
    shot = tmp_path / "ui.png"
    with launched(build_app(bot, kb_dir=tmp_path / "kb", max_upload_mb=5)) as url, \
            playwright.sync_playwright() as p:
        browser, page = browser_page(p, url)
        chat = page.locator("#chatbot")
        expect(chat).to_contain_text("The knowledge base is empty")
        page.get_by_role("tab", name="Documents").click()
        page.locator("#upload input[type=file]").set_input_files(str(pdf))
        page.locator("#upload").get_by_label("Kettle Manual.pdf").wait_for()  # uploaded
        page.locator("#add").click()
        expect(page.locator("#ingest-report")).to_contain_text("added", timeout=TIMEOUT_MS)
        expect(page.locator("#ingest-report")).to_contain_text("Kettle Manual.pdf")
        expect(page.locator("#ingest-summary")).to_contain_text("1 added")
        expect(page.locator("#documents")).to_contain_text("Kettle Manual")
        page.get_by_role("tab", name="Chat").click()
        expect(chat).to_contain_text("1 document · 2 chunks · embedder hash-64")  # the summary followed the upload
        expect(chat.get_by_text("What does Kettle Manual say about").first).to_be_visible()
        ask(page, "How often should I descale the kettle?")
        quote = chat.locator("blockquote.qda-quote").first
        expect(quote).to_contain_text("[1] Kettle Manual, p. 2", timeout=TIMEOUT_MS)
        expect(quote).to_contain_text("descale the kettle every four weeks")
        expect(page.locator("#status")).to_contain_text("1 passage retrieved")
        text = chat.inner_text()
        page.locator("#clear").click()
        example = chat.get_by_text("What does Kettle Manual say about").first
        question = example.inner_text()
        example.click()  # an example question is asked as if typed
        expect(chat.locator("blockquote.qda-quote").first).to_contain_text("[1] Kettle Manual", timeout=TIMEOUT_MS)
        expect(chat).to_contain_text(question)
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert "[1] Kettle Manual, p. 2" in text and "descale the kettle every four weeks" in text
    stored = list((tmp_path / "kb" / "files").iterdir())
    assert len(stored) == 1 and stored[0].suffix == ".pdf" and len(stored[0].stem) == 64
    if os.environ.get("UI_SCREENSHOT"):  # keep a copy to look at
        shutil.copy(shot, os.environ["UI_SCREENSHOT"])


CARE = ("Kettle care. Fill the kettle with fresh water before each use. Descale the kettle every four weeks "
        "with citric acid. Rinse it twice after descaling and wipe the outside with a damp cloth.")


class SlowModel(SpyBackend):
    """A fake model: the first answer streams slowly (a short sleep per word) until it is closed; later
    answers come at once and cite source [1]."""

    WORDS = 400

    def __init__(self) -> None:
        super().__init__("Descale it every four weeks with citric acid [1].")
        self.made, self.closed, self.first = 0, threading.Event(), True

    def generate(self, messages: list[dict], params: object, *, stream: bool = False,
                 on_first_token: object = None) -> Iterator[str]:
        if not self.first:
            return super().generate(messages, params, stream=stream)
        self.first = False

        def slowly() -> Iterator[str]:
            try:
                for i in range(self.WORDS):
                    time.sleep(0.2)
                    self.made += 1
                    yield f" word{i}"
            finally:
                self.closed.set()

        return slowly()


def test_status_stop_regenerate_and_clickable_citations(tmp_path: Path) -> None:
    playwright = require_chromium()
    from playwright.sync_api import expect

    from assistant.answer import Assistant
    from index.kb import KnowledgeBase
    from ui.web.app import build_app

    (tmp_path / "Kettle Care.md").write_text(CARE, encoding="utf-8")
    with KnowledgeBase.open(tmp_path / "kb", embedder="hash-64", max_tokens=64, overlap=0) as kb:
        assert kb.add([tmp_path / "Kettle Care.md"]).ok
    model = SlowModel()
    bot = Assistant(kb=tmp_path / "kb", model="slow", backend=model, k=1, mode="bm25", condense="off")
    question = "How often should I descale the kettle?"
    with launched(build_app(bot, kb_dir=tmp_path / "kb")) as url, playwright.sync_playwright() as p:
        browser, page = browser_page(p, url)
        chat, status = page.locator("#chatbot"), page.locator("#status")
        ask(page, question)
        expect(status).to_contain_text("generating…")
        expect(chat).to_contain_text("word3")
        page.locator("#stop").click()
        expect(chat).to_contain_text("⏹ Stopped")
        expect(status).to_contain_text("stopped")
        stopped = chat.inner_text()
        page.wait_for_timeout(1500)  # had it not stopped, a few more words would have come by now
        assert chat.inner_text() == stopped and f"word{SlowModel.WORDS - 1}" not in stopped
        assert model.closed.wait(30) and model.made < SlowModel.WORDS  # the model's stream was closed

        page.locator("#regenerate").click()
        expect(chat).to_contain_text("Descale it every four weeks with citric acid", timeout=TIMEOUT_MS)
        expect(chat).not_to_contain_text("⏹ Stopped")
        expect(status).to_contain_text("answered")
        assert chat.inner_text().count(question) == 1 and "word3" not in chat.inner_text()

        source = chat.locator("details.qda-source").first
        expect(source).not_to_have_attribute("open", "")
        chat.locator("a.qda-cite").first.click()
        expect(source).to_have_attribute("open", "")
        expect(source.locator(".qda-where")).to_contain_text("Kettle Care, p. 1")
        mark = source.locator("mark.qda-hl")
        expect(mark).to_be_visible()
        expect(mark).to_have_text("Descale the kettle every four weeks with citric acid.")
        browser.close()


def test_topic_change_is_searched_as_typed_and_a_follow_up_is_rewritten(tmp_path: Path) -> None:
    playwright = require_chromium()
    from playwright.sync_api import expect

    from assistant.answer import Assistant
    from index.kb import KnowledgeBase
    from ui.web.app import build_app

    docs = Path(__file__).resolve().parents[1] / "demo" / "docs"
    with KnowledgeBase.open(tmp_path / "kb", embedder="hash-64") as kb:
        assert kb.add([docs / "yunshan_employee_handbook.pdf", docs / "nordhaven_hv320_manual.pdf"]).ok
    # retrieval-only: follow-ups are rewritten without a model (the previous question is prepended)
    bot = Assistant(kb=tmp_path / "kb", model="never-loaded", retrieval_only=True, k=3, mode="bm25")
    with launched(build_app(bot, kb_dir=tmp_path / "kb")) as url, playwright.sync_playwright() as p:
        browser, page = browser_page(p, url)
        chat = page.locator("#chatbot")
        answers = chat.locator("div.qda-quotes")
        ask(page, "年假有几天？")
        expect(answers).to_have_count(1, timeout=TIMEOUT_MS)
        expect(answers.nth(0).locator("blockquote.qda-quote").first).to_contain_text("员工手册")
        ask(page, "What restocking fee applies to an opened vacuum?")
        expect(answers).to_have_count(2, timeout=TIMEOUT_MS)
        expect(answers.nth(1).locator("blockquote.qda-quote").first).to_contain_text(
            "[1] Nordhaven HV-320 Cordless Vacuum")
        expect(chat).not_to_contain_text("searched:")
        ask(page, "What about the HV500?")
        expect(answers).to_have_count(3, timeout=TIMEOUT_MS)
        expect(chat).to_contain_text("searched: What restocking fee applies to an opened vacuum? What about the HV500?")
        browser.close()
