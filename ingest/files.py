"""Command-line arguments -> document files (files, globs with ``**``, folders)."""
from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
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
    one :class:`PathProblem` per argument that named no usable file, the other files found in the
    folders and globs (sorted unique absolute paths: unsupported types, reported as skipped), and the
    entries found there that are not files at all (symbolic links that loop or point nowhere, named
    pipes, sockets, devices), each with its reason."""

    paths: list[Path]
    problems: list[PathProblem]
    unsupported: list[Path]
    special: list[PathProblem] = field(default_factory=list)


def not_a_file(path: Path) -> str:
    """Why the directory entry ``path`` cannot be read as a document ("" for a regular file).

    >>> import os, tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> os.symlink(root / "loop", root / "loop"); os.symlink(root / "gone", root / "dangling"); os.mkfifo(root / "pipe")
    >>> for name in ("loop", "dangling", "pipe", "missing"):
    ...     print(not_a_file(root / name))
    is a symbolic link that loops
    is a symbolic link to nothing (its target does not exist)
    is a named pipe (FIFO), not a file
    does not exist
    """
    try:
        mode = path.stat().st_mode  # follows links
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "is a symbolic link that loops"
        if path.is_symlink():
            return "is a symbolic link to nothing (its target does not exist)"
        return "does not exist" if err.errno == errno.ENOENT else f"cannot be read ({err.strerror})"
    kinds = ((stat.S_ISREG, ""), (stat.S_ISDIR, "is a folder, not a file"),
             (stat.S_ISFIFO, "is a named pipe (FIFO), not a file"), (stat.S_ISSOCK, "is a socket, not a file"))
    return next((why for test, why in kinds if test(mode)), "is a device, not a file")


def _walk(folder: Path, entries: Iterable[Path] | None = None) -> tuple[list[Path], list[PathProblem]]:
    """(every file under ``folder``, every entry there that is no file) recursively, skipping hidden
    files and folders (.git); pathlib's walk does not enter symbolic links to folders (no loops)."""
    files, special = [], []
    for p in folder.rglob("*") if entries is None else entries:
        if _hidden(p, folder) or p.is_dir():
            continue
        why = not_a_file(p)
        if why:
            special.append(PathProblem(str(p), f"'{p}' {why}"))
        else:
            files.append(p)
    return files, special


def _glob(pattern: str) -> tuple[list[Path], Path]:
    """Matches of ``pattern`` (``**`` recurses) and the folder it starts from. Walked by pathlib like a
    folder (symbolic links to folders are not entered: ``glob.glob(recursive=True)`` follows them,
    round a loop for minutes); hidden entries below that folder are left out as in folders."""
    parts = Path(pattern).parts
    first = next(i for i, part in enumerate(parts) if _GLOB_CHARS & set(part))
    base = Path(*parts[:first]) if first else Path(".")
    rest = str(Path(*parts[first:]))
    if not base.is_dir():
        return [], base
    return [p for p in base.glob(rest) if not _hidden(p, base)], base


_One = tuple[list[Path], list[Path], list[PathProblem], "str | None"]


def _split(files: list[Path], suffixes: tuple[str, ...]) -> tuple[list[Path], list[Path]]:
    return [p for p in files if p.suffix.lower() in suffixes], [p for p in files if p.suffix.lower() not in suffixes]


def _expand_one(arg: str, suffixes: tuple[str, ...]) -> _One:
    """(supported files, other files, entries that are no files, the problem) of one argument."""
    names = ", ".join(suffixes)
    if _GLOB_CHARS & set(arg):
        matches, base = _glob(arg)
        if not matches:
            return [], [], [], f"no file matches {arg!r}"
        files, special = _walk(base, [m for m in matches if not m.is_dir()])
        for folder in (m for m in matches if m.is_dir()):
            more, odd = _walk(folder)
            files, special = files + more, special + odd
        found, other = _split(files, suffixes)
        return found, other, special, None if found else f"no {names} file matches {arg!r}"
    path = Path(arg)
    if path.is_dir():
        files, special = _walk(path)
        found, other = _split(files, suffixes)
        return found, other, special, None if found else f"folder {arg!r} holds no {names} files"
    why = not_a_file(path)
    if why:
        return [], [], [], f"{arg!r} {why}"
    if path.suffix.lower() in suffixes:
        return [path], [], [], None
    return [], [], [], f"{arg!r} is not a supported file type (supported: {names})"


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
    special: dict[str, PathProblem] = {}
    problems: list[PathProblem] = []
    for arg in args:
        paths, others, odd, problem = _expand_one(str(arg), wanted)
        found.update(p.resolve() for p in paths)
        other.update(p.resolve() for p in others)
        special.update((os.path.abspath(p.path), p) for p in odd)  # abspath: a loop does not resolve
        if problem:
            problems.append(PathProblem(path=str(arg), reason=problem))
    named = {Path(a).resolve() for a in map(str, args) if not _GLOB_CHARS & set(a) and Path(a).is_file()}
    return Expansion(sorted(found), problems, sorted(other - found - named),  # a named file has its own row
                     [special[k] for k in sorted(special)])
