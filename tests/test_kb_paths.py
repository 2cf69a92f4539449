"""A document is its bytes, stored under every path it was added under: copies, renames, rm by
path, one-run sync, and the migration of schema-1 knowledge bases (one path per document)."""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from index.embedder import HashEmbedder
from index.errors import DocumentNotFound
from index.kb import KnowledgeBase
from index.schema import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[1]
HANDBOOK = "员工手册：入职满一年的员工每年享有五天带薪年假。病假需要提供医院证明。" * 3
MANUAL = "The vacuum carries a two year warranty. Opened vacuums carry a 15 percent restocking fee. " * 3


class CountingEmbedder(HashEmbedder):
    """The exact fake embedder, counting the passages it embedded."""

    def __init__(self, dim: int = 32) -> None:
        super().__init__(dim=dim)
        self.encoded = 0

    def encode_passages(self, texts, **kw):  # type: ignore[override]
        self.encoded += len(texts)
        return super().encode_passages(texts, **kw)


def stored_paths(kb: KnowledgeBase) -> dict[str, str]:
    """path -> sha256 of the document stored under it (each path under one document)."""
    pairs = [(p, d.sha256) for d in kb.documents() for p in d.paths]
    assert len(pairs) == len(dict(pairs)), f"a path under two documents: {pairs}"
    return dict(pairs)


def folder_files(folder: Path) -> dict[str, str]:
    """path -> sha256 of its bytes, for every file under ``folder``."""
    return {str(p.resolve()): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.rglob("*") if p.is_file()}


def chunk_ids(kb: KnowledgeBase) -> dict[str, list[int]]:
    """sha256 -> its chunk row ids (the same ids: the same chunks, not embedded again)."""
    rows = kb.store.db.execute("SELECT doc_sha256, id FROM chunks ORDER BY id")
    out: dict[str, list[int]] = {}
    for sha, i in rows:
        out.setdefault(sha, []).append(i)
    return out


@pytest.fixture()
def handbooks(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "员工手册.txt").write_text(HANDBOOK, encoding="utf-8")
    (docs / "员工手册 (1).txt").write_text(HANDBOOK, encoding="utf-8")
    (docs / "manual.txt").write_text(MANUAL, encoding="utf-8")
    return docs


def test_the_duplicate_handbook_story(tmp_path: Path, handbooks: Path) -> None:
    """The issue: two byte-identical files are one document; rm by either path works, and after
    the copy is deleted ONE sync leaves the original in the knowledge base."""
    original, copy = str(handbooks / "员工手册.txt"), str(handbooks / "员工手册 (1).txt")
    emb = CountingEmbedder()
    with KnowledgeBase.open(tmp_path / "kb", embedder=emb) as kb:
        report = kb.add([handbooks])
        assert report.ok and report.count("added") == 3
        (doc,) = [d for d in kb.documents() if d.paths != (str(handbooks / "manual.txt"),)]
        assert set(doc.paths) == {original, copy} and doc.path == doc.paths[0]  # sorted: the copy first
        embedded = emb.encoded
        assert embedded == sum(f.chunks for f in report.files)  # the copy was not embedded

        gone = kb.remove("员工手册.txt")  # by the file name of its second path
        assert gone.paths == (original,) and not gone.document_removed and gone.paths_left == (copy,)
        assert stored_paths(kb)[copy] == doc.sha256 and original not in stored_paths(kb)
        assert kb.add([original]).files[0].status == "added"  # back, as a path of the same document

        os.remove(copy)
        report = kb.sync(handbooks)
        rows = {Path(f.path).name: (f.status, f.reason) for f in report.files}
        assert rows["员工手册.txt"] == ("unchanged", "")
        assert rows["员工手册 (1).txt"][0] == "removed" and original in rows["员工手册 (1).txt"][1]
        assert stored_paths(kb) == folder_files(handbooks)  # after ONE sync
        hit = kb.search("带薪年假", k=1, mode="bm25")[0]
        assert hit.path == original and hit.doc_sha256 == doc.sha256  # the display path still exists
        assert hit.title == "员工手册"  # the title was the copy's file name: it follows the display path
        again = kb.sync(handbooks)
        assert {f.status for f in again.files} == {"unchanged"} and emb.encoded == embedded


