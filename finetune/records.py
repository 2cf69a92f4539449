"""Shared records of the fine-tuning data stage."""
from __future__ import annotations

from dataclasses import dataclass

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Message:
    role: str  # one of ROLES
    content: str


@dataclass(frozen=True)
class Conversation:
    """One training record, normalised from alpaca / ShareGPT / OpenAI messages.

    ``source`` is "file:line" (line is 1-based; for a JSON array file it is the line where
    the record starts) so every later message can point at it.
    """

    messages: tuple[Message, ...]
    source: str

    def as_dicts(self) -> list[dict[str, str]]:
        return [{"role": m.role, "content": m.content} for m in self.messages]


@dataclass(frozen=True)
class Problem:
    """A record that was dropped (or, with --strict, stopped the run), and why."""

    source: str  # "file:line"
    reason: str  # short category used for counts, e.g. "bad json", "empty assistant turn"
    detail: str  # full message naming what is wrong and how to fix it
