"""The page's own CSS and script (passed to ``Blocks.launch``: Gradio 6 takes them there).

The script makes a citation link (``a.qda-cite``, :mod:`ui.web.render`) open the source block it
points at (``<details id=…>``), scroll it into view and flash it; without the script the link still
jumps to the (closed) block.
"""
from __future__ import annotations

CSS = """
a.qda-cite { font-weight: 600; text-decoration: none; cursor: pointer; }
a.qda-cite:hover { text-decoration: underline; }
.qda-sources { margin-top: .5em; font-size: .92em; }
.qda-sources-head { font-weight: 600; opacity: .75; margin-bottom: .2em; }
details.qda-source { border-left: 3px solid var(--color-accent, #f97316); padding: .1em .6em; margin: .2em 0; }
details.qda-source > summary { cursor: pointer; }
details.qda-source.qda-flash { animation: qda-flash 1.5s ease-out; }
@keyframes qda-flash { from { background: rgba(250, 204, 21, .35); } to { background: transparent; } }
.qda-where { font-size: .85em; opacity: .7; margin: .2em 0; }
blockquote.qda-passage, blockquote.qda-quote { margin: .3em 0; }
mark.qda-hl { background: #fde68a; color: #1f2937; padding: 0 .1em; border-radius: 2px; }
.qda-quote-head { margin-bottom: .2em; }
#status { min-height: 1.6em; }
"""

SCRIPT = """
(function () {
  if (window.qdaCitations) { return; }
  window.qdaCitations = true;
  document.addEventListener("click", function (event) {
    var link = event.target && event.target.closest ? event.target.closest("a.qda-cite") : null;
    if (!link) { return; }
    var block = document.getElementById((link.getAttribute("href") || "").replace(/^#/, ""));
    if (!block) { return; }
    event.preventDefault();
    event.stopPropagation();
    block.open = true;
    block.classList.remove("qda-flash");
    void block.offsetWidth;
    block.classList.add("qda-flash");
    block.scrollIntoView({block: "nearest", behavior: "smooth"});
  }, true);
})();
"""

HEAD = f"<script>{SCRIPT}</script>"


def page_assets() -> dict[str, str]:
    """``css`` and ``head`` for ``Blocks.launch`` (the UI's styles and citation-link script)."""
    return {"css": CSS, "head": HEAD}
