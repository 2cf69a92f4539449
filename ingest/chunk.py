"""Pages -> chunks of at most ``max_tokens`` embedder tokens, cut at sentence boundaries.

Pages are joined with "\\n" into one text, so chunks may cross pages. The text is cut into
sentences (Chinese 。！？； and English . ! ? before a blank, plus paragraph breaks); a sentence over
the budget is cut at line breaks, then clause punctuation (，、；：,;:), then blanks, then between
characters (never inside a combining sequence). Each piece is counted once with ``count_tokens``;
chunks are packed greedily from those counts and every chunk is checked (and shrunk if needed)
with one more ``count_tokens`` call, so the limit holds exactly for the real tokenizer.
"""
from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from common import cjk
from ingest.records import Chunk, Page

MIN_ROOM = 8  # tokens of text a chunk must be able to hold beyond the embedder's fixed tokens
_CLOSERS = "\"'”’」』）》〉】)\\]"
MAX_TOKENS = 500  # a chunk's embedder tokens (prefix and special tokens included), ~ one page
OVERLAP = 50  # embedder tokens shared by consecutive chunks (whole sentences)
_ZH_END = re.compile(f"[。！？；]+[{_CLOSERS}]*|(?<=[{cjk.SPACELESS}])[!?;]+[{_CLOSERS}]*")
_EN_END = re.compile(f"[.!?]+[{_CLOSERS}]*(?=\\s)")
_PARAGRAPH = re.compile(r"\n[ \t]*\n")
_WORD_BEFORE = re.compile(r"(\w+(?:\.\w+)*)\.*$")
_ABBREVIATIONS = {"e.g", "i.e", "cf", "vs", "al", "fig", "figs", "eq", "eqs", "sec", "no", "nos", "mr",
                  "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vol", "pp", "ch", "approx", "inc", "ltd"}
# Where an over-long sentence may be cut, in order of preference (the cut goes after the match).
_SPLITTERS = (re.compile(r"\n"), re.compile(r"[，、；：]|[,;:](?=\s)"), re.compile(r"\s+"))


