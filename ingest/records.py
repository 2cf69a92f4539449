"""Shared records of the ingest stage: pages, documents and chunks (frozen dataclasses)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Page:
    """One page of a document. ``number`` is 1-based; a slide, sheet, e-book chapter or image frame
    counts as a page; text, .csv, .html and .docx files are one page."""

    number: int
    text: str
    ocr: bool = False  # True when the text came from OCR, not a text layer


@dataclass(frozen=True)
class Document:
    """A loaded document: its pages plus identity (content sha256 of the file bytes)."""

    path: Path
    sha256: str
    title: str
    kind: str  # "pdf" | "text" | "docx" | "pptx" | "xlsx" | "csv" | "html" | "epub" | "image" (ingest.load.KINDS)
    pages: tuple[Page, ...]
    warnings: tuple[str, ...] = ()  # per-page problems that did not stop the document

    @property
    def ocr_pages(self) -> tuple[int, ...]:
        return tuple(p.number for p in self.pages if p.ocr)


@dataclass(frozen=True)
class Chunk:
    """A block of at most ``max_tokens`` embedder tokens cut from a document.

    ``char_start`` is an offset into the text of page ``page_start``; ``char_end``
    is an (exclusive) offset into the text of page ``page_end``.
    """

    doc_sha256: str
    ordinal: int  # position of the chunk within its document, 0-based
    text: str
    page_start: int
    page_end: int
    char_start: int
    char_end: int
    ocr: bool = False
    chunk_id: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.chunk_id:
            key = f"{self.doc_sha256}:{self.ordinal}:{self.text}"
            object.__setattr__(self, "chunk_id", hashlib.sha256(key.encode()).hexdigest()[:32])
