"""Derived indexes: incremental updates give exactly what a rebuild from the store gives."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from index import derived
from index.bm25 import tokenize
from index.embedder import HashEmbedder
from index.kb import KnowledgeBase

WORDS = ("refund policy returns purchase shipping invoice warranty battery solar panel voltage "
         "safety inspection monthly annual report revenue margin 退货 政策 发票 保修 电池 太阳能 "
         "电压 安全 检查 年度 报告 收入 利润").split()
BUILD_DENSE, BUILD_SPARSE = derived._build_dense, derived._build_sparse  # not the counted ones
QUERIES = ("refund policy", "battery voltage safety", "年度 报告 收入", "保修 电池", "solar 太阳能 panel")


def write_doc(folder: Path, name: str, seed: int, words: int = 150) -> Path:
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(WORDS), size=words, p=_zipf(len(WORDS)))
    path = folder / name
    path.write_text(" ".join(WORDS[i] for i in picks) + f" unique{seed}.", encoding="utf-8")
    return path


def _zipf(n: int) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1)
    return w / w.sum()


def postings(sparse: object) -> dict[str, dict[str, float]]:
    """term -> {doc id: weight}, independent of row and column order."""
    p, out = sparse.postings, {}
    for term, col in sparse.vocab.items():
        lo, hi = p.indptr[col], p.indptr[col + 1]
        if hi > lo:
            out[term] = dict(zip(sparse.ids[p.indices[lo:hi]].tolist(), p.data[lo:hi].tolist()))
    return out


def assert_same(got: derived.Derived, want: derived.Derived) -> None:
    """Bit-identical contents and search results (dense: flat indexes only)."""
    import faiss

    assert (got.generation, got.n_chunks) == (want.generation, want.n_chunks)
    ids = faiss.vector_to_array(got.dense.id_map)
    assert ids.tolist() == faiss.vector_to_array(want.dense.id_map).tolist()
    n = got.n_chunks
    if n:
        np.testing.assert_array_equal(faiss.downcast_index(got.dense.index).reconstruct_n(0, n),
                                      faiss.downcast_index(want.dense.index).reconstruct_n(0, n))
    assert got.sparse.ids.tolist() == want.sparse.ids.tolist()
    np.testing.assert_array_equal(got.sparse.lengths, want.sparse.lengths)
    assert postings(got.sparse) == postings(want.sparse)
    emb = HashEmbedder(dim=64)
    for q in QUERIES:
        assert got.sparse_search(tokenize(q), 20) == want.sparse_search(tokenize(q), 20)
        qvec = emb.encode_queries([q])[0]
        assert got.dense_search(qvec, 20) == want.dense_search(qvec, 20)


def contents(d: derived.Derived) -> tuple:
    import faiss

    return (faiss.vector_to_array(d.dense.id_map).tolist(), d.sparse.ids.tolist(), postings(d.sparse))


@pytest.fixture()
def no_rebuilds(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count full rebuilds of each index; REBUILD_FRACTION=1: updates are always incremental."""
    calls = {"dense": 0, "sparse": 0}
    build_dense, build_sparse = derived._build_dense, derived._build_sparse

    def dense(*a: object) -> object:
        calls["dense"] += 1
        return build_dense(*a)

    def sparse(*a: object) -> object:
        calls["sparse"] += 1
        return build_sparse(*a)

    monkeypatch.setattr(derived, "_build_dense", dense)
    monkeypatch.setattr(derived, "_build_sparse", sparse)
    monkeypatch.setattr(derived, "REBUILD_FRACTION", 1.0)
    return calls


def rebuilt(store: object) -> derived.Derived:
    """``derived.build`` with the real builders (tests count the calls of the patched ones)."""
    with store.snapshot():
        n = store.count_chunks()
        return derived.Derived(generation=store.generation(), dense=BUILD_DENSE(store, 64, n),
                               sparse=BUILD_SPARSE(store), n_chunks=n)


def open_kb(path: Path) -> KnowledgeBase:
    return KnowledgeBase.open(path, embedder=HashEmbedder(dim=64), max_tokens=60, overlap=10)


