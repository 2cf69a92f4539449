"""Which numbered sources an answer cited, mapped back to document and page.

The one rule of what a citation mark is (:data:`CITATION_MARK`), used to read marks here, to
strip them from past answers (:func:`strip_citations`, for prompts and training data) and to drop
them before scoring answers (``assistant.evaluation.metrics``): ``[1]``, ``[1, 2]``, ``[1][2]``,
``[1-3]``, ``[1~3]``, ``【1】``, ``【1，2】``, ``［１］`` (full-width brackets, digits and signs too);
items are separated by ``, ， 、 ; ；``; digits may be any Unicode decimal digits (``[١]``).
Numbers outside 1..len(sources) are not cited (e.g. a year in brackets), but the mark is still
stripped.

>>> cited_numbers("Thirty days [2][1], see also 【3，1】 and [2024].", n_sources=3)
[2, 1, 3]

In a model's answer a mark naming a number above len(sources) points at nothing: :class:`CitationFilter`
(streamed pieces) and :func:`clean_citations` (whole text) remove those numbers, and the mark when
none is left, and report them. A mark naming 0 (``array[0]``, ``[0, 1]``) is not a citation and stays.

>>> clean_citations("A restocking fee [7]. Refunded in full [2][9], 【1，9】.", n_sources=3)
('A restocking fee. Refunded in full [2], 【1】.', (7, 9))
"""
from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING, Sequence

from assistant.records import Answer, Citation

if TYPE_CHECKING:
    from index.records import Hit

_SEP = r"\s*[,，、;；]\s*"  # between items: "[1, 2]", "【1，2】"
_RANGE = r"\s*[-–~－～]\s*"  # inside an item: "[1-3]" is sources 1 to 3
_ITEM = rf"\d+(?:{_RANGE}\d+)?"  # \d: any Unicode digit, full-width ones too
CITATION_MARK = re.compile(rf"[\[【［]\s*({_ITEM}(?:{_SEP}{_ITEM})*)\s*[\]】］]")
_MARK_AND_SPACE = re.compile(rf"\s?{CITATION_MARK.pattern}")
_MAX_RANGE = 50  # a longer range "[1-9999]" is not a citation
_BLANK_AND_MARK = re.compile(rf"([ \t\u3000]?)({CITATION_MARK.pattern})")  # removed with the one blank before it
_MARK_START = re.compile(r"[\[【［][\d\s,，、;；\-–~－～]*")  # all a mark can hold before its closing bracket
_OPENERS = "[【［"


def item_numbers(item: str) -> list[int]:
    """The source numbers of one item of a mark: ``"3"`` -> [3], ``"1-3"`` -> [1, 2, 3] (any Unicode digits).

    >>> item_numbers("２－４"), item_numbers("١"), item_numbers("1-9999")
    ([2, 3, 4], [1], [1, 9999])
    """
    bounds = [int(x) for x in re.split(_RANGE, item.strip())]  # int() reads every Unicode decimal digit
    lo, hi = bounds[0], bounds[-1]
    return list(range(lo, hi + 1)) if 0 <= hi - lo <= _MAX_RANGE else [lo, hi]


def cited_numbers(text: str, n_sources: int) -> list[int]:
    """Distinct source numbers cited in ``text``, in order of first appearance."""
    seen: list[int] = []
    for match in CITATION_MARK.finditer(unicodedata.normalize("NFKC", text)):
        for item in re.split(_SEP, match.group(1)):
            seen += [n for n in item_numbers(item) if 1 <= n <= n_sources and n not in seen]
    return seen