def test_renames_and_swaps_keep_their_chunks(tmp_path: Path, handbooks: Path) -> None:
    emb = CountingEmbedder()
    with KnowledgeBase.open(tmp_path / "kb", embedder=emb) as kb:
        kb.sync(handbooks)
        before, embedded = chunk_ids(kb), emb.encoded
        (handbooks / "sub").mkdir()
        os.replace(handbooks / "manual.txt", handbooks / "sub" / "renamed.txt")
        a, b = handbooks / "员工手册.txt", handbooks / "员工手册 (1).txt"
        b.write_text(MANUAL, encoding="utf-8")  # b and the renamed manual: copies; a keeps the handbook
        report = kb.sync(handbooks)
        assert stored_paths(kb) == folder_files(handbooks) and report.ok
        a_bytes, b_bytes = a.read_bytes(), b.read_bytes()
        a.write_bytes(b_bytes)
        b.write_bytes(a_bytes)  # swapped contents
        kb.sync(handbooks)
        assert stored_paths(kb) == folder_files(handbooks)
        assert chunk_ids(kb) == before and emb.encoded == embedded  # nothing embedded again


def test_rm_by_path_title_or_sha(tmp_path: Path, handbooks: Path) -> None:
    (handbooks / "sub").mkdir()
    (handbooks / "sub" / "manual.txt").write_text(MANUAL, encoding="utf-8")
    with KnowledgeBase.open(tmp_path / "kb", embedder=CountingEmbedder()) as kb:
        kb.add([handbooks])
        manual = next(d for d in kb.documents() if "manual" in d.title)
        with pytest.raises(DocumentNotFound, match="matches 2 paths of one document"):
            kb.remove("manual.txt")  # the file name of both copies: which one?
        one = kb.remove(str(handbooks / "sub" / "manual.txt"))
        assert not one.document_removed and one.n_chunks == 0
        last = kb.remove("manual.txt")  # now names one path: its last, so the document goes
        assert last.document_removed and last.n_chunks == manual.n_chunks and last.paths_left == ()
        handbook = kb.documents()[0]
        whole = kb.remove(handbook.sha256[:8])  # a sha256 prefix names the document: every path
        assert whole.document_removed and set(whole.paths) == set(handbook.paths)
        assert kb.documents() == [] and kb.search("warranty", k=3, mode="bm25") == []


def test_a_file_that_fails_keeps_what_its_path_held_and_sync_needs_a_folder(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text(MANUAL, encoding="utf-8")
    with KnowledgeBase.open(tmp_path / "kb", embedder=CountingEmbedder()) as kb:
        kb.sync(docs)
        (docs / "a.txt").write_text("   ", encoding="utf-8")  # no text: the new version fails
        report = kb.sync(docs)
        assert report.files[0].status == "failed" and not report.ok
        assert stored_paths(kb) == {str((docs / "a.txt").resolve()): hashlib.sha256(MANUAL.encode()).hexdigest()}
        with pytest.raises(FileNotFoundError, match="is not a folder"):
            kb.sync(docs / "a.txt")
        (docs / "a.txt").unlink()
        emptied = kb.sync(docs)  # an emptied folder is mirrored, not an error
        assert emptied.ok and [f.status for f in emptied.files] == ["removed"] and kb.documents() == []


def to_schema_1(store_file: Path) -> None:
    """Rewrite a store to the shape schema 1 left: no doc_paths, version 1 (documents.path as it is)."""
    db = sqlite3.connect(store_file)
    db.executescript("DROP TABLE doc_paths; UPDATE meta SET value='1' WHERE key='schema_version';")
    db.commit()
    db.close()


def test_a_schema_1_knowledge_base_is_migrated_on_open_losing_nothing(tmp_path: Path, handbooks: Path) -> None:
    os.remove(handbooks / "员工手册 (1).txt")
    emb = CountingEmbedder()
    with KnowledgeBase.open(tmp_path / "kb", embedder=emb) as kb:
        kb.add([handbooks])
        docs, ids, gen = kb.documents(), chunk_ids(kb), kb.store.generation()
        vectors = [v.tobytes() for _, v in kb.store.iter_vectors(emb.dim)]
    to_schema_1(tmp_path / "kb" / "kb.sqlite")
    with KnowledgeBase.open(tmp_path / "kb", embedder=emb) as kb:
        assert kb.store.meta()["schema_version"] == str(SCHEMA_VERSION) == "2"
        assert kb.documents() == docs and all(d.paths == (d.path,) for d in docs)  # its path: its first
        assert chunk_ids(kb) == ids and kb.store.generation() == gen
        assert [v.tobytes() for _, v in kb.store.iter_vectors(emb.dim)] == vectors
        assert kb.search("restocking fee", k=1, mode="bm25")[0].path == str(handbooks / "manual.txt")
        (handbooks / "copy.txt").write_text(MANUAL, encoding="utf-8")
        assert kb.sync(handbooks).count("added") == 1 and stored_paths(kb) == folder_files(handbooks)
    assert emb.encoded == sum(len(v) for v in ids.values())  # the migration embedded nothing


def test_cli_lists_every_path_and_rm_by_path_keeps_the_document(tmp_path: Path, handbooks: Path) -> None:
    env = os.environ | {"QDA_KB": str(tmp_path / "kb")}

    def ingest(*args: str) -> subprocess.CompletedProcess:
        code = "import sys; from ui.cli.ingest import app; sys.argv[0] = 'ingest'; app()"
        return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True,
                              text=True)

    assert ingest("add", str(handbooks), "--embedder", "hash-64", "--json").returncode == 0
    listed = {d["title"]: d for d in json.loads(ingest("list", "--json").stdout)}
    assert len(listed) == 2 and len(listed["员工手册 (1)"]["paths"]) == 2
    removed = json.loads(ingest("rm", "员工手册.txt", "--json").stdout)
    assert removed["document_removed"] is False and removed["paths_left"] == [str(handbooks / "员工手册 (1).txt")]
    out = ingest("rm", "员工手册 (1)")  # the title: the document
    assert out.returncode == 0 and "chunks)" in out.stdout


