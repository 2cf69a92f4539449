"""Concurrent writers and readers of one knowledge base (issue #13).

Writers embed without the write lock and hold it only to commit (index.pipeline): four writer
processes whose embedding outlasts the lock timeout many times all succeed. A search reads the
derived indexes and the rows in one read transaction, and a replace is one transaction: searches
during replaces get k hits holding the old or the new version of the replaced document, never
both and never neither. Waits are on progress (lines a process printed, a barrier), never timers.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from index import derived
from index.embedder import HashEmbedder
from index.kb import KnowledgeBase
from index.pipeline import GONE_MEANWHILE
from index.store import Store, StoreReplaced

WORKERS = Path(__file__).with_name("concurrency_workers.py")
ROOT = Path(__file__).resolve().parents[1]
TOPICS = ("solar panels convert sunlight into electricity", "the warranty covers the battery for two years",
          "invoices are paid within thirty days", "safety inspections happen every month",
          "annual reports list revenue and margin", "parrots can learn words and songs")
QUERY = "zebra quantum lighthouse"


def spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(WORKERS), *args], stdout=subprocess.PIPE, text=True, cwd=ROOT)


def assert_indexes_complete(kb_dir: Path, documents: int) -> None:
    """The store opens, holds ``documents`` documents, and every chunk of theirs is in the saved
    FAISS and BM25 indexes (and nothing else is)."""
    import faiss

    with KnowledgeBase.open(kb_dir, embedder=HashEmbedder(dim=64)) as kb:
        assert len(kb.documents()) == documents
        ids = kb.store.chunk_ids().tolist()
        saved = derived.load(kb_dir)
        assert saved is not None and saved.generation == kb.store.generation()
        assert sorted(faiss.vector_to_array(saved.dense.id_map).tolist()) == ids
        assert sorted(map(int, saved.sparse.ids.tolist())) == ids


def run_writers(tmp_path: Path, writers: int, files: int, *, delay_s: float, lock_timeout_s: float,
                rounds: int = 1) -> list[dict]:
    """``rounds`` of ``writers`` processes, each adding its own ``files`` files; their JSON lines.
    Every encode call waits until all writers of its round are embedding (a barrier), so their
    embeddings overlap: a lock held while embedding would make the others time out."""
    docs, out = tmp_path / "docs", []
    docs.mkdir(exist_ok=True)
    for r in range(rounds):
        procs = []
        for w in range(writers):
            paths = []
            for f in range(files):
                path = docs / f"r{r}-w{w}-f{f}.txt"
                path.write_text(f"{TOPICS[(w + f) % len(TOPICS)]}. Writer {w} round {r} file {f} unique{r}x{w}x{f}.")
                paths.append(str(path))
            procs.append(spawn("writer", str(tmp_path / "kb"), str(lock_timeout_s), str(delay_s),
                               str(tmp_path / f"barrier{r}"), str(writers), *paths))
        for proc in procs:
            stdout, _ = proc.communicate()
            out.append(json.loads(stdout.strip().splitlines()[-1]) | {"rc": proc.returncode})
    return out


def test_four_writers_embedding_far_longer_than_the_lock_timeout_all_succeed(tmp_path: Path) -> None:
    """4 s of embedding each, all at once (the barrier); a 2 s lock timeout (held while embedding, the
    lock would fail three of them: the barrier never fills, and they wait 2 s for it)."""
    results = run_writers(tmp_path, writers=4, files=2, delay_s=4.0, lock_timeout_s=2.0)
    assert [r.get("error") for r in results] == [None] * 4
    assert all(r["rc"] == 0 and r["ok"] and r["counts"]["added"] == 2 for r in results), results
    commits = [h for r in results for h in r["holds"] if h[0] == "commit"]
    assert commits and sum(h[2] for h in commits) == 8  # every document committed under a hold
    assert_indexes_complete(tmp_path / "kb", documents=8)


@pytest.mark.slow
def test_forty_writers_in_rounds_of_four_all_succeed(tmp_path: Path) -> None:
    """The issue's figure: 18 of 40 writers failed in rounds of 4."""
    results = run_writers(tmp_path, writers=4, files=3, delay_s=3.0, lock_timeout_s=2.0, rounds=10)
    assert sum(r["rc"] == 0 and r["ok"] for r in results) == 40, [r for r in results if "error" in r]
    assert_indexes_complete(tmp_path / "kb", documents=120)


