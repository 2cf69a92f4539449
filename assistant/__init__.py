"""Retrieval-augmented answers with citations over a knowledge base (Python API and `assistant` CLI).

>>> from assistant import Assistant                                        # doctest: +SKIP
>>> bot = Assistant(kb="kb", model="path/to/Qwen3-0.6B", adapter=None)      # doctest: +SKIP
>>> answer = bot.ask("What is the refund policy?")                         # doctest: +SKIP
>>> print(answer.text); [(c.title, c.page) for c in answer.citations]       # doctest: +SKIP
"""
from __future__ import annotations

from typing import Any

__all__ = ["Assistant", "AssistantConfig", "Answer", "Citation", "Timings"]


def __getattr__(name: str) -> Any:  # lazy: `assistant --help` must not import torch
    if name == "Assistant":
        from assistant.answer import Assistant

        return Assistant
    if name == "AssistantConfig":
        from assistant.config import AssistantConfig

        return AssistantConfig
    if name in ("Answer", "Citation", "Timings"):
        from assistant import records

        return getattr(records, name)
    raise AttributeError(name)
