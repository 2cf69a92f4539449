"""What ``assistant eval`` runs and produces: the systems, timed stages, closed-book prompt and the
frozen records of one run. Shared by :mod:`assistant.evaluation.run` (which fills them) and
:mod:`assistant.evaluation.report` (which writes them), so neither imports the other.

>>> SYSTEMS[0], STAGES[-1], RetrievalRow("gold.jsonl:3", "page", 1, 0.012).rank
('base', 'total_s', 1)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from finetune.records import Problem

__all__ = ["SYSTEMS", "STAGES", "CLOSED_BOOK_PROMPT", "Row", "RetrievalRow", "EvalResult"]

SYSTEMS = ("base", "base+rag", "adapter", "adapter+rag")
STAGES = ("retrieval_s", "prompt_s", "first_token_s", "generation_s", "total_s")  # Timings fields, seconds
# The closed-book systems' one and only prompt: no sources, the model's own knowledge. It asks for
# a short answer (fair to exact match) and an explicit "I don't know" (so abstention is measurable).
CLOSED_BOOK_PROMPT = (
    "You are a careful assistant. Answer the user's question from your own knowledge, briefly. "
    "If you do not know the answer, say that you do not know instead of guessing. "
    "Answer in the language of the question.\n"
    "你是一个严谨的助手。请根据你自己的知识简要回答用户的问题。如果你不知道答案，请直接说不知道，不要猜测。"
    "用提问所用的语言回答。"
)


@dataclass(frozen=True)
class Row:
    """One system's answer to one gold question, scored."""

    system: str
    source: str  # the gold item's file:line
    question: str
    answerable: bool
    text: str
    exact_match: bool
    token_f1: float
    contains: bool
    abstained: bool  # the answer declines (assistant abstention or an abstaining text)
    cited: tuple[int, ...] = ()  # source numbers cited (RAG systems)
    citation_precision: float | None = None  # None: closed-book, distractor-only, or nothing cited
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None  # e.g. the question does not fit the context


@dataclass(frozen=True)
class RetrievalRow:
    """Where the gold ranked among the retrieved hits of one answerable question."""

    source: str
    rule: str  # page | doc | answer (see assistant.evaluation.metrics)
    rank: int | None  # 1-based; None: not retrieved
    retrieval_s: float


@dataclass(frozen=True)
class EvalResult:
    """Everything one ``assistant eval`` run measured (see :mod:`assistant.evaluation.report` for the files)."""

    systems: tuple[str, ...]  # the systems that ran
    skipped: dict[str, str]  # system -> why it did not run
    retrieval: dict[str, Any]
    results: dict[str, dict[str, Any]]  # system -> aggregate figures
    rows: tuple[Row, ...]
    retrieval_rows: tuple[RetrievalRow, ...]
    problems: tuple["Problem", ...]
    items: int
    config: dict[str, Any]
    load_s: float
    wall_s: float
    # --compare-embedder: the retrieval pass over a re-embedded copy (assistant.evaluation.run.compare_pass)
    compared: dict[str, Any] | None = None
