"""Which numbered sources an answer cited, mapped back to document and page.

The one rule of what a citation mark is (:data:`CITATION_MARK`), used to read marks here, to
strip them from past answers (:func:`strip_citations`, for prompts and training data) and to drop
them before scoring answers (``assistant.evaluation.metrics``): ``[1]``, ``[1, 2]``, ``[1][2]``,
``[1-3]``, ``[1~3]``, ``【1】``, ``【1，2】``, ``［１］`` (full-width brackets, digits and signs too);
items are separated by ``, ， 、 ; ；``. Numbers outside 1..len(sources) are not cited (e.g. a year
in brackets), but the mark is still stripped.

>>> cited_numbers("Thirty days [2][1], see also 【3，1】 and [2024].", n_sources=3)
[2, 1, 3]
"""
from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING, Sequence

from assistant.records import Citation

if TYPE_CHECKING:
    from index.records import Hit

_SEP = r"\s*[,，、;；]\s*"  # between items: "[1, 2]", "【1，2】"
_RANGE = r"\s*[-–~－～]\s*"  # inside an item: "[1-3]" is sources 1 to 3
_ITEM = rf"\d+(?:{_RANGE}\d+)?"  # \d: any Unicode digit, full-width ones too
CITATION_MARK = re.compile(rf"[\[【［]\s*({_ITEM}(?:{_SEP}{_ITEM})*)\s*[\]】］]")
_MARK_AND_SPACE = re.compile(rf"\s?{CITATION_MARK.pattern}")
_MAX_RANGE = 50  # a longer range "[1-9999]" is not a citation


def cited_numbers(text: str, n_sources: int) -> list[int]:
    """Distinct source numbers cited in ``text``, in order of first appearance."""
    seen: list[int] = []
    for match in CITATION_MARK.finditer(unicodedata.normalize("NFKC", text)):
        for item in re.split(_SEP, match.group(1)):
            bounds = [int(x) for x in re.split(_RANGE, item.strip())]
            lo, hi = bounds[0], bounds[-1]
            numbers = range(lo, hi + 1) if 0 <= hi - lo <= _MAX_RANGE else [lo, hi]
            seen += [n for n in numbers if 1 <= n <= n_sources and n not in seen]
    return seen


def strip_citations(text: str) -> str:
    """``text`` without its citation marks (and the one blank before each).

    Past answers' [n] marks refer to older sources: removed so they cannot be confused with new ones.

    >>> strip_citations("Thirty days [1][2], or 60 【3】.")
    'Thirty days, or 60.'
    """
    return _MARK_AND_SPACE.sub("", text)


def extract_citations(text: str, sources: Sequence["Hit"]) -> tuple[Citation, ...]:
    """The citations of ``text``: each cited [n] mapped to ``sources[n-1]`` (doc, page, snippet).

    >>> from index.records import Hit
    >>> hits = [Hit(str(i), f"text {i}", 1.0, "sha", f"doc{i}", f"doc{i}.pdf", i, i, 0, 6) for i in (1, 2)]
    >>> [(c.number, c.title, c.page) for c in extract_citations("Yes [2].", hits)]
    [(2, 'doc2', 2)]
    """
    return tuple(Citation.from_hit(n, sources[n - 1]) for n in cited_numbers(text, len(sources)))


def all_citations(sources: Sequence["Hit"]) -> tuple[Citation, ...]:
    """Every source as a citation (retrieval-only answers list them all)."""
    return tuple(Citation.from_hit(n, hit) for n, hit in enumerate(sources, 1))
