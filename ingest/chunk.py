"""Pages -> chunks of at most ``max_tokens`` embedder tokens, cut at sentence boundaries.

Pages are joined with "\\n" into one text, so chunks may cross pages. The text is cut into
sentences (Chinese 。！？； and English . ! ? before a blank, plus paragraph breaks); a sentence over
the budget is cut at line breaks, then clause punctuation (，、；：,;:), then blanks, then between
characters (never inside a combining sequence). Each piece is counted once with ``count_tokens``;
chunks are packed greedily from those counts and every chunk is checked (and shrunk if needed)
with one more ``count_tokens`` call, so the limit holds exactly for the real tokenizer.

Markdown tables (a ``| ... |`` header line, a ``|---|`` separator line, rows of ``| ... |`` lines,
as ``ingest.tables`` writes a PDF's tables) are cut between rows, never inside a row that fits,
and a chunk that starts inside a table's rows begins with the table's header and separator lines,
so every part of a split table says what its columns are. Those two repeated lines are counted
in the chunk's budget but are not part of its span (see ``chunk_pages``). A table whose header is
empty (one that goes on from the page before) repeats the header of the table just before it when
both have as many columns and at most ``CONTINUED_GAP_LINES`` lines (a page's running header and
footer) stand between them.
"""
from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

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
_TABLE_SEPARATOR = re.compile(r"\|(?:[ \t]*:?-{3,}:?[ \t]*\|)+")
CONTINUED_GAP_LINES = 3  # lines between two parts of one table split by a page break


@dataclass(frozen=True)
class _Piece:
    start: int  # offsets into the joined text; the piece has no blank at either end
    end: int
    cost: int  # tokens it adds to a passage (its own count less the embedder's fixed tokens)
    table: int = -1  # index of the table whose row (or part of a row) this is; -1: none


@dataclass(frozen=True)
class MarkdownTable:
    """A Markdown table of the joined text: header and separator lines, then its rows."""

    start: int  # where the header line starts
    head_end: int  # where the separator line ends
    rows: tuple[tuple[int, int], ...]  # each row line, without surrounding blanks
    columns: int
    head: str  # header + "\n" + separator, as a chunk repeats them; "" when the header is empty


@dataclass(frozen=True)
class _Head:
    text: str  # the lines a chunk starting inside the table's rows begins with
    cost: int


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


def _line_spans(text: str) -> list[tuple[int, int]]:
    spans, position = [], 0
    for line in text.split("\n"):
        spans.append((position, position + len(line)))
        position += len(line) + 1
    return spans


def markdown_tables(text: str) -> list[MarkdownTable]:
    """The Markdown tables of ``text``: a ``|`` line, a ``|---|`` line, then ``|`` lines.

    >>> t = "Prices\\n| Part | Price |\\n|---|---|\\n| Bolt | 0.10 |\\n| Nut | 0.05 |\\nEnd."
    >>> [(table.head, [t[s:e] for s, e in table.rows]) for table in markdown_tables(t)]
    [('| Part | Price |\\n|---|---|', ['| Bolt | 0.10 |', '| Nut | 0.05 |'])]
    >>> [(table.head, len(table.rows)) for table in markdown_tables(t[:-4] + "|  |  |\\n|---|---|\\n| Pin | 0.01 |")]
    [('| Part | Price |\\n|---|---|', 2), ('', 1)]
    """
    lines = _line_spans(text)
    row = [text[s:e].strip().startswith("|") for s, e in lines]
    rule = [bool(_TABLE_SEPARATOR.fullmatch(text[s:e].strip())) for s, e in lines] + [False]
    tables, i = [], 0
    while i + 1 < len(lines):
        if not (row[i] and rule[i + 1]):
            i += 1
            continue
        j = i + 2
        while j < len(lines) and row[j] and not rule[j + 1]:  # up to the next table's header
            j += 1
        separator = text[lines[i + 1][0]:lines[i + 1][1]].strip()
        header = text[lines[i][0]:lines[i][1]].strip()
        head = f"{header}\n{separator}" if header.replace("|", "").strip() else ""
        rows = tuple(_strip(text, *lines[k]) for k in range(i + 2, j))
        tables.append(MarkdownTable(lines[i][0], lines[i + 1][1], rows, separator.count("|") - 1, head))
        i = j
    return tables


