"""SQLite metadata store of a knowledge base: documents, pages, chunks (text, BM25 tokens, vectors).

SQLite is the single source of truth. Every document is written in one transaction, so a
``kill -9`` leaves either the whole document or none of it. The FAISS and BM25 indexes are
derived caches, tagged with the store's ``generation``; see :mod:`index.derived`.

Chunk row ids are never reused: each write first records the next free id in ``meta``
(``next_chunk_id``) and new chunks are numbered from it, so a chunk's id names its content
for good, and a derived index catches up with the store by comparing id sets.

A document is identified by its content (the sha256 of its bytes) and knows every path it was
added under (``doc_paths``, in the order added); ``documents.path`` is its display path, the first
of them still stored, which hits and citations show. A document goes when its last path goes.
Schema 1 (one path per document) is migrated on open (:mod:`index.schema`). Each thread reads
through its own connection (:mod:`index.connections`), so it sees committed states only.

Layout of a knowledge-base folder::

    kb/kb.sqlite      documents, doc_paths, pages, chunks, meta   (this module)
    kb/faiss.index    dense vectors by chunk row id    (derived)
    kb/bm25/          sparse index over chunk tokens   (derived)
    kb/write.lock     single-writer lock (filelock)    (index.lock)
    kb/write.lock.pid the lock holder's pid          (index.lock)
"""
from __future__ import annotations

import json
import sqlite3
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from index.connections import Connections, StoreReplaced, snapshot, transaction
from index.errors import NoKnowledgeBase
from index.records import DocInfo, Hit  # DocInfo: imported from here by callers too
from index.schema import open_schema
from ingest.records import Chunk, Document, Page

__all__ = ["DocInfo", "Store", "StoreReplaced", "require_store", "store_path"]

STORE_FILE = "kb.sqlite"  # the knowledge base's truth; everything else in the folder is derived from it


def store_path(kb_dir: str | Path) -> Path:
    """Where the knowledge base in ``kb_dir`` keeps its store (it may not exist yet)."""
    return Path(kb_dir) / STORE_FILE


def require_store(kb_dir: str | Path) -> Path:
    """The store of the existing knowledge base in ``kb_dir``, for readers that must not create one.

    Raises :class:`index.errors.NoKnowledgeBase` (naming ``ingest add``) when there is none.

    >>> require_store("/no/kb")
    Traceback (most recent call last):
    ...
    index.errors.NoKnowledgeBase: no knowledge base at /no/kb; create one with `ingest add FILES --kb /no/kb`
    """
    from index.milvus_uri import parse_kb_location

    if (loc := parse_kb_location(kb_dir)) is not None:  # a Milvus knowledge base: its collections must exist
        from index.milvus_store import MilvusStore

        if not MilvusStore(loc).exists():
            raise NoKnowledgeBase(f"no knowledge base {loc}; create one with `ingest add FILES --kb {loc}`")
        return Path(str(loc))
    path = store_path(kb_dir)
    if not path.is_file():
        raise NoKnowledgeBase(f"no knowledge base at {kb_dir}; create one with `ingest add FILES --kb {kb_dir}`")
    return path


