"""Shared records of the assistant: citations, timings and answers (frozen dataclasses)."""
from __future__ import annotations

from dataclasses import dataclass, field

from index.records import Hit


@dataclass(frozen=True)
class Citation:
    """A source the answer actually cited as ``[number]``, mapped back to its document and page."""

    number: int  # the n of [n] in the answer text (1-based, as numbered in the prompt)
    title: str
    path: str
    page: int  # first page of the cited chunk
    page_end: int
    char_start: int  # offset into page ``page``'s text
    char_end: int  # exclusive offset into page ``page_end``'s text
    score: float  # the hit's ranking score (index.records.Hit.score: per query, not comparable across queries)
    snippet: str
    doc_sha256: str
    similarity: float | None = None  # cosine of the chunk to the query in [-1, 1] (Hit.similarity); None: bm25

    @classmethod
    def from_hit(cls, number: int, hit: Hit, snippet_chars: int = 240) -> "Citation":
        text = " ".join(hit.text.split())
        snippet = text if len(text) <= snippet_chars else text[:snippet_chars] + "…"
        return cls(number=number, title=hit.title, path=hit.path, page=hit.page_start,
                   page_end=hit.page_end, char_start=hit.char_start, char_end=hit.char_end,
                   score=hit.score, snippet=snippet, doc_sha256=hit.doc_sha256, similarity=hit.similarity)


@dataclass(frozen=True)
class Timings:
    """Seconds spent per stage of one ``ask``."""

    condense_s: float = 0.0
    retrieval_s: float = 0.0
    prompt_s: float = 0.0
    first_token_s: float = 0.0  # from the start of ``ask`` to the first generated text
    generation_s: float = 0.0
    total_s: float = 0.0


@dataclass(frozen=True)
class Usage:
    """Tokens of the generation behind one answer, as OpenAI's API reports them.

    Counted with the model's tokenizer (or as the model server reported them); all 0 when no
    model was called (abstained, retrieval-only). A condensing call for a follow-up is not counted.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0  # the generated text, reasoning included
    total_tokens: int = 0

    @classmethod
    def of(cls, prompt_tokens: int, completion_tokens: int) -> "Usage":
        """The counts with their total.

        >>> Usage.of(120, 8)
        Usage(prompt_tokens=120, completion_tokens=8, total_tokens=128)
        """
        return cls(prompt_tokens, completion_tokens, prompt_tokens + completion_tokens)


@dataclass(frozen=True)
class Answer:
    """The answer text, the citations it used, every retrieved hit, and how it was made."""

    text: str
    citations: tuple[Citation, ...] = ()
    hits: tuple[Hit, ...] = ()
    sources: tuple[Hit, ...] = ()  # the hits that fitted in the prompt, numbered [1], [2], ...
    abstained: bool = False  # True: retrieval found nothing relevant; the model was not called
    abstain_reason: str = ""  # why it was declined (assistant.abstain), "" when answered
    reasoning: str = ""  # the model's <think> content when thinking is on
    question: str = ""
    standalone_question: str = ""  # the question made standalone (the question itself when not a follow-up)
    # What retrieval searched, in order of preference: the question as typed, a follow-up's rewrite, or
    # both when unsure whether it is a follow-up (assistant.condense.plan_search; hits merged by chunk).
    search_queries: tuple[str, ...] = ()
    timings: Timings = field(default_factory=Timings)
    unknown_citations: tuple[int, ...] = ()  # numbers the model cited that name no source: removed from text
    cited_nothing: bool = False  # True: the model was given sources and cited none of them
    usage: Usage = field(default_factory=Usage)
    # Why generation ended, as OpenAI's API says it: "length" when it used all of max_new_tokens (the
    # answer may be cut off), "stop" otherwise; "" when no model was called (declined, retrieval-only).
    finish_reason: str = ""
