"""Command-line arguments -> document files (files, globs with ``**``, folders)."""
from __future__ import annotations

import glob
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ingest.load import SUPPORTED_SUFFIXES

DEFAULT_SUFFIXES = SUPPORTED_SUFFIXES  # one owner: the suffixes ingest.load.KINDS can read
_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class PathProblem:
    """An argument of :func:`expand_paths` that named no usable file.

    ``path`` is the argument as given (a file, folder or glob); ``reason`` is a sentence for
    users that names it, e.g. ``"'notes.odt' is not a supported file type (...)"``.
    """

    path: str
    reason: str


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


@dataclass(frozen=True)
class Expansion:
    """What :func:`expand` made of the arguments: the document files (sorted unique absolute paths),
    one :class:`PathProblem` per argument that named no usable file, and the other files found in
    the folders and globs (sorted unique absolute paths: unsupported types, reported as skipped)."""

    paths: list[Path]
    problems: list[PathProblem]
    unsupported: list[Path]


def _walk(folder: Path) -> list[Path]:
    """Every file under ``folder``, recursively, skipping hidden files and folders (.git)."""
    return [p for p in folder.rglob("*") if p.is_file() and not _hidden(p, folder)]


def _expand_one(arg: str, suffixes: tuple[str, ...]) -> tuple[list[Path], list[Path], str | None]:
    """(supported files, other files, the problem) of one argument."""
    names = ", ".join(suffixes)
    if _GLOB_CHARS & set(arg):
        matches = [Path(m) for m in glob.glob(arg, recursive=True)]
        if not matches:
            return [], [], f"no file matches {arg!r}"
        files = [m for m in matches if m.is_file()] + [p for m in matches if m.is_dir() for p in _walk(m)]
        found = [p for p in files if p.suffix.lower() in suffixes]
        other = [p for p in files if p.suffix.lower() not in suffixes]
        return found, other, None if found else f"no {names} file matches {arg!r}"
    path = Path(arg)
    if path.is_dir():
        files = _walk(path)
        found = [p for p in files if p.suffix.lower() in suffixes]
        other = [p for p in files if p.suffix.lower() not in suffixes]
        return found, other, None if found else f"folder {arg!r} holds no {names} files"
    if path.is_file():
        if path.suffix.lower() in suffixes:
            return [path], [], None
        return [], [], f"{arg!r} is not a supported file type (supported: {names})"
    return [], [], f"{arg!r} does not exist"


def expand_paths(args: Sequence[str], *,
                 suffixes: Iterable[str] = DEFAULT_SUFFIXES) -> tuple[list[Path], list[PathProblem]]:
    """Expand files, globs (``**`` recurses) and folders (recursively) into document paths.

    Returns (sorted unique absolute paths, one :class:`PathProblem` per argument that named no
    usable file, in argument order); every argument is checked, so all problems are reported at
    once. Globs and folders keep only files with one of ``suffixes`` (any case) and skip hidden
    files and folders; a file named explicitly with another suffix is a problem.

    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ("a.pdf", "sub/b.md", "sub/c.odt"):
    ...     (root / name).parent.mkdir(exist_ok=True); _ = (root / name).write_text("x")
    >>> paths, problems = expand_paths([str(root), str(root / "**/*.md"), str(root / "x*.pdf")])
    >>> [p.relative_to(root.resolve()).as_posix() for p in paths]
    ['a.pdf', 'sub/b.md']
    >>> [(pathlib.Path(p.path).name, p.reason[:15]) for p in problems]
    [('x*.pdf', 'no file matches')]
    """
    found = expand(args, suffixes=suffixes)
    return found.paths, found.problems


def expand(args: Sequence[str], *, suffixes: Iterable[str] = DEFAULT_SUFFIXES) -> Expansion:
    """:func:`expand_paths`, plus the files of other types found in folders and globs.

    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ("a.pdf", "notes.odt", ".hidden.odt"):
    ...     _ = (root / name).write_text("x")
    >>> [p.name for p in expand([str(root)]).unsupported]
    ['notes.odt']
    """
    wanted = tuple(s.lower() if s.startswith(".") else f".{s.lower()}" for s in suffixes)
    found: set[Path] = set()
    other: set[Path] = set()
    problems: list[PathProblem] = []
    for arg in args:
        paths, others, problem = _expand_one(str(arg), wanted)
        found.update(p.resolve() for p in paths)
        other.update(p.resolve() for p in others)
        if problem:
            problems.append(PathProblem(path=str(arg), reason=problem))
    named = {Path(a).resolve() for a in map(str, args) if not _GLOB_CHARS & set(a) and Path(a).is_file()}
    return Expansion(sorted(found), problems, sorted(other - found - named))  # a named file has its own row
