"""Configuration of the index package: one frozen dataclass, validated on construction."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ingest.chunk import MAX_TOKENS, OVERLAP

DEFAULT_KB = "kb"
KB_ENV = "QDA_KB"  # environment variable naming the knowledge base
KB_HELP = "knowledge base: a folder, milvus://HOST:PORT/NAME or milvus-lite:PATH.db[/NAME]"
DEFAULT_EMBEDDER = "multilingual-e5-small"
MODES = ("hybrid", "dense", "bm25")
EMBEDDER_BACKENDS = ("auto", "torch", "onnx")  # index.embedder.resolve_backend says what auto is


def default_kb() -> Path:
    """The knowledge base used when ``--kb`` is not given: ``$QDA_KB`` or ``./kb``."""
    return Path(os.environ.get(KB_ENV) or DEFAULT_KB)


@dataclass(frozen=True)
class IndexConfig:
    """Settings of a knowledge base and of searching it (CLI flags map 1:1 to fields; each field's
    ``help`` metadata is its ``--help`` text).

    >>> IndexConfig(max_tokens=300, overlap=30).overlap
    30
    """

    kb: Path = field(default=Path(DEFAULT_KB), metadata={"help": KB_HELP})
    embedder: str | None = field(default=None, metadata={
        "help": f"sentence-transformers id or path (none: the one the KB was built with; new KBs: {DEFAULT_EMBEDDER})"})
    embedder_backend: str = field(default="auto", metadata={
        "help": f"how the embedder runs: {' | '.join(EMBEDDER_BACKENDS)} (auto: what the KB was built with; new KBs: "
                f"onnx int8 for {DEFAULT_EMBEDDER} on CPU, torch with a CUDA device or for other embedders)"})
    # Chunk size in embedder tokens (prefix and special tokens included) and the tokens shared
    # by consecutive chunks; None: what the knowledge base was built with (new: MAX_TOKENS / OVERLAP).
    max_tokens: int | None = field(default=None, metadata={
        "help": f"chunk size in embedder tokens (none: what the KB was built with; new KB: {MAX_TOKENS})"})
    overlap: int | None = field(default=None, metadata={
        "help": f"tokens shared by neighbouring chunks (none: what the KB was built with; new KB: {OVERLAP})"})
    mode: str = field(default="hybrid", metadata={"help": f"retrieval: {' | '.join(MODES)}"})
    k: int = field(default=5, metadata={"help": "chunks returned per query"})
    reranker: str | None = field(default=None, metadata={"help": "cross-encoder id or path (none: no reranking)"})
    lock_timeout_s: float = field(default=10.0, metadata={"help": "seconds a writer waits for another writer"})
    ocr: bool = field(default=True, metadata={"help": "OCR pages that have no usable text layer"})
    password: str | None = field(default=None, metadata={"help": "password of encrypted PDFs"})

    def __post_init__(self) -> None:
        problems = []
        if self.max_tokens is not None and self.max_tokens < 16:
            problems.append(f"max_tokens={self.max_tokens} is too small (need >= 16)")
        if self.overlap is not None and not 0 <= self.overlap < (self.max_tokens or MAX_TOKENS):
            problems.append(f"overlap={self.overlap} must be >= 0 and < max_tokens={self.max_tokens or MAX_TOKENS}")
        if self.embedder_backend not in EMBEDDER_BACKENDS:
            problems.append(f"embedder_backend={self.embedder_backend!r} is not one of {', '.join(EMBEDDER_BACKENDS)}")
        if self.mode not in MODES:
            problems.append(f"mode={self.mode!r} is not one of {', '.join(MODES)}")
        if self.k < 1:
            problems.append(f"k={self.k} must be >= 1")
        if self.lock_timeout_s < 0:
            problems.append(f"lock_timeout_s={self.lock_timeout_s} must be >= 0")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass(frozen=True)
class MigrateConfig:
    """``index migrate``: copy a knowledge base's documents, chunks and vectors to another one
    (e.g. a folder to Milvus) without embedding anything again (:mod:`index.milvus_migrate`)."""

    source: Path = field(default=Path(DEFAULT_KB), metadata={"help": "the knowledge base to copy (folder or Milvus)"})
    target: str = field(default="", metadata={
        "help": "where to: milvus://HOST:PORT/NAME, milvus-lite:PATH.db[/NAME], or a new folder"})

    def __post_init__(self) -> None:
        if not self.target:
            raise ValueError("--to is required (e.g. --to milvus://localhost:19530/kb)")
        if str(self.target) == str(self.source):
            raise ValueError(f"--from and --to are the same knowledge base ({self.target})")
