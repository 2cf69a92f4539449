"""``assistant eval --compare-embedder``: the retrieval pass again, over a copy of the knowledge base
re-embedded with another embedder (e.g. the folder ``finetune embedder`` wrote).

The user's knowledge base is only read: its store is copied with SQLite's backup API (one consistent
snapshot, whatever another process writes meanwhile; a Milvus knowledge base is copied with
:func:`index.milvus_migrate.migrate`), and the copy is re-embedded with
:meth:`index.kb.KnowledgeBase.reindex`, the code behind ``index reindex``. The copy lives under
:func:`index.evaluate.cache_root` ``/compare/``, in a folder named by the knowledge base's path and
content (documents, their paths, chunk settings) and by the compared embedder
(:func:`index.evaluate.embedder_version`: backend and weight files), built once across processes
(:func:`common.files.build_folder_once`): a second eval re-embeds nothing. Only retrieval is
compared: the systems still answer with the knowledge base's own embedder.

>>> safe_name("/home/me/out/e5 adapted")
'_home_me_out_e5_adapted'
"""
from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from pathlib import Path
from typing import Any

from assistant.errors import ConfigError

__all__ = ["DONE", "safe_name", "kb_content_key", "compared_kb_folder", "reembedded_copy", "kb_embedder_name",
           "open_compared"]

DONE = "compare.json"  # written last into a finished copy: what it was made from


def safe_name(text: str, n: int = 40) -> str:
    """``text`` as a file-name part: runs of other characters than ``A-Za-z0-9._-`` become ``_``, last ``n`` kept."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[-n:]


def kb_content_key(kb: Any) -> str:
    """sha256 (hex, 16 characters) of a knowledge base's location and content: its documents (sha256,
    title, paths, pages, chunks) and chunk settings. Any ``ingest add``/``rm`` that changes what a
    re-embedded copy would hold changes it; reopening or searching does not."""
    meta = kb.store.meta()
    digest = hashlib.sha256(str(kb.store.loc if kb.remote else Path(kb.path).resolve()).encode())
    digest.update(json.dumps([meta.get(key) for key in ("schema_version", "max_tokens", "overlap")]).encode())
    for doc in sorted(kb.documents(), key=lambda d: d.sha256):
        digest.update(json.dumps([doc.sha256, doc.title, list(doc.all_paths), doc.n_pages, doc.n_chunks],
                                 ensure_ascii=False).encode())
    return digest.hexdigest()[:16]


def compared_kb_folder(kb: Any, embedder: str) -> Path:
    """The cache folder of ``kb`` re-embedded with ``embedder`` (it may not exist yet)."""
    from index.evaluate import cache_root, embedder_version

    name = "-".join((safe_name(Path(str(kb.path)).name, 24), kb_content_key(kb), safe_name(embedder),
                     embedder_version(embedder)))
    return cache_root() / "compare" / name


def _copy_store(kb: Any, folder: Path) -> None:
    """A consistent copy of ``kb``'s store into the new folder ``folder`` (the source is only read)."""
    from index.store import store_path

    folder.mkdir(parents=True)
    if kb.remote:
        from index.milvus_migrate import migrate

        migrate(str(kb.store.loc), folder)  # documents, chunks, vectors: no embedding
        return
    target = sqlite3.connect(store_path(folder))
    try:
        kb.store.db.backup(target)  # every page in one step: one consistent state of the source
    finally:
        target.close()


def _build(kb: Any, embedder: str, progress: bool) -> Any:
    """``build(folder)`` for :func:`common.files.build_folder_once`: copy, re-embed, then write :data:`DONE`."""
    from index.embedder import load_embedder
    from index.kb import KnowledgeBase

    def build(folder: Path) -> None:
        _copy_store(kb, folder)
        emb = load_embedder(embedder)
        chunking: dict[str, Any] = {}
        recorded = int(kb.store.meta().get("max_tokens") or 0)
        if recorded > emb.max_tokens:  # the compared model reads less: its chunks must fit it
            chunking["max_tokens"] = emb.max_tokens
        copy = KnowledgeBase.open(folder)
        new = copy.reindex(emb, progress=progress, **chunking)
        try:
            info = {"source": str(kb.path), "embedder": emb.name, "fingerprint": emb.fingerprint,
                    "documents": len(new.documents()), "max_tokens": new.config.max_tokens,
                    "overlap": new.config.overlap}
        finally:
            new.close()
        (folder / DONE).write_text(json.dumps(info, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

    return build


def reembedded_copy(kb: Any, embedder: str, *, progress: bool = False) -> tuple[Path, bool]:
    """(folder of ``kb`` re-embedded with ``embedder``, whether it was already cached). ``kb``: an open
    :class:`index.kb.KnowledgeBase`, never written to. Raises ConfigError for a knowledge base
    without a store (e.g. a stand-in object), ``EmbedderNotFound`` for an unknown embedder."""
    from common.files import build_folder_once

    if not hasattr(kb, "store") or not hasattr(kb, "remote"):
        raise ConfigError("--compare-embedder needs a knowledge base (a folder or Milvus), not a stand-in object")
    folder = compared_kb_folder(kb, embedder)
    cached = (folder / DONE).is_file()
    return build_folder_once(folder, _build(kb, embedder, progress), done_marker=DONE), cached


def kb_embedder_name(kb: Any) -> str:
    """The name of the embedder ``kb`` was built with (from its store: nothing is loaded)."""
    store = getattr(kb, "store", None)
    name = store.meta().get("embedder_name") if store is not None else None
    return str(name or getattr(getattr(kb, "embedder", None), "name", "") or "?")


def open_compared(kb: Any, embedder: str, *, progress: bool = False) -> tuple[Any, Path, bool]:
    """(the re-embedded copy of ``kb``, opened with ``kb``'s reranker; its folder; whether it was cached):
    :func:`reembedded_copy`. The caller closes it."""
    from index.kb import KnowledgeBase

    folder, reused = reembedded_copy(kb, embedder, progress=progress)
    reranker = getattr(getattr(kb, "config", None), "reranker", None)
    return KnowledgeBase.open(folder, reranker=reranker), folder, reused
