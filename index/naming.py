"""Which stored document a name given by a user names: ``ingest rm DOC``, and the gold ``doc`` of
``assistant eval`` and ``finetune data from-kb`` (one rule for all three).

A name names a document when, both compared after NFKC normalisation, trimming and case folding,
it is (most precise first) a prefix of its sha256 of at least :data:`SHA_PREFIX_MIN` hex
characters (the whole sha256 included), its path (as stored, or a relative path resolved from
the current folder), its file name, its file name without suffix, or its title.

>>> doc = dict(title="Policy", path="/docs/policy.pdf", sha256="ab12cd34ef")
>>> [doc_matches(d, **doc) for d in ("policy", "POLICY.pdf", "/docs/policy.pdf", "AB12CD", "ab12", "other")]
[True, True, True, True, False, False]
"""
from __future__ import annotations

import functools
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from index.errors import DocumentNotFound

if TYPE_CHECKING:
    from index.store import DocInfo

__all__ = ["SHA_PREFIX_MIN", "match_rank", "doc_matches", "find_document"]

SHA_PREFIX_MIN = 6  # hex characters; `ingest list` shows 12. A shorter prefix names too many documents.
SHA, PATH, FILE_NAME, STEM, TITLE = range(5)  # match ranks, most precise first


def _key(text: str) -> str:
    return unicodedata.normalize("NFKC", text).strip().casefold()


@functools.lru_cache(maxsize=1024)
def _resolved(name: str) -> str:
    return str(Path(name).expanduser().resolve())


def match_rank(name: str, *, title: str, path: str, sha256: str) -> int | None:
    """How precisely ``name`` names this document (``SHA`` 0 .. ``TITLE`` 4), None when it does not.

    >>> doc = dict(title="a", path="/d/a.txt", sha256="ff00aa11")
    >>> match_rank("a.txt", **doc), match_rank("A", **doc), match_rank("ff00aa", **doc), match_rank("b", **doc)
    (2, 3, 0, None)
    """
    want = _key(name)
    if not want:
        return None
    if len(want) >= SHA_PREFIX_MIN and sha256.lower().startswith(want):
        return SHA
    file = Path(path)
    if want == _key(path) or _resolved(name.strip()) == path:
        return PATH
    for rank, text in ((FILE_NAME, file.name), (STEM, file.stem), (TITLE, title)):
        if want == _key(text):
            return rank
    return None


def doc_matches(name: str, *, title: str, path: str, sha256: str) -> bool:
    """``name`` names this document (see the module docstring)."""
    return match_rank(name, title=title, path=path, sha256=sha256) is not None


def find_document(docs: Iterable["DocInfo"], name: str) -> "DocInfo":
    """The one document of ``docs`` that ``name`` names most precisely.

    Raises :class:`DocumentNotFound` when none matches, or when several match equally precisely
    (the message lists them by sha256 prefix and path).
    """
    ranked = [(rank, d) for d in docs
              if (rank := match_rank(name, title=d.title, path=d.path, sha256=d.sha256)) is not None]
    if not ranked:
        raise DocumentNotFound(f"no document matches {name!r}; `ingest list` shows what is stored")
    best = min(rank for rank, _ in ranked)
    found = [d for rank, d in ranked if rank == best]
    if len(found) > 1:
        listing = "; ".join(f"{d.sha256[:12]} {d.path}" for d in found)
        raise DocumentNotFound(f"{name!r} matches {len(found)} documents ({listing}); "
                               "name one by its sha256 prefix")
    return found[0]
