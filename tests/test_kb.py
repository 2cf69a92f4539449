"""Knowledge base: add/list/rm/sync, idempotence, search modes, locking, crash safety, reindex."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from index.embedder import HashEmbedder
from index.errors import BadQuery, DocumentNotFound, EmbedderMismatch, KBLocked
from index.kb import KnowledgeBase
from index.lock import WriteLock

ROOT = Path(__file__).resolve().parents[1]

EN = ("Hybrid retrieval fuses dense vectors with BM25 keyword scores. "
      "The refund policy allows returns within thirty days of purchase. ")
ZH = "混合检索把向量检索和关键词检索的结果融合在一起。退货政策规定购买后三十天内可以退货。"


class CountingEmbedder(HashEmbedder):
    """The exact fake embedder, counting how many passages it embedded."""

    def __init__(self, dim: int = 64) -> None:
        super().__init__(dim=dim)
        self.encoded = 0

    def encode_passages(self, texts, **kw):  # type: ignore[override]
        self.encoded += len(texts)
        return super().encode_passages(texts, **kw)


@pytest.fixture()
def docs(tmp_path: Path) -> Path:
    d = tmp_path / "docs"
    d.mkdir()
    (d / "policy.txt").write_text(EN * 3)
    (d / "zh.md").write_text(ZH * 3, encoding="utf-8")
    (d / "animals.txt").write_text("Cats and dogs are common pets. Parrots can learn words. " * 4)
    return d


def kb_at(where: Path | str) -> Path | str:
    """The knowledge base of ``where`` (``kb_where`` fixture): ``where / "kb"`` for a folder, else the Milvus URI."""
    return where / "kb" if isinstance(where, Path) else where


def open_kb(where: Path | str, emb: HashEmbedder | None = None, **kw) -> KnowledgeBase:
    return KnowledgeBase.open(kb_at(where), embedder=emb or CountingEmbedder(), **kw)


def test_add_is_idempotent_and_searchable(kb_where: Path | str, docs: Path) -> None:
    emb = CountingEmbedder()
    kb = open_kb(kb_where, emb)
    report = kb.add([docs])
    assert [f.status for f in report.files] == ["added"] * 3 and report.ok
    first = emb.encoded
    assert first == sum(f.chunks for f in report.files) > 0
    again = kb.add([docs / "*.txt", docs / "zh.md"])
    assert {f.status for f in again.files} == {"unchanged"} and emb.encoded == first
    for mode in ("hybrid", "dense", "bm25"):
        hits = kb.search("refund policy returns", k=2, mode=mode)
        assert hits[0].title == "policy" and hits[0].page == 1, mode
    zh = kb.search("退货政策", k=1, mode="bm25")[0]
    assert zh.title == "zh" and zh.text in (ZH * 3)
    kb.close()


def test_changed_file_replaces_its_chunks(kb_where: Path | str, docs: Path) -> None:
    kb = open_kb(kb_where)
    kb.add([docs])
    (docs / "policy.txt").write_text("Shipping takes five business days. " * 5)
    report = kb.add([docs / "policy.txt"])
    assert report.files[0].status == "replaced"
    assert len(kb.documents()) == 3
    assert all("refund" not in h.text for h in kb.search("refund policy", k=10, mode="bm25"))
    kb.close()


def test_remove_and_sync(kb_where: Path | str, docs: Path) -> None:
    kb = open_kb(kb_where)
    kb.add([docs])
    assert kb.remove("animals.txt").title == "animals"
    with pytest.raises(DocumentNotFound, match="no document matches"):
        kb.remove("nothing-like-this")
    (docs / "zh.md").unlink()
    (docs / "new.txt").write_text("A brand new document about solar panels. " * 3)
    report = kb.sync(docs)
    statuses = {Path(f.path).name: f.status for f in report.files}
    assert statuses == {"animals.txt": "added", "new.txt": "added", "policy.txt": "unchanged",
                        "zh.md": "removed"}
    assert sorted(d.title for d in kb.documents()) == ["animals", "new", "policy"]
    kb.close()


def test_bad_files_are_reported_and_the_batch_goes_on(kb_where: Path | str, docs: Path) -> None:
    (docs / "empty.pdf").write_bytes(b"")
    (docs / "notes.docx").write_bytes(b"PK\x03\x04")
    kb = open_kb(kb_where)
    odd = str(docs / "it's gone.pdf")  # a quote in the name: the argument is reported as given
    report = kb.add([docs, docs / "notes.docx", str(docs / "missing-*.pdf"), odd])
    by_name = {Path(f.path).name: f for f in report.files}
    assert by_name["empty.pdf"].status == "failed" and by_name["empty.pdf"].reason
    assert by_name["notes.docx"].status == "failed"
    assert by_name["missing-*.pdf"].status == "failed" and "no file matches" in by_name["missing-*.pdf"].reason
    assert by_name["it's gone.pdf"].path == odd and "does not exist" in by_name["it's gone.pdf"].reason
    assert sum(f.status == "added" for f in report.files) == 3 and not report.ok
    kb.close()


def test_search_validates_input(kb_where: Path | str, docs: Path) -> None:
    kb = open_kb(kb_where)
    kb.add([docs])
    for bad in (dict(query=" "), dict(query="x", k=0), dict(query="x", mode="magic")):
        with pytest.raises(BadQuery):
            kb.search(**bad)
    kb.close()


def test_other_embedder_is_refused_and_reindex_rebuilds(kb_where: Path | str, docs: Path) -> None:
    kb = open_kb(kb_where, CountingEmbedder(dim=64))
    kb.add([docs])
    kb.close()
    with pytest.raises(EmbedderMismatch, match="index reindex"):
        open_kb(kb_where, CountingEmbedder(dim=32))
    with pytest.raises(EmbedderMismatch, match="max_tokens"):
        open_kb(kb_where, CountingEmbedder(dim=64), max_tokens=100)
    kb = open_kb(kb_where, CountingEmbedder(dim=64))
    new = kb.reindex(CountingEmbedder(dim=32), max_tokens=60, overlap=10)
    assert new.embedder.dim == 32 and len(new.documents()) == 3
    assert new.search("refund policy", k=1)[0].title == "policy"
    assert all(new.embedder.count_tokens(h.text) <= 60 for h in new.search("policy", k=20))
    new.close()
    reopened = open_kb(kb_where, CountingEmbedder(dim=32))  # the new settings are recorded
    assert reopened.config.max_tokens == 60
    reopened.close()


def test_stale_derived_indexes_are_rebuilt(tmp_path: Path, docs: Path) -> None:
    kb = open_kb(tmp_path)
    kb.add([docs])
    kb.close()
    (tmp_path / "kb" / "derived.json").unlink()
    (tmp_path / "kb" / "faiss.index").write_bytes(b"garbage")
    kb = open_kb(tmp_path)
    assert kb.search("parrots learn words", k=1)[0].title == "animals"
    kb.close()


def test_a_second_lock_in_the_same_process_is_refused_naming_this_pid(tmp_path: Path) -> None:
    with WriteLock(tmp_path / "kb") as held:
        assert held.pid_path.read_text() == str(os.getpid())
        with pytest.raises(KBLocked, match=f"locked by pid {os.getpid()} \\(waited \\d+ s\\)"):
            WriteLock(tmp_path / "kb", timeout_s=0).acquire()
    assert not held.pid_path.exists()  # a clean release removes the pid
    with WriteLock(tmp_path / "kb", timeout_s=0):
        pass


def test_second_writer_gets_locked_by_pid(tmp_path: Path, docs: Path) -> None:
    (tmp_path / "kb").mkdir()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from index.lock import WriteLock
        with WriteLock({str(tmp_path / 'kb')!r}):
            print("held", flush=True)
            time.sleep(30)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        kb = open_kb(tmp_path, lock_timeout_s=0.5)
        with pytest.raises(KBLocked, match=f"locked by pid {holder.pid}"):
            kb.add([docs])
        kb.close()
    finally:
        holder.kill()  # SIGKILL: the holder cannot clean up
        holder.wait()
    pid_file = tmp_path / "kb" / "write.lock.pid"
    assert pid_file.read_text() == str(holder.pid)  # left behind by the killed writer ...
    with WriteLock(tmp_path / "kb", timeout_s=0):  # ... but the kernel released the lock itself
        assert pid_file.read_text() == str(os.getpid())


CRASHER = """
import sys, time
sys.path.insert(0, {root!r})
import index.pipeline as pipeline
from index.embedder import HashEmbedder
from index.kb import KnowledgeBase
pipeline.BATCH_CHUNKS = 1          # commit document by document
class Slow(HashEmbedder):
    def encode_passages(self, texts, **kw):
        print("encode", flush=True)  # the parent kills on progress, not on a timer (robust to load)
        time.sleep({delay})
        return super().encode_passages(texts, **kw)
