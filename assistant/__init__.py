"""Retrieval-augmented answers with citations over a knowledge base (Python API and `assistant` CLI).

With a model (a local folder or hub id, plus an optional LoRA adapter from ``finetune train``):

>>> bot = Assistant(kb="kb", model="path/to/Qwen3-0.6B", adapter=None)      # doctest: +SKIP
>>> answer = bot.ask("What is the refund policy?")                         # doctest: +SKIP
>>> for piece in bot.stream("退货政策是什么？", options=AskOptions(k=3)):    # doctest: +SKIP
...     print(piece, end="")

Without one (``retrieval_only``: the answer lists the cited passages), over a small knowledge base
built with the exact hash-seeded test embedder:

>>> import tempfile
>>> from pathlib import Path
>>> from assistant import AskOptions, Assistant
>>> from index import KnowledgeBase
>>> folder = Path(tempfile.mkdtemp())
>>> _ = (folder / "policy.txt").write_text("Opened vacuums carry a 15 percent restocking fee.", encoding="utf-8")
>>> kb = KnowledgeBase.open(folder / "kb", embedder="hash-64")
>>> _ = kb.add([str(folder / "policy.txt")])
>>> bot = Assistant(kb=kb, retrieval_only=True)
>>> answer = bot.ask("What is the restocking fee?", options=AskOptions(k=1))
>>> [(c.number, c.title, c.page) for c in answer.citations]
[(1, 'policy', 1)]
>>> stream = bot.stream("What is the restocking fee?", options=AskOptions(k=1))
>>> "".join(stream) == stream.answer.text == answer.text
True
>>> kb.close()
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
