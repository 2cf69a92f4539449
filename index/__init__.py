"""Embeddings, FAISS + BM25 hybrid retrieval and retrieval evaluation over a knowledge-base folder.

A knowledge base in a temporary folder, with the exact hash-seeded test embedder (``hash-64``;
leave ``embedder`` out for the default multilingual-e5-small):

>>> import tempfile
>>> from pathlib import Path
>>> from index import KnowledgeBase
>>> folder = Path(tempfile.mkdtemp())
>>> _ = (folder / "policy.txt").write_text("Opened vacuums carry a 15 percent restocking fee.", encoding="utf-8")
>>> kb = KnowledgeBase.open(folder / "kb", embedder="hash-64")
>>> kb.add([str(folder / "policy.txt")]).count("added")
1
>>> [(hit.title, hit.page_start) for hit in kb.search("restocking fee", k=1, mode="hybrid")]
[('policy', 1)]
>>> kb.close()
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
