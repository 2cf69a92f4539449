"""The Milvus backend on a real engine (Milvus Lite's gRPC server from the pip package, ``milvus_server``):
the path tests of the folder backend, equal scores on both backends, migrate, crash safety, collecting what a
killed writer left (``index collect-orphans``), several writers.

(``tests/test_kb.py`` runs its knowledge-base tests on both backends through the ``kb_where`` fixture.)
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import test_kb_paths as paths_tests
from test_kb import CRASHER, EN, ZH, CountingEmbedder
from test_kb_paths import handbooks  # noqa: F401 - the fixture the path tests use

from index.embedder import HashEmbedder
from index.errors import EmbedderMismatch
from index.kb import KnowledgeBase

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def milvus_kb(milvus_server: str) -> str:
    return f"{milvus_server}/kb_{uuid.uuid4().hex[:16]}"


@pytest.fixture()
def docs(tmp_path: Path) -> Path:
    d = tmp_path / "docs"
    d.mkdir()
    (d / "policy.txt").write_text(EN * 3)
    (d / "zh.md").write_text(ZH * 3, encoding="utf-8")
    (d / "animals.txt").write_text("Cats and dogs are common pets. Parrots can learn words. " * 4)
    return d


def milvus_chunk_ids(kb: KnowledgeBase) -> dict[str, list[int]]:
    ids, shas = kb.store.chunk_docs()
    out: dict[str, list[int]] = {}
    for i, sha in zip(ids.tolist(), shas):
        out.setdefault(sha, []).append(i)
    return out


@pytest.mark.parametrize("test", [paths_tests.test_the_duplicate_handbook_story,
                                  paths_tests.test_renames_and_swaps_keep_their_chunks,
                                  paths_tests.test_rm_by_path_title_or_sha], ids=lambda t: t.__name__)
def test_path_tests_of_the_folder_backend_pass_on_milvus(test, tmp_path: Path, handbooks: Path,  # noqa: F811
                                                         milvus_kb: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same test bodies, their ``tmp_path / "kb"`` pointed at a Milvus knowledge base."""
    real_open = KnowledgeBase.open.__func__

    def open_milvus(cls, path="kb", **kw):
        return real_open(cls, milvus_kb if Path(path) == tmp_path / "kb" else path, **kw)

    monkeypatch.setattr(KnowledgeBase, "open", classmethod(open_milvus))
    monkeypatch.setattr(paths_tests, "chunk_ids", milvus_chunk_ids)
    test(tmp_path, handbooks)


def test_both_backends_score_every_mode_alike(tmp_path: Path, docs: Path, milvus_kb: str) -> None:
    """Same chunks, same BM25 definition, same fusion: the same ranked (chunk, score, cosine) lists."""
    found = []
    for where in (tmp_path / "kb", milvus_kb):
        with KnowledgeBase.open(where, embedder="hash-64") as kb:
            kb.add([docs])
            found.append([[(h.chunk_id, round(h.score, 5), h.similarity and round(h.similarity, 5), h.title, h.path)
                           for h in kb.search(q, k=10, mode=mode)]
                          for q in ("refund policy returns", "退货政策", "parrots words") for mode in
                          ("hybrid", "dense", "bm25")])
    assert found[0] == found[1] and all(found[0])


