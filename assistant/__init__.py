"""Retrieval-augmented answers with citations over a knowledge base (Python API and `assistant` CLI).

>>> from assistant import Assistant                                        # doctest: +SKIP
>>> bot = Assistant(kb="kb", model="path/to/Qwen3-0.6B", adapter=None)      # doctest: +SKIP
>>> answer = bot.ask("What is the refund policy?")                         # doctest: +SKIP
>>> print(answer.text); [(c.title, c.page) for c in answer.citations]       # doctest: +SKIP
>>> for piece in bot.stream("退货政策是什么？", options=AskOptions(k=3)):    # doctest: +SKIP
...     print(piece, end="")
"""
from __future__ import annotations

from typing import Any

__all__ = ["Assistant", "AssistantConfig", "AskOptions", "AnswerStream", "Answer", "Citation", "Timings"]


def __getattr__(name: str) -> Any:  # lazy: `assistant --help` must not import torch
    if name in ("Assistant", "AnswerStream"):
        from assistant import answer

        return getattr(answer, name)
    if name in ("AssistantConfig", "AskOptions"):
        from assistant import config

        return getattr(config, name)
    if name in ("Answer", "Citation", "Timings"):
        from assistant import records

        return getattr(records, name)
    raise AttributeError(name)
