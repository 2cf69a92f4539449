"""Answers as the chat shows them: clickable ``[n]`` marks, the cited passages with the cited span
highlighted, retrieval-only passages as quotes, and the way back to plain text for the history.

The chat renders Markdown with HTML (sanitised: ``<details>``, ``<mark>``, ``id`` and ``class``
survive). An answer's text keeps its Markdown; each citation mark becomes a link to the source's
``<details id=…>`` block under the answer (``ui/web/assets.py`` opens it on click). The blocks are
HTML written without blank lines, so Markdown never reaches into the document text, which is
HTML-escaped and shown as written.

**Which span is highlighted**: the sentences of the cited passage that share the most words
(BM25's tokens: stemmed English, jieba words) with the answer sentence(s) citing it, when at least
:data:`MIN_SHARED` words are shared and the best sentences are at most half of the passage; else
the whole passage, and the block says which of the two it shows.

>>> link_citations("Two years [1], see [2].", "a1", {1})
'Two years <a class="qda-cite" href="#a1-1">[1]</a>, see [2].'
>>> history_text(link_citations("Two years [1].", "a1", {1}) + SOURCES_SEPARATOR + '<div class="qda-sources">')
'Two years [1].'
"""
from __future__ import annotations

import html
import re
import uuid
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from assistant.citations import CITATION_MARK, cited_numbers, strip_citations

if TYPE_CHECKING:
    from assistant.records import Answer
    from index.records import Hit

MIN_SHARED = 2  # words an answer sentence and a passage sentence must share for a sentence highlight
SHORT_CHARS = 280  # characters of a retrieval-only passage shown before "full passage"
SOURCES_SEPARATOR = "\n\n"  # between an answer's text and its sources block
_FENCE_FIX = "\n```\n"  # closes a code fence the answer left open (the text itself never ends with "\n")
_CITE_LINK = re.compile(r'<a class="qda-cite" href="#[^"]*">([^<]*)</a>')
_ITEM_SPLIT = re.compile(r"(\s*[,，、;；]\s*)")
_TAG = re.compile(r"<[^>]+>")
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#|~])")


def new_anchor() -> str:
    """A fresh id prefix for one answer's sources (unique in the page)."""
    return "qda-" + uuid.uuid4().hex[:10]


def md_escape(text: str) -> str:
    """Backslash-escape Markdown/HTML punctuation so document text shows as written."""
    return _MD_SPECIAL.sub(r"\\\1", text)


def pages_label(hit: Any) -> str:
    """``p. 3`` or ``pp. 3-4`` of a Hit (or Citation)."""
    first, last = getattr(hit, "page_start", getattr(hit, "page", 0)), hit.page_end
    return f"p. {first}" if first == last else f"pp. {first}-{last}"


def score_label(hit: Any) -> str:
    """``cosine 0.812`` when the hit has a dense cosine similarity (``Hit.similarity``), else ``score 0.031``.

    >>> from types import SimpleNamespace
    >>> score_label(SimpleNamespace(score=0.0312, similarity=0.8123)), score_label(SimpleNamespace(score=2.5))
    ('cosine 0.812', 'score 2.500')
    """
    similarity = getattr(hit, "similarity", None)
    return f"cosine {similarity:.3f}" if similarity is not None else f"score {hit.score:.3f}"


