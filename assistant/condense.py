"""Make a follow-up question standalone before retrieval ("what about its side effects?").

With a model: the model rewrites the question from the recent conversation (condense prompt
below, greedy, short). Without one (retrieval-only, or ``condense="heuristic"``): the previous
user question is prepended, so the retriever sees the entity the follow-up refers to.

>>> history = [{"role": "user", "content": "What is aspirin?"}, {"role": "assistant", "content": "A drug [1]."}]
>>> heuristic_standalone("What about its side effects?", history)
'What is aspirin? What about its side effects?'
>>> clean_rewrite('Standalone question: "What are the side effects of aspirin?"\\n', "x")
'What are the side effects of aspirin?'
"""
from __future__ import annotations

import re
from typing import Callable, Mapping, Sequence

from assistant.citations import strip_citations

CONDENSE_SYSTEM = (
    "Rewrite the user's follow-up question as ONE standalone question that can be understood "
    "without the conversation: replace pronouns and references such as 'it' or 'that' with what "
    "they refer to. Keep the language of the follow-up question. Output only the rewritten "
    "question, nothing else.\n"
    "把用户的追问改写成一个脱离上下文也能看懂的独立问题：把“它”“这个”等指代换成所指的具体内容。"
    "保持追问的语言，只输出改写后的问题。"
)
MAX_TURNS = 3  # user+assistant turns of history shown to the rewriter
MAX_ANSWER_CHARS = 400  # long past answers are cut: the rewrite needs the topic, not the details
_PREFIX = re.compile(r"^\s*(standalone question|rewritten question|question|独立问题|改写后的问题|问题)\s*[:：]\s*",
                     re.IGNORECASE)


def previous_user_question(history: Sequence[Mapping[str, str]]) -> str | None:
    return next((m["content"] for m in reversed(history) if m["role"] == "user"), None)


def heuristic_standalone(question: str, history: Sequence[Mapping[str, str]]) -> str:
    """The previous user question, then the follow-up (the retrieval-only rewrite)."""
    previous = previous_user_question(history)
    return f"{previous.strip()} {question.strip()}" if previous else question


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


def condense(question: str, history: Sequence[Mapping[str, str]], *, method: str,
             generate: Callable[[list[dict]], str] | None) -> str:
    """The standalone form of ``question`` (``question`` itself when there is no history).

    ``method``: ``llm`` (falls back to the heuristic without ``generate`` or on unusable
    output), ``heuristic`` or ``off``.
    """
    if not history or method == "off":
        return question
    if method == "llm" and generate is not None:
        rewritten = clean_rewrite(generate(condense_messages(question, history)), question)
        if rewritten:
            return rewritten
    return heuristic_standalone(question, history)