kb = KnowledgeBase.open({kb!r}, embedder=Slow(dim=64))
print("start", flush=True)
report = kb.add([{docs!r}])
print("done", sum(f.status == "added" for f in report.files), flush=True)
"""


def test_kill_9_mid_ingest_leaves_a_loadable_kb_and_the_next_run_completes(tmp_path: Path) -> None:
    docs = tmp_path / "many"
    docs.mkdir()
    for i in range(30):
        (docs / f"doc{i:02d}.txt").write_text(f"Document number {i} talks about topic {i}. " * 5)
    script = CRASHER.format(root=str(ROOT), kb=str(tmp_path / "kb"), docs=str(docs), delay=0.15)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "start"
    for _ in range(10):  # ten documents embedded (each commits before the next one's batch): mid-run
        assert proc.stdout.readline().strip() == "encode"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    kb = KnowledgeBase.open(tmp_path / "kb", embedder=HashEmbedder(dim=64))
    stored = len(kb.documents())
    assert 0 < stored < 30
    assert kb.search("Document number topic", k=3)  # loadable, indexes rebuilt from the store
    report = kb.add([docs])
    assert report.count("unchanged") == stored and report.count("added") == 30 - stored
    assert len(kb.search("topic", k=100, mode="bm25")) == 30
    kb.close()


def test_langchain_retriever(kb_where: Path | str, docs: Path) -> None:
    from index.langchain import KnowledgeBaseRetriever

    kb = open_kb(kb_where)
    kb.add([docs])
    got = KnowledgeBaseRetriever(kb=kb, k=2).invoke("refund policy")
    assert got[0].metadata["title"] == "policy" and got[0].metadata["page"] == 1
    assert "refund" in got[0].page_content
    kb.close()


def test_vectors_round_trip_through_the_store(kb_where: Path | str, docs: Path) -> None:
    emb = CountingEmbedder()
    kb = open_kb(kb_where, emb)
    kb.add([docs / "policy.txt"])
    ids, vecs = next(kb.store.iter_vectors(emb.dim))
    texts = [h.text for h in kb.search("refund", k=len(ids), mode="bm25")]
    assert np.allclose(np.sort(vecs @ vecs.T, axis=None)[-1], 1.0, atol=1e-5)
    assert len(texts) == len(ids)
    kb.close()


def test_cli_add_list_search_rm_json(kb_where: Path | str, docs: Path) -> None:
    env = os.environ | {"QDA_KB": str(kb_where)}  # a folder or a Milvus collection: the same commands

    def run(app: str, *args: str) -> subprocess.CompletedProcess:
        code = f"import sys; from ui.cli.{app} import app; sys.argv[0] = {app!r}; app()"
        return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env,
                              capture_output=True, text=True)

    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 garbage")
    added = run("ingest", "add", str(docs), "--embedder", "hash-64", "--json")
    assert added.returncode == 1, added.stderr  # one file failed: non-zero exit
    report = json.loads(added.stdout)
    assert report["counts"]["added"] == 3 and report["counts"]["failed"] == 1
    listed = json.loads(run("ingest", "list", "--json").stdout)
    assert sorted(d["title"] for d in listed) == ["animals", "policy", "zh"]
    hits = json.loads(run("index", "search", "refund policy", "--k", "2", "--json").stdout)
    assert hits[0]["title"] == "policy" and hits[0]["rank"] == 1 and hits[0]["page_start"] == 1
    assert run("ingest", "rm", "policy.txt").returncode == 0
    missing = run("ingest", "rm", "policy.txt")
    assert missing.returncode == 2 and "no document matches" in missing.stderr


def test_ingest_help_does_not_import_torch() -> None:
    code = ("import sys\nfrom ui.cli.ingest import app\n"
            "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'transformers', 'sentence_transformers', 'faiss') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "add" in out.stdout


def test_a_wrong_password_fails_and_a_missing_one_skips(tmp_path: Path) -> None:
    """A file asked for with a password that does not open it was not added: failed (exit 1); without a
    password it is skipped until one is given."""
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    writer.encrypt(user_password="s3cret", owner_password="owner")
    pdf = tmp_path / "locked.pdf"
    with pdf.open("wb") as f:
        writer.write(f)
    with KnowledgeBase.open(tmp_path / "kb", embedder="hash-64") as kb:
        missing = kb.add([str(pdf)])
        wrong = kb.add([str(pdf)], password="nope")
    assert missing.files[0].status == "skipped" and missing.ok and "--password" in missing.files[0].reason
    assert wrong.files[0].status == "failed" and not wrong.ok


def test_unsupported_files_in_a_folder_are_listed_as_skipped(kb_where: Path | str, docs: Path) -> None:
    (docs / "notes.odt").write_bytes(b"PK\x03\x04")
    (docs / ".hidden.odt").write_bytes(b"PK\x03\x04")
    with open_kb(kb_where) as kb:
        report = kb.add([docs])
    rows = {Path(f.path).name: f for f in report.files}
    assert rows["notes.odt"].status == "skipped" and "not a supported file type" in rows["notes.odt"].reason
    assert ".hidden.odt" not in rows and report.ok and report.count("added") == 3


def test_links_and_pipes_in_a_folder_are_listed_as_skipped(tmp_path: Path, docs: Path) -> None:
    import os

    os.symlink(docs / "loop.md", docs / "loop.md")
    os.mkfifo(docs / "pipe.txt")
    with open_kb(tmp_path) as kb:
        report = kb.add([docs])
    rows = {Path(f.path).name: f for f in report.files}
    assert rows["loop.md"].status == "skipped" and rows["loop.md"].reason.endswith("is a symbolic link that loops")
    assert rows["pipe.txt"].status == "skipped" and "named pipe" in rows["pipe.txt"].reason
    assert report.ok and report.count("added") == 3


def test_empty_and_blank_text_files_say_so(kb_where: Path | str, docs: Path) -> None:
    """Not "no text layer, and OCR found none": a text file has no text layer to miss."""
    (docs / "empty.txt").write_bytes(b"")
    (docs / "blank.md").write_text("  \n\n ", encoding="utf-8")
    with open_kb(kb_where) as kb:
        report = kb.add([docs / "empty.txt", docs / "blank.md"])
    reasons = {Path(f.path).name: (f.status, f.reason) for f in report.files}
    assert reasons == {"empty.txt": ("failed", "no text found: the file is empty (0 bytes)"),
                       "blank.md": ("failed", "no text found: the file holds only blank space")}


def refuse_to_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``index.embedder.load_embedder`` raise: whatever calls it loads the embedder."""
    import index.embedder

    def refuse(name: str) -> None:
        raise AssertionError(f"the embedder {name} was loaded")

    monkeypatch.setattr(index.embedder, "load_embedder", refuse)


