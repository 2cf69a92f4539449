"""The Gradio UI: uploads (hash-named storage, limits, per-file report), chat turns with sources,
and eight concurrent chats through the real Gradio server (gradio_client) that keep their own sources."""
from __future__ import annotations

import contextlib
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest

from fixtures_assistant import SpyBackend
from test_server import TARGETS, echo_source

TEXT = "The boiler must be serviced every twelve months by a certified engineer.\n"


@pytest.fixture()
def kb(tmp_path: Path) -> Iterator[object]:
    from index.kb import KnowledgeBase

    with KnowledgeBase.open(tmp_path / "kb", embedder="hash-64", max_tokens=64, overlap=8) as kb:
        yield kb


def upload(tmp_path: Path, name: str, data: bytes) -> Path:
    """A file as Gradio hands it over: a temp folder holding the original file name."""
    folder = tmp_path / "gradio" / str(abs(hash((name, data))))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    return folder / name


def test_uploads_are_hash_named_titled_and_reported(tmp_path: Path, kb: object) -> None:
    from ui.web.uploads import ingest_uploads, report_rows, report_summary

    good = upload(tmp_path, "Boiler Manual (v2).md", TEXT.encode())
    files = [good, upload(tmp_path, "evil.exe", b"MZ"), upload(tmp_path, "huge.txt", b"x" * 3000),
             upload(tmp_path, "empty.txt", b""), upload(tmp_path, "broken.pdf", b"%PDF-1.4 garbage")]
    seen = []
    rows = ingest_uploads(kb, files, max_bytes=2048, progress=lambda done, total, name: seen.append((done, total)))
    assert [r.status for r in rows] == ["added", "failed", "failed", "failed", "failed"]
    assert seen[0] == (0, 5) and seen[-1] == (5, 5)
    assert rows[0].path == "Boiler Manual (v2).md" and rows[0].chunks >= 1
    assert "unsupported file type '.exe'" in rows[1].reason and ".pdf" in rows[1].reason
    assert "the file is 2.9 KB, over the 2.0 KB upload limit" in rows[2].reason
    assert "empty" in rows[3].reason and rows[4].reason
    stored = sorted((kb.path / "files").iterdir())
    assert [p.name for p in stored] == [f"{rows[0].doc_sha256}.md"]  # failed uploads leave nothing behind
    (doc,) = kb.documents()
    assert doc.title == "Boiler Manual (v2)" and Path(doc.path) == stored[0].resolve()
    assert kb.search("boiler serviced", k=1, mode="bm25")[0].title == "Boiler Manual (v2)"
    assert report_summary(rows) == "1 added, 4 failed"
    assert report_rows(rows)[0][:2] == ["Boiler Manual (v2).md", "added"]

    again = ingest_uploads(kb, [upload(tmp_path, "copy.md", TEXT.encode())], max_bytes=2048)
    assert again[0].status == "unchanged" and len(kb.documents()) == 1


def test_delete_removes_the_document_and_its_stored_file(tmp_path: Path, kb: object) -> None:
    from ui.web.uploads import ingest_uploads, remove_document

    (row,) = ingest_uploads(kb, [upload(tmp_path, "a.txt", TEXT.encode())], max_bytes=1 << 20)
    assert (kb.path / "files" / f"{row.doc_sha256}.txt").is_file()
    info = remove_document(kb, row.doc_sha256)
    assert info.title == "a" and kb.documents() == []
    assert not (kb.path / "files" / f"{row.doc_sha256}.txt").exists()


def test_chat_turn_streams_then_adds_sources(assistant_kb: Path) -> None:
    from assistant.answer import Assistant
    from ui.web.app import ask_history, chat_turn, overrides

    spy = SpyBackend(echo_source)
    bot = Assistant(kb=assistant_kb, model="spy", backend=spy, condense="off")
    settings = overrides(1, "bm25", False, 0.0, False, False)
    states = list(chat_turn(bot, TARGETS[6][0], [], settings))
    assert len(states) > 3 and states[1][-1]["content"] == "It"  # streamed word by word
    final = states[-1]
    assert [m["role"] for m in final] == ["user", "assistant", "assistant"]
    assert final[1]["content"] == "It is in handbook page 2 [1]."
    sources = final[2]
    assert sources["metadata"] == {"title": "Sources: handbook p. 2", "status": "done"}
    assert "**[1] handbook** · p. 2 · score" in sources["content"] and "warranty on company laptops" in \
        sources["content"]
    # the next turn sends only the question/answer pair as history (Gradio's content-part format too)
    gradio_style = [dict(m, content=[{"type": "text", "text": m["content"]}]) for m in final]
    assert ask_history(gradio_style) == [{"role": "user", "content": TARGETS[6][0]},
                                         {"role": "assistant", "content": "It is in handbook page 2 [1]."}]
    list(chat_turn(bot, "and parking?", gradio_style, settings))
    assert [m["role"] for m in spy.calls[-1][0]] == ["system", "user", "assistant", "user"]


