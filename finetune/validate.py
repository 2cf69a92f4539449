"""Structural checks on normalised conversations, and the reason names used in every count.

Every check returns a :class:`~finetune.records.Problem` whose ``detail`` starts with the record's
"file:line" and ends with how to fix it.

Example:
    >>> from finetune.records import Conversation, Message
    >>> conv = Conversation((Message("user", "hi"), Message("user", "again")), "a.jsonl:7")
    >>> check_conversation(conv).detail.split(":")[:2]
    ['a.jsonl', '7']
"""
from __future__ import annotations

from finetune.records import Conversation, Problem

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
