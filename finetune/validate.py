"""Structural checks on normalised conversations, and the reason names used in every count.

Every check returns a :class:`~finetune.records.Problem` whose ``detail`` starts with the record's
"file:line" and ends with how to fix it.

Example:
    >>> from finetune.records import Conversation, Message
    >>> conv = Conversation((Message("user", "hi"), Message("user", "again")), "a.jsonl:7")
    >>> check_conversation(conv).detail.split(":")[:2]
    ['a.jsonl', '7']
    >>> conv = Conversation((Message("user", "1+1?"), Message("assistant", "<think>add</think>")), "a.jsonl:8")
    >>> check_thinking(conv, "off").reason
    'reasoning-only answer'
"""
from __future__ import annotations

from finetune.records import Conversation, Problem
from finetune.template import split_thinking

# Reasons: short, stable names used as keys of DataReport.counts_by_reason.
BAD_JSON = "bad json"
UNREADABLE = "unreadable file"
NO_RECORDS = "no records"
UNKNOWN_FORMAT = "unknown format"
BAD_FIELD = "bad field"
UNKNOWN_ROLE = "unknown role"
EMPTY_CONVERSATION = "empty conversation"
EMPTY_ASSISTANT = "empty assistant turn"
EMPTY_USER = "empty user turn"
NOT_ALTERNATING = "roles not alternating"
NOT_ENDING_ASSISTANT = "not ending with assistant"
# Reasoning blocks (<think>...</think>) of assistant turns, see check_thinking.
THINK_ONLY = "reasoning-only answer"
UNCLOSED_THINK = "unclosed <think>"
STRAY_THINK_END = "stray </think>"
MISPLACED_THINK = "misplaced <think>"
# Reasons of records dropped by cleaning (never raised by strict=True: the data is valid, just filtered).
DUPLICATE = "duplicate"
TOO_SHORT = "too short"
TOO_LONG = "too long"

ALTERNATION_RULE = (
    "roles must be user, assistant, user, assistant, ... after an optional leading system message"
)


def problem(source: str, reason: str, message: str, fix: str) -> Problem:
    """Build a Problem whose detail reads "file:line: message. Fix: fix"."""
    return Problem(source=source, reason=reason, detail=f"{source}: {message}. Fix: {fix}")


def check_conversation(conv: Conversation) -> Problem | None:
    """Return the first structural problem of ``conv`` (or None when it can be trained on).

    Checks, in order: not empty, roles alternate user/assistant after an optional leading
    system message, no empty user/assistant turn, last turn is the assistant's.
    """
    msgs = conv.messages
    body = msgs[1:] if msgs and msgs[0].role == "system" else msgs
    if not body:
        return problem(conv.source, EMPTY_CONVERSATION, "the conversation has no user/assistant turns",
                       "give at least one user turn followed by an assistant answer")
    offset = len(msgs) - len(body)
    for i, msg in enumerate(body):
        expected = "user" if i % 2 == 0 else "assistant"
        if msg.role != expected:
            roles = ", ".join(m.role for m in msgs)
            return problem(conv.source, NOT_ALTERNATING,
                           f"message {i + offset + 1} has role {msg.role!r} where {expected!r} was expected "
                           f"(roles in this record: {roles})",
                           ALTERNATION_RULE + "; merge consecutive turns of the same role or split the record")
    for i, msg in enumerate(body):
        if not msg.content.strip():
            reason = EMPTY_ASSISTANT if msg.role == "assistant" else EMPTY_USER
            return problem(conv.source, reason, f"message {i + offset + 1} ({msg.role}) is empty",
                           f"write the {msg.role} text or remove the record")
    if body[-1].role != "assistant":
        return problem(conv.source, NOT_ENDING_ASSISTANT,
                       f"the last message is a {body[-1].role!r} turn, so there is no answer to learn",
                       "end the record with an assistant answer or remove the trailing turn")
    return None


THINK_RULE = "an answer may start with one <think>...</think> block, followed by the answer text"


def check_thinking(conv: Conversation, thinking: str = "off") -> Problem | None:
    """Return the first problem of the reasoning blocks of ``conv``'s assistant turns (None when all are fine).

    ``thinking`` is the policy of ``finetune train --thinking`` ("off" | "keep"); it words the message.
    A turn may be plain text or start with exactly one ``<think>...</think>`` block followed by a
    non-empty answer (see :func:`finetune.template.split_thinking`). Reported, in order: a ``</think>``
    with no ``<think>`` before it (STRAY_THINK_END), a ``<think>`` never closed (UNCLOSED_THINK), a
    block not at the start or several blocks (MISPLACED_THINK: Qwen3's template splits the answer at
    its last ``</think>``, so the text trained, and with thinking off the prompt, would not be the
    inference one), a block with no answer after it (THINK_ONLY: an empty answer would be trained).
    """
    turn = 0
    for i, msg in enumerate(conv.messages, start=1):
        if msg.role != "assistant":
            continue
        turn += 1
        found = _think_problem(msg.content, thinking)
        if found is not None:
            reason, message, fix = found
            return problem(conv.source, reason, f"assistant turn {turn} (message {i}) {message}", fix)
    return None


def _think_problem(text: str, thinking: str) -> tuple[str, str, str] | None:
    """(reason, message, fix) for one assistant text, or None."""
    opens, closes = text.count("<think>"), text.count("</think>")
    if not opens and not closes:
        return None
    if closes > opens or (closes and text.find("</think>") < text.find("<think>")):
        return (STRAY_THINK_END, "has a '</think>' without a '<think>' before it; the chat template would take "
                "all text before it as reasoning", "add the missing '<think>' at the start of the answer or "
                "remove the '</think>'")
    if opens > closes:
        return (UNCLOSED_THINK, "opens '<think>' and never closes it, so the reasoning would be trained as "
                "answer text", "end the reasoning with '</think>' before the answer, or remove the '<think>'")
    reasoning, answer = split_thinking(text)
    if reasoning is None or opens > 1:
        effect = ("the training prompt would not equal the inference prompt (...assistant\\n<think>\\n\\n"
                  "</think>\\n\\n) and the text before it would be lost" if thinking == "off" else
                  "the text before its last '</think>' would be trained as reasoning or lost")
        return (MISPLACED_THINK, f"has a <think> block that is not at its start, or several; the chat template "
                f"splits an answer at its last '</think>', so {effect} (--thinking {thinking})", THINK_RULE)
    if not answer.strip():
        effect = "an empty answer" if thinking == "off" else "the reasoning followed by an empty answer"
        return (THINK_ONLY, f"is only a <think>...</think> block with no answer after it, so with --thinking "
                f"{thinking} it would train {effect}", "write the answer after '</think>' or remove the record")
    return None
