"""The SQLite connections of one knowledge-base store: one per thread, and its transactions.

A thread reads and writes through its own connection, so it only ever sees committed states
(SQLite's WAL: a read transaction keeps the state it began with while writers commit) and
never another thread's open transaction: the UI and the HTTP server search from several
threads while one of them adds documents. One shared connection would let a search read a
writer thread's uncommitted rows, or run its statements inside that writer's transaction.

>>> import tempfile
>>> conns = Connections(Path(tempfile.mkdtemp()) / "kb.sqlite")
>>> with transaction(conns.get()) as db:
...     _ = db.execute("CREATE TABLE t (x)")
>>> with snapshot(conns.get()), snapshot(conns.get()) as db:   # a nested read joins the outer one
...     db.in_transaction
True
>>> conns.get().in_transaction, conns.close()
(False, None)
"""
from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from index.errors import IndexError_, KBLocked

WAL_TRIES, WAL_RETRY_S = 100, 0.05  # switching a new store to WAL: up to 5 s of "database is locked"


class StoreReplaced(KBLocked):
    """``kb.sqlite`` was replaced since the store opened it (another process ran ``index reindex``).

    A :class:`KBLocked` for the error table: the same remedy (run the command again), exit code 1.
    """

    def __init__(self, path: Path) -> None:
        IndexError_.__init__(self, f"knowledge base {path.parent} was reindexed by another process since it "
                                   "was opened here; what was committed before is kept: run the command "
                                   "again (or restart the app) to use the reindexed one")
        self.pid = None


class Connections:
    """One connection per thread to the SQLite file ``path`` (WAL, ``isolation_level=None``:
    transactions are opened explicitly with :func:`transaction` / :func:`snapshot`)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._file: tuple[int, int] | None = None

    def get(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use. Raises :class:`StoreReplaced` when the
        file is no longer the one :meth:`pin` recorded, ``sqlite3.ProgrammingError`` after :meth:`close`."""
        db = getattr(self._local, "db", None)
        return db if db is not None else self._connect()

    def _connect(self) -> sqlite3.Connection:
        with self._lock:
            if self._closed:
                raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._opened.append(db)  # closed by close(), from whichever thread
        _use_wal(db)
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        self.check_current()
        self._local.db = db
        return db

    def pin(self) -> None:
        """Record which file ``path`` is now: later connections and :meth:`check_current` compare."""
        self._file = _identity(self.path)

    def check_current(self) -> None:
        """Raise :class:`StoreReplaced` when ``path`` is no longer the pinned file (``os.replace``)."""
        if self._file is not None and _identity(self.path) != self._file:
            raise StoreReplaced(self.path)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            opened, self._opened = self._opened, []
        for db in opened:
            db.close()


def transaction(db: sqlite3.Connection) -> "_Tx":
    """A write transaction (``BEGIN IMMEDIATE``); not inside another transaction of ``db``."""
    return _Tx(db, "BEGIN IMMEDIATE")


def snapshot(db: sqlite3.Connection) -> "_Tx":
    """A read transaction: every query inside sees the same committed state; inside another
    transaction of ``db`` it joins that one and ends nothing."""
    return _Tx(db, "BEGIN DEFERRED")


def _use_wal(db: sqlite3.Connection) -> None:
    """``journal_mode=WAL``. Switching a new file needs it alone, and SQLite answers "database is
    locked" at once instead of waiting when other processes are opening it too: retried."""
    for _ in range(WAL_TRIES):
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e):
                raise
            time.sleep(WAL_RETRY_S)
    db.execute("PRAGMA journal_mode=WAL")


def _identity(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_dev, st.st_ino


class _Tx:
    """``begin`` ... ``COMMIT``, rolled back on any exception (or joined: see :func:`snapshot`)."""

    def __init__(self, db: sqlite3.Connection, begin: str) -> None:
        self.db, self.begin, self.joined = db, begin, False

    def __enter__(self) -> sqlite3.Connection:
        self.joined = self.begin == "BEGIN DEFERRED" and self.db.in_transaction
        if not self.joined:
            self.db.execute(self.begin)
        return self.db

    def __exit__(self, et: object, ev: object, tb: object) -> None:
        if not self.joined:
            self.db.execute("COMMIT" if et is None else "ROLLBACK")