def test_migrate_seals_what_it_copied(tmp_path: Path, docs: Path, milvus_kb: str,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A bulk copy ends with its rows sealed for indexing (a Milvus server left 42k copied rows unindexed, searched
    through its interim index: lower recall); a rerun that copies nothing seals nothing."""
    from index.milvus_migrate import migrate
    from index.milvus_store import MilvusStore

    sealed: list[str] = []
    monkeypatch.setattr(MilvusStore, "seal", lambda self: sealed.append(str(self.loc)))
    with KnowledgeBase.open(tmp_path / "kb", embedder="hash-64") as kb:
        kb.add([docs])
    assert migrate(tmp_path / "kb", milvus_kb).documents == 3 and len(sealed) == 1
    assert migrate(tmp_path / "kb", milvus_kb).skipped == 3 and len(sealed) == 1


def test_a_failed_copy_raises_and_a_rerun_copies_the_rest(tmp_path: Path, docs: Path, milvus_kb: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Documents go to Milvus several at a time; one that fails stops the copy with its error, and running it
    again copies what is missing, each document once."""
    from index.errors import MilvusFailed
    from index.milvus_migrate import migrate
    from index.milvus_store import MilvusStore

    with KnowledgeBase.open(tmp_path / "kb", embedder="hash-64") as kb:
        kb.add([docs])
        victim = next(d.sha256 for d in kb.documents() if d.title == "zh")
    put = MilvusStore.put_document

    def failing(self: MilvusStore, doc: object, *args: object, **kwargs: object) -> object:
        if doc.sha256 == victim:  # type: ignore[attr-defined]
            raise MilvusFailed("insert refused")
        return put(self, doc, *args, **kwargs)

    monkeypatch.setattr(MilvusStore, "put_document", failing)
    with pytest.raises(MilvusFailed, match="insert refused"):
        migrate(tmp_path / "kb", milvus_kb)
    monkeypatch.setattr(MilvusStore, "put_document", put)
    again = migrate(tmp_path / "kb", milvus_kb)
    assert again.documents >= 1 and again.documents + again.skipped == 3
    with KnowledgeBase.open(milvus_kb) as kb:
        assert sorted(d.title for d in kb.documents()) == ["animals", "policy", "zh"]
        assert kb.store.count_chunks() == 3


def test_migrate_again_after_a_change_replaces_and_reports_what_the_source_lost(tmp_path: Path, docs: Path,
                                                                              milvus_kb: str) -> None:
    """Found by a new user: after a file changed and another was removed in the source, migrating again copied the
    new version beside the old (a search showed both) and kept the removed one silently. The new version now
    replaces the old there, as `ingest add` does, and the removed document is reported (not deleted: the target
    may hold documents of its own)."""
    from typer.testing import CliRunner

    from ui.cli.index import app

    src = tmp_path / "kb"
    with KnowledgeBase.open(src, embedder="hash-64") as kb:
        kb.add([docs])
    args = ["migrate", "--from", str(src), "--to", milvus_kb, "--json"]
    assert CliRunner().invoke(app, args).exit_code == 0
    (docs / "animals.txt").write_text("Cats and dogs are common pets. Hamsters hoard seeds. " * 4)
    with KnowledgeBase.open(src, embedder="hash-64") as kb:
        kb.add([docs / "animals.txt"])
        kb.remove(str(docs / "policy.txt"))
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    got = json.loads(result.output)
    assert (got["documents"], got["skipped"], got["replaced"]) == (1, 1, 1)
    assert got["only_in_target"] == [str(docs / "policy.txt")]
    with KnowledgeBase.open(milvus_kb) as kb:
        texts = [h.text for h in kb.search("pets hamsters parrots", k=10, mode="bm25")]
        assert any("Hamsters" in t for t in texts) and not any("Parrots" in t for t in texts)
        assert sorted(d.title for d in kb.documents()) == ["animals", "policy", "zh"]
    human = CliRunner().invoke(app, args[:-1])
    assert "1 document(s) there are not in" in human.stderr and "policy.txt" in human.stderr


def test_migrate_copies_vectors_without_embedding(tmp_path: Path, docs: Path, milvus_kb: str) -> None:
    from typer.testing import CliRunner

    from ui.cli.index import app

    with KnowledgeBase.open(tmp_path / "kb", embedder="hash-64") as kb:
        kb.add([docs])
        want = [[(h.chunk_id, round(h.score, 5)) for h in kb.search(q, k=5)] for q in ("refund", "退货", "pets")]
    args = ["migrate", "--from", str(tmp_path / "kb"), "--to", milvus_kb, "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) | {"to": ""} == {"documents": 3, "chunks": 3, "skipped": 0, "replaced": 0,
                                                      "only_in_target": [], "to": ""}
    assert json.loads(CliRunner().invoke(app, args).output)["skipped"] == 3  # again: nothing to copy
    emb = CountingEmbedder()
    with KnowledgeBase.open(milvus_kb, embedder=emb) as kb:
        got = [[(h.chunk_id, round(h.score, 5)) for h in kb.search(q, k=5)] for q in ("refund", "退货", "pets")]
        assert {d.title for d in kb.documents()} == {"policy", "zh", "animals"}
        before = emb.encoded  # (the fake embedder embeds queries as passages)
        assert kb.add([docs]).count("unchanged") == 3 and emb.encoded == before  # nothing embedded
    assert got == want
    with pytest.raises(EmbedderMismatch, match="index reindex"):
        KnowledgeBase.open(milvus_kb, embedder=HashEmbedder(dim=32))
    back = tmp_path / "back"  # and back to a folder
    assert CliRunner().invoke(app, ["migrate", "--from", milvus_kb, "--to", str(back)]).exit_code == 0
    with KnowledgeBase.open(back) as kb:
        assert [[(h.chunk_id, round(h.score, 5)) for h in kb.search(q, k=5)] for q in ("refund", "退货", "pets")
                ] == want


def test_a_document_whose_row_never_came_is_invisible_and_the_next_add_completes_it(
        docs: Path, milvus_kb: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer dying between its chunks and its document row (the commit): nothing of it is visible."""
    from index.milvus_store import MilvusStore

    real = MilvusStore._upsert

    def die_at_commit(self, kind, rows):
        if kind == "docs" and any(r["title"] == "animals" for r in rows):
            raise KeyboardInterrupt("killed at the commit")
        return real(self, kind, rows)

    with KnowledgeBase.open(milvus_kb, embedder="hash-64") as kb:
        kb.add([docs / "policy.txt"])
        monkeypatch.setattr(MilvusStore, "_upsert", die_at_commit)
        with pytest.raises(KeyboardInterrupt):
            kb.add([docs / "animals.txt"])
        monkeypatch.setattr(MilvusStore, "_upsert", real)
        assert len(kb.store.chunk_docs()[0]) == 2  # its chunk is stored ...
        assert [d.title for d in kb.documents()] == ["policy"]  # ... but nothing shows it
        for mode in ("hybrid", "dense", "bm25"):
            assert {h.title for h in kb.search("parrots pets", k=5, mode=mode)} <= {"policy"}, mode
        assert kb.search("parrots", k=5, mode="bm25") == []
        assert kb.add([docs]).count("added") == 2  # the same chunk keys: overwritten, not doubled
        assert len(kb.store.chunk_docs()[0]) == 3 and kb.store.collect_orphans() == 0
        assert kb.search("parrots", k=1, mode="bm25")[0].title == "animals"


def test_index_collect_orphans_removes_what_a_killed_writer_left(docs: Path, milvus_kb: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer dies at its commit: `index collect-orphans` deletes its chunks and pages, whole documents stay."""
    from typer.testing import CliRunner

    from index.milvus_store import MilvusStore
    from ui.cli.index import app

    real = MilvusStore._upsert

    def die_at_commit(self, kind, rows):
        if kind == "docs" and any(r["title"] == "animals" for r in rows):
            raise KeyboardInterrupt("killed at the commit")
        return real(self, kind, rows)

    with KnowledgeBase.open(milvus_kb, embedder="hash-64") as kb:
        kb.add([docs / "policy.txt", docs / "zh.md"])
        monkeypatch.setattr(MilvusStore, "_upsert", die_at_commit)
        with pytest.raises(KeyboardInterrupt):
            kb.add([docs / "animals.txt"])
        monkeypatch.setattr(MilvusStore, "_upsert", real)
        (orphan,) = set(kb.store.chunk_docs()[1]) - {d.sha256 for d in kb.documents()}
        assert kb.store.document_pages(orphan)
    result = CliRunner().invoke(app, ["collect-orphans", "--kb", milvus_kb])
    assert result.exit_code == 0, result.output
    assert result.output == f"removed the orphaned chunks and pages of 1 document from {milvus_kb}\n"
    with KnowledgeBase.open(milvus_kb) as kb:
        assert set(kb.store.chunk_docs()[1]) == {d.sha256 for d in kb.documents()} and len(kb.documents()) == 2
        assert kb.store.document_pages(orphan) == []
        for mode in ("hybrid", "dense", "bm25"):
            assert kb.search("refund policy", k=1, mode=mode)[0].title == "policy", mode
            assert kb.search("退货政策", k=1, mode=mode)[0].title == "zh", mode
    again = CliRunner().invoke(app, ["collect-orphans", "--kb", milvus_kb, "--json"])
    assert json.loads(again.output) == {"kb": milvus_kb, "backend": "milvus", "orphans": 0}


def test_index_collect_orphans_of_a_folder_says_there_is_nothing_to_collect(tmp_path: Path, docs: Path) -> None:
    from typer.testing import CliRunner

    from ui.cli.index import app

    kb_dir = tmp_path / "kb"
    with KnowledgeBase.open(kb_dir, embedder="hash-64") as kb:
        kb.add([docs])
    result = CliRunner().invoke(app, ["collect-orphans", "--kb", str(kb_dir)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"nothing to collect in {kb_dir}: a folder knowledge base writes each document")
    as_json = json.loads(CliRunner().invoke(app, ["collect-orphans", "--kb", str(kb_dir), "--json"]).output)
    assert as_json == {"kb": str(kb_dir), "backend": "folder", "orphans": None}
    with KnowledgeBase.open(kb_dir) as kb:
        assert len(kb.documents()) == 3
    missing = CliRunner().invoke(app, ["collect-orphans", "--kb", str(tmp_path / "none")])
    assert missing.exit_code == 2 and "no knowledge base" in missing.output and not (tmp_path / "none").exists()


def test_kill_9_mid_ingest_leaves_whole_documents_and_the_next_run_completes(tmp_path: Path, milvus_kb: str) -> None:
    docs = tmp_path / "many"
    docs.mkdir()
    for i in range(30):
        (docs / f"doc{i:02d}.txt").write_text(f"Document number {i} talks about topic {i}. " * 200)
    script = CRASHER.format(root=str(ROOT), kb=milvus_kb, docs=str(docs), delay=0.15)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "start"
    for _ in range(10):
        assert proc.stdout.readline().strip() == "encode"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with KnowledgeBase.open(milvus_kb, embedder=HashEmbedder(dim=64)) as kb:
        stored = kb.documents()
        assert 0 < len(stored) < 30
        ids, shas = kb.store.chunk_docs()
        for d in stored:  # every visible document is whole
            assert shas.count(d.sha256) == d.n_chunks > 1
        hits = kb.search("Document number topic", k=100, mode="bm25")
        assert {h.doc_sha256 for h in hits} == {d.sha256 for d in stored}
        report = kb.add([docs])
        assert report.count("unchanged") == len(stored) and report.count("added") == 30 - len(stored)
        assert len({h.doc_sha256 for h in kb.search("topic", k=1000, mode="bm25")}) == 30


WRITER = """
import sys
sys.path.insert(0, {root!r})
from index.kb import KnowledgeBase
with KnowledgeBase.open({kb!r}, embedder="hash-64") as kb:
    report = kb.add([{docs!r}])
print(report.count("added"), report.count("unchanged"), flush=True)
"""


def test_several_writers_and_a_reader_share_one_collection(tmp_path: Path, milvus_kb: str) -> None:
    """Three ingest processes (two with overlapping files) and searches in this one, on one Milvus."""
    folders = []
    for w in range(3):
        folder = tmp_path / f"w{w}"
        folder.mkdir()
        for i in range(8):
            n = i if w == 2 else w * 8 + i  # writer 2 adds writer 0's files again (the same bytes)
            (folder / f"doc{n:02d}.txt").write_text(f"Shared knowledge {n}: item {n} costs {n} euros. " * 20)
        folders.append(folder)
    with KnowledgeBase.open(milvus_kb, embedder="hash-64") as kb:
        kb.add([folders[0] / "doc00.txt"])
        procs = [subprocess.Popen([sys.executable, "-c", WRITER.format(root=str(ROOT), kb=milvus_kb, docs=str(f))],
                                  stdout=subprocess.PIPE, text=True) for f in folders]
        seen = 0
        while any(p.poll() is None for p in procs):
            for h in kb.search("Shared knowledge item costs euros", k=50, mode="bm25"):
                seen += 1
                assert h.title.startswith("doc")
        outs = [p.communicate()[0].split() for p in procs]
        assert all(p.returncode == 0 for p in procs), outs
        docs = kb.documents()
        assert len(docs) == 16 and seen > 0
        ids, shas = kb.store.chunk_docs()
        assert len(ids) == len(set(ids.tolist())) == sum(d.n_chunks for d in docs)  # nothing stored twice
        by_sha = {d.sha256: d for d in docs}
        assert all(len(by_sha[s].paths) in (1, 2) for s in shas)


REOPEN = """
import sys; sys.path.insert(0, {root!r})
from pathlib import Path
from index.kb import KnowledgeBase
with KnowledgeBase.open({kb!r}, embedder="hash-64") as kb:
    if {add!r}:
        kb.add([Path({doc!r})])
    print(len(kb.documents()), [h.title for h in kb.search("Parrots learn words", k=1, mode="hybrid")])
"""


def test_a_milvus_lite_file_opens_again_in_a_new_process(tmp_path: Path, docs: Path) -> None:
    """Found in the wild: `ingest add --kb milvus-lite:k.db`, then `index search` in a new process failed with
    "collection ... is in state 'released'" (Milvus Lite starts its collections unloaded); the store loads them."""
    kb = f"milvus-lite:{tmp_path / 'k.db'}"
    for add in (True, False):
        out = subprocess.run([sys.executable, "-c", REOPEN.format(root=str(ROOT), kb=kb, add=add,
                                                                 doc=str(docs / "animals.txt"))],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.split()[0] == "1" and "animals" in out.stdout


def test_connect_keeps_its_keepalive_after_another_client_of_the_same_server(milvus_server: str) -> None:
    """pymilvus shares one channel per address with the options of the first client made: a default client opened
    earlier in the process (CI: the fixture's probe) made our idle-ping policy void, and the server's GOAWAY
    "Too many pings" failed a test minutes later. Our connection has its own channel with our options."""
    from pymilvus import MilvusClient

    from index.milvus_uri import KEEPALIVE, connect, parse_kb_location

    uri = milvus_server.replace("milvus://", "http://")
    other = MilvusClient(uri=uri)  # pymilvus's defaults: a ping every 10 s, idle or not
    loc = parse_kb_location(f"{milvus_server}/kb_{uuid.uuid4().hex[:16]}")
    ours = connect(loc)
    try:
        options = dict(ours._client._handler._grpc_options)  # noqa: SLF001 - the channel's options, nowhere public
        assert {k: options.get(k) for k in KEEPALIVE} == KEEPALIVE
        assert ours._client._handler is not other._handler  # noqa: SLF001
        assert isinstance(ours.list_collections(), list)
    finally:
        ours.close()
        other.close()
