"""The knowledge base's single-writer lock: ``filelock.FileLock`` on ``<kb>/write.lock``.

On Unix ``FileLock`` is an ``flock``, which the kernel releases when its process dies
(``kill -9`` included), so a crashed writer never leaves a stale lock behind. (A soft lock, a
file whose mere existence means "locked", would outlive such a writer.)

The holder's pid goes into a side file, ``<kb>/write.lock.pid``: filelock owns the lock file's
contents (some versions truncate it on every open, a waiter's included). A waiter that gives
up reads it for the "locked by pid N" message; a pid left by a killed writer is overwritten by
the next holder and never read while nobody holds the lock, except by a waiter racing the new
holder's first write (the message then names the old pid).

Writers hold it for short stretches, not for a whole run: ``add`` / ``sync`` read and embed
without it and take it per batch to commit, then once to settle paths and save the derived
indexes (``index.pipeline``); ``rm`` holds it throughout (no embedding), and so does ``reindex``
(nobody writes while every document is re-embedded). A waiter's timeout is per hold.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from types import TracebackType

from filelock import FileLock, Timeout

from index.errors import KBLocked

POLL_S = 0.2  # seconds between a waiting writer's tries


class WriteLock:
    """Exclusive writer lock. Waits up to ``timeout_s`` seconds, then raises :class:`KBLocked`.

    Not reentrant: a second ``WriteLock`` on the same folder waits for the first, in this
    process too.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> with WriteLock(d) as lock:
    ...     lock.pid_path.read_text() == str(os.getpid())
    True
    >>> lock.pid_path.exists()   # removed on release
    False
    """

    def __init__(self, kb_dir: Path, *, timeout_s: float = 10.0) -> None:
        self.path = Path(kb_dir) / "write.lock"
        self.pid_path = Path(kb_dir) / "write.lock.pid"
        self.timeout_s = timeout_s
        self._lock = FileLock(self.path)

    def acquire(self) -> None:
        """Take the lock, or raise :class:`KBLocked` naming the holder's pid after ``timeout_s``."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        try:
            self._lock.acquire(timeout=self.timeout_s, poll_interval=POLL_S)
        except Timeout:
            raise KBLocked(str(self.path.parent), _read_pid(self.pid_path),
                           time.monotonic() - start) from None
        self.pid_path.write_text(str(os.getpid()))

    def release(self) -> None:
        if self._lock.is_locked:
            self.pid_path.unlink(missing_ok=True)
            self._lock.release()

    def __enter__(self) -> "WriteLock":
        self.acquire()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def _read_pid(path: Path) -> int | None:
    """The pid recorded by the lock's holder, or None (none recorded yet, or unreadable)."""
    try:
        raw = path.read_text().strip()
    except OSError:
        return None
    return int(raw) if raw.isdigit() else None
