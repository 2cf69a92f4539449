"""The UI in a real browser (Debian's chromium driven by Playwright): upload a PDF, see it ingested,
ask a question, see the answer and its source (document + page). Saves a screenshot."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

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


def test_upload_ask_and_see_the_source(tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (apt-get install chromium)")
    playwright = pytest.importorskip("playwright.sync_api")
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
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        page.get_by_role("tab", name="Documents").click()
        page.locator("#upload input[type=file]").set_input_files(str(pdf))
        page.locator("#upload").get_by_label("Kettle Manual.pdf").wait_for()  # uploaded
        page.locator("#add").click()
        expect(page.locator("#ingest-report")).to_contain_text("added", timeout=TIMEOUT_MS)
        expect(page.locator("#ingest-report")).to_contain_text("Kettle Manual.pdf")
        expect(page.locator("#ingest-summary")).to_contain_text("1 added")
        expect(page.locator("#documents")).to_contain_text("Kettle Manual")
        page.get_by_role("tab", name="Chat").click()
        page.locator("#question textarea").fill("How often should I descale the kettle?")
        page.locator("#question textarea").press("Enter")
        chat = page.locator("#chatbot")
        expect(chat).to_contain_text("Sources: Kettle Manual p. 2", timeout=TIMEOUT_MS)
        chat.get_by_text("Sources: Kettle Manual p. 2").first.click()  # expand: score and snippet
        expect(chat.locator("strong", has_text="[1] Kettle Manual")).to_be_visible()  # the source's heading
        expect(chat.locator("blockquote", has_text="descale the kettle every four weeks")).to_be_visible()
        page.wait_for_timeout(600)  # let the block's opening animation end before the screenshot
        text = chat.inner_text()
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert "[1] Kettle Manual (p. 2)" in text and "descale the kettle every four weeks" in text
    stored = list((tmp_path / "kb" / "files").iterdir())
    assert len(stored) == 1 and stored[0].suffix == ".pdf" and len(stored[0].stem) == 64
    if os.environ.get("UI_SCREENSHOT"):  # keep a copy to look at
        shutil.copy(shot, os.environ["UI_SCREENSHOT"])