class CitationFilter:
    """Removes citation marks that name no source from streamed answer text, and lists them.

    ``feed(piece)`` returns the text that is now final; a trailing blank, ``[`` or ``【`` and the
    digits after it are held until the mark is complete or proven not a mark; ``finish()`` flushes.
    The returned pieces join to :attr:`text`, which equals the whole text filtered at once.
    A number above ``n_sources`` is dropped from its mark (``[1, 9]`` -> ``[1]``), and a mark left
    with no number is removed with the one blank before it; marks with a 0 are left alone.

    >>> f = CitationFilter(n_sources=2)
    >>> [f.feed(p) for p in ["A fee [", "7", "]. In full [2", "][9", "]."]] + [f.finish()]
    ['A fee', '', '. In full', ' [2]', '.', '']
    >>> f.text, f.unknown
    ('A fee. In full [2].', (7, 9))
    """

    def __init__(self, n_sources: int) -> None:
        self.n_sources = n_sources
        self.held = ""  # raw text that may still change: a blank or the start of a mark
        self.pending = ""  # filtered whitespace that waits for what follows it
        self.parts: list[str] = []
        self._unknown: list[int] = []

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def unknown(self) -> tuple[int, ...]:
        """Distinct numbers that named no source, in order of first appearance."""
        return tuple(self._unknown)

    def feed(self, piece: str) -> str:
        text = self.held + piece
        cut = _hold_from(text)
        self.held = text[cut:]
        return self._emit(text[:cut])

    def finish(self) -> str:
        """The held rest (trailing whitespace dropped); call once, after the last piece."""
        text, self.held = self.held, ""
        out = self._emit(text)
        self.pending = ""
        return out

    def _emit(self, text: str) -> str:
        out = self.pending + _BLANK_AND_MARK.sub(self._fix, text)
        body = out.rstrip()
        self.pending = out[len(body):]
        if not self.parts:
            body = body.lstrip()
        if body:
            self.parts.append(body)
        return body

    def _fix(self, match: re.Match) -> str:
        """One mark as it stays: unchanged, without its unknown numbers, or gone ("")."""
        blank, mark, inside = match.groups()
        items = re.split(_SEP, inside.strip())
        numbers = [n for item in items for n in item_numbers(item)]
        if 0 in numbers or all(n <= self.n_sources for n in numbers):
            return match.group(0)
        self._unknown += [n for n in numbers if n > self.n_sources and n not in self._unknown]
        kept: list[str] = []
        for item in items:
            known = [n for n in item_numbers(item) if n <= self.n_sources]
            kept += [item.strip()] if len(known) == len(item_numbers(item)) else [str(n) for n in known]
        if not kept:
            return ""
        sep = re.search(_SEP, inside)
        return f"{blank}{mark[0]}{(sep.group(0) if sep else ', ').join(kept)}{mark[-1]}"


def _hold_from(text: str) -> int:
    """Where the part of ``text`` that may still change begins: the blank and start of an open mark, or trailing
    whitespace."""
    start = max(text.rfind(c) for c in _OPENERS)
    if start >= 0 and _MARK_START.fullmatch(text, start):
        return start - 1 if start > 0 and text[start - 1] in " \t\u3000" else start
    return len(text.rstrip())


def clean_citations(text: str, n_sources: int) -> tuple[str, tuple[int, ...]]:
    """(``text`` without marks that name no source, the numbers removed): :class:`CitationFilter` at once.

    >>> clean_citations("见【١】与[1-3]；array[0] 与 [2024]。", n_sources=2)
    ('见【١】与[1, 2]；array[0] 与。', (3, 2024))
    """
    marks = CitationFilter(n_sources)
    marks.feed(text)
    marks.finish()
    return marks.text, marks.unknown


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


def citation_notes(answer: Answer) -> list[str]:
    """What a reader should know about an answer's citations (and whether it was cut off at the token
    limit), as sentences (the CLI and the UI show them).

    >>> citation_notes(Answer(text="Yes.", unknown_citations=(7, 9)))
    ['[7] and [9] named no source and were removed']
    >>> citation_notes(Answer(text="Yes.", cited_nothing=True, unknown_citations=(4,)))
    ['[4] named no source and was removed', 'the answer cites none of its sources: check it against them']
    >>> citation_notes(Answer(text="The fee is", finish_reason="length"))
    ['the answer was cut off at the token limit (--max-new-tokens): it may be incomplete']
    """
    notes = []
    marks = [f"[{n}]" for n in answer.unknown_citations]
    if marks:
        named = marks[0] if len(marks) == 1 else ", ".join(marks[:-1]) + f" and {marks[-1]}"
        notes.append(f"{named} named no source and {'was' if len(marks) == 1 else 'were'} removed")
    if answer.cited_nothing:
        notes.append("the answer cites none of its sources: check it against them")
    if answer.finish_reason == "length":
        notes.append("the answer was cut off at the token limit (--max-new-tokens): it may be incomplete")
    return notes