# ---------------------------------------------------------------- searches during replaces

def version_text(i: int) -> str:
    return f"{QUERY} version{i} beacon."


@pytest.fixture()
def replaced(tmp_path: Path) -> tuple[Path, Path]:
    """A knowledge base of five one-chunk documents; ``target.txt`` is the one the query finds first."""
    docs = tmp_path / "docs"
    docs.mkdir()
    for i, topic in enumerate(TOPICS[:4]):
        (docs / f"filler{i}.txt").write_text(f"{topic}.")
    (docs / "target.txt").write_text(version_text(0))
    with KnowledgeBase.open(tmp_path / "kb", embedder=HashEmbedder(dim=64)) as kb:
        assert kb.add([docs]).count("added") == 5
    return tmp_path / "kb", (docs / "target.txt").resolve()


def assert_consistent(results: list[tuple[int, list[str]]], replaces: int) -> None:
    """k=3 hits each, exactly one of them the target's (an old or a new version)."""
    assert len(results) > replaces  # the reader searched all along
    bad = [r for r in results if r[0] != 3 or len(r[1]) != 1 or QUERY not in r[1][0]]
    assert not bad, f"{len(bad)} of {len(results)} searches short or mixed, e.g. {bad[:3]}"


def replace_and_wait(kb: KnowledgeBase, target: Path, replaces: int, searched: object) -> None:
    """Replace ``target`` ``replaces`` times; after each, wait until the reader searched twice more."""
    for i in range(1, replaces + 1):
        target.write_text(version_text(i))
        assert kb.add([target]).files[0].status == "replaced"
        searched(2)


def reader_process(kb_dir: Path, target: Path, replaces: int) -> None:
    """The issue's reader: a process that opens the knowledge base for every search."""
    stop = kb_dir.parent / "stop"
    proc = spawn("reader", str(kb_dir), QUERY, "3", str(target), str(stop))
    lines: list[str] = []
    grew = threading.Condition()

    def collect() -> None:
        for line in proc.stdout:
            with grew:
                lines.append(line)
                grew.notify_all()
        with grew:
            grew.notify_all()

    def searched(n: int) -> None:
        with grew:
            want = len(lines) + n
            grew.wait_for(lambda: len(lines) >= want or proc.poll() is not None)
        assert proc.poll() is None, "the reader died"

    collector = threading.Thread(target=collect)
    collector.start()
    try:
        searched(1)
        with KnowledgeBase.open(kb_dir, embedder=HashEmbedder(dim=64)) as kb:
            replace_and_wait(kb, target, replaces, searched)
    finally:
        stop.touch()
        proc.wait()
        collector.join()
    assert proc.returncode == 0
    assert_consistent([(r["n"], r["target"]) for r in map(json.loads, lines)], replaces)


def reader_thread(kb_dir: Path, target: Path, replaces: int) -> None:
    """The UI's reader: a thread searching the very KnowledgeBase that another thread writes with."""
    results: list[tuple[int, list[str]]] = []
    errors: list[BaseException] = []
    stop, grew = threading.Event(), threading.Condition()
    kb = KnowledgeBase.open(kb_dir, embedder=HashEmbedder(dim=64))

    def search() -> None:
        while not stop.is_set():
            try:
                hits = kb.search(QUERY, k=3)
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)
                hits = []
            with grew:
                results.append((len(hits), [h.text for h in hits if h.path == str(target)]))
                grew.notify_all()
            if errors:
                return

    def searched(n: int) -> None:
        with grew:
            want = len(results) + n
            grew.wait_for(lambda: len(results) >= want or bool(errors))

    thread = threading.Thread(target=search)
    thread.start()
    try:
        replace_and_wait(kb, target, replaces, searched)
    finally:
        stop.set()
        thread.join()
        kb.close()
    assert not errors, errors
    assert_consistent(results, replaces)


