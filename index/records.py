"""Shared records of the index stage."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk with where it came from (for citations).

    ``score`` ranks the hits of one search: the fused score in hybrid mode (min-max normalised
    per query, so the best hit of every query has 1.0: ``index.fusion``), cosine similarity in
    dense mode, BM25 score in bm25 mode, the reranker's score when a reranker ran. Compare
    hits of different queries by ``similarity``: the cosine similarity in [-1, 1] of the
    chunk's stored dense vector to the query's (whichever retriever found the chunk), None when
    the search embedded no query (bm25 mode).

    >>> hit = Hit("c1", "Returns within 30 days.", 1.0, "ab12", "policy", "policy.txt", 1, 1, 0, 23,
    ...           similarity=0.31)
    >>> hit.score, hit.similarity, hit.page
    (1.0, 0.31, 1)
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
    similarity: float | None = None

    @property
    def page(self) -> int:
        return self.page_start


@dataclass(frozen=True)
class Removal:
    """What ``KnowledgeBase.remove`` (``ingest rm``) removed from document ``sha256``.

    ``paths``: the paths removed (every path of the document when it was named by sha256 or
    title). ``document_removed``: the document went too (named by sha256 or title, or its last
    path went), with ``n_chunks`` chunks; otherwise ``n_chunks`` is 0 and the document stays
    under ``paths_left``. ``path`` is its display path before the removal.

    >>> r = Removal("ab12", "handbook", "/d/a.txt", ("/d/b.txt",), 0, False, ("/d/a.txt",))
    >>> r.document_removed, r.paths_left
    (False, ('/d/a.txt',))
    """

    sha256: str
    title: str
    path: str
    paths: tuple[str, ...]
    n_chunks: int
    document_removed: bool
    paths_left: tuple[str, ...] = ()


@dataclass(frozen=True)
class DocInfo:
    """One row of ``ingest list``: a document, its display ``path`` and every path it is stored
    under (``paths``, in the order added; the display path first; empty in records built by hand)."""

    sha256: str
    path: str
    title: str
    kind: str
    n_pages: int
    ocr_pages: tuple[int, ...]
    n_chunks: int
    size: int
    added_at: float
    paths: tuple[str, ...] = ()

    @property
    def all_paths(self) -> tuple[str, ...]:
        """``paths``, or the display path alone when none were recorded.

        >>> DocInfo("ab", "/d/a.txt", "a", "text", 1, (), 1, 3, 0.0).all_paths
        ('/d/a.txt',)
        """
        return self.paths or (self.path,)