def test_chat_turn_reports_errors_and_ignores_blank_input(assistant_kb: Path) -> None:
    from assistant.answer import Assistant
    from ui.web.app import chat_turn, overrides

    bot = Assistant(kb=assistant_kb, model="spy", backend=SpyBackend(), condense="off")
    assert list(chat_turn(bot, "   ", [], overrides(1, "bm25", False, 0, False, False))) == [[]]
    final = list(chat_turn(bot, "hi", [], overrides(1, "bm25", False, 9.0, False, False)))[-1]
    assert final[-1]["metadata"]["title"] == "Error" and "temperature=9.0" in final[-1]["content"]


def test_retrieval_only_lists_passages_with_sources(assistant_kb: Path) -> None:
    from assistant.answer import Assistant
    from ui.web.app import chat_turn, overrides

    bot = Assistant(kb=assistant_kb, model="never-loaded", condense="off")
    final = list(chat_turn(bot, TARGETS[7][0], [], overrides(2, "bm25", False, 0, False, True)))[-1]
    assert final[1]["content"].startswith("[1] handbook (p. 3)")
    assert final[2]["metadata"]["title"].startswith("Sources: handbook p. 3; ")


def test_chat_turn_and_cli_show_removed_marks_and_uncited_answers(assistant_kb: Path) -> None:
    import io

    from rich.console import Console

    from assistant.answer import Assistant
    from ui.cli.assistant import answer_json, print_sources
    from ui.web.app import ask_history, chat_turn, overrides

    replies = iter([["It is two years [", "1][", "7] at ", "most [9", "]."], "I cannot say."])
    bot = Assistant(kb=assistant_kb, model="spy", backend=SpyBackend(lambda m: next(replies)), condense="off")
    settings = overrides(2, "bm25", False, 0.0, False, False)
    states = list(chat_turn(bot, TARGETS[6][0], [], settings))
    assert all("7" not in s[-1]["content"] for s in states[:-1])  # never shown, not even while streaming
    final = states[-1]
    assert final[1]["content"] == "It is two years [1] at most."
    assert final[2]["metadata"]["title"] == "⚠️ [7] and [9] named no source and were removed"
    assert final[3]["metadata"]["title"].startswith("Sources: handbook p. 2")
    assert ask_history(final) == [{"role": "user", "content": TARGETS[6][0]},
                                  {"role": "assistant", "content": "It is two years [1] at most."}]
    uncited = list(chat_turn(bot, TARGETS[6][0], [], settings))[-1]
    assert uncited[2]["metadata"]["title"] == "⚠️ the answer cites none of its sources: check it against them"
    assert uncited[3]["metadata"]["title"].startswith("Retrieved (none cited)")

    printed = io.StringIO()
    replies = iter(["Two years [1][7].", "Maybe."])
    for expected in ("⚠ [7] named no source and was removed", "⚠ the answer cites none of its sources"):
        answer = bot.ask(TARGETS[6][0], options=settings)
        print_sources(answer, Console(file=printed, width=120))
        assert expected in printed.getvalue()
    assert '"cited_nothing": true' in answer_json(answer) and '"total_tokens"' in answer_json(answer)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def launched(demo: object) -> Iterator[str]:
    """Serve a Gradio app on a free loopback port (in Gradio's own thread); yields its URL."""
    port = free_port()
    demo.queue()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                max_file_size=demo.max_file_size)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


def test_eight_concurrent_ui_chats_keep_their_own_sources(assistant_kb: Path, tmp_path: Path) -> None:
    from gradio_client import Client

    from assistant.answer import Assistant
    from ui.web.app import build_app

    bot = Assistant(kb=assistant_kb, model="spy", backend=SpyBackend(echo_source), condense="off")
    with launched(build_app(bot, kb_dir=assistant_kb)) as url:
        client = Client(url, verbose=False, analytics_enabled=False, download_files=str(tmp_path))
        jobs = [client.submit(q, [], 1, "bm25", False, 0.0, False, False, api_name="/chat") for q, _, _ in TARGETS]
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda job: job.result(timeout=120), jobs))
    for (question, title, page), (chat, box) in zip(TARGETS, results):
        assert box == ""
        texts = [part["text"] for m in chat for part in m["content"]]
        assert texts[1] == f"It is in {title} page {page} [1].", question
        assert chat[2]["metadata"]["title"] == f"Sources: {title} p. {page}", question


def test_cli_has_ui_command_without_heavy_imports(cli_help) -> None:
    out, heavy = cli_help("ui.cli.assistant", ["ui", "--help"])
    for flag in ("--kb", "--model", "--adapter", "--host", "--port", "--max-upload-mb", "--retrieval-only"):
        assert flag in out, flag
    assert "127.0.0.1" in out and heavy == []


def test_a_declined_answer_shows_why() -> None:
    from assistant.records import Answer
    from ui.web.app import answer_messages

    messages = answer_messages(Answer(text="The documents do not contain this information.", abstained=True,
                                      abstain_reason="best chunk cosine 0.790 < threshold 0.820"))
    assert messages[0]["content"].startswith("The documents do not")
    why = [m for m in messages if m.get("metadata", {}).get("title") == "Why declined"]
    assert len(why) == 1 and "0.790" in why[0]["content"]
