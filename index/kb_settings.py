"""The settings a knowledge base records (schema version, embedder name and fingerprint, dim, chunk
settings), the embedder they name, and the check that refuses to mix others into it (:mod:`index.kb`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from index.config import DEFAULT_EMBEDDER, IndexConfig
from index.errors import EmbedderMismatch, SchemaMismatch
from index.schema import SCHEMA_VERSION


def resolve_embedder(wanted: object | str | None, meta: dict[str, str], backend: str = "auto") -> object:
    """``wanted`` (an Embedder, a name, or None: the recorded one, else the default) on ``backend``;
    ``auto`` for the embedder the store records is the backend it was built with (its fingerprint says)."""
    from index.embedder import backend_of, load_embedder, resolve_backend

    if wanted is not None and not isinstance(wanted, str):
        return wanted
    recorded = meta.get("embedder_name")
    name = wanted or recorded or DEFAULT_EMBEDDER
    if backend == "auto" and name == recorded:
        built = backend_of(meta.get("embedder_fingerprint", ""))
        backend = "auto" if built == resolve_backend(name) else built
    return load_embedder(name) if backend == "auto" else load_embedder(name, backend)


@dataclass(frozen=True)
class Recorded:
    """The embedder a store records, standing in for it in :func:`check_meta` until it is loaded."""

    name: str
    fingerprint: str
    dim: int

    @classmethod
    def of(cls, meta: dict[str, str]) -> "Recorded":
        return cls(meta.get("embedder_name", ""), meta.get("embedder_fingerprint", ""), int(meta.get("dim", 0)))


def meta_for(emb: object, config: IndexConfig) -> dict[str, str]:
    """The settings a knowledge base built with ``emb`` and ``config``'s chunking records."""
    return {"schema_version": str(SCHEMA_VERSION), "embedder_name": emb.name,
            "embedder_fingerprint": emb.fingerprint, "dim": str(emb.dim),
            "max_tokens": str(config.max_tokens), "overlap": str(config.overlap)}


def check_meta(path: Path, meta: dict[str, str], emb: object, config: IndexConfig) -> None:
    """Refuse to mix embedders or chunk settings in one knowledge base."""
    if not meta:
        return
    if meta.get("schema_version") != str(SCHEMA_VERSION):
        raise SchemaMismatch(
            f"{path} has schema version {meta.get('schema_version')}, this tool writes "
            f"{SCHEMA_VERSION}; re-create it with `ingest add` into a new --kb folder")
    want = meta_for(emb, config)
    diffs = [f"{key}: built with {meta.get(key)!r}, asked for {want[key]!r}"
             for key in ("embedder_name", "embedder_fingerprint", "max_tokens", "overlap")
             if meta.get(key) != want[key]]
    if diffs:
        from index.embedder import backend_of

        built, asked = backend_of(meta.get("embedder_fingerprint", "")), backend_of(want["embedder_fingerprint"])
        backends = (f" It was embedded on the {built} backend and this asks for {asked} (their vectors differ): "
                    f"pass --embedder-backend {built} to use it as built." if built != asked else "")
        raise EmbedderMismatch(
            f"knowledge base {path} was built with other settings ({'; '.join(diffs)}).{backends} "
            f"Open it without --embedder/--max-tokens/--overlap to use what it was built with, or run "
            f"`index reindex --kb {path} --embedder {want['embedder_name']} --embedder-backend {asked} --max-tokens "
            f"{want['max_tokens']} --overlap {want['overlap']}` to re-embed everything.")

