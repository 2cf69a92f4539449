"""The Milvus collections of one knowledge base (``index.milvus_store``) and their indexes.

``NAME_chunks``: a row per chunk, primary key a 63-bit hash of (document sha256, ordinal), so the
same bytes always make the same rows (an ``upsert`` by two writers converges), with its text, place,
BM25 tokens and vector (HNSW, inner product: the vectors are L2-normalised, as FAISS's are).
``NAME_docs``: a row per document (sha256 key) -- its commit marker: chunks of a document without a
row are never returned. ``NAME_paths``: a row per (document, path). ``NAME_pages``: page texts
(in parts under Milvus's VARCHAR limit). ``NAME_meta``: the embedder, chunk settings, generation.
Milvus wants a vector field in every collection: the last three carry a 2-d placeholder.
"""
from __future__ import annotations

from typing import Any

HNSW_M = 16
HNSW_EF_CONSTRUCTION = 200
# HNSW candidate list at search (at least the candidates asked for, index.kb.CANDIDATES). bench/milvus_scale.py,
# 144k real e5 chunk vectors on Milvus 2.3.5, 60 queries: ef 128 / 256 / 512 gave dense recall@10 0.968 / 0.975 /
# 0.983 against exact search (hits tied within 1e-3 of the 10th exact score counted: 0.985 / 0.987 / 1.000) for
# dense p50 41 / 46 / 53 ms; 512 is the smallest meeting 0.98
HNSW_EF_SEARCH = 512
TEXT_MAX = 65535  # Milvus VARCHAR limit (bytes)
PAGE_PART_CHARS = 16000  # page text stored in parts of this many characters (<= TEXT_MAX bytes of UTF-8)
PLACEHOLDER = [0.0, 1.0]
KINDS = ("chunks", "docs", "paths", "pages", "meta")


def names(prefix: str) -> dict[str, str]:
    """The collection name of each kind.

    >>> names("hr")["chunks"]
    'hr_chunks'
    """
    return {kind: f"{prefix}_{kind}" for kind in KINDS}


def exists(client: Any, prefix: str) -> bool:
    """True when the knowledge base ``prefix`` has its meta collection (it was created)."""
    return bool(client.has_collection(names(prefix)["meta"]))


def ensure_loaded(client: Any, prefix: str) -> None:
    """Load the knowledge base's existing collections that are not loaded. Milvus keeps a collection's
    loaded state in the serving process: a Milvus Lite file opened by a new process (``ingest add``, then
    ``index search``) finds every collection 'released', and any query failed until it was loaded."""
    from pymilvus.client.types import LoadState

    for name in names(prefix).values():
        if client.has_collection(name) and client.get_load_state(name).get("state") != LoadState.Loaded:
            client.load_collection(name)


def create(client: Any, prefix: str, dim: int) -> None:
    """Create the collections that do not exist yet (the chunk vectors ``dim``-dimensional)."""
    from pymilvus import DataType

    v = DataType.VARCHAR
    specs: dict[str, list[tuple]] = {
        "chunks": [("id", DataType.INT64, {"is_primary": True}), ("chunk_id", v, {"max_length": 256}),
                   ("doc_sha256", v, {"max_length": 64}), ("ordinal", DataType.INT64, {}),
                   ("text", v, {"max_length": TEXT_MAX}), ("page_start", DataType.INT64, {}),
                   ("page_end", DataType.INT64, {}), ("char_start", DataType.INT64, {}),
                   ("char_end", DataType.INT64, {}), ("ocr", DataType.BOOL, {}),
                   ("tokens", v, {"max_length": TEXT_MAX}), ("vector", DataType.FLOAT_VECTOR, {"dim": dim})],
        "docs": [("sha256", v, {"is_primary": True, "max_length": 64}), ("path", v, {"max_length": 4096}),
                 ("title", v, {"max_length": 2048}), ("kind", v, {"max_length": 32}),
                 ("n_pages", DataType.INT64, {}), ("ocr_pages", v, {"max_length": TEXT_MAX}),
                 ("warnings", v, {"max_length": TEXT_MAX}), ("size", DataType.INT64, {}),
                 ("added_at", DataType.DOUBLE, {}), ("n_chunks", DataType.INT64, {}),
                 ("replaces", v, {"max_length": TEXT_MAX})],
        "paths": [("key", v, {"is_primary": True, "max_length": 64}), ("sha256", v, {"max_length": 64}),
                  ("path", v, {"max_length": 4096}), ("path_key", v, {"max_length": 64}),
                  ("seq", DataType.INT64, {})],
        "pages": [("key", v, {"is_primary": True, "max_length": 128}), ("doc_sha256", v, {"max_length": 64}),
                  ("number", DataType.INT64, {}), ("part", DataType.INT64, {}),
                  ("text", v, {"max_length": TEXT_MAX}), ("ocr", DataType.BOOL, {})],
        "meta": [("key", v, {"is_primary": True, "max_length": 256}), ("value", v, {"max_length": TEXT_MAX})],
    }
    for kind, name in names(prefix).items():
        if not client.has_collection(name):
            _create_one(client, name, specs[kind], vector="vector" if kind == "chunks" else None)


def _create_one(client: Any, name: str, fields: list[tuple], vector: str | None) -> None:
    from pymilvus import DataType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    for field, dtype, kw in fields:
        schema.add_field(field, dtype, **kw)
    if vector is None:
        schema.add_field("v", DataType.FLOAT_VECTOR, dim=len(PLACEHOLDER))
    index = client.prepare_index_params()
    if vector is None:
        index.add_index(field_name="v", index_type="FLAT", metric_type="L2")
    else:
        index.add_index(field_name=vector, index_type="HNSW", metric_type="IP",
                        params={"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION})
    client.create_collection(name, schema=schema, index_params=index, consistency_level="Strong")
    primary = {f[0] for f in fields if f[2].get("is_primary")}
    scalars = [f[0] for f in fields if f[0] in ("doc_sha256", "sha256", "path_key") and f[0] not in primary]
    if scalars:
        client.release_collection(name)  # indexes are added to a released collection; it is loaded after
    for scalar in scalars:
        _scalar_index(client, name, scalar)
    client.load_collection(name)


def _scalar_index(client: Any, name: str, field: str) -> None:
    """An INVERTED index on ``field`` (Milvus 2.4+, Milvus Lite); Milvus 2.3 refuses that type ("index type not
    match ... expected=Trie"), and there the server's own default scalar index is made instead. ``client``: the
    one :func:`index.milvus_uri.connect` returns, whose failures are MilvusFailed."""
    from index.errors import MilvusFailed

    index = client.prepare_index_params()
    index.add_index(field_name=field, index_type="INVERTED")
    try:
        client.create_index(name, index)
    except MilvusFailed as err:
        if "expected=" not in str(err):  # another failure than "this server wants another index type"
            raise
        index = client.prepare_index_params()
        index.add_index(field_name=field, index_type="")
        client.create_index(name, index)


def drop(client: Any, prefix: str) -> None:
    """Drop every collection of the knowledge base ``prefix``."""
    for name in names(prefix).values():
        if client.has_collection(name):
            client.drop_collection(name)


def rename(client: Any, old: str, new: str) -> None:
    """Rename the collections of knowledge base ``old`` to ``new`` (which must not exist)."""
    for kind in KINDS:
        client.rename_collection(names(old)[kind], names(new)[kind])
        client.load_collection(names(new)[kind])
