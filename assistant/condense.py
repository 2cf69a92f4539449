"""Make a follow-up question standalone before retrieval ("what about its side effects?").

Only a question that depends on the conversation is rewritten (:mod:`assistant.followup` decides:
standalone, follow-up or unsure); a standalone question is searched as typed. With a model the
model rewrites the question from the recent conversation (condense prompt below, greedy, short;
its output cleaned by :func:`clean_rewrite`). Without one (retrieval-only, or
``condense="heuristic"``) the previous user question is prepended (itself made standalone first
when it was a follow-up), so the retriever sees the entity the follow-up refers to. When unsure,
both the question and its rewrite are searched and the hits merged (:func:`merge_hits`).

>>> history = [{"role": "user", "content": "What is aspirin?"}, {"role": "assistant", "content": "A drug [1]."}]
>>> heuristic_standalone("What about its side effects?", history)
'What is aspirin? What about its side effects?'
>>> plan_search("What about its side effects?", history, method="heuristic", generate=None).queries
('What is aspirin? What about its side effects?',)
>>> plan_search("How is green tea made?", history, method="heuristic", generate=None).queries
('How is green tea made?',)
>>> clean_rewrite('Standalone question: "What are the side effects of aspirin?"\\n', "x")
'What are the side effects of aspirin?'
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

from assistant.citations import strip_citations
from assistant.followup import FOLLOW_UP, STANDALONE, Dependence, dependence

if TYPE_CHECKING:
    from index.records import Hit

CONDENSE_SYSTEM = (
    "Rewrite the user's follow-up question as ONE standalone question that can be understood "
    "without the conversation: replace pronouns and references such as 'it' or 'that' with what "
    "they refer to. Keep the language of the follow-up question. Output only the rewritten "
    "question, nothing else.\n"
    "把用户的追问改写成一个脱离上下文也能看懂的独立问题：把“它”“这个”等指代换成所指的具体内容。"
    "保持追问的语言，只输出改写后的问题。"
)
MAX_TURNS = 3  # user+assistant turns of history shown to the rewriter (and questions chained by the heuristic)
MAX_ANSWER_CHARS = 400  # long past answers are cut: the rewrite needs the topic, not the details
_PREFIX = re.compile(r"^\s*(standalone question|rewritten question|question|独立问题|改写后的问题|问题)\s*[:：]\s*",
                     re.IGNORECASE)


@dataclass(frozen=True)
class SearchPlan:
    """What retrieval searches for one question.

    ``queries``: one or two questions, in order of preference (the merged ranking gives ties to the
    earlier one); ``standalone``: the rewrite (the question itself when it was not rewritten);
    ``dependence``: why (:class:`assistant.followup.Dependence`).
    """

    question: str
    standalone: str
    queries: tuple[str, ...]
    dependence: Dependence


def standalone_previous(history: Sequence[Mapping[str, str]], depth: int = MAX_TURNS) -> str | None:
    """The last user question of ``history``, prefixed by its own antecedent when it was a follow-up
    (at most ``depth`` questions chained); None when there is none."""
    index = next((i for i in range(len(history) - 1, -1, -1) if history[i]["role"] == "user"), None)
    if index is None:
        return None
    previous, earlier = history[index]["content"].strip(), history[:index]
    if depth > 1 and dependence(previous, earlier).kind == FOLLOW_UP:
        before = standalone_previous(earlier, depth - 1)
        if before:
            return f"{before} {previous}"
    return previous


def heuristic_standalone(question: str, history: Sequence[Mapping[str, str]]) -> str:
    """The previous user question (made standalone), then the follow-up (the retrieval-only rewrite)."""
    previous = standalone_previous(history)
    return f"{previous} {question.strip()}" if previous else question


def condense_messages(question: str, history: Sequence[Mapping[str, str]]) -> list[dict]:
    """The chat messages asking a model to rewrite ``question`` as a standalone question."""
    recent = list(history)[-2 * MAX_TURNS:]
    lines = []
    for msg in recent:
        text = strip_citations(msg["content"]).strip()
        if msg["role"] == "assistant" and len(text) > MAX_ANSWER_CHARS:
            text = text[:MAX_ANSWER_CHARS] + "…"
        lines.append(f"{'User' if msg['role'] == 'user' else 'Assistant'}: {text}")
    user = "Conversation:\n" + "\n".join(lines) + f"\n\nFollow-up question: {question.strip()}\nStandalone question:"
    return [{"role": "system", "content": CONDENSE_SYSTEM}, {"role": "user", "content": user}]


def clean_rewrite(text: str, question: str) -> str | None:
    """The rewritten question from the model's output, or None when it is unusable."""
    text = re.sub(r"<think>.*?(</think>|$)", "", text, flags=re.DOTALL)
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return None
    line = _PREFIX.sub("", lines[0]).strip().strip("\"'“”‘’「」").strip()
    too_long = len(line) > 4 * len(question) + 200  # rambling, not a question
    return None if not line or too_long else line


