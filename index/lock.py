"""The knowledge base's single-writer lock: an flock on ``<kb>/write.lock`` holding the owner's pid.

flock is released by the kernel when its process dies (``kill -9`` included), so a crashed
writer never leaves a stale lock behind.
"""
from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from index.errors import KBLocked

POLL_S = 0.2  # how often a waiting writer retries


class WriteLock:
    """Exclusive writer lock. Waits up to ``timeout_s`` then raises :class:`KBLocked`.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> with WriteLock(d):
    ...     pass
    """

    def __init__(self, kb_dir: Path, *, timeout_s: float = 10.0) -> None:
        self.path = Path(kb_dir) / "write.lock"
        self.timeout_s = timeout_s
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        start = time.monotonic()
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - start
                if waited >= self.timeout_s:
                    pid = _read_pid(fd)
                    os.close(fd)
                    raise KBLocked(str(self.path.parent), pid, waited) from None
                time.sleep(POLL_S)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "WriteLock":
        self.acquire()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    raw = os.pread(fd, 32, 0).decode(errors="ignore").strip()
    return int(raw) if raw.isdigit() else None
