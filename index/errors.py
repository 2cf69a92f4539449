"""Typed errors of the index stage; the CLIs turn them into friendly messages."""
from __future__ import annotations


class IndexError_(Exception):
    """Base class of knowledge-base errors (named with a trailing _ to keep the builtin)."""


class KBLocked(IndexError_):
    """Another process holds the knowledge base's write lock."""

    def __init__(self, path: str, pid: int | None, waited_s: float) -> None:
        who = f"pid {pid}" if pid else "another process"
        super().__init__(
            f"knowledge base {path} is locked by {who} (waited {waited_s:.0f} s); "
            "wait for it to finish, or stop it, then run the command again"
        )
        self.pid = pid


class EmbedderMismatch(IndexError_):
    """The knowledge base was built with another embedder or other chunk settings."""


class SchemaMismatch(IndexError_):
    """The knowledge base was written by an incompatible version of this tool."""


class NoKnowledgeBase(IndexError_, FileNotFoundError):
    """A command that reads a knowledge base was pointed at a folder that holds none."""


class DocumentNotFound(IndexError_):
    """`rm DOC` named nothing in the knowledge base, or more than one document."""


class BadQuery(IndexError_):
    """An empty query, k < 1, or an unknown retrieval mode."""


class MilvusError(IndexError_):
    """A Milvus knowledge base is missing, unreachable, or was dropped meanwhile."""


class MilvusFailed(MilvusError):
    """The Milvus server could not be reached, or refused or failed a call (pymilvus's ``MilvusException``,
    translated by :func:`index.milvus_uri.connect`'s client, naming the server and the call)."""
