"""What a Milvus knowledge base does its own way: ``reindex`` (new collections, then renamed in).

Milvus has no rename of several collections in one step: the new collections are built under
``NAME_reindex`` while the old ones serve searches, then the old set is renamed to ``NAME_old``,
the new one to ``NAME`` and the old dropped -- a search in another process during the two renames
(milliseconds) fails with "no knowledge base" and can be retried. Writers must not run meanwhile
(Milvus has no lock to hold them off).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from index import milvus_schema as ms
from index.milvus_uri import MilvusLocation


def reindex(kb: Any, embedder: object | str | None = None, *, progress: bool = False, **fields: object) -> Any:
    """Re-chunk and re-embed every document of the Milvus knowledge base ``kb`` (an
    ``index.kb.KnowledgeBase``) into new collections, then swap them in; returns it reopened."""
    KnowledgeBase = type(kb)  # noqa: N806 - the class itself, not imported (index.kb imports this module)
    from index.pipeline import Sink, add_loaded

    loc: MilvusLocation = kb.store.loc
    tmp = replace(loc, name=f"{loc.name}_reindex")
    ms.drop(kb.store.client, tmp.name)
    config = replace(kb.config, kb=Path(str(tmp)), embedder=None, **fields)
    if embedder is None:
        embedder = kb.embedder if config.embedder_backend == "auto" else kb.embedder.name
    new = KnowledgeBase.open(str(tmp), embedder=embedder, config=config)
    infos = kb.documents()
    docs = [kb.store.document_record(d.sha256) for d in infos]
    sizes = {d.sha256: kb.store.document_size(d.sha256) for d in docs}
    new._record_settings()
    add_loaded(Sink(new.store, new.embedder, new.config), docs, progress=progress, sizes=sizes)
    new.store.link_paths([(d.sha256, p) for d in infos for p in d.all_paths])
    client = new.store.client
    old = f"{loc.name}_old"
    ms.drop(client, old)
    ms.rename(client, loc.name, old)
    ms.rename(client, tmp.name, loc.name)
    ms.drop(client, old)
    new.close()
    kb.close()
    return KnowledgeBase.open(str(loc), config=replace(config, kb=Path(str(loc))))