def test_bm25_search_never_loads_the_embedder(kb_where: Path | str, docs: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from ui.cli.index import app

    with KnowledgeBase.open(kb_at(kb_where), embedder="hash-64") as kb:
        kb.add([docs])
    refuse_to_load(monkeypatch)
    with KnowledgeBase.open(kb_at(kb_where)) as kb:
        hits = kb.search("refund policy", k=2, mode="bm25")
        assert hits[0].title == "policy" and hits[0].similarity is None
        with pytest.raises(AssertionError, match="hash-64 was loaded"):  # dense needs it: loaded on first use
            kb.search("refund policy", k=2, mode="hybrid")
    result = CliRunner().invoke(app, ["search", "refund policy", "--kb", str(kb_at(kb_where)), "--mode", "bm25",
                                      "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[0]["title"] == "policy"


def test_an_embedder_loaded_on_first_use_is_still_checked(kb_where: Path | str, docs: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import index.embedder

    with KnowledgeBase.open(kb_at(kb_where), embedder="hash-64") as kb:
        kb.add([docs])
    retrained = HashEmbedder(dim=64)
    retrained.fingerprint = "hash-v1-64-retrained"  # same name, other weights
    monkeypatch.setattr(index.embedder, "load_embedder", lambda name: retrained)
    with KnowledgeBase.open(kb_at(kb_where)) as kb:
        assert kb.search("refund policy", k=1, mode="bm25")[0].title == "policy"
        with pytest.raises(EmbedderMismatch, match="embedder_fingerprint"):
            kb.search("refund policy", k=1, mode="dense")
    with pytest.raises(EmbedderMismatch, match="overlap"):  # chunk settings are still checked on opening
        KnowledgeBase.open(kb_at(kb_where), overlap=7)


def test_index_help_stays_light(cli_help) -> None:
    text, heavy = cli_help("ui.cli.index", ["--help"], ["search", "--help"], ["eval", "--help"])
    assert "--max-queries" in text and "--mode" in text
    assert not set(heavy) & {"torch", "transformers", "sentence_transformers", "faiss"}, heavy


def test_a_read_never_records_settings_in_a_half_made_knowledge_base(tmp_path: Path, docs: Path) -> None:
    """The first `ingest add --embedder X` is killed right after kb.sqlite appears; an `index search`
    there must not record the default embedder, so the rerun with X completes."""
    from index.store import Store, store_path

    kb_dir = tmp_path / "kb"
    kb_dir.mkdir()
    Store(store_path(kb_dir)).close()  # the killed run got this far: a store without settings
    with KnowledgeBase.open(kb_dir, embedder=HashEmbedder(dim=64)) as reader:  # any read, other embedder
        assert reader.search("refund", mode="bm25") == [] and reader.store.meta() == {}
    created = tmp_path / "new"
    KnowledgeBase.open(created, embedder=HashEmbedder(dim=32)).close()  # creating one records its settings
    with pytest.raises(EmbedderMismatch):
        KnowledgeBase.open(created, embedder=HashEmbedder(dim=64))
    with KnowledgeBase.open(kb_dir, embedder=HashEmbedder(dim=32)) as kb:
        assert kb.add([docs]).count("added") == 3
        assert kb.store.meta()["embedder_name"] == "hash-32"
    with pytest.raises(EmbedderMismatch):  # from now on the recorded embedder is enforced
        KnowledgeBase.open(kb_dir, embedder=HashEmbedder(dim=64))


def test_a_copy_of_a_file_that_failed_fails_the_same_way(tmp_path: Path) -> None:
    """Not "unchanged: same content as …": nothing of the first copy was stored."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.pdf", "b.pdf"):
        (folder / name).write_bytes(b"MZ\x90\x00 this is an executable renamed .pdf" * 20)
    with open_kb(tmp_path) as kb:
        report = kb.add([folder])
    rows = {Path(f.path).name: f for f in report.files}
    assert rows["a.pdf"].status == rows["b.pdf"].status == "failed", rows
    assert rows["b.pdf"].reason.startswith("same content as ") and rows["a.pdf"].reason in rows["b.pdf"].reason
    assert not report.ok
