"""``index migrate``: copy a knowledge base to another backend without embedding anything again.

Every document goes with its pages, its paths (display path first), its chunks as stored (text,
place, BM25 term lists) and their vectors; the target records the source's embedder, fingerprint
and chunk settings, so it opens, searches and refuses other embedders exactly as the source did.
A document the target already holds is skipped, so a migration that was stopped can be run again.
Folder -> Milvus is the usual direction; Milvus -> folder and Milvus -> Milvus work the same way.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from index.errors import EmbedderMismatch
from index.milvus_uri import parse_kb_location
from index.records import DocInfo
from index.store_protocol import KBStore

# documents in flight to a Milvus target: each one's commit waits for the server's time tick (one at a time,
# 16 chunks/s into a Milvus 2.3.5 server with the client at 2 % of a CPU); concurrent writers of different
# documents are safe (index.milvus_store)
COPY_THREADS = 8
SETTINGS = ("schema_version", "embedder_name", "embedder_fingerprint", "dim", "max_tokens", "overlap")


@dataclass(frozen=True)
class Migration:
    """What ``migrate`` did: documents and chunks copied, documents the target already held."""

    documents: int
    chunks: int
    skipped: int
    replaced: int = 0  # target documents a copied one replaced (it took over their paths)
    only_in_target: tuple[str, ...] = ()  # display paths of target documents the source does not hold


def open_source(kb: str | Path) -> KBStore:
    """The store of the existing knowledge base ``kb`` (raises ``NoKnowledgeBase`` when there is none)."""
    from index.store import Store, require_store

    path = require_store(kb)
    if (loc := parse_kb_location(kb)) is not None:
        from index.milvus_store import MilvusStore

        return MilvusStore(loc)
    return Store(path)


def open_target(kb: str | Path, meta: dict[str, str]) -> KBStore:
    """The target's store, made with the source's settings (``meta``), or checked against them."""
    store: KBStore
    if (loc := parse_kb_location(kb)) is not None:
        from index.milvus_store import MilvusStore

        store = MilvusStore(loc)
        store.create(int(meta["dim"]))
    else:
        from index.store import Store, store_path

        folder = Path(kb)
        if folder.is_file():
            raise ValueError(f"--to {kb}: a file; give a new folder or a knowledge base")
        if folder.is_dir() and any(folder.iterdir()) and not store_path(kb).exists():
            raise ValueError(f"--to {kb}: a folder with other files, not a knowledge base; give a new folder "
                             "(the copy would be written in among them)")
        folder.mkdir(parents=True, exist_ok=True)
        store = Store(store_path(kb))
    have = store.meta()
    if have and any(have.get(k) != meta.get(k) for k in SETTINGS):
        diffs = "; ".join(f"{k}: {have.get(k)!r} there, {meta.get(k)!r} here" for k in SETTINGS
                          if have.get(k) != meta.get(k))
        raise EmbedderMismatch(f"{kb} holds a knowledge base built with other settings ({diffs})")
    if not have:
        store.set_meta({k: meta[k] for k in SETTINGS if k in meta} | {"generation": "0"})
    return store


def migrate(source: str | Path, target: str | Path, *, progress: bool = False) -> Migration:
    """Copy every document of ``source`` to ``target`` (created if needed), vectors as stored; into Milvus
    :data:`COPY_THREADS` documents at a time. Stops at the first failure, every document copied so far kept."""
    src = open_source(source)
    meta = src.meta()
    dst = open_target(target, meta)
    folder = Path(target) if parse_kb_location(target) is None else None
    infos = src.documents()
    try:
        held = dst.documents()
        todo, leaving = plan(infos, held)
        chunks = copy_documents(src, dst, todo, leaving, threads=1 if folder else COPY_THREADS, folder=folder,
                                progress=progress)
        if todo and not folder:
            dst.seal()
    finally:
        src.close()
        dst.close()
    if folder:
        _refresh_folder(folder)
    gone = {s for pairs in leaving.values() for s, _ in pairs}
    source = {i.sha256 for i in infos}
    return Migration(documents=len(todo), chunks=chunks, skipped=len(infos) - len(todo), replaced=len(gone),
                     only_in_target=tuple(d.path for d in held if d.sha256 not in source | gone))


def plan(infos: Sequence[DocInfo], held: Sequence[DocInfo]) -> tuple[list[DocInfo], dict[str, list[tuple[str, str]]]]:
    """The documents of ``infos`` (the source's) that ``held`` (the target's, read once: a check per document cost
    two consistent reads, ~0.4 s on a Milvus server) lacks, and for each the (document, path) pairs of the target
    it takes over: a document copied after its file changed in the source replaces the one there, as `ingest add`
    does, so a search never sees both.

    >>> old, new = (DocInfo(s, "/d/a.txt", "a", "text", 1, (), 1, 3, 0.0) for s in ("old", "new"))
    >>> plan([new], [old])
    ([DocInfo(sha256='new', ...)], {'new': [('old', '/d/a.txt')]})
    """
    present = {d.sha256 for d in held}
    at_path: dict[str, list[str]] = {}
    for d in held:
        for p in d.all_paths:
            at_path.setdefault(p, []).append(d.sha256)
    todo = [i for i in infos if i.sha256 not in present]
    return todo, {i.sha256: [(s, p) for p in i.all_paths for s in at_path.get(p, ()) if s != i.sha256] for i in todo}


def copy_documents(src: KBStore, dst: KBStore, todo: Sequence[DocInfo], leaving: dict[str, list[tuple[str, str]]],
                   *, threads: int, folder: Path | None = None, progress: bool = False) -> int:
    """Copy the documents ``todo``, ``threads`` at a time, each taking the (document, path) pairs
    ``leaving[sha256]`` from the target (``folder``: a folder target, written under its write lock); chunks
    copied. The first failure is raised once the documents being written are done; the rest are not started."""
    from concurrent.futures import ThreadPoolExecutor

    from index.lock import WriteLock

    def copy_one(info: DocInfo) -> int:
        doc_chunks, tokens, vectors = src.document_chunks(info.sha256)
        with WriteLock(folder, timeout_s=60) if folder else nullcontext():
            dst.put_document(src.document_record(info.sha256), doc_chunks, tokens, vectors,
                             size=src.document_size(info.sha256), paths=info.all_paths,
                             leaving=leaving.get(info.sha256, ()))
        return len(doc_chunks)

    chunks = 0
    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(copy_one, info) for info in todo]
        try:
            for n, fut in enumerate(futures, 1):
                chunks += fut.result()
                if progress:
                    print(f"\r{n}/{len(todo)} documents", end="", flush=True)
        except BaseException:
            for f in futures:  # those not started; a started one completes its commit (or leaves none)
                f.cancel()
            raise
    if progress:
        print()
    return chunks


def _refresh_folder(kb_dir: Path) -> None:
    """Build a folder target's FAISS and BM25 indexes (no embedder is loaded)."""
    from index.kb import KnowledgeBase

    with KnowledgeBase.open(kb_dir) as kb, kb._locked():
        kb._refresh_derived()
