"""A knowledge base's store in Milvus: the same methods as the SQLite :class:`index.store.Store`.

Milvus has no multi-row transactions, so what a search may see is decided by single-row writes
(collections: :mod:`index.milvus_schema`):

- A document's row in ``NAME_docs`` is its commit marker. ``put_document`` upserts its chunks and
  pages first, then that row; a search (:meth:`MilvusStore.visible`) drops chunks of documents
  without a row, so a writer killed before the row leaves nothing visible (its chunks stay hidden
  until the same bytes are added again -- same chunk keys, so they are overwritten -- or
  :meth:`MilvusStore.collect_orphans` runs).
- A replaced document: the new row lists the old documents it replaces (``replaces``); a search
  drops replaced documents, so the swap is that one row's upsert (old or new, never both or
  neither). The old rows, paths and chunks are deleted after it, then ``replaces`` is cleared; a
  writer killed in between leaves the old document hidden and :meth:`settle_replaced` (run by
  every writer) finishes the job.
- Removing a document deletes its row first (it vanishes at once), then its chunks, pages and paths.

``generation`` is a token (nanoseconds) rewritten after every write; readers compare it to know
whether their in-process BM25 index (:mod:`index.milvus_search`) must catch up.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from index import milvus_schema as ms
from index.errors import DocumentNotFound, MilvusError
from index.milvus_uri import MilvusLocation, connect
from index.records import DocInfo, Hit
from ingest.records import Chunk, Document, Page

BATCH = 1000  # rows per insert/get call
QUERY_WINDOW = 16384  # Milvus's largest offset + limit of one query
_DOC_FIELDS = ["sha256", "path", "title", "kind", "n_pages", "ocr_pages", "warnings", "size", "added_at",
               "n_chunks", "replaces"]
_HIT_FIELDS = ["id", "chunk_id", "text", "doc_sha256", "page_start", "page_end", "char_start", "char_end", "ocr"]


class _Memo:
    """What :meth:`MilvusStore.visible` read inside one snapshot: document rows by sha256 (None: no row), and
    the documents replaced."""

    def __init__(self) -> None:
        self.rows: dict[str, dict | None] = {}
        self.replaced: set[str] | None = None


def chunk_key(sha256: str, ordinal: int) -> int:
    """The chunk's primary key: 63 bits of sha256(document sha256 : ordinal), stable for the same bytes.

    >>> chunk_key("ab", 0) == chunk_key("ab", 0) != chunk_key("ab", 1)
    True
    """
    return int.from_bytes(hashlib.sha256(f"{sha256}:{ordinal}".encode()).digest()[:8], "big") >> 1


def _key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:40]


def _in(field: str, values: Iterable[str]) -> str:
    return f"{field} in {json.dumps(sorted(set(values)))}"  # hex keys only: nothing to escape


class MilvusStore:
    """The knowledge base ``loc.name`` in the Milvus at ``loc.uri``. Writers need no lock: every row
    key is derived from content, and each state a search may see is one row's write (module doc).
    A :class:`index.store_protocol.KBStore`, like the folder's :class:`index.store.Store`."""

    remote = True  # Milvus indexes the vectors (index.milvus_search); there is no write lock to take

    def __init__(self, loc: MilvusLocation, client: Any | None = None) -> None:
        self.loc = loc
        self.path = Path(str(loc))
        self.client = client or connect(loc)
        self.c = ms.names(loc.name)
        self._local = threading.local()  # .memo: this thread's _Memo inside snapshot(), else absent
        ms.ensure_loaded(self.client, loc.name)  # a new process finds them released (Milvus Lite)

    def exists(self) -> bool:
        """True when the knowledge base's collections were made (:meth:`create`)."""
        return ms.exists(self.client, self.loc.name)

    def create(self, dim: int) -> None:
        """Make the collections that do not exist yet, the chunk vectors ``dim``-dimensional."""
        ms.create(self.client, self.loc.name, dim)

    def check_current(self) -> None:
        if not ms.exists(self.client, self.loc.name):
            raise MilvusError(f"the knowledge base {self.loc} was dropped")

    def close(self) -> None:
        self.client.close()

    def seal(self) -> None:
        """Seal what was just written so Milvus indexes it (``flush``): rows a bulk copy left in growing
        segments are searched through the server's interim index, not HNSW (measured after copying 144k chunks
        to Milvus 2.3.5: 42k rows unindexed, dense recall@10 0.957 -> 0.968 and p50 57 -> 41 ms once sealed)."""
        for kind in ("chunks", "docs", "paths", "pages"):
            self.client.flush(self.c[kind])

    def snapshot(self) -> AbstractContextManager[Any]:
        """One search's reads: each is Strong; the document rows and the replaced set :meth:`visible` reads are
        fetched once inside (a search asked for them up to three times, two gRPC round trips each), per thread."""
        return self._memoised()

    @contextmanager
    def _memoised(self) -> Iterator[None]:
        if getattr(self._local, "memo", None) is not None:  # nested: the outer snapshot's memo
            yield
            return
        self._local.memo = _Memo()
        try:
            yield
        finally:
            self._local.memo = None

    def read_level(self) -> dict[str, str]:
        """Keyword arguments of a read: ``Session`` consistency inside :meth:`snapshot` (searches), else the
        collections' ``Strong``. On a Milvus server a Strong read waits for the next time tick (~200 ms; measured
        215 ms per ``get`` vs 2.9 ms Session on Milvus 2.3.5), and a search makes ~6 reads. Session still shows this
        process its own writes; another process's commits show a time tick later (a document committed that
        instant may show part of its chunks for that long). Writers read Strong: they decide on what is stored."""
        return {"consistency_level": "Session"} if getattr(self._local, "memo", None) is not None else {}

    def transaction(self) -> AbstractContextManager[Any]:
        return nullcontext()

    # -- rows -------------------------------------------------------------------------
    def _query(self, kind: str, where: str, fields: list[str]) -> list[dict]:
        """Every row matching ``where``: one query, or an iterator past Milvus's 16384-row window."""
        rows = self.client.query(self.c[kind], filter=where, output_fields=fields, limit=QUERY_WINDOW,
                                 **self.read_level())
        if len(rows) < QUERY_WINDOW:
            return list(rows)
        it = self.client.query_iterator(self.c[kind], batch_size=QUERY_WINDOW // 2, filter=where, output_fields=fields)
        out: list[dict] = []
        try:
            while batch := it.next():
                out.extend(batch)
        finally:
            it.close()
        return out

    def _get(self, kind: str, ids: Sequence, fields: list[str]) -> list[dict]:
        return [r for lo in range(0, len(ids), BATCH)
                for r in self.client.get(self.c[kind], ids=list(ids[lo:lo + BATCH]), output_fields=fields,
                                         **self.read_level())]

    def _upsert(self, kind: str, rows: list[dict]) -> None:
        if kind != "chunks":
            rows = [r | {"v": ms.PLACEHOLDER} for r in rows]
        for lo in range(0, len(rows), BATCH):
            self.client.upsert(self.c[kind], rows[lo:lo + BATCH])

    # -- meta -------------------------------------------------------------------------
    def meta(self) -> dict[str, str]:
        """The recorded settings; {} before :meth:`create`."""
        if not self.exists():
            return {}
        return {r["key"]: r["value"] for r in self._query("meta", "key != ''", ["key", "value"])}

    def set_meta(self, values: dict[str, str]) -> None:
        self._upsert("meta", [{"key": k, "value": str(v)} for k, v in values.items()])

    def generation(self) -> int:
        rows = self.client.get(self.c["meta"], ids=["generation"], output_fields=["value"], **self.read_level())
        return int(rows[0]["value"]) if rows else 0

    def _bump(self) -> None:
        self.set_meta({"generation": str(time.time_ns())})

    # -- documents --------------------------------------------------------------------
    def _doc_rows(self, shas: Sequence[str] | None = None) -> list[dict]:
        if shas is None:
            return self._query("docs", "sha256 != ''", _DOC_FIELDS)
        return self._get("docs", list(dict.fromkeys(shas)), _DOC_FIELDS)

    def visible(self, shas: Iterable[str]) -> dict[str, dict]:
        """The rows of the documents among ``shas`` a search may show: stored and not replaced (inside
        :meth:`snapshot`, rows and the replaced set as first read there)."""
        wanted = set(shas)
        memo = getattr(self._local, "memo", None)
        if memo is None:
            rows, replaced = {r["sha256"]: r for r in self._doc_rows(list(wanted))}, self._replaced()
        else:
            missing = [s for s in wanted if s not in memo.rows]
            if missing:
                memo.rows.update(dict.fromkeys(missing))  # no row: not stored (yet)
                memo.rows.update({r["sha256"]: r for r in self._doc_rows(missing)})
            if memo.replaced is None:
                memo.replaced = self._replaced()
            rows, replaced = {s: r for s in wanted if (r := memo.rows[s]) is not None}, memo.replaced
        hidden = replaced | {s for r in rows.values() for s in json.loads(r["replaces"])}
        return {s: r for s, r in rows.items() if s not in hidden}

    def _replaced(self) -> set[str]:
        """Every document some stored document replaces."""
        return {s for r in self._query("docs", 'replaces != "[]"', ["replaces"]) for s in json.loads(r["replaces"])}

    def has_document(self, sha256: str) -> bool:
        return bool(self.visible([sha256]))

    def _path_rows(self, where: str) -> list[dict]:
        return sorted(self._query("paths", where, ["key", "sha256", "path", "seq"]), key=lambda r: (r["seq"], r["key"]))

    def shas_at_path(self, path: str) -> list[str]:
        shas = [r["sha256"] for r in self._path_rows(f'path_key == "{_key(path)}"')]
        live = self.visible(shas)
        return [s for s in shas if s in live]

    def paths_of(self, sha256: str) -> tuple[str, ...]:
        if not self.visible([sha256]):
            return ()
        return tuple(r["path"] for r in self._path_rows(f'sha256 == "{sha256}"'))

    def paths_under(self, root: str) -> list[tuple[str, str]]:
        rows = [r for r in self._path_rows("key != ''") if r["path"].startswith(root)]
        live = self.visible(r["sha256"] for r in rows)
        return [(r["sha256"], r["path"]) for r in rows if r["sha256"] in live]

    def put_document(self, doc: Document, chunks: Sequence[Chunk], tokens: Sequence[str],
                     vectors: np.ndarray, *, size: int, paths: Sequence[str] = (),
                     leaving: Sequence[tuple[str, str]] = ()) -> list[DocInfo]:
        """Store ``doc`` with its chunks under ``paths`` (default ``doc.path``), and take the pairs of
        ``leaving`` from their documents; its row (the commit) also marks the documents that lose their
        last path as replaced, so a search sees the old or the new, never both nor neither."""
        paths = list(dict.fromkeys(paths or [str(doc.path)]))
        vecs = np.asarray(vectors, dtype=np.float32)
        self._upsert("chunks", [
            {"id": chunk_key(doc.sha256, c.ordinal), "chunk_id": c.chunk_id, "doc_sha256": doc.sha256,
             "ordinal": c.ordinal, "text": c.text, "page_start": c.page_start, "page_end": c.page_end,
             "char_start": c.char_start, "char_end": c.char_end, "ocr": bool(c.ocr), "tokens": t,
             "vector": v.tolist()} for c, t, v in zip(chunks, tokens, vecs, strict=True)])
        self._upsert("pages", [{"key": f"{doc.sha256}:{p.number}:{i}", "doc_sha256": doc.sha256,
                                "number": p.number, "part": i, "text": p.text[lo:lo + ms.PAGE_PART_CHARS],
                                "ocr": bool(p.ocr)}
                               for p in doc.pages for i, lo in enumerate(range(0, max(len(p.text), 1),
                                                                               ms.PAGE_PART_CHARS))])
        replaced = self._last_paths_leaving(leaving)
        row = {"sha256": doc.sha256, "path": paths[0], "title": doc.title, "kind": doc.kind,
               "n_pages": len(doc.pages), "ocr_pages": json.dumps(list(doc.ocr_pages)),
               "warnings": json.dumps(list(doc.warnings)), "size": int(size), "added_at": time.time(),
               "n_chunks": len(chunks), "replaces": json.dumps(replaced)}
        self._upsert("docs", [row])  # the commit
        self._add_paths([(doc.sha256, p) for p in paths])
        gone = self._unlink(leaving)
        if replaced:
            self._upsert("docs", [row | {"replaces": "[]"}])
        self._bump()
        return gone

    def _last_paths_leaving(self, leaving: Sequence[tuple[str, str]]) -> list[str]:
        """The documents of ``leaving`` that would be left without a path."""
        out = []
        for sha in dict.fromkeys(s for s, _ in leaving):
            going = {p for s, p in leaving if s == sha}
            if set(self.paths_of(sha)) <= going:
                out.append(sha)
        return out

    def _add_paths(self, pairs: Sequence[tuple[str, str]]) -> int:
        have = {r["key"] for r in self._get("paths", [_key(s, p) for s, p in pairs], ["key"])}
        new = [(s, p) for s, p in dict.fromkeys(pairs) if _key(s, p) not in have]
        seq = time.time_ns()
        self._upsert("paths", [{"key": _key(s, p), "sha256": s, "path": p, "path_key": _key(p), "seq": seq + i}
                               for i, (s, p) in enumerate(new)])
        return len(new)

    def link_paths(self, pairs: Iterable[tuple[str, str]], *, leaving: Sequence[tuple[str, str]] = ()) -> int:
        """Record each (sha256, path) of a stored document, then forget the pairs of ``leaving``; how
        many pairs were new. Raises :class:`DocumentNotFound` (recording nothing) for an unknown sha256."""
        pairs = list(pairs)
        missing = {s for s, _ in pairs} - set(self.visible(s for s, _ in pairs))
        if missing:
            raise DocumentNotFound(f"not stored: {', '.join(sorted(missing))}")
        new = self._add_paths(pairs)
        self._unlink(leaving)
        self._bump()
        return new

    def unlink_paths(self, pairs: Iterable[tuple[str, str]]) -> list[DocInfo]:
        """Forget each (sha256, path); a document left without a path is deleted. Returns those deleted."""
        gone = self._unlink(list(pairs))
        self._bump()
        return gone

    def _unlink(self, pairs: Iterable[tuple[str, str]]) -> list[DocInfo]:
        pairs = list(dict.fromkeys(pairs))
        if not pairs:
            return []
        before = {d.sha256: d for d in self._infos(list(dict.fromkeys(s for s, _ in pairs)), hidden=True)}
        self.client.delete(self.c["paths"], ids=[_key(s, p) for s, p in pairs])
        gone = [sha for sha in before if not self._path_rows(f'sha256 == "{sha}"')]
        self._delete(gone)
        for info in before.values():
            if info.sha256 not in gone:
                self._redisplay(info)
        return [before[s] for s in gone]

    def _redisplay(self, info: DocInfo) -> None:
        """Show the document under its first path left (a title that was the old path's stem follows it)."""
        path = self._path_rows(f'sha256 == "{info.sha256}"')[0]["path"]
        if path != info.path:
            row = self._doc_rows([info.sha256])[0]
            title = Path(path).stem if info.title == Path(info.path).stem else info.title
            self._upsert("docs", [row | {"path": path, "title": title}])

    def _delete(self, shas: Sequence[str]) -> None:
        """Delete documents: the rows first (they vanish from searches), then chunks, pages, paths."""
        if not shas:
            return
        self.client.delete(self.c["docs"], ids=list(shas))
        for kind, field in (("chunks", "doc_sha256"), ("pages", "doc_sha256"), ("paths", "sha256")):
            self.client.delete(self.c[kind], filter=_in(field, shas))

    def delete_documents(self, shas: Iterable[str]) -> int:
        shas = [s for s in dict.fromkeys(shas) if self.visible([s])]
        self._delete(shas)
        if shas:
            self._bump()
        return len(shas)

    def settle_replaced(self) -> None:
        """Finish replacements a killed writer left half done: delete the documents still marked replaced."""
        for row in self._query("docs", 'replaces != "[]"', _DOC_FIELDS):
            self._delete(json.loads(row["replaces"]))
            self._upsert("docs", [row | {"replaces": "[]"}])

    def collect_orphans(self) -> int:
        """Delete chunks and pages of documents without a row (writers killed before their commit); how
        many documents' were. A writer adding a document meanwhile would lose its chunks: run it alone."""
        docs = {r["sha256"] for r in self._query("docs", "sha256 != ''", ["sha256"])}
        orphans = {r["doc_sha256"] for r in self._query("chunks", "id >= 0", ["doc_sha256"])} - docs
        orphans |= {r["doc_sha256"] for r in self._query("pages", "key != ''", ["doc_sha256"])} - docs
        for kind in ("chunks", "pages"):
            if orphans:
                self.client.delete(self.c[kind], filter=_in("doc_sha256", orphans))
        return len(orphans)

    def documents(self) -> list[DocInfo]:
        return self._infos()

    def _infos(self, shas: Sequence[str] | None = None, hidden: bool = False) -> list[DocInfo]:
        """The documents ``shas`` (None: all) a search may show (``hidden``: replaced ones too), by path."""
        rows = self._doc_rows(shas)
        live = {r["sha256"] for r in rows} if hidden else self.visible(r["sha256"] for r in rows)
        paths: dict[str, list[str]] = {}
        where = "key != ''" if shas is None else _in("sha256", live)
        for r in self._path_rows(where) if live else []:
            paths.setdefault(r["sha256"], []).append(r["path"])
        return sorted((DocInfo(sha256=r["sha256"], path=r["path"], title=r["title"], kind=r["kind"],
                               n_pages=r["n_pages"], ocr_pages=tuple(json.loads(r["ocr_pages"])), size=r["size"],
                               added_at=r["added_at"], n_chunks=r["n_chunks"], paths=tuple(paths.get(r["sha256"], ())))
                       for r in rows if r["sha256"] in live), key=lambda d: d.path)

    def document_pages(self, sha256: str) -> list[Page]:
        rows = sorted(self._query("pages", f'doc_sha256 == "{sha256}"', ["number", "part", "text", "ocr"]),
                      key=lambda r: (r["number"], r["part"]))
        pages: dict[int, Page] = {}
        for r in rows:
            old = pages.get(r["number"])
            pages[r["number"]] = Page(number=r["number"], text=(old.text if old else "") + r["text"], ocr=r["ocr"])
        return list(pages.values())

    def document_record(self, sha256: str) -> Document:
        r = self._doc_rows([sha256])[0]
        return Document(path=Path(r["path"]), sha256=sha256, title=r["title"], kind=r["kind"],
                        pages=tuple(self.document_pages(sha256)), warnings=tuple(json.loads(r["warnings"])))

    def document_size(self, sha256: str) -> int:
        return int(self._doc_rows([sha256])[0]["size"])

    # -- chunks -----------------------------------------------------------------------
    def chunk_docs(self) -> tuple[np.ndarray, list[str]]:
        """(chunk keys int64 ascending, their documents' sha256), hidden ones included."""
        rows = sorted(self._query("chunks", "id >= 0", ["id", "doc_sha256"]), key=lambda r: r["id"])
        return np.fromiter((r["id"] for r in rows), dtype=np.int64, count=len(rows)), [r["doc_sha256"] for r in rows]

    def document_chunks(self, sha256: str) -> tuple[list[Chunk], list[str], np.ndarray]:
        """The chunks of document ``sha256`` in order, their BM25 token strings and vectors (``index migrate``)."""
        fields = ["chunk_id", "ordinal", "text", "page_start", "page_end", "char_start", "char_end", "ocr", "tokens",
                  "vector"]
        rows = sorted(self._query("chunks", f'doc_sha256 == "{sha256}"', fields), key=lambda r: r["ordinal"])
        chunks = [Chunk(doc_sha256=sha256, **{k: r[k] for k in fields[:8]}) for r in rows]
        vecs = np.asarray([r["vector"] for r in rows], dtype=np.float32)
        return chunks, [r["tokens"] for r in rows], vecs

    def count_chunks(self) -> int:
        return len(self.chunk_ids())

    def chunk_ids(self) -> np.ndarray:
        """The keys of every chunk of a visible document, ascending (int64)."""
        ids, shas = self.chunk_docs()
        live = self.visible(shas)
        return ids[np.fromiter((s in live for s in shas), dtype=bool, count=len(shas))]

    def iter_vectors(self, dim: int, batch: int = 8192,
                     ids: Sequence[int] | np.ndarray | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (ids int64, vectors float32 (n, dim)) in batches, ascending id: every chunk, or those of ``ids``."""
        wanted = np.unique(np.asarray(self.chunk_ids() if ids is None else ids, dtype=np.int64)).tolist()
        for lo in range(0, len(wanted), batch):
            rows = sorted(self._get("chunks", wanted[lo:lo + batch], ["id", "vector"]), key=lambda r: r["id"])
            if rows:
                yield (np.array([r["id"] for r in rows], dtype=np.int64),
                       np.asarray([r["vector"] for r in rows], dtype=np.float32).reshape(len(rows), dim))

    def all_tokens(self, ids: Sequence[int] | np.ndarray | None = None) -> tuple[list[str], list[list[str]]]:
        """(str(id), BM25 tokens) of every chunk, or of those of ``ids``, ascending id."""
        wanted = np.unique(np.asarray(self.chunk_ids() if ids is None else ids, dtype=np.int64)).tolist()
        rows = sorted(self._get("chunks", wanted, ["id", "tokens"]), key=lambda r: r["id"])
        return [str(r["id"]) for r in rows], [r["tokens"].split() for r in rows]

    def find_chunks(self, *, chunk_id: str | None = None, doc_shas: Sequence[str] = (),
                    page: int | None = None) -> list[Hit]:
        """The chunks with ``chunk_id``, or of the documents ``doc_shas`` (covering ``page``), in
        document order, as Hits scored 0."""
        if chunk_id is not None:
            where = f"chunk_id == {json.dumps(chunk_id)}"
        elif doc_shas:
            where = _in("doc_sha256", doc_shas) + ("" if page is None else f" and page_start <= {int(page)}"
                                                                            f" and page_end >= {int(page)}")
        else:
            return []
        rows = sorted(self._query("chunks", where, ["id", "doc_sha256", "ordinal"]),
                      key=lambda r: (r["doc_sha256"], r["ordinal"]))
        return self.hits([(r["id"], 0.0) for r in rows])

    def hits(self, scored: Sequence[tuple[int, float]]) -> list[Hit]:
        """Turn (chunk key, score) pairs into :class:`Hit` records, keeping the order; chunks of
        documents a search may not show (uncommitted, replaced, removed) are left out."""
        if not scored:
            return []
        rows = {r["id"]: r for r in self._get("chunks", [int(i) for i, _ in scored], _HIT_FIELDS)}
        docs = self.visible(r["doc_sha256"] for r in rows.values())
        return [Hit(chunk_id=r["chunk_id"], text=r["text"], score=float(s), doc_sha256=r["doc_sha256"],
                    title=d["title"], path=d["path"], page_start=r["page_start"], page_end=r["page_end"],
                    char_start=r["char_start"], char_end=r["char_end"], ocr=bool(r["ocr"]))
                for i, s in scored if (r := rows.get(int(i))) is not None and (d := docs.get(r["doc_sha256"]))]
