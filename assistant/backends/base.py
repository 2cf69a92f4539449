"""Generation backends behind one small Protocol, and what both share: decoding settings and
separating ``<think>`` reasoning from the answer (stop texts are cut in :mod:`finetune.generation`).

The two implementations: a local transformers model with an optional PEFT adapter
(:mod:`assistant.backends.local`) and any OpenAI-compatible endpoint (:mod:`assistant.backends.openai_compat`);
:func:`assistant.backends.make_backend` picks one.

>>> from assistant.backends import make_backend
>>> from assistant.backends.base import GenParams
>>> from assistant.config import AssistantConfig
>>> backend = make_backend(AssistantConfig(model="Qwen/Qwen3-0.6B"))   # loads nothing yet
>>> msgs = [{"role": "user", "content": "Hi"}]
>>> "".join(backend.generate(msgs, GenParams(max_new_tokens=8), stream=True))  # doctest: +SKIP
'Hello! How can I help you today?'
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Protocol

DEFAULT_ENDPOINT_CONTEXT = 8192  # tokens, when the endpoint's context length is not given


@dataclass(frozen=True)
class GenParams:
    """Decoding settings of one generation."""

    max_new_tokens: int = 512
    temperature: float = 0.0  # 0: greedy
    top_p: float = 0.8
    thinking: bool = False
    use_adapter: bool = True  # local backend with an adapter: False runs the base model


class Backend(Protocol):
    """What the assistant needs from a model: its context length, token counts, generation.

    ``generate`` yields the raw generated text in pieces (one piece when ``stream`` is False);
    reasoning, when the model thinks, comes inline as ``<think>...</think>``.
    ``on_first_token`` is called once, when the first new token exists. The iterator it returns
    may carry ``usage``, ``(prompt_tokens, completion_tokens)`` as a model server reported them
    (None when it did not), read once the pieces are exhausted: see :func:`generation_usage`.
    ``count_tokens``: tokens of the prompt the messages render to; ``count_text``: tokens of a
    generated text alone (no special tokens added), both with the model's tokenizer.
    """

    def context_tokens(self) -> int: ...

    def count_tokens(self, messages: list[dict], *, thinking: bool = False) -> int: ...

    def count_text(self, text: str) -> int: ...

    def generate(self, messages: list[dict], params: GenParams, *, stream: bool = False,
                 on_first_token: Callable[[], None] | None = None) -> Iterator[str]: ...


def generation_usage(backend: Backend, messages: list[dict], generated: str, pieces: object, *,
                     thinking: bool = False) -> tuple[int, int]:
    """(prompt_tokens, completion_tokens) of one generation of ``messages`` that produced ``generated``.

    What the model server reported (``pieces.usage``) when it did; else ``count_tokens(messages)`` and
    ``count_text(generated)`` (a re-encoding: the end-of-turn token is not counted).
    """
    reported = getattr(pieces, "usage", None)
    if reported is not None:
        return reported
    return backend.count_tokens(messages, thinking=thinking), backend.count_text(generated)


class ThinkSplitter:
    r"""Separates ``<think>...</think>`` reasoning from the answer in streamed text.

    Answer pieces come out as soon as they are known not to be part of a tag; leading and
    trailing whitespace of the answer is dropped, so the pieces join to ``answer`` exactly.

    >>> s = ThinkSplitter()
    >>> [s.feed(p) for p in ["<thi", "nk>\nplan</th", "ink>\n\nYes [1]", ". \n"]] + [s.finish()]
    ['', '', 'Yes [1]', '.', '']
    >>> s.reasoning, s.answer
    ('plan', 'Yes [1].')
    """

    OPEN, CLOSE = "<think>", "</think>"

    def __init__(self) -> None:
        self.state = "start"  # start -> (thinking ->) answer
        self.buffer = ""
        self.reasoning_parts: list[str] = []
        self.answer_parts: list[str] = []

    @property
    def reasoning(self) -> str:
        return "".join(self.reasoning_parts).strip()

    @property
    def answer(self) -> str:
        return "".join(self.answer_parts)

    def feed(self, piece: str) -> str:
        self.buffer += piece
        if self.state == "start":
            head = self.buffer.lstrip()
            if head.startswith(self.OPEN):
                self.state, self.buffer = "thinking", head[len(self.OPEN):]
            elif self.OPEN.startswith(head):
                return ""  # maybe the start of a tag: wait
            else:
                self.state, self.buffer = "answer", head
        if self.state == "thinking":
            end = self.buffer.find(self.CLOSE)
            if end < 0:
                keep = len(self.CLOSE) - 1  # a tag may be split across pieces
                self.reasoning_parts.append(self.buffer[:-keep] if len(self.buffer) > keep else "")
                self.buffer = self.buffer[-keep:] if len(self.buffer) > keep else self.buffer
                return ""
            self.reasoning_parts.append(self.buffer[:end])
            self.state, self.buffer = "answer", self.buffer[end + len(self.CLOSE):].lstrip()
        return self._emit()

    def _emit(self) -> str:
        if not self.answer_parts:
            self.buffer = self.buffer.lstrip()
        body = self.buffer.rstrip()  # trailing whitespace waits for what follows it
        self.buffer = self.buffer[len(body):]
        if body:
            self.answer_parts.append(body)
        return body

    def finish(self) -> str:
        """Flush at the end of generation (an unclosed think block counts as reasoning)."""
        if self.state == "thinking":
            self.reasoning_parts.append(self.buffer)
        elif self.state == "start" and self.buffer.strip():
            self.state = "answer"
            out = self._emit()
            self.buffer = ""
            return out
        self.buffer = ""
        return ""