@dataclass(frozen=True)
class _Piece:
    start: int  # offsets into the joined text; the piece has no blank at either end
    end: int
    cost: int  # tokens it adds to a passage (its own count less the embedder's fixed tokens)


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _abbreviation(text: str, dot: int) -> bool:
    """True when the "." at ``dot`` ends an abbreviation ("e.g.", "Fig.") or an initial ("J.")."""
    match = _WORD_BEFORE.search(text, max(0, dot - 24), dot)
    if not match:
        return False
    word = match.group(1)
    return word.lower() in _ABBREVIATIONS or (len(word) == 1 and word.isupper())


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of ``text``, without surrounding blanks.

    >>> t = "第一句。第二句！Dr. Smith came. Fig. 2 shows it!\\n\\nNew paragraph"
    >>> [t[s:e] for s, e in sentence_spans(t)]
    ['第一句。', '第二句！', 'Dr. Smith came.', 'Fig. 2 shows it!', 'New paragraph']
    """
    cuts = {0, len(text)}
    cuts.update(m.end() for m in _ZH_END.finditer(text))
    cuts.update(m.end() for m in _PARAGRAPH.finditer(text))
    for m in _EN_END.finditer(text):
        if not (text[m.start()] == "." and m.end() - m.start() == 1 and _abbreviation(text, m.start())):
            cuts.add(m.end())
    spans = []
    ordered = sorted(cuts)
    for a, b in zip(ordered, ordered[1:]):
        s, e = _strip(text, a, b)
        if s < e:
            spans.append((s, e))
    return spans


def _extends(ch: str) -> bool:
    """Characters that belong to the preceding character (accents, joiners, variation selectors)."""
    return (unicodedata.category(ch) in ("Mn", "Mc", "Me") or ch == "\u200d"
            or "\ufe00" <= ch <= "\ufe0f" or "\U0001f3fb" <= ch <= "\U0001f3ff")


class _Cutter:
    """Cuts spans of ``text`` into pieces whose own token count is at most ``max_tokens``."""

    def __init__(self, text: str, count: Callable[[str], int], max_tokens: int, fixed: int) -> None:
        self.text, self.count, self.max_tokens, self.fixed = text, count, max_tokens, fixed

    def pieces(self, start: int, end: int, level: int = 0) -> list[_Piece]:
        tokens = self.count(self.text[start:end])
        if tokens <= self.max_tokens:
            return [_Piece(start, end, max(1, tokens - self.fixed))]
        if level == len(_SPLITTERS):
            return self._by_characters(start, end)
        cuts = [m.end() for m in _SPLITTERS[level].finditer(self.text, start, end)]
        out: list[_Piece] = []
        for a, b in zip([start, *cuts], [*cuts, end]):
            s, e = _strip(self.text, a, b)
            if s < e:
                out += self.pieces(s, e, level + 1)
        return out

    def _fits(self, start: int, end: int) -> bool:
        return self.count(self.text[start:end]) <= self.max_tokens

    def _by_characters(self, start: int, end: int) -> list[_Piece]:
        out = []
        while start < end:
            lo, hi = start + 1, min(end, start + 16 * self.max_tokens)  # tokens are < 16 chars
            if not self._fits(start, lo):
                raise ValueError(f"max_tokens={self.max_tokens} cannot hold even the character "
                                 f"{self.text[start]!r}; raise max_tokens")
            while lo < hi:  # longest prefix that fits
                mid = (lo + hi + 1) // 2
                lo, hi = (mid, hi) if self._fits(start, mid) else (lo, mid - 1)
            cut = lo
            while cut > start + 1 and cut < end and _extends(self.text[cut]):
                cut -= 1  # never separate a mark or joiner from its base character
            s, e = _strip(self.text, start, cut)
            if s < e:
                out.append(_Piece(s, e, max(1, self.count(self.text[s:e]) - self.fixed)))
            start = cut
        return out


def _fixed_tokens(count: Callable[[str], int]) -> int:
    """Tokens the embedder adds to every passage (prefix, special tokens), estimated as
    2*count("word") - count("word word"); bounded by count("")."""
    return max(0, min(count(""), 2 * count("word") - count("word word")))


def _validate(max_tokens: int, overlap: int, count: Callable[[str], int]) -> None:
    for name, value in (("max_tokens", max_tokens), ("overlap", overlap)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{name}={value!r} must be an integer")
    if overlap < 0:
        raise ValueError(f"overlap={overlap} must be >= 0")
    if max_tokens <= overlap:
        raise ValueError(f"max_tokens={max_tokens} must be larger than overlap={overlap}")
    if not callable(count):
        raise ValueError(f"count_tokens={count!r} must be a function str -> int")
    empty = count("")
    if max_tokens < empty + MIN_ROOM:
        raise ValueError(f"max_tokens={max_tokens} leaves no room for text: the embedder adds {empty} "
                         f"tokens (prefix, special tokens) to every passage; use at least {empty + MIN_ROOM}")


def _pack(text: str, pieces: list[_Piece], max_tokens: int, overlap: int, fixed: int,
          count: Callable[[str], int]) -> list[tuple[int, int]]:
    """Group pieces into chunks [first, end) of at most ``max_tokens`` (checked with ``count``)."""
    groups: list[tuple[int, int]] = []
    first = new = 0  # first piece of the chunk (overlap included); first piece not yet chunked
    while new < len(pieces):
        total = fixed + sum(p.cost for p in pieces[first:new])
        while first < new and total + pieces[new].cost > max_tokens:
            total -= pieces[first].cost  # overlap that leaves no room goes first
            first += 1
        end = new
        while end < len(pieces) and (end == new or total + pieces[end].cost <= max_tokens):
            total += pieces[end].cost
            end += 1
        while (excess := count(text[pieces[first].start:pieces[end - 1].end]) - max_tokens) > 0:
            if end - 1 > new:  # drop the newest pieces worth about the excess
                dropped = 0
                while dropped < excess and end - 1 > new:
                    end -= 1
                    dropped += pieces[end].cost
            elif first < new:
                first += 1
            else:  # a single piece: fits by construction
                raise AssertionError("count_tokens is not deterministic")
        groups.append((first, end))
        new = first = end
        budget = overlap  # whole trailing pieces, never the chunk's first one
        while first - 1 > groups[-1][0] and pieces[first - 1].cost <= budget:
            first -= 1
            budget -= pieces[first].cost
    return groups


def chunk_pages(pages: Sequence[Page], *, doc_sha256: str, max_tokens: int = MAX_TOKENS, overlap: int = OVERLAP,
                count_tokens: Callable[[str], int]) -> list[Chunk]:
    """Cut pages into chunks with ``count_tokens(chunk.text) <= max_tokens`` for every chunk.

    ``count_tokens`` is the embedder's own count of a passage as embedded (prefix such as e5's
    "passage: " and special tokens included). Consecutive chunks share whole trailing sentences
    worth at most ``overlap`` tokens (as counted sentence by sentence). Chunks record where they
    lie: ``page_start``/``char_start`` and ``page_end``/``char_end`` (exclusive) index the pages'
    texts, and the chunk text is those slices joined with "\\n". Raises ValueError for bad values.

    >>> pages = [Page(1, "One two three. Four five six seven."), Page(2, "Eight nine ten."), Page(3, " ")]
    >>> words = lambda text: len(text.split()) + 1  # a fake embedder adding 1 token
    >>> chunks = chunk_pages(pages, doc_sha256="d", max_tokens=14, overlap=0, count_tokens=words)
    >>> [(c.text, c.page_start, c.char_start, c.page_end, c.char_end) for c in chunks]
    [('One two three. Four five six seven.\\nEight nine ten.', 1, 0, 2, 15)]
    >>> chunks = chunk_pages(pages, doc_sha256="d", max_tokens=9, overlap=4, count_tokens=words)
    >>> [c.text for c in chunks]
    ['One two three. Four five six seven.', 'Four five six seven.\\nEight nine ten.']
    """
    _validate(max_tokens, overlap, count_tokens)
    text = "\n".join(page.text for page in pages)
    offsets = []
    position = 0
    for page in pages:
        offsets.append(position)
        position += len(page.text) + 1
    fixed = _fixed_tokens(count_tokens)
    cutter = _Cutter(text, count_tokens, max_tokens, fixed)
    pieces = [piece for s, e in sentence_spans(text) for piece in cutter.pieces(s, e)]
    chunks = []
    for ordinal, (first, end) in enumerate(_pack(text, pieces, max_tokens, overlap, fixed, count_tokens)):
        start, stop = pieces[first].start, pieces[end - 1].end
        p0 = bisect.bisect_right(offsets, start) - 1
        p1 = bisect.bisect_right(offsets, stop - 1) - 1
        chunks.append(Chunk(doc_sha256=doc_sha256, ordinal=ordinal, text=text[start:stop],
                            page_start=pages[p0].number, page_end=pages[p1].number,
                            char_start=start - offsets[p0], char_end=stop - offsets[p1],
                            ocr=any(page.ocr for page in pages[p0:p1 + 1])))
    return chunks