def _heads(text: str, tables: list[MarkdownTable], count: Callable[[str], int], fixed: int,
           max_tokens: int) -> list[_Head | None]:
    """What a chunk starting inside each table's rows begins with: its header and separator, or
    for a table with an empty header that goes on from the table before, that table's; None when
    there is none or it would take over half the room of a chunk."""
    heads: list[_Head | None] = []
    for k, table in enumerate(tables):
        head: _Head | None = None
        if table.head:
            head = _Head(table.head, count(table.head) - fixed)
        elif k and tables[k - 1].columns == table.columns:
            gap = text[(tables[k - 1].rows or [(0, tables[k - 1].head_end)])[-1][1]:table.start]
            if len([line for line in gap.split("\n") if line.strip()]) <= CONTINUED_GAP_LINES:
                head = heads[k - 1]
        heads.append(head if head is not None and head.cost <= (max_tokens - fixed) // 2 else None)
    return heads


def _spans(text: str, tables: list[MarkdownTable]) -> list[tuple[int, int, int]]:
    """(start, end, table) of every sentence, table header and table row (table = -1 outside
    rows). An empty header is no span: it holds no words."""
    spans: list[tuple[int, int, int]] = []
    position = 0
    for k, table in enumerate(tables):
        spans += [(position + s, position + e, -1) for s, e in sentence_spans(text[position:table.start])]
        if table.head:
            spans.append((*_strip(text, table.start, table.head_end), -1))
        spans += [(s, e, k) for s, e in table.rows]
        position = table.rows[-1][1] if table.rows else table.head_end
    return spans + [(position + s, position + e, -1) for s, e in sentence_spans(text[position:])]


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


def _head_cost(head: _Head | None) -> int:
    return head.cost + 1 if head else 0  # + the line break after it


class _Packer:
    """Groups pieces into chunks (first, end, head) whose text, ``head + "\\n" + pieces`` (pieces
    alone when head is ""), counts at most ``max_tokens`` (each chunk checked with ``count``)."""

    def __init__(self, text: str, pieces: list[_Piece], heads: list[_Head | None], max_tokens: int,
                 fixed: int, count: Callable[[str], int]) -> None:
        self.text, self.pieces, self.heads = text, pieces, heads
        self.max_tokens, self.fixed, self.count = max_tokens, fixed, count

    def head_of(self, i: int) -> _Head | None:
        """What a chunk starting with piece ``i`` repeats: its table's header, if it is a row."""
        table = self.pieces[i].table
        return self.heads[table] if table >= 0 else None

    def text_of(self, first: int, end: int, head: _Head | None) -> str:
        body = self.text[self.pieces[first].start:self.pieces[end - 1].end]
        return f"{head.text}\n{body}" if head else body

    def pack(self, overlap: int) -> list[tuple[int, int, str]]:
        pieces, max_tokens, cost = self.pieces, self.max_tokens, _head_cost
        groups: list[tuple[int, int, str]] = []
        first = new = 0  # first piece of the chunk (overlap included); first piece not yet chunked
        while new < len(pieces):
            total = self.fixed + sum(p.cost for p in pieces[first:new])
            while first < new and total + cost(self.head_of(first)) + pieces[new].cost > max_tokens:
                total -= pieces[first].cost  # overlap that leaves no room goes first
                first += 1
            head = self.head_of(first)
            if total + cost(head) + pieces[new].cost > max_tokens:
                head = None  # a row that fits alone is never cut to make room for the header
            total += cost(head)
            end = new
            while end < len(pieces) and (end == new or total + pieces[end].cost <= max_tokens):
                total += pieces[end].cost
                end += 1
            first, end, head = self.shrink(first, new, end, head)
            groups.append((first, end, head.text if head else ""))
            new = first = end
            budget = overlap  # whole trailing pieces, never the chunk's first one
            while first - 1 > groups[-1][0] and pieces[first - 1].cost <= budget:
                first -= 1
                budget -= pieces[first].cost
        return groups

    def shrink(self, first: int, new: int, end: int, head: _Head | None) -> tuple[int, int, _Head | None]:
        """Drop newest pieces, then overlap, then the repeated header until the real count fits."""
        while (excess := self.count(self.text_of(first, end, head)) - self.max_tokens) > 0:
            if end - 1 > new:  # drop the newest pieces worth about the excess
                dropped = 0
                while dropped < excess and end - 1 > new:
                    end -= 1
                    dropped += self.pieces[end].cost
            elif first < new:
                first += 1
                head = self.head_of(first)
            elif head is not None:
                head = None
            else:  # a single piece: fits by construction
                raise AssertionError("count_tokens is not deterministic")
        return first, end, head


def chunk_pages(pages: Sequence[Page], *, doc_sha256: str, max_tokens: int = MAX_TOKENS, overlap: int = OVERLAP,
                count_tokens: Callable[[str], int]) -> list[Chunk]:
    """Cut pages into chunks with ``count_tokens(chunk.text) <= max_tokens`` for every chunk.

    ``count_tokens`` is the embedder's own count of a passage as embedded (prefix such as e5's
    "passage: " and special tokens included). Consecutive chunks share whole trailing sentences
    worth at most ``overlap`` tokens (as counted sentence by sentence). Chunks record where they
    lie: ``page_start``/``char_start`` and ``page_end``/``char_end`` (exclusive) index the pages'
    texts, and the chunk text is those slices joined with "\\n". Markdown tables are cut between
    rows; a chunk whose span starts inside a table's rows begins with the table's header line and
    separator line, then "\\n", then the slices: those two lines (counted in ``max_tokens``) are an
    addition, not part of the span, so the span's text is the chunk text less its first two lines
    exactly when it starts with them and the page text at ``char_start`` does not. Raises
    ValueError for bad values.

    >>> pages = [Page(1, "One two three. Four five six seven."), Page(2, "Eight nine ten."), Page(3, " ")]
    >>> words = lambda text: len(text.split()) + 1  # a fake embedder adding 1 token
    >>> chunks = chunk_pages(pages, doc_sha256="d", max_tokens=14, overlap=0, count_tokens=words)
    >>> [(c.text, c.page_start, c.char_start, c.page_end, c.char_end) for c in chunks]
    [('One two three. Four five six seven.\\nEight nine ten.', 1, 0, 2, 15)]
    >>> chunks = chunk_pages(pages, doc_sha256="d", max_tokens=9, overlap=4, count_tokens=words)
    >>> [c.text for c in chunks]
    ['One two three. Four five six seven.', 'Four five six seven.\\nEight nine ten.']
    >>> rows = "\\n".join(f"| p{i} | {i}.00 |" for i in range(4))
    >>> chunks = chunk_pages([Page(1, "| Part | Price |\\n|---|---|\\n" + rows)], doc_sha256="d", max_tokens=18,
    ...                      overlap=0, count_tokens=words)
    >>> [c.text for c in chunks]  # doctest: +NORMALIZE_WHITESPACE
    ['| Part | Price |\\n|---|---|\\n| p0 | 0.00 |\\n| p1 | 1.00 |',
     '| Part | Price |\\n|---|---|\\n| p2 | 2.00 |\\n| p3 | 3.00 |']
    >>> [(c.char_start, c.char_end) for c in chunks]
    [(0, 54), (55, 82)]
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
    tables = markdown_tables(text)
    heads = _heads(text, tables, count_tokens, fixed, max_tokens)
    pieces = [replace(piece, table=table) for s, e, table in _spans(text, tables) for piece in cutter.pieces(s, e)]
    chunks = []
    for ordinal, (first, end, head) in enumerate(_Packer(text, pieces, heads, max_tokens, fixed,
                                                         count_tokens).pack(overlap)):
        start, stop = pieces[first].start, pieces[end - 1].end
        p0 = bisect.bisect_right(offsets, start) - 1
        p1 = bisect.bisect_right(offsets, stop - 1) - 1
        body = text[start:stop]
        chunks.append(Chunk(doc_sha256=doc_sha256, ordinal=ordinal, text=f"{head}\n{body}" if head else body,
                            page_start=pages[p0].number, page_end=pages[p1].number,
                            char_start=start - offsets[p0], char_end=stop - offsets[p1],
                            ocr=any(page.ocr for page in pages[p0:p1 + 1])))
    return chunks