def _rewrite(question: str, history: Sequence[Mapping[str, str]], method: str,
             generate: Callable[[list[dict]], str] | None) -> str:
    if method == "llm" and generate is not None:
        rewritten = clean_rewrite(generate(condense_messages(question, history)), question)
        if rewritten:
            return rewritten
    return heuristic_standalone(question, history)


def plan_search(question: str, history: Sequence[Mapping[str, str]], *, method: str,
                generate: Callable[[list[dict]], str] | None) -> SearchPlan:
    """What to search for ``question`` after ``history`` (``[{"role", "content"}, ...]``, oldest first).

    ``method``: ``llm`` (``generate(messages) -> text`` rewrites; the heuristic without it or on
    unusable output), ``heuristic`` or ``off`` (never rewrite). The rewrite, and so the model call,
    happens only for a follow-up or an unsure question: a follow-up searches the rewrite; an unsure
    one searches both, the question first unless a language switch made it unsure (then the rewrite).
    """
    if not history or method == "off":
        return SearchPlan(question, question, (question,), Dependence(STANDALONE))
    dep = dependence(question, history)
    if dep.kind == STANDALONE:
        return SearchPlan(question, question, (question,), dep)
    rewrite = _rewrite(question, history, method, generate)
    if " ".join(rewrite.split()).casefold() == " ".join(question.split()).casefold():
        queries: tuple[str, ...] = (question,)
    elif dep.kind == FOLLOW_UP:
        queries = (rewrite,)
    else:
        queries = (rewrite, question) if "language switch" in dep.signals else (question, rewrite)
    return SearchPlan(question, rewrite, queries, dep)


def condense(question: str, history: Sequence[Mapping[str, str]], *, method: str,
             generate: Callable[[list[dict]], str] | None) -> str:
    """The standalone form of ``question`` (``question`` itself when it does not depend on ``history``).

    ``method``: ``llm`` (falls back to the heuristic without ``generate`` or on unusable
    output), ``heuristic`` or ``off``. See :func:`plan_search`.
    """
    return plan_search(question, history, method=method, generate=generate).standalone


def searched_note(question: str, queries: Sequence[str]) -> str | None:
    """``searched: …`` when retrieval searched something other than ``question`` as typed, else None.

    >>> searched_note("那 HV500 呢？", ("What fee applies? 那 HV500 呢？", "那 HV500 呢？"))
    'searched: What fee applies? 那 HV500 呢？ | 那 HV500 呢？'
    >>> searched_note("Why?", ("Why?",)) is None
    True
    """
    if not queries or tuple(queries) == (question,):
        return None
    return "searched: " + " | ".join(queries)


def merge_hits(results: Sequence[Sequence["Hit"]], k: int) -> list["Hit"]:
    """The ``k`` best hits of several searches (each best first), merged by chunk id keeping each
    chunk's best rank; equal ranks go to the earlier search.

    >>> from index.records import Hit
    >>> def hit(cid): return Hit(cid, "", 0.5, "sha", "doc", "doc.txt", 1, 1, 0, 0)
    >>> [h.chunk_id for h in merge_hits([[hit("a"), hit("b"), hit("c")], [hit("c"), hit("d")]], k=3)]
    ['a', 'c', 'b']
    """
    best: dict[str, tuple[int, int, "Hit"]] = {}
    for order, hits in enumerate(results):
        for rank, hit in enumerate(hits):
            if hit.chunk_id not in best or (rank, order) < best[hit.chunk_id][:2]:
                best[hit.chunk_id] = (rank, order, hit)
    return [hit for _, _, hit in sorted(best.values(), key=lambda t: t[:2])][:k]
