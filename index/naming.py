"""Which stored document a name given by a user names: ``ingest rm DOC``, and the gold ``doc`` of
``assistant eval`` and ``finetune data from-kb`` (one rule for all three).

A name names a document when, both compared after NFKC normalisation, trimming and case folding,
it is (most precise first) a prefix of its sha256 of at least :data:`SHA_PREFIX_MIN` hex
characters (the whole sha256 included), one of its paths (as stored, or a relative path resolved
from the current folder), the file name of one of its paths, that file name without suffix, or
its title. A document stored under several paths (byte-identical copies) is named by each.

>>> doc = dict(title="Policy", path="/docs/policy.pdf", sha256="ab12cd34ef")
>>> [doc_matches(d, **doc) for d in ("policy", "POLICY.pdf", "/docs/policy.pdf", "AB12CD", "ab12", "other")]
[True, True, True, True, False, False]
>>> doc_matches("policy (1).pdf", **doc, paths=("/docs/policy.pdf", "/docs/policy (1).pdf"))
True

What ``ingest rm`` removes (:func:`find_target`): a name that names a document by a path, file
name or stem names that one path (the document goes with its last path); a sha256 prefix or a
title names the document itself, with every path.
"""
from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from index.errors import DocumentNotFound

if TYPE_CHECKING:
    from index.store import DocInfo

__all__ = ["SHA_PREFIX_MIN", "Target", "match_rank", "doc_matches", "find_document", "find_target"]

SHA_PREFIX_MIN = 6  # hex characters; `ingest list` shows 12. A shorter prefix names too many documents.
SHA, PATH, FILE_NAME, STEM, TITLE = range(5)  # match ranks, most precise first
WHOLE = (SHA, TITLE)  # ranks that name the content itself, not one of its files


def _key(text: str) -> str:
    return unicodedata.normalize("NFKC", text).strip().casefold()


@functools.lru_cache(maxsize=1024)
def _resolved(name: str) -> str:
    return str(Path(name).expanduser().resolve())


def _path_rank(name: str, want: str, path: str) -> int | None:
    """How precisely ``name`` (``want``: its key) names the file ``path``: PATH, FILE_NAME, STEM or None."""
    if want == _key(path) or _resolved(name.strip()) == path:
        return PATH
    file = Path(path)
    return next((rank for rank, text in ((FILE_NAME, file.name), (STEM, file.stem)) if want == _key(text)), None)


def _ranks(name: str, *, title: str, paths: Sequence[str], sha256: str) -> list[tuple[int, str | None]]:
    """Every way ``name`` names this document: (rank, the path it names, or None for the document)."""
    want = _key(name)
    if not want:
        return []
    found: list[tuple[int, str | None]] = []
    if len(want) >= SHA_PREFIX_MIN and sha256.lower().startswith(want):
        found.append((SHA, None))
    found += [(rank, p) for p in paths if (rank := _path_rank(name, want, p)) is not None]
    if want == _key(title):
        found.append((TITLE, None))
    return found


def match_rank(name: str, *, title: str, path: str, sha256: str, paths: Sequence[str] = ()) -> int | None:
    """How precisely ``name`` names this document (``SHA`` 0 .. ``TITLE`` 4), None when it does not.

    ``path`` is its display path, ``paths`` every path it is stored under (default: ``path`` alone).

    >>> doc = dict(title="a", path="/d/a.txt", sha256="ff00aa11")
    >>> match_rank("a.txt", **doc), match_rank("A", **doc), match_rank("ff00aa", **doc), match_rank("b", **doc)
    (2, 3, 0, None)
    >>> match_rank("b.txt", **doc, paths=("/d/a.txt", "/d/b.txt"))
    2
    """
    ranks = _ranks(name, title=title, paths=paths or (path,), sha256=sha256)
    return min((rank for rank, _ in ranks), default=None)


def doc_matches(name: str, *, title: str, path: str, sha256: str, paths: Sequence[str] = ()) -> bool:
    """``name`` names this document (see the module docstring)."""
    return match_rank(name, title=title, path=path, sha256=sha256, paths=paths) is not None


@dataclass(frozen=True)
class Target:
    """What a name names for ``ingest rm``: document ``doc`` and the ``paths`` of it to remove.

    ``whole``: named by sha256 prefix or title, the document itself (``paths`` is every path of it).
    """

    doc: "DocInfo"
    paths: tuple[str, ...]
    whole: bool


def find_target(docs: Iterable["DocInfo"], name: str) -> Target:
    """The document of ``docs`` that ``name`` names most precisely, and which of its paths.

    Raises :class:`DocumentNotFound` when none matches, when several documents match equally
    precisely (the message lists them by sha256 prefix and path), or when the name names several
    paths of one document equally (a file name shared by two copies: name one by its path).

    >>> from index.store import DocInfo
    >>> doc = DocInfo("ab12cd34", "/d/员工手册 (1).txt", "员工手册 (1)", "text", 1, (), 2, 9, 0.0,
    ...               paths=("/d/员工手册 (1).txt", "/d/员工手册.txt"))
    >>> find_target([doc], "员工手册.txt").paths, find_target([doc], "ab12cd").whole
    (('/d/员工手册.txt',), True)
    """
    best, doc, ranked = _best(docs, name)
    if best in WHOLE:
        return Target(doc=doc, paths=doc.all_paths, whole=True)
    paths = tuple(dict.fromkeys(p for rank, p in ranked if rank == best and p is not None))
    if len(paths) > 1:
        raise DocumentNotFound(f"{name!r} matches {len(paths)} paths of one document ({'; '.join(paths)}); "
                               f"name one by its full path, or the whole document by its sha256 prefix "
                               f"{doc.sha256[:12]}")
    return Target(doc=doc, paths=paths, whole=False)


def find_document(docs: Iterable["DocInfo"], name: str) -> "DocInfo":
    """The one document of ``docs`` that ``name`` names most precisely (:func:`find_target`'s ``doc``).

    Raises :class:`DocumentNotFound` when none matches, or when several match equally precisely.
    """
    return _best(docs, name)[1]


def _best(docs: Iterable["DocInfo"], name: str) -> tuple[int, "DocInfo", list[tuple[int, str | None]]]:
    """(best rank, the one document matching at it, every (rank, path) by which it matches)."""
    ranked = [(rank, d, p) for d in docs
              for rank, p in _ranks(name, title=d.title, paths=d.all_paths, sha256=d.sha256)]
    if not ranked:
        raise DocumentNotFound(f"no document matches {name!r}; `ingest list` shows what is stored")
    best = min(rank for rank, _, _ in ranked)
    found = {d.sha256: d for rank, d, _ in ranked if rank == best}
    if len(found) > 1:
        listing = "; ".join(f"{d.sha256[:12]} {d.path}" for d in found.values())
        raise DocumentNotFound(f"{name!r} matches {len(found)} documents ({listing}); "
                               "name one by its sha256 prefix")
    (doc,) = found.values()
    return best, doc, [(rank, p) for rank, d, p in ranked if d.sha256 == doc.sha256]
