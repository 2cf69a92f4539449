"""Page furniture: running headers, footers and page numbers, found across a document's pages.

A running header or footer is the same line at the top or bottom of most pages ("ACME MANUAL –
CONFIDENTIAL", "Page 3 of 12 – ACME Ltd."). Left in the page text it lands in every chunk, cuts
sentences that run over a page break and matches every chunk in a keyword search, so
``strip_furniture`` takes it out. Lines are compared with their digits masked ("Page # of #"), so
changing page numbers and dates still match. Only the first and last ``EDGE_LINES`` non-blank lines
of a page are candidates, peeled from the edge inwards: a repeated line in the middle of a page
(a heading, a table label) is body text and stays, and so does one below a body line. A long
running header that extraction ran together with the first body line is cut off that line.

A line is furniture when, in the same zone (top or bottom), it repeats on at least ``MIN_SHARE`` of
the pages that have text (a bare page number: at either edge, as the page number plus the same
offset), or when it is a page-number line ("Page 3 of 4", "- 3 -", "第 3 页 共 4 页").
Documents under ``MIN_PAGES`` pages are left alone: with two pages a line repeated on both is as
likely a repeated title as a header, and a page-number line is harmless in so little text.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

from ingest.records import Page

MIN_PAGES = 3  # documents with fewer pages keep every line
MIN_SHARE = 0.6  # of the pages with text: "most pages", allowing a title page and a blank page or two
EDGE_LINES = 3  # non-blank lines at the top and at the bottom of a page that may be furniture
MIN_RUN_TOGETHER = 12  # characters (blanks removed) of furniture cut off a line it was run into

_PAGE_NUMBER_KEY = "page number "  # the key of a bare number line, before its offset from the page number
_DIGITS = re.compile(r"\d+")
_BLANKS = re.compile(r"\s+")
_PAGE_NUMBER = re.compile(
    r"(?:page|p\.|pp\.)\s*\d+(?:\s*(?:of|/)\s*\d+)?"  # Page 3, Page 3 of 4, p. 3
    r"|[-–—]\s*\d+\s*[-–—]"  # - 3 -, – 3 –
    r"|第\s*\d+\s*页(?:\s*[,，/]?\s*共\s*\d+\s*页)?|共\s*\d+\s*页\s*[,，/]?\s*第\s*\d+\s*页",  # 第 3 页 共 4 页
    re.IGNORECASE)


def _key(line: str, number: int) -> str:
    """A line as compared across pages: digits masked, blanks removed (extraction spaces CJK text
    unevenly: "2018 年" and "2018年"), case folded. A bare number is keyed by its offset from the page
    number, so only a page number (printed page = PDF page + a constant) repeats, not a number that
    ends a table on many pages."""
    line = line.strip()
    if line.isdigit() and len(line) < 6:
        return f"{_PAGE_NUMBER_KEY}{int(line) - number:+d}"
    return _BLANKS.sub("", _DIGITS.sub("#", line)).casefold()


def _edges(text: str, edge: int) -> tuple[list[str], list[str]]:
    """The first and the last ``edge`` non-blank lines of a page, top-down and bottom-up."""
    lines = [line for line in text.split("\n") if line.strip()]
    return lines[:edge], lines[::-1][:edge]


def _repeated(pages: Sequence[Page], edge: int, share: float) -> tuple[set[str], set[str]]:
    """Keys of the lines repeated in the top and in the bottom zone of at least ``share`` of the pages.

    Page numbers count in either zone: extraction order puts one at the top of some pages and at
    the bottom of others (a table page), and their offset key already makes them specific.
    """
    top: Counter[str] = Counter()
    bottom: Counter[str] = Counter()
    numbers: Counter[str] = Counter()
    texts = [page for page in pages if page.text.strip()]
    for page in texts:
        head, foot = ({_key(line, page.number) for line in zone} for zone in _edges(page.text, edge))
        top.update(head)
        bottom.update(foot)
        numbers.update(k for k in head | foot if k.startswith(_PAGE_NUMBER_KEY))
    need = max(2, math.ceil(share * len(texts)))
    common = {k for k, n in numbers.items() if n >= need}
    return {k for k, n in top.items() if n >= need} | common, {k for k, n in bottom.items() if n >= need} | common


def _peel(lines: list[str], number: int, keys: set[str], edge: int) -> int:
    """How many lines to cut from the start of ``lines``: furniture lines (and blank lines between
    them) up to the first body line, at most ``edge`` non-blank ones."""
    cut = seen = 0
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        if seen == edge or not (_key(line, number) in keys or _PAGE_NUMBER.fullmatch(line.strip())):
            break
        seen, cut = seen + 1, i + 1
    return cut


def strip_furniture(pages: Sequence[Page], *, min_pages: int = MIN_PAGES, share: float = MIN_SHARE,
                    edge: int = EDGE_LINES) -> tuple[tuple[Page, ...], tuple[str, ...]]:
    """Remove running headers, footers and page numbers; returns (pages, the removed lines in order).

    Pages keep their number and ``ocr`` flag; their text loses the furniture lines at its top and
    bottom and the blank lines around them. Documents with fewer than ``min_pages`` pages come back
    unchanged. Raises nothing.

    >>> bodies = ["Open the lid and", "remove the filter.", "Rinse it in water."]
    >>> pages = [Page(n, f"ACME MANUAL - CONFIDENTIAL\\n{body}\\nPage {n} of 3") for n, body in enumerate(bodies, 1)]
    >>> kept, removed = strip_furniture(pages)
    >>> [page.text for page in kept]
    ['Open the lid and', 'remove the filter.', 'Rinse it in water.']
    >>> removed[:2]
    ('ACME MANUAL - CONFIDENTIAL', 'Page 1 of 3')
    >>> strip_furniture(pages[:2])[1]
    ()
    """
    if len(pages) < min_pages:
        return tuple(pages), ()
    top, bottom = _repeated(pages, edge, share)
    kept: list[Page] = []
    removed: list[str] = []
    for page in pages:
        text, cut = _strip_page(page, top, bottom, edge)
        kept.append(replace(page, text=text) if cut else page)
        removed += cut
    return tuple(kept), tuple(removed)


def _strip_page(page: Page, top: set[str], bottom: set[str], edge: int) -> tuple[str, list[str]]:
    """A page's text without its furniture, and the furniture lines cut from it, top first."""
    lines = page.text.split("\n")
    head = _peel(lines, page.number, top, edge)
    foot = _peel(lines[head:][::-1], page.number, bottom, edge)
    removed = [line for line in lines[:head] if line.strip()]
    below = [line for line in lines[len(lines) - foot:] if line.strip()]
    body = "\n".join(lines[head:len(lines) - foot]).strip().split("\n")
    cut = _run_together(body[0], page.number, top, from_end=False)
    if cut:
        removed.append(body[0][:cut].strip())
        body[0] = body[0][cut:].strip()
    cut = _run_together(body[-1], page.number, bottom, from_end=True)
    if cut:
        below.insert(0, body[-1][-cut:].strip())
        body[-1] = body[-1][:-cut].strip()
    return "\n".join(body).strip(), removed + below


def _run_together(line: str, number: int, keys: set[str], *, from_end: bool) -> int:
    """Characters of furniture that extraction ran together with the body text of ``line``, at its
    start (or end, ``from_end``): "ACME MANUAL – CONFIDENTIAL1 Introduction" when the header and a
    heading share a baseline; 0 when none. Only furniture of ``MIN_RUN_TOGETHER`` characters or
    more is cut off, so a short repeated word never cuts a body line."""
    long = {k for k in keys if len(k) >= MIN_RUN_TOGETHER and not k.startswith(_PAGE_NUMBER_KEY)}
    whole = _key(line, number)
    if not any(whole.endswith(k) if from_end else whole.startswith(k) for k in long if k != whole):
        return 0
    for size in range(len(line) - 1, 0, -1):  # the longest furniture part: no digit of it left behind
        if _key(line[-size:] if from_end else line[:size], number) in long:
            return size
    return 0
