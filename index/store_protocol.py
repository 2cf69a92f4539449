"""What a knowledge base needs from its store: the one interface of its two backends.

:class:`index.store.Store` keeps a knowledge base in a folder (SQLite, every document written in one
transaction; the folder's FAISS and BM25 files are derived from it: :mod:`index.derived`);
:class:`index.milvus_store.MilvusStore` keeps it in Milvus collections (no transactions: a document's row
is its commit; Milvus indexes the vectors itself: :mod:`index.milvus_search`). :class:`index.kb.KnowledgeBase`,
the ingest pipeline (:mod:`index.pipeline`) and the callers of ``kb.store`` use only what :class:`KBStore`
names; what one backend alone has (the folder's SQLite connection, Milvus's client and row visibility)
is reached through that backend's own type.
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Iterable, Iterator, Protocol, Sequence, runtime_checkable

import numpy as np

from index.records import DocInfo, Hit
from ingest.records import Chunk, Document, Page


@runtime_checkable
class KBStore(Protocol):
    """The store of one knowledge base (documents, their paths and pages, chunks with BM25 tokens and vectors).

    ``remote``: False for the folder store (the knowledge base keeps FAISS and BM25 files beside it and
    writers take its folder's write lock), True for a Milvus store (Milvus indexes the vectors; there is no
    lock to take). ``path``: the folder store's ``kb.sqlite``; a Milvus store's location
    (``milvus://HOST:PORT/NAME``, ``milvus-lite:PATH.db/NAME``) as a Path.
    """

    remote: bool
    path: Path

    def create(self, dim: int) -> None:
        """Make what a new knowledge base needs once its vectors' ``dim`` is known (Milvus: the collections)."""

    def collect_orphans(self) -> int | None:
        """Delete chunks and pages of documents without a row; how many documents' were (None: the backend
        cannot leave any, its writes being transactions)."""

    def check_current(self) -> None:
        """Raise when the store was replaced or dropped since it was opened (writers call it first)."""

    def close(self) -> None: ...

    def snapshot(self) -> AbstractContextManager[Any]:
        """A read state: every query inside sees the same committed state (Milvus: each read is Strong)."""

    # -- meta
    def meta(self) -> dict[str, str]: ...

    def set_meta(self, values: dict[str, str]) -> None: ...

    def generation(self) -> int:
        """Changes with every write; the derived indexes catch up when it does."""

    # -- documents and paths
    def has_document(self, sha256: str) -> bool: ...

    def shas_at_path(self, path: str) -> list[str]: ...

    def paths_of(self, sha256: str) -> tuple[str, ...]: ...

    def paths_under(self, root: str) -> list[tuple[str, str]]: ...

    def put_document(self, doc: Document, chunks: Sequence[Chunk], tokens: Sequence[str],
                     vectors: np.ndarray, *, size: int, paths: Sequence[str] = (),
                     leaving: Sequence[tuple[str, str]] = ()) -> list[DocInfo]: ...

    def link_paths(self, pairs: Iterable[tuple[str, str]], *,
                   leaving: Sequence[tuple[str, str]] = ()) -> int: ...

    def unlink_paths(self, pairs: Iterable[tuple[str, str]]) -> list[DocInfo]: ...

    def delete_documents(self, shas: Iterable[str]) -> int: ...

    def documents(self) -> list[DocInfo]: ...

    def document_pages(self, sha256: str) -> list[Page]: ...

    def document_record(self, sha256: str) -> Document: ...

    def document_size(self, sha256: str) -> int: ...

    # -- chunks
    def document_chunks(self, sha256: str) -> tuple[list[Chunk], list[str], np.ndarray]: ...

    def count_chunks(self) -> int: ...

    def chunk_ids(self) -> np.ndarray: ...

    def iter_vectors(self, dim: int, batch: int = 8192,
                     ids: Sequence[int] | np.ndarray | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]: ...

    def all_tokens(self, ids: Sequence[int] | np.ndarray | None = None) -> tuple[list[str], list[list[str]]]: ...

    def find_chunks(self, *, chunk_id: str | None = None, doc_shas: Sequence[str] = (),
                    page: int | None = None) -> list[Hit]: ...

    def hits(self, scored: Sequence[tuple[int, float]]) -> list[Hit]: ...
