"""Typed errors of the ingest stage; the CLI turns them into friendly messages."""
from __future__ import annotations


class IngestError(Exception):
    """Base class: a document could not be ingested. ``path`` names the file."""

    def __init__(self, path: object, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = str(path)
        self.reason = message


class NeedsPassword(IngestError):
    """An encrypted PDF that the empty password does not open."""


class WrongPassword(IngestError):
    """An encrypted PDF that the given --password does not open."""


class CorruptDocument(IngestError):
    """A file that cannot be parsed (0 bytes, truncated, garbage)."""


class UnsupportedFile(IngestError):
    """A file type we do not read."""
