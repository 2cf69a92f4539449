"""Both knowledge-base stores, the folder's and Milvus's, are what ``index.store_protocol.KBStore`` names."""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Iterator

import pytest

from index.milvus_store import MilvusStore
from index.milvus_uri import parse_kb_location
from index.store import Store, store_path
from index.store_protocol import KBStore

METHODS = sorted(n for n, v in vars(KBStore).items() if callable(v) and not n.startswith("_"))
ATTRIBUTES = sorted(KBStore.__annotations__)


class NoCollections:
    """A stand-in Milvus client of an empty Milvus (what the store's constructor asks: which collections exist)."""

    def has_collection(self, name: str) -> bool:
        return False


@pytest.fixture()
def stores(tmp_path: Path) -> Iterator[list[Any]]:
    """The folder store, and a Milvus store that never connects (its client is a stand-in)."""
    folder = Store(store_path(tmp_path))
    yield [folder, MilvusStore(parse_kb_location(f"milvus-lite:{tmp_path}/m.db/hr"), client=NoCollections())]
    folder.close()


def test_both_stores_satisfy_the_protocol(stores: list[Any]) -> None:
    assert METHODS and ATTRIBUTES == ["path", "remote"]
    folder, milvus = stores
    assert all(isinstance(s, KBStore) for s in stores)
    assert (folder.remote, milvus.remote) == (False, True)
    assert folder.path == store_path(folder.path.parent) and str(milvus.path).startswith("milvus-lite:")


@pytest.mark.parametrize("cls", [Store, MilvusStore])
@pytest.mark.parametrize("name", METHODS)
def test_each_method_takes_the_protocols_parameters(cls: type, name: str) -> None:
    """Same names, kinds and defaults: a caller typed against the protocol works with either store."""
    want = inspect.signature(getattr(KBStore, name)).parameters
    have = inspect.signature(getattr(cls, name)).parameters
    for p in want.values():
        assert p.name in have, (cls.__name__, name, p.name)
        got = have[p.name]
        assert (got.kind, got.default) == (p.kind, p.default), (cls.__name__, name, p.name)


def test_a_class_missing_a_member_is_not_a_store() -> None:
    class NoCreate:
        remote, path = False, Path("x")

    for n in METHODS:
        if n != "create":
            setattr(NoCreate, n, lambda self: None)
    assert not isinstance(NoCreate(), KBStore)


def test_the_folder_store_has_nothing_to_create_or_collect(stores: list[Any]) -> None:
    folder = stores[0]
    folder.create(64)  # tables made on open; a no-op
    assert folder.collect_orphans() is None and folder.meta() == {}