def check(kb: KnowledgeBase) -> None:
    """The KB's indexes, the saved ones and a rebuild from the store all agree exactly."""
    want = rebuilt(kb.store)
    assert_same(kb._derived, want)
    loaded = derived.load(kb.path)
    assert loaded is not None
    assert_same(loaded, want)


def test_incremental_equals_rebuild_over_adds_removes_and_syncs(tmp_path: Path, no_rebuilds: dict) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(4):
        write_doc(docs, f"d{i}.txt", seed=i)
    kb = open_kb(tmp_path / "kb")
    kb.add([docs])
    check(kb)
    first = dict(no_rebuilds)  # the first add builds (nothing saved yet)
    steps = [
        lambda: kb.add([write_doc(docs, "d4.txt", seed=4, words=400)]),   # add (new terms too)
        lambda: kb.remove("d1.txt"),                                       # remove
        lambda: kb.add([write_doc(docs, "d2.txt", seed=22)]),             # replace = remove + add
        lambda: (docs / "d0.txt").unlink() or kb.sync(docs),             # sync removes d0
        lambda: kb.add([write_doc(docs, f"e{i}.txt", seed=100 + i) for i in range(3)]),
        lambda: [kb.remove(f"e{i}.txt") for i in range(3)],               # the highest ids go
        lambda: kb.add([write_doc(docs, "f.txt", seed=7, words=30)]),     # ids are not reused
    ]
    for step in steps:
        before, fingerprint = kb._derived, contents(kb._derived)
        step()
        check(kb)
        assert no_rebuilds == first  # every step was incremental
        assert contents(before) == fingerprint  # and left the previous state as it was
    hits = kb.search("unique7", k=1, mode="bm25")
    assert hits and hits[0].title == "f"
    kb.close()


def test_chunk_ids_are_never_reused(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    kb = open_kb(tmp_path / "kb")
    kb.add([write_doc(docs, "a.txt", seed=1), write_doc(docs, "b.txt", seed=2)])
    top = int(kb.store.chunk_ids().max())
    kb.remove("b.txt")  # holds the highest ids
    kb.add([write_doc(docs, "c.txt", seed=3)])
    new = set(kb.store.chunk_ids().tolist()) - {i for i in range(1, top + 1)}
    assert new and min(new) > top
    kb.close()


def test_readers_and_crashed_writers_catch_up(tmp_path: Path, no_rebuilds: dict) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    writer = open_kb(tmp_path / "kb")
    writer.add([write_doc(docs, f"d{i}.txt", seed=i) for i in range(4)])
    reader = open_kb(tmp_path / "kb")
    assert reader.search("refund", k=3)
    builds = dict(no_rebuilds)
    writer.add([write_doc(docs, "new.txt", seed=50)])
    # A crash between the SQLite commit and the save: the store moves, derived.json does not.
    writer.store.delete_documents([d.sha256 for d in writer.documents() if d.title == "d2"])
    writer.close()
    hits = reader.search("unique50", k=1, mode="bm25")  # in-memory catch-up, nothing saved
    assert hits and hits[0].title == "new"
    assert_same(reader._derived, rebuilt(reader.store))
    assert derived.saved_generation(reader.path) != reader.store.generation()
    again = open_kb(tmp_path / "kb")  # a later writer loads the stale save and updates it
    again.add([write_doc(docs, "more.txt", seed=60)])
    check(again)
    assert no_rebuilds == builds
    reader.close()
    again.close()


def test_a_torn_save_with_one_index_newer_still_converges(tmp_path: Path, no_rebuilds: dict) -> None:
    import shutil

    docs = tmp_path / "docs"
    docs.mkdir()
    kb = open_kb(tmp_path / "kb")
    kb.add([write_doc(docs, f"d{i}.txt", seed=i, words=20) for i in range(3)])  # one chunk each
    shutil.copytree(kb.path / "bm25", tmp_path / "old-bm25")
    shutil.copy(kb.path / "derived.json", tmp_path / "old-derived.json")
    kb.add([write_doc(docs, "d0.txt", seed=30, words=20)])  # replaced: the chunk count stays
    kb.close()
    builds = dict(no_rebuilds)
    # The save of that add torn after faiss.index was replaced: bm25/ and derived.json are older.
    shutil.rmtree(kb.path / "bm25")
    shutil.copytree(tmp_path / "old-bm25", kb.path / "bm25")
    shutil.copy(tmp_path / "old-derived.json", kb.path / "derived.json")
    torn = derived.load(kb.path)
    assert torn is not None and torn.n_chunks == 3
    kb = open_kb(tmp_path / "kb")
    assert kb.search("unique30", k=1, mode="bm25")[0].title == "d0"
    assert_same(kb._derived, rebuilt(kb.store))
    assert no_rebuilds == builds
    kb.close()


def test_hnsw_adds_incrementally_and_rebuilds_on_removal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         no_rebuilds: dict) -> None:
    import faiss

    monkeypatch.setattr(derived, "HNSW_THRESHOLD", 5)
    docs = tmp_path / "docs"
    docs.mkdir()
    kb = open_kb(tmp_path / "kb")
    kb.add([write_doc(docs, f"d{i}.txt", seed=i) for i in range(4)])
    assert derived._is_hnsw(kb._derived.dense) and no_rebuilds == {"dense": 1, "sparse": 1}
    kb.add([write_doc(docs, "d9.txt", seed=9)])
    assert no_rebuilds == {"dense": 1, "sparse": 1}  # added to a copy of the graph
    assert faiss.downcast_index(kb._derived.dense.index).hnsw.efSearch == derived.HNSW_EF_SEARCH
    kb.remove("d1.txt")
    assert no_rebuilds == {"dense": 2, "sparse": 1} and derived._is_hnsw(kb._derived.dense)
    stored = kb.store.chunk_ids().tolist()
    assert sorted(faiss.vector_to_array(kb._derived.dense.id_map).tolist()) == stored
    assert kb.search("unique9", k=1, mode="dense")[0].title == "d9"
    kb.close()