@pytest.mark.parametrize("reader", [reader_process, reader_thread])
def test_searches_during_replaces_get_k_hits_with_the_old_or_the_new_version(replaced, reader) -> None:
    reader(*replaced, replaces=12)


@pytest.mark.slow
@pytest.mark.parametrize("reader", [reader_process, reader_thread])
def test_searches_during_many_replaces_are_never_short_or_mixed(replaced, reader) -> None:
    reader(*replaced, replaces=300)


# ---------------------------------------------------------------- what other writers did meanwhile

class Meanwhile(HashEmbedder):
    """The fake embedder running ``action`` (another writer's work) during its first encode call:
    this writer holds no lock then, so the action's own lock is free."""

    def __init__(self, action: object) -> None:
        super().__init__(dim=64)
        self.action = action

    def encode_passages(self, texts, **kw):  # type: ignore[override]
        action, self.action = self.action, None
        if action is not None:
            action()
        return super().encode_passages(texts, **kw)


def write_docs(tmp_path: Path, **texts: str) -> Path:
    """``tmp_path/docs`` holding ``name.txt`` with each text."""
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in texts.items():
        (docs / f"{name}.txt").write_text(text)
    return docs


def other_writer(kb_dir: Path) -> KnowledgeBase:
    return KnowledgeBase.open(kb_dir, embedder=HashEmbedder(dim=64))


def test_bytes_another_writer_stored_meanwhile_are_linked_not_stored_again(tmp_path: Path) -> None:
    docs = write_docs(tmp_path, a=TOPICS[0], b=TOPICS[0])
    with other_writer(tmp_path / "kb") as other:
        emb = Meanwhile(lambda: other.add([docs / "b.txt"]))
        with KnowledgeBase.open(tmp_path / "kb", embedder=emb) as kb:
            (row,) = kb.add([docs / "a.txt"]).files
            (doc,) = kb.documents()
    assert row.status == "added" and "stored once, nothing embedded" in row.reason
    assert doc.paths == (str((docs / "b.txt").resolve()), str((docs / "a.txt").resolve())) and doc.n_chunks == 1


def test_a_link_to_bytes_another_writer_removed_meanwhile_fails_saying_so(tmp_path: Path) -> None:
    docs = write_docs(tmp_path, a=TOPICS[0], copy=TOPICS[0], new=TOPICS[1])
    with other_writer(tmp_path / "kb") as other:
        other.add([docs / "a.txt"])
        emb = Meanwhile(lambda: other.remove("a.txt"))
        with KnowledgeBase.open(tmp_path / "kb", embedder=emb) as kb:
            rows = {Path(f.path).name: f for f in kb.add([docs / "copy.txt", docs / "new.txt"]).files}
            assert rows["copy.txt"].status == "failed" and rows["copy.txt"].reason == GONE_MEANWHILE
            assert rows["new.txt"].status == "added"
            assert kb.add([docs / "copy.txt"]).files[0].status == "added"  # as the reason says
            assert {d.title for d in kb.documents()} == {"copy", "new"}


def test_sync_keeps_a_path_another_writer_added_to_the_folder_meanwhile(tmp_path: Path) -> None:
    docs = write_docs(tmp_path, old=TOPICS[0])
    late = docs / "late.txt"

    def add_late() -> None:
        late.write_text(TOPICS[2])
        other.add([late])

    with other_writer(tmp_path / "kb") as other:
        other.sync(docs)
        (docs / "new.txt").write_text(TOPICS[1])
        (docs / "old.txt").unlink()
        with KnowledgeBase.open(tmp_path / "kb", embedder=Meanwhile(add_late)) as kb:
            report = kb.sync(docs)
            assert {Path(f.path).name: f.status for f in report.files} == {"new.txt": "added", "old.txt": "removed"}
            assert sorted(Path(p).name for d in kb.documents() for p in d.paths) == ["late.txt", "new.txt"]