# -- the answer's text --------------------------------------------------------------------
def link_citations(text: str, anchor: str, linked: Iterable[int]) -> str:
    """``text`` with each item of a citation mark naming a source of ``linked`` made a link to its block."""
    linked = set(linked)

    def link(match: re.Match) -> str:
        mark = match.group(0)
        inside = match.group(1)
        parts = _ITEM_SPLIT.split(inside)
        numbers = [cited_numbers(f"[{p}]", max(linked, default=0)) for p in parts[::2]]
        if len(parts) == 1 and numbers[0][:1] and numbers[0][0] in linked:  # "[1]": the whole mark links
            return f'<a class="qda-cite" href="#{anchor}-{numbers[0][0]}">{html.escape(mark)}</a>'
        out = [p if i % 2 else _item_link(p, numbers[i // 2], anchor, linked) for i, p in enumerate(parts)]
        start = mark.index(inside)
        return mark[:start] + "".join(out) + mark[start + len(inside):]

    return CITATION_MARK.sub(link, text)


def _item_link(item: str, numbers: list[int], anchor: str, linked: set[int]) -> str:
    if not numbers or numbers[0] not in linked:
        return item
    return f'<a class="qda-cite" href="#{anchor}-{numbers[0]}">{html.escape(item)}</a>'


def history_text(content: str) -> str:
    """The plain text of a message this module rendered (links unwrapped, sources block and quote markup
    dropped): what the model sees of past answers."""
    text, found, _ = content.partition(SOURCES_SEPARATOR + '<div class="qda-sources"')
    if found and text.endswith(_FENCE_FIX):
        text = text[: -len(_FENCE_FIX)]
    if text.startswith('<div class="qda-quotes"'):
        text = html.unescape(_TAG.sub(" ", text.replace("<br>", "\n")))
        return re.sub(r"[ \t]+", " ", text).strip()
    return _CITE_LINK.sub(lambda m: html.unescape(m.group(1)), text)


# -- highlighting -------------------------------------------------------------------------
def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of ``text``: ingest's sentence rule (:func:`ingest.chunk.sentence_spans`,
    Chinese and English ends, abbreviations kept) within each line (a table row or list item is a span).

    >>> t = "Keep it dry. 保修两年。Call us!\\nSee Fig. 2 below"
    >>> [t[a:b] for a, b in sentence_spans(t)]
    ['Keep it dry.', '保修两年。', 'Call us!', 'See Fig. 2 below']
    """
    from ingest.chunk import sentence_spans as ingest_sentences

    spans, offset = [], 0
    for line in text.split("\n"):
        spans += [(offset + a, offset + b) for a, b in ingest_sentences(line)]
        offset += len(line) + 1
    return spans


def citing_text(answer_text: str, number: int, n_sources: int) -> str:
    """The answer's words that cite ``[number]``: for each mark naming it, the text before it back to the
    previous mark or sentence end (marks removed); "" when no mark names it.

    >>> citing_text("It lasts two years [1]. Fees apply. [2] Refunds take days [1], or weeks [1, 2].", 2, 2)
    'Fees apply. or weeks'
    """
    found = []
    for match in CITATION_MARK.finditer(answer_text):
        if number not in cited_numbers(match.group(0), n_sources):
            continue
        before = answer_text[:match.start()].rstrip()
        spans = sentence_spans(before)
        while spans and not strip_citations(before[spans[-1][0]:spans[-1][1]]).strip():
            spans.pop()  # "X [1][2]": for [2], the sentence before the marks
        if not spans:
            continue
        sentence = before[spans[-1][0]:spans[-1][1]]
        marks = list(CITATION_MARK.finditer(sentence))
        clause = sentence[marks[-1].end():].strip(" ,，、;；:：") if marks else ""
        found.append(clause if clause else strip_citations(sentence).strip())
    return " ".join(dict.fromkeys(found))


def highlight_spans(passage: str, citing: str) -> tuple[list[tuple[int, int]], bool]:
    """(spans of ``passage`` to highlight, True when they are the best-matching sentences rather than
    the whole passage); see the module docstring."""
    from index.tokenize import tokenize

    whole = [(0, len(passage))]
    spans = sentence_spans(passage)
    wanted = set(tokenize(citing))
    if len(spans) <= 1:  # one sentence: it is the cited span
        return whole, True
    if not wanted:
        return whole, False
    shared = [len(wanted & set(tokenize(passage[a:b]))) for a, b in spans]
    best = max(shared)
    chosen = [s for s, n in zip(spans, shared) if n == best]
    if best < MIN_SHARED or 2 * len(chosen) > len(spans):
        return whole, False
    return chosen, True


def marked_html(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """``text`` HTML-escaped, ``spans`` in ``<mark class="qda-hl">``, line breaks as ``<br>``.

    >>> marked_html("a <b>\\nc", [(2, 5)])
    'a <mark class="qda-hl">&lt;b&gt;</mark><br>c'
    """
    out, at = [], 0
    for a, b in spans:
        out += [html.escape(text[at:a]), f'<mark class="qda-hl">{html.escape(text[a:b])}</mark>']
        at = b
    out.append(html.escape(text[at:]))
    return re.sub(r"\s*\n\s*", "<br>", "".join(out))


# -- blocks -------------------------------------------------------------------------------
def answer_html(answer: "Answer", anchor: str) -> str:
    """The answer's text with clickable marks, then its sources block (cited ones, else every source)."""
    numbered = list(enumerate(answer.sources, 1))
    cited = {c.number for c in answer.citations}
    shown = [(n, h) for n, h in numbered if n in cited] or numbered
    text = answer.text or "(empty answer)"
    if not shown:
        return text
    body = link_citations(text.rstrip(), anchor, {n for n, _ in shown})
    if body.count("```") % 2:
        body += _FENCE_FIX
    head = "Sources" if cited else "Retrieved (none cited)"
    blocks = [source_block(n, hit, anchor, citing_text(answer.text, n, len(numbered)) if cited else "")
              for n, hit in shown]
    return (body + SOURCES_SEPARATOR + f'<div class="qda-sources"><div class="qda-sources-head">{head}</div>\n'
            + "\n".join(blocks) + "\n</div>")


def source_block(number: int, hit: "Hit", anchor: str, citing: str) -> str:
    """One source as a collapsed ``<details>``: document, page, score; open: the passage, cited span marked."""
    title = html.escape(hit.title)
    if citing:
        spans, sure = highlight_spans(hit.text, citing)
        how = "highlighted: the sentences sharing most words with the answer" if sure else \
            "highlighted: the whole passage (no sentence clearly matches the answer)"
    else:
        spans, how = [], "not cited by the answer"
    return (f'<details class="qda-source" id="{anchor}-{number}"><summary><strong>[{number}] {title}</strong>'
            f" · {pages_label(hit)} · {score_label(hit)}</summary>"
            f'<div class="qda-where">{title}, {pages_label(hit)} · {how}</div>'
            f'<blockquote class="qda-passage">{marked_html(hit.text.strip(), spans)}</blockquote></details>')


def quotes_html(hits: Sequence["Hit"], anchor: str) -> str:
    """Retrieval-only passages as quotes: ``[n] title, p. X`` and score, the passage shortened, the full
    text expandable."""
    quotes = []
    for number, hit in enumerate(hits, 1):
        text = " ".join(hit.text.split())
        short = shorten(text)
        full = "" if short == text else \
            f'<details><summary>Full passage</summary><div class="qda-full">{marked_html(hit.text.strip(), [])}</div>' \
            "</details>"
        quotes.append(f'<blockquote class="qda-quote" id="{anchor}-{number}"><div class="qda-quote-head">'
                      f"<strong>[{number}] {html.escape(hit.title)}, {pages_label(hit)}</strong> · {score_label(hit)}"
                      f'</div><div class="qda-short">{html.escape(short)}</div>{full}</blockquote>')
    return '<div class="qda-quotes">\n' + "\n".join(quotes) + "\n</div>"


def shorten(text: str, limit: int = SHORT_CHARS) -> str:
    """``text`` cut to about ``limit`` characters at a word end (CJK text anywhere), with "…".

    >>> shorten("one two three four", 9), shorten("保修期两年", 3), shorten("short", 9)
    ('one two…', '保修期…', 'short')
    """
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip() + "…"


def is_retrieval_only(answer: "Answer") -> bool:
    """True when the answer is the retrieved passages themselves (no model was asked)."""
    from assistant.prompt import format_source

    return bool(answer.sources) and not answer.abstained and \
        answer.text == "\n\n".join(format_source(i, h) for i, h in enumerate(answer.sources, 1))