class Store:
    """Typed access to ``kb.sqlite``. Writers must hold :class:`index.lock.WriteLock`.

    Each thread has its own connection (:mod:`index.connections`): it sees committed states only.
    Raises :class:`~index.connections.StoreReplaced` when a thread would open another file than
    the one this store opened (the knowledge base was reindexed meanwhile).
    A :class:`index.store_protocol.KBStore`, like :class:`index.milvus_store.MilvusStore`.
    """

    remote = False  # the knowledge base keeps its FAISS and BM25 files beside it (index.derived)

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._conns = Connections(self.path)
        open_schema(self.db)  # creates the tables, or migrates an older schema (index.schema)
        self._conns.pin()

    @property
    def db(self) -> sqlite3.Connection:
        """This thread's connection."""
        return self._conns.get()

    def check_current(self) -> None:
        """Raise ``StoreReplaced`` when ``kb.sqlite`` is no longer the file this store opened
        (``index reindex`` in another process swapped in a new one); writers check it under the lock."""
        self._conns.check_current()

    def close(self) -> None:
        self._conns.close()

    def create(self, dim: int) -> None:
        """Nothing to do: opening made the tables, and a vector column takes any ``dim``."""

    def collect_orphans(self) -> None:
        """None: there are no orphans to collect, every document being written in one transaction."""
        return None

    # -- meta -------------------------------------------------------------------------
    def meta(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT key, value FROM meta"))

    def set_meta(self, values: dict[str, str]) -> None:
        with self.transaction():
            self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", values.items())

    def generation(self) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key='generation'").fetchone()
        return int(row[0]) if row else 0

    def _reserve_ids(self, n: int) -> int:
        """The first of ``n`` fresh chunk ids (inside a write transaction, before any delete)."""
        row = self.db.execute("SELECT (SELECT value FROM meta WHERE key='next_chunk_id'),"
                              " (SELECT MAX(id) FROM chunks)").fetchone()
        first = max(int(row[0] or 1), (row[1] or 0) + 1)
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('next_chunk_id', ?)", (str(first + n),))
        return first

    def _bump(self) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('generation', ?)",
                        (str(self.generation() + 1),))

    # -- transactions -----------------------------------------------------------------
    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """A write transaction of this thread's connection (not inside another of its transactions)."""
        return transaction(self.db)

    def snapshot(self) -> AbstractContextManager[sqlite3.Connection]:
        """A read transaction: every query inside sees the same committed state. Inside another
        transaction of this thread it joins that one (a search reads the generation, catches the
        derived indexes up and reads the hits in one)."""
        return snapshot(self.db)

    # -- documents --------------------------------------------------------------------
    def has_document(self, sha256: str) -> bool:
        return self.db.execute("SELECT 1 FROM documents WHERE sha256=?", (sha256,)).fetchone() is not None

    def shas_at_path(self, path: str) -> list[str]:
        """The documents stored under ``path``: one or none (two only after a crash mid-replace)."""
        return [r[0] for r in self.db.execute("SELECT sha256 FROM doc_paths WHERE path=? ORDER BY id", (path,))]

    def paths_of(self, sha256: str) -> tuple[str, ...]:
        """Every path of document ``sha256`` in the order added, the display path first (() if not stored)."""
        rows = self.db.execute("SELECT path FROM doc_paths WHERE sha256=? ORDER BY id", (sha256,))
        return tuple(r[0] for r in rows)

    def paths_under(self, root: str) -> list[tuple[str, str]]:
        """(sha256, path) of every stored path starting with ``root`` (a folder ending in a separator)."""
        rows = self.db.execute("SELECT sha256, path FROM doc_paths ORDER BY id")
        return [(sha, path) for sha, path in rows if path.startswith(root)]

    def put_document(self, doc: Document, chunks: Sequence[Chunk], tokens: Sequence[str],
                     vectors: np.ndarray, *, size: int, paths: Sequence[str] = (),
                     leaving: Sequence[tuple[str, str]] = ()) -> list[DocInfo]:
        """Insert ``doc`` with its chunks, stored under ``paths`` (default: ``doc.path``), and forget
        the (sha256, path) pairs of ``leaving`` (as :meth:`unlink_paths`), in one transaction: a
        search sees the old document or the new one, never both nor neither. Returns the documents
        deleted for want of a path."""
        paths = list(dict.fromkeys(paths or [str(doc.path)]))
        rows = [(c.chunk_id, doc.sha256, c.ordinal, c.text, c.page_start, c.page_end, c.char_start,
                 c.char_end, int(c.ocr), t, np.asarray(v, dtype=np.float32).tobytes())
                for c, t, v in zip(chunks, tokens, vectors, strict=True)]
        with self.transaction():
            first = self._reserve_ids(len(rows))
            self.db.execute(
                "INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (doc.sha256, paths[0], doc.title, doc.kind, len(doc.pages),
                 json.dumps(list(doc.ocr_pages)), json.dumps(list(doc.warnings)), size, time.time()))
            self.db.executemany("INSERT INTO doc_paths (sha256, path) VALUES (?, ?)",
                                [(doc.sha256, p) for p in paths])
            self.db.executemany("INSERT INTO pages VALUES (?, ?, ?, ?)",
                                [(doc.sha256, p.number, p.text, int(p.ocr)) for p in doc.pages])
            self.db.executemany(
                "INSERT INTO chunks (id, chunk_id, doc_sha256, ordinal, text, page_start, page_end,"
                " char_start, char_end, ocr, tokens, vector) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                [(first + i,) + r for i, r in enumerate(rows)])
            self._bump()
            return self._unlink(leaving)

    def link_paths(self, pairs: Iterable[tuple[str, str]], *, leaving: Sequence[tuple[str, str]] = ()) -> int:
        """Record each (sha256, path) of a stored document and forget the pairs of ``leaving`` (as
        :meth:`unlink_paths`), in one transaction; how many pairs were new.

        A document's first path stays its display path. Raises ``sqlite3.IntegrityError`` (and
        records nothing) when a sha256 is not stored.
        """
        with self.transaction():
            sql = "INSERT OR IGNORE INTO doc_paths (sha256, path) VALUES (?, ?)"
            new = sum(self.db.execute(sql, pair).rowcount for pair in pairs)
            self._unlink(leaving)
            return new

    def unlink_paths(self, pairs: Iterable[tuple[str, str]]) -> list[DocInfo]:
        """Forget each (sha256, path), in one transaction; a document left without a path is deleted
        with its chunks, and one that keeps a path shows the first left (:meth:`_redisplay`).
        Returns the deleted documents as they were."""
        with self.transaction():
            return self._unlink(pairs)

    def _unlink(self, pairs: Iterable[tuple[str, str]]) -> list[DocInfo]:
        """:meth:`unlink_paths` inside the caller's write transaction."""
        pairs = list(dict.fromkeys(pairs))
        if not pairs:
            return []
        touched = list(dict.fromkeys(sha for sha, _ in pairs))
        before = {d.sha256: d for d in self._infos(touched)}
        self._reserve_ids(0)  # the ids of the deleted chunks stay used
        self.db.executemany("DELETE FROM doc_paths WHERE sha256=? AND path=?", pairs)
        gone = [sha for sha in before if not self.paths_of(sha)]
        self.db.executemany("DELETE FROM documents WHERE sha256=?", [(s,) for s in gone])
        for info in before.values():
            if info.sha256 not in gone:
                self._redisplay(info)
        if gone:
            self._bump()
        return [before[s] for s in gone]

    def _redisplay(self, info: DocInfo) -> None:
        """Show ``info``'s document under its first path left; a title that was the old display
        path's file name (a text file's, a PDF's without one of its own) follows it."""
        path = self.paths_of(info.sha256)[0]
        if path != info.path:
            title = Path(path).stem if info.title == Path(info.path).stem else info.title
            self.db.execute("UPDATE documents SET path=?, title=? WHERE sha256=?", (path, title, info.sha256))

    def delete_documents(self, shas: Iterable[str]) -> int:
        """Delete documents with every path and chunk of theirs, in one transaction; how many were."""
        shas = list(shas)
        with self.transaction():
            self._reserve_ids(0)  # the ids of the deleted chunks stay used
            n = sum(self.db.execute("DELETE FROM documents WHERE sha256=?", (s,)).rowcount for s in shas)
            if n:
                self._bump()
        return n

    def documents(self) -> list[DocInfo]:
        """Every document, by display path, with all its paths."""
        return self._infos()

    def _infos(self, shas: Sequence[str] | None = None) -> list[DocInfo]:
        """The documents ``shas`` (None: all), by display path."""
        if shas is None:
            return self._info_rows("", [])
        return sorted((d for lo in range(0, len(shas), 900)  # under SQLite's bound-parameter limit
                       for d in self._info_rows(f" WHERE d.sha256 IN ({','.join('?' * len(shas[lo:lo + 900]))})",
                                                list(shas[lo:lo + 900]))), key=lambda d: d.path)

    def _info_rows(self, where: str, params: list[str]) -> list[DocInfo]:
        q = ("SELECT d.sha256, d.path, d.title, d.kind, d.n_pages, d.ocr_pages, d.size, d.added_at,"
             " (SELECT COUNT(*) FROM chunks c WHERE c.doc_sha256=d.sha256)"
             f" FROM documents d{where} ORDER BY d.path")
        paths: dict[str, list[str]] = {}
        for sha, path in self.db.execute(f"SELECT p.sha256, p.path FROM doc_paths p JOIN documents d"
                                         f" ON d.sha256=p.sha256{where} ORDER BY p.id", params):
            paths.setdefault(sha, []).append(path)
        return [DocInfo(sha256=r[0], path=r[1], title=r[2], kind=r[3], n_pages=r[4],
                        ocr_pages=tuple(json.loads(r[5])), size=r[6], added_at=r[7], n_chunks=r[8],
                        paths=tuple(paths.get(r[0], ())))
                for r in self.db.execute(q, params)]

    def document_pages(self, sha256: str) -> list[Page]:
        rows = self.db.execute("SELECT number, text, ocr FROM pages WHERE doc_sha256=? ORDER BY number",
                               (sha256,))
        return [Page(number=n, text=t, ocr=bool(o)) for n, t, o in rows]

    def document_record(self, sha256: str) -> Document:
        """The stored document ``sha256`` as a :class:`Document` whose path is its display path."""
        r = self.db.execute("SELECT path, title, kind, warnings FROM documents WHERE sha256=?",
                            (sha256,)).fetchone()
        return Document(path=Path(r[0]), sha256=sha256, title=r[1], kind=r[2],
                        pages=tuple(self.document_pages(sha256)), warnings=tuple(json.loads(r[3])))

    def document_size(self, sha256: str) -> int:
        return int(self.db.execute("SELECT size FROM documents WHERE sha256=?", (sha256,)).fetchone()[0])

    # -- chunks -----------------------------------------------------------------------
    def document_chunks(self, sha256: str) -> tuple[list[Chunk], list[str], np.ndarray]:
        """The chunks of document ``sha256`` in order, their BM25 token strings and vectors (``index migrate``)."""
        rows = self.db.execute("SELECT chunk_id, ordinal, text, page_start, page_end, char_start, char_end, ocr,"
                               " tokens, vector FROM chunks WHERE doc_sha256=? ORDER BY ordinal", (sha256,)).fetchall()
        chunks = [Chunk(doc_sha256=sha256, ordinal=r[1], text=r[2], page_start=r[3], page_end=r[4], char_start=r[5],
                        char_end=r[6], ocr=bool(r[7]), chunk_id=r[0]) for r in rows]
        vecs = np.stack([np.frombuffer(r[9], dtype=np.float32) for r in rows]) if rows else np.zeros((0, 0))
        return chunks, [r[8] for r in rows], vecs

    def count_chunks(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])

    def chunk_ids(self) -> np.ndarray:
        """Every chunk row id, ascending (int64)."""
        cur = self.db.execute("SELECT id FROM chunks ORDER BY id")
        return np.fromiter((r[0] for r in cur), dtype=np.int64)

    def iter_vectors(self, dim: int, batch: int = 8192,
                     ids: Sequence[int] | np.ndarray | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (ids int64, vectors float32 (n, dim)) in batches, ascending id, for FAISS:
        every chunk, or those of ``ids``."""
        for rows in self._rows("id, vector", batch, ids):
            out = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim)
            yield out, vecs

    def all_tokens(self, ids: Sequence[int] | np.ndarray | None = None) -> tuple[list[str], list[list[str]]]:
        """(str(id), BM25 tokens) of every chunk, or of those of ``ids``, ascending id."""
        rows = [r for batch in self._rows("id, tokens", 8192, ids) for r in batch]
        return [str(r[0]) for r in rows], [r[1].split() for r in rows]

    def _rows(self, columns: str, batch: int, ids: Sequence[int] | np.ndarray | None) -> Iterator[list[tuple]]:
        if ids is None:
            cur = self.db.execute(f"SELECT {columns} FROM chunks ORDER BY id")
            while rows := cur.fetchmany(batch):
                yield rows
            return
        wanted = np.unique(np.asarray(ids, dtype=np.int64)).tolist()
        for lo in range(0, len(wanted), 900):  # under SQLite's bound-parameter limit
            part = wanted[lo:lo + 900]
            yield self.db.execute(f"SELECT {columns} FROM chunks WHERE id IN ({','.join('?' * len(part))})"
                                  " ORDER BY id", part).fetchall()

    def find_chunks(self, *, chunk_id: str | None = None, doc_shas: Sequence[str] = (),
                    page: int | None = None) -> list[Hit]:
        """The chunks with ``chunk_id``, or of the documents ``doc_shas`` (covering ``page`` when
        given), in document order, as Hits scored 0."""
        if chunk_id is not None:
            where, params = "chunk_id=?", [chunk_id]
        elif doc_shas:
            where, params = f"doc_sha256 IN ({','.join('?' * len(doc_shas))})", list(doc_shas)
            if page is not None:
                where, params = where + " AND page_start<=? AND page_end>=?", params + [page, page]
        else:
            return []
        rows = self.db.execute(f"SELECT id FROM chunks WHERE {where} ORDER BY doc_sha256, ordinal", params)
        return self.hits([(r[0], 0.0) for r in rows])

    def hits(self, scored: Sequence[tuple[int, float]]) -> list[Hit]:
        """Turn (chunk row id, score) pairs into :class:`Hit` records, keeping the order."""
        if not scored:
            return []
        ids = [i for i, _ in scored]
        q = ("SELECT c.id, c.chunk_id, c.text, c.doc_sha256, d.title, d.path, c.page_start, c.page_end,"
             " c.char_start, c.char_end, c.ocr FROM chunks c JOIN documents d ON d.sha256=c.doc_sha256"
             f" WHERE c.id IN ({','.join('?' * len(ids))})")
        rows = {r[0]: r for r in self.db.execute(q, ids)}
        return [Hit(chunk_id=r[1], text=r[2], score=float(s), doc_sha256=r[3], title=r[4], path=r[5],
                    page_start=r[6], page_end=r[7], char_start=r[8], char_end=r[9], ocr=bool(r[10]))
                for i, s in scored if (r := rows.get(i)) is not None]
