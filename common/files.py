"""Atomic file writes (readers see the old content or the new, never a part) and file hashing.

Every write goes to a temporary file in the target's folder (same file system, so the rename is
atomic), is flushed to disk (fsync) and renamed over the target with ``os.replace``. When the
writer raises, the temporary file is removed and the target is left as it was. Swapping a whole
folder of files (``index.derived``'s ``bm25/``, a fresh knowledge base in ``index.pipeline``) is a
different operation and not done here.

>>> import tempfile, pathlib
>>> out = pathlib.Path(tempfile.mkdtemp()) / "sub" / "x.jsonl"
>>> atomic_write_jsonl(out, [{"a": 1}, {"b": "二"}]), out.read_text(encoding="utf-8")
(2, '{"a": 1}\\n{"b": "二"}\\n')
>>> atomic_write_jsonl(out, [], keep_empty=False), out.read_text(encoding="utf-8")  # no rows: kept as it was
(0, '{"a": 1}\\n{"b": "二"}\\n')
>>> atomic_write_text(out, "new"), file_sha256(out)[:16], sorted(p.name for p in out.parent.iterdir())
(None, '11507a0e2f5e69d5', ['x.jsonl'])
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator

BLOCK = 1 << 20  # bytes read at a time when hashing (1 MiB)

__all__ = ["BLOCK", "atomic_path", "atomic_open", "atomic_write_bytes", "atomic_write_text",
           "atomic_write_jsonl", "file_sha256"]


def _temp_beside(path: Path) -> Path:
    """Create an empty, new temporary file ``.<name>.<random>.tmp`` in ``path``'s folder.

    Created with mode 0o666 less the umask (what a plain ``open`` gives), unlike ``tempfile``'s 0o600.
    """
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:  # 1 in 4 billion: draw another name
            continue


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` for writers that take a file name (``faiss.write_index``).

    On a clean exit the file written there is fsynced and renamed over ``path``; when the block
    raises it is removed and ``path`` is untouched. Missing parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_beside(path)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # gone already after the rename


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", *, encoding: str = "utf-8") -> Iterator[IO[Any]]:
    """An open file (``mode`` "w" text, or "wb") that replaces ``path`` atomically when the block ends.

    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "a.txt"; _ = out.write_text("old")
    >>> try:
    ...     with atomic_open(out) as f:
    ...         _ = f.write("half of the new")
    ...         raise RuntimeError("writer failed")
    ... except RuntimeError:
    ...     pass
    >>> out.read_text(), len(list(out.parent.iterdir()))
    ('old', 1)
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode={mode!r} must be 'w' or 'wb'")
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=None if mode == "wb" else encoding) as f:
            yield f


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | Path, text: str, *, encoding: str = "utf-8") -> None:
    """Replace ``path`` with ``text`` atomically."""
    with atomic_open(path, "w", encoding=encoding) as f:
        f.write(text)


class _Discard(Exception):
    """Leave the target as it was (raised inside ``atomic_open``: its temporary file is removed)."""


def atomic_write_jsonl(path: str | Path, rows: Iterable[dict], *, keep_empty: bool = True) -> int:
    """Write ``rows`` as JSON lines (UTF-8, non-ASCII kept) over ``path`` atomically; rows written.

    With ``keep_empty=False`` a run without rows leaves ``path`` as it was, as does any error
    raised while ``rows`` is consumed.
    """
    n = 0
    try:
        with atomic_open(path, "w") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                n += 1
            if not n and not keep_empty:
                raise _Discard
    except _Discard:
        pass
    return n


def file_sha256(path: str | Path) -> str:
    """SHA-256 (hex digest) of a file's bytes, read in :data:`BLOCK` (1 MiB) blocks.

    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "x.txt"; _ = f.write_bytes(b"abc")
    >>> file_sha256(f)[:16]
    'ba7816bf8f01cfea'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def build_folder_once(folder: Path, build: Callable[[Path], None], *, done_marker: str) -> Path:
    """``folder``, built by ``build(path)`` once across threads and processes: under a file lock beside
    it, into a temporary folder renamed into place, complete when it holds ``done_marker`` (a file
    ``build`` writes last). A crash mid-build leaves only a temporary folder (removed on the next try),
    never a half ``folder``; a folder without the marker is rebuilt.

    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "model"
    >>> calls = []
    >>> def build(path):
    ...     calls.append(path); path.mkdir(); _ = (path / "done.txt").write_text("ok")
    >>> first = build_folder_once(target, build, done_marker="done.txt")
    >>> first == build_folder_once(target, build, done_marker="done.txt") == target
    True
    >>> len(calls), sorted(p.name for p in target.iterdir())
    (1, ['done.txt'])
    """
    import shutil
    import tempfile

    from filelock import FileLock

    if (folder / done_marker).is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder.parent / f".{folder.name}.lock")):
        if (folder / done_marker).is_file():
            return folder
        for stale in folder.parent.glob(f".{folder.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)  # no marker: incomplete
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
        try:
            build(tmp / "out")
            os.replace(tmp / "out", folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return folder