# -- property: after any edits, ONE sync makes the knowledge base the folder --------------------
NAMES = ("a.txt", "b.md", "员工手册.txt", "员工手册 (1).txt", "sub/c.txt", "sub/d.txt")
TEXTS = ("alpha beta gamma.", "退货政策：三十天内可以退货。", "delta epsilon.", "保修两年。 warranty two years.")
name = st.sampled_from(NAMES)
OPS = st.one_of(
    st.tuples(st.just("write"), name, st.sampled_from(range(len(TEXTS)))),  # add, or modify
    st.tuples(st.just("copy"), name, name),
    st.tuples(st.just("rename"), name, name),
    st.tuples(st.just("delete"), name, name),
    st.tuples(st.just("sync"), name, name),
)


def apply(folder: Path, op: tuple) -> None:
    kind, src, dst = op
    if kind == "write":
        (folder / src).parent.mkdir(parents=True, exist_ok=True)
        (folder / src).write_text(TEXTS[dst] + f" {src}" * (dst % 2), encoding="utf-8")
    elif kind in ("copy", "rename") and (folder / src).is_file() and src != dst:
        (folder / dst).parent.mkdir(parents=True, exist_ok=True)
        data = (folder / src).read_bytes()
        (folder / dst).write_bytes(data)
        if kind == "rename":
            (folder / src).unlink()
    elif kind == "delete" and (folder / src).is_file():
        (folder / src).unlink()


def check_mirrors(kb: KnowledgeBase, folder: Path, emb: CountingEmbedder) -> None:
    """One sync: paths == files, each under the sha256 of its bytes; stored bytes not re-embedded."""
    before, encoded = chunk_ids(kb), emb.encoded
    kb.sync(folder)
    after = chunk_ids(kb)
    assert stored_paths(kb) == folder_files(folder)
    assert all(d.paths and d.path == d.paths[0] for d in kb.documents())
    assert {sha: ids for sha, ids in after.items() if sha in before} == {
        sha: ids for sha, ids in before.items() if sha in after}  # kept bytes kept their chunks
    assert emb.encoded - encoded == sum(len(ids) for sha, ids in after.items() if sha not in before)
    assert sorted(map(int, kb._fresh_derived().sparse.ids.tolist())) == kb.store.chunk_ids().tolist()


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OPS, min_size=1, max_size=8))
def test_one_sync_makes_the_knowledge_base_mirror_the_folder(ops: list[tuple]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder, emb = Path(tmp) / "docs", CountingEmbedder(dim=16)
        folder.mkdir()
        with KnowledgeBase.open(Path(tmp) / "kb", embedder=emb) as kb:
            for op in ops:
                if op[0] == "sync":
                    check_mirrors(kb, folder, emb)
                else:
                    apply(folder, op)
            check_mirrors(kb, folder, emb)