def test_no_embedding_under_the_lock_and_no_lock_taken_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """flock is not reentrant: a nested take would wait on itself. Every write path holds the lock
    one stretch at a time, and never while encoding."""
    import index.lock

    depth = threading.local()
    seen: list[int] = []
    acquire, release = index.lock.WriteLock.acquire, index.lock.WriteLock.release

    def counted_acquire(self: object) -> None:
        acquire(self)
        depth.n = getattr(depth, "n", 0) + 1
        seen.append(depth.n)

    def counted_release(self: object) -> None:
        depth.n -= 1
        release(self)

    class Watching(HashEmbedder):
        encoded_under_lock = 0

        def encode_passages(self, texts, **kw):  # type: ignore[override]
            Watching.encoded_under_lock += getattr(depth, "n", 0)
            return super().encode_passages(texts, **kw)

    monkeypatch.setattr(index.lock.WriteLock, "acquire", counted_acquire)
    monkeypatch.setattr(index.lock.WriteLock, "release", counted_release)
    docs = write_docs(tmp_path, **{f"d{i}": topic for i, topic in enumerate(TOPICS)})
    with KnowledgeBase.open(tmp_path / "kb", embedder=Watching(dim=64)) as kb:
        report = kb.add([docs])
        assert report.count("added") == len(TOPICS)
        assert [h.kind for h in report.lock_holds] == ["commit", "finish"]
        assert report.lock_holds[0].files == len(TOPICS)
        (docs / "d0.txt").rename(docs / "renamed.txt")
        (docs / "d1.txt").write_text("changed " + TOPICS[1])
        assert kb.sync(docs).count("replaced") == 1
        kb.remove("d2.txt")
        from ingest.records import Document, Page

        kb.add_documents([Document(Path("/mem/x.txt"), "ab" * 32, "x", "text", (Page(1, "in memory text"),))])
    assert seen and max(seen) == 1 and Watching.encoded_under_lock == 0


def test_a_store_reindexed_by_another_process_is_refused_before_writing(tmp_path: Path) -> None:
    docs = write_docs(tmp_path, a=TOPICS[0], b=TOPICS[1])
    with other_writer(tmp_path / "kb") as other:
        other.add([docs / "a.txt"])
    script = (f"import sys; sys.path.insert(0, {str(ROOT)!r})\nfrom index.embedder import HashEmbedder\n"
              f"from index.kb import KnowledgeBase\nKnowledgeBase.open({str(tmp_path / 'kb')!r}, "
              "embedder=HashEmbedder(dim=64)).reindex().close()")
    emb = Meanwhile(lambda: subprocess.run([sys.executable, "-c", script], check=True))
    kb = KnowledgeBase.open(tmp_path / "kb", embedder=emb)
    with pytest.raises(StoreReplaced, match="reindexed by another process"):
        kb.add([docs / "b.txt"])
    kb.close()
    with other_writer(tmp_path / "kb") as again:
        assert [d.title for d in again.documents()] == ["a"] and again.add([docs / "b.txt"]).ok


def test_each_thread_reads_committed_states_only(tmp_path: Path) -> None:
    """A thread never sees another thread's open transaction (one shared connection would)."""
    store = Store(tmp_path / "kb.sqlite")
    inside, seen, done = threading.Event(), [], threading.Event()

    def write() -> None:
        with store.transaction() as db:
            db.execute("INSERT INTO meta VALUES ('probe', '1')")
            inside.set()
            done.wait()

    writer = threading.Thread(target=write)
    writer.start()
    inside.wait()
    seen.append(store.meta().get("probe"))
    done.set()
    writer.join()
    seen.append(store.meta().get("probe"))
    store.close()
    assert seen == [None, "1"]
