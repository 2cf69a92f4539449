"""Shared records of the index stage."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk with where it came from (for citations).

    ``score`` is the fused score in hybrid mode, cosine similarity in dense mode,
    BM25 score in bm25 mode (or the reranker's score when a reranker ran).
    """

    chunk_id: str
    text: str
    score: float
    doc_sha256: str
    title: str
    path: str
    page_start: int
    page_end: int
    char_start: int
    char_end: int
    ocr: bool = False

    @property
    def page(self) -> int:
        return self.page_start