def test_old_or_garbled_saves_are_rebuilt(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    kb = open_kb(tmp_path / "kb")
    kb.add([write_doc(docs, f"d{i}.txt", seed=i) for i in range(3)])
    kb.close()
    info = (tmp_path / "kb" / "derived.json")
    info.write_text(info.read_text().replace('"format": 2, ', ""))  # written before format 2
    assert derived.load(tmp_path / "kb") is None
    kb = open_kb(tmp_path / "kb")
    kb.add([write_doc(docs, "x.txt", seed=11)])
    check(kb)
    kb.close()
    (tmp_path / "kb" / "bm25" / "bm25.npz").write_bytes(b"garbage")
    assert derived.load(tmp_path / "kb") is None
    kb = open_kb(tmp_path / "kb")
    assert kb.search("unique11", k=1, mode="bm25")[0].title == "x"
    kb.close()


def test_searches_in_threads_while_a_writer_adds_and_removes(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """One KnowledgeBase shared by threads (as the UI does): searches catch up between the
    writer's per-document commits; no error, and the end state is exact."""
    import threading

    import index.pipeline

    monkeypatch.setattr(index.pipeline, "BATCH_CHUNKS", 1)  # commit document by document
    docs = tmp_path / "docs"
    docs.mkdir()
    kb = open_kb(tmp_path / "kb")
    kb.add([write_doc(docs, f"d{i}.txt", seed=i) for i in range(3)])
    errors: list[BaseException] = []
    stop = threading.Event()

    def search() -> None:
        while not stop.is_set():
            try:
                for mode in ("hybrid", "bm25", "dense"):
                    kb.search("refund policy 退货", k=5, mode=mode)
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)
                return

    threads = [threading.Thread(target=search) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for i in range(4):
            kb.add([write_doc(docs, f"n{i}-{j}.txt", seed=200 + 10 * i + j) for j in range(4)])
            if i % 2:
                kb.remove(f"n{i - 1}-0.txt")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    check(kb)
    kb.close()
