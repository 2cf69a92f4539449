"""Embeddings, FAISS + BM25 hybrid retrieval and retrieval evaluation over a knowledge-base folder.

>>> from index import KnowledgeBase        # doctest: +SKIP
>>> kb = KnowledgeBase.open("kb")           # doctest: +SKIP
>>> kb.search("what is the refund policy?", k=5, mode="hybrid")  # doctest: +SKIP
"""
from __future__ import annotations

from typing import Any

__all__ = ["KnowledgeBase", "Hit", "IndexConfig"]


def __getattr__(name: str) -> Any:  # lazy: `ingest --help` must stay light
    if name == "KnowledgeBase":
        from index.kb import KnowledgeBase

        return KnowledgeBase
    if name == "Hit":
        from index.records import Hit

        return Hit
    if name == "IndexConfig":
        from index.config import IndexConfig

        return IndexConfig
    raise AttributeError(name)
