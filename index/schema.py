"""The tables of a knowledge base's store (``kb.sqlite``) and the migration of older schemas.

Schema 2 (this one) gives each document every path it was added under, in ``doc_paths``; schema
1 kept one path per document, in ``documents.path``. :func:`open_schema` creates the tables of a
new store and migrates a schema-1 store in one transaction: its documents, pages, chunks,
vectors and chunk ids stay as they are, and each document's stored path becomes its first
(and only) entry of ``doc_paths``. ``documents.path`` stays, as the display path (the first of
its ``doc_paths``), which hits and citations show.

>>> import sqlite3
>>> db = sqlite3.connect(":memory:", isolation_level=None)
>>> open_schema(db)   # a new store: nothing to migrate
False
>>> _ = db.execute("INSERT INTO meta VALUES ('schema_version', '1')")   # as schema 1 left it:
>>> _ = db.execute("INSERT INTO documents VALUES ('ab12', '/d/a.txt', 'a', 'text', 1, '[]', '[]', 3, 0)")
>>> open_schema(db), db.execute("SELECT sha256, path FROM doc_paths").fetchall()
(True, [('ab12', '/d/a.txt')])
>>> db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0], open_schema(db)
('2', False)
"""
from __future__ import annotations

import sqlite3

__all__ = ["SCHEMA_VERSION", "open_schema"]

SCHEMA_VERSION = 2  # 2 added doc_paths; a schema-1 store is migrated when opened

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    sha256 TEXT PRIMARY KEY,
    path TEXT NOT NULL,                -- the display path: the first of its doc_paths
    title TEXT NOT NULL, kind TEXT NOT NULL,
    n_pages INTEGER NOT NULL, ocr_pages TEXT NOT NULL, warnings TEXT NOT NULL,
    size INTEGER NOT NULL, added_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS documents_path ON documents(path);
CREATE TABLE IF NOT EXISTS doc_paths (
    id INTEGER PRIMARY KEY,            -- the order paths were added in (stable across VACUUM)
    sha256 TEXT NOT NULL REFERENCES documents(sha256) ON DELETE CASCADE,
    path TEXT NOT NULL,
    UNIQUE (sha256, path));
CREATE INDEX IF NOT EXISTS doc_paths_path ON doc_paths(path);
CREATE TABLE IF NOT EXISTS pages (
    doc_sha256 TEXT NOT NULL REFERENCES documents(sha256) ON DELETE CASCADE,
    number INTEGER NOT NULL, text TEXT NOT NULL, ocr INTEGER NOT NULL,
    PRIMARY KEY (doc_sha256, number));
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,            -- the FAISS / BM25 id of the chunk
    chunk_id TEXT NOT NULL UNIQUE,
    doc_sha256 TEXT NOT NULL REFERENCES documents(sha256) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL, text TEXT NOT NULL,
    page_start INTEGER NOT NULL, page_end INTEGER NOT NULL,
    char_start INTEGER NOT NULL, char_end INTEGER NOT NULL, ocr INTEGER NOT NULL,
    tokens TEXT NOT NULL,              -- BM25 tokens, space-joined
    vector BLOB NOT NULL);             -- float32, L2-normalised
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_sha256);
"""


def open_schema(db: sqlite3.Connection) -> bool:
    """Create the missing tables on ``db`` (opened with ``isolation_level=None``), then migrate a
    schema-1 store; True when it migrated. Idempotent, and safe against a crash at any point: the
    migration is one transaction, and a store it did not commit is still schema 1 next time."""
    db.executescript(_SCHEMA)  # CREATE ... IF NOT EXISTS: a no-op on a store that has them
    if _version(db) != "1":
        return False
    db.execute("BEGIN IMMEDIATE")
    try:
        migrated = _version(db) == "1"  # another process may have migrated it meanwhile
        if migrated:
            db.execute("INSERT OR IGNORE INTO doc_paths (sha256, path)"
                       " SELECT sha256, path FROM documents ORDER BY added_at, sha256")
            db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return migrated


def _version(db: sqlite3.Connection) -> str | None:
    row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    return row[0] if row else None
