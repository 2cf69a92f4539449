"""The Gradio UI: uploads (hash-named storage, limits, per-file report), chat turns with sources,
and eight concurrent chats through the real Gradio server (gradio_client) that keep their own sources."""
from __future__ import annotations

import contextlib
import re
import socket
import threading
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


def final_chat(states: list) -> list[dict]:
    return states[-1][0]


def cite_anchor(body: str, number: int) -> str:
    """The id the answer's [number] link points at (and its source block has)."""
    match = re.search(rf'<a class="qda-cite" href="#(qda-\w+-{number})">', body)
    assert match, body
    return match.group(1)


def test_chat_turn_streams_with_status_then_links_citations_to_sources(assistant_kb: Path) -> None:
    from assistant.answer import Assistant
    from ui.web.app import ask_history, chat_turn, overrides
    from ui.web.chat import ANSWERED, GENERATING, RETRIEVING

    spy = SpyBackend(echo_source)
    bot = Assistant(kb=assistant_kb, model="spy", backend=spy, condense="off")
    settings = overrides(1, "bm25", False, 0.0, False, False)
    states = list(chat_turn(bot, TARGETS[6][0], [], settings))
    statuses = [status for _, status in states]
    assert statuses[0] == RETRIEVING and statuses[1] == GENERATING and statuses[-1] == ANSWERED
    assert states[0][0][-1]["metadata"] == {"title": RETRIEVING, "status": "pending"}  # no empty bubble
    assert states[2][0][-1]["content"] == "It"  # then streamed word by word
    final = final_chat(states)
    assert [m["role"] for m in final] == ["user", "assistant"]
    body = final[1]["content"]
    assert body.startswith('It is in handbook page 2 <a class="qda-cite" href="#qda-')
    anchor = cite_anchor(body, 1)
    assert f'<details class="qda-source" id="{anchor}">' in body
    assert "<strong>[1] handbook</strong> · p. 2 · score " in body and "warranty on company laptops" in body
    assert '<mark class="qda-hl">The warranty on company laptops' in body  # one sentence: all of it
    # the next turn sends only the question/answer pair, as plain text (Gradio's content-part format too)
    gradio_style = [dict(m, content=[{"type": "text", "text": m["content"]}]) for m in final]
    assert ask_history(gradio_style) == [{"role": "user", "content": TARGETS[6][0]},
                                         {"role": "assistant", "content": "It is in handbook page 2 [1]."}]
    list(chat_turn(bot, "and parking?", gradio_style, settings))
    assert [m["role"] for m in spy.calls[-1][0]] == ["system", "user", "assistant", "user"]


def test_chat_turn_reports_errors_and_ignores_blank_input(assistant_kb: Path) -> None:
    from assistant.answer import Assistant
    from ui.web.app import chat_turn, overrides

    bot = Assistant(kb=assistant_kb, model="spy", backend=SpyBackend(), condense="off")
    assert list(chat_turn(bot, "   ", [], overrides(1, "bm25", False, 0, False, False))) == [([], "")]
    final, status = list(chat_turn(bot, "hi", [], overrides(1, "bm25", False, 9.0, False, False)))[-1]
    assert final[-1]["metadata"]["title"] == "Error" and "temperature=9.0" in final[-1]["content"]
    assert status.startswith("⚠️ failed") and "temperature=9.0" in status


class SlowBackend(SpyBackend):
    """A fake backend whose stream is a generator: counts the pieces it made and notes when it is closed."""

    def __init__(self, words: int = 50) -> None:
        super().__init__()
        self.words, self.made, self.closed = words, 0, threading.Event()

    def generate(self, messages: list[dict], params: object, *, stream: bool = False,
                 on_first_token: object = None) -> Iterator[str]:
        def pieces() -> Iterator[str]:
            try:
                for i in range(self.words):
                    self.made += 1
                    yield f" w{i}"
            finally:
                self.closed.set()

        return pieces()


def test_stop_closes_the_stream_and_keeps_the_text_so_far(assistant_kb: Path) -> None:
    from assistant.answer import Assistant
    from ui.web.chat import STOPPED, STOPPED_TITLE, chat_turn, overrides

    backend = SlowBackend()
    bot = Assistant(kb=assistant_kb, model="spy", backend=backend, condense="off")
    stop = threading.Event()
    states = []
    for chat, status in chat_turn(bot, TARGETS[6][0], [], overrides(1, "bm25", False, 0, False, False), stop):
        states.append((chat, status))
        if chat[-1]["content"] == "w0 w1 w2":
            stop.set()  # what the Stop button does (Runs.stop)
    final, status = states[-1]
    assert status == STOPPED and backend.closed.is_set() and backend.made < backend.words
    assert final[1] == {"role": "assistant", "content": "w0 w1 w2"}
    assert final[2]["metadata"]["title"] == STOPPED_TITLE and len(final) == 3
    # stopped while retrieving: nothing is generated
    early = threading.Event()
    turn = chat_turn(bot, TARGETS[6][0], [], overrides(1, "bm25", False, 0, False, False), early)
    next(turn)
    early.set()
    final, status = list(turn)[-1]
    assert status == STOPPED and [m.get("metadata", {}).get("title") for m in final[1:]] == [STOPPED_TITLE]


def test_runs_stop_only_the_sessions_own_turns() -> None:
    from ui.web.chat import Runs

    runs = Runs()
    with runs.running("a") as a1, runs.running("a") as a2, runs.running("b") as b:
        assert runs.stop("a") == 2 and a1.is_set() and a2.is_set() and not b.is_set()
    assert runs.stop("a") == 0 and runs.stop("b") == 0


def test_regenerate_replaces_the_last_answer(assistant_kb: Path) -> None:
    from assistant.answer import Assistant
    from ui.web.chat import ANSWERED, chat_turn, overrides, regenerate_turn

    replies = iter(["First answer [1].", "Second answer [1]."])
    bot = Assistant(kb=assistant_kb, model="spy", backend=SpyBackend(lambda m: next(replies)), condense="off")
    settings = overrides(1, "bm25", False, 0, False, False)
    assert list(regenerate_turn(bot, [], settings))[-1][1].startswith("Nothing to regenerate")
    first = final_chat(list(chat_turn(bot, TARGETS[6][0], [], settings)))
    final, status = list(regenerate_turn(bot, first, settings))[-1]
    assert status == ANSWERED and [m["role"] for m in final] == ["user", "assistant"]
    assert final[0]["content"] == TARGETS[6][0] and final[1]["content"].startswith("Second answer <a")


def test_the_cited_sentence_is_highlighted_else_the_whole_passage() -> None:
    from assistant.citations import extract_citations
    from assistant.records import Answer
    from index.records import Hit
    from ui.web.render import answer_html, history_text

    text = "The kettle holds 1.7 litres. Descale the kettle every four weeks with citric acid. Keep the cord dry."
    hits = (Hit("c1", text, 0.5, "sha", "Kettle <Manual>", "k.pdf", 2, 2, 0, 100),
            Hit("c2", "Unrelated.", 0.4, "sha", "Other", "o.pdf", 1, 1, 0, 10))
    answer_text = "Descale it every four weeks [1], and never use vinegar [1, 2]."
    body = answer_html(Answer(text=answer_text, citations=extract_citations(answer_text, hits), sources=hits), "a1")
    assert body.count('<a class="qda-cite" href="#a1-1">') == 2 and '<a class="qda-cite" href="#a1-2">2</a>]' in body
    assert '<mark class="qda-hl">Descale the kettle every four weeks with citric acid.</mark>' in body
    assert "highlighted: the sentences sharing most words" in body and "Kettle &lt;Manual&gt;" in body
    assert history_text(body) == answer_text
    vague = "Yes [1]."
    body = answer_html(Answer(text=vague, citations=extract_citations(vague, hits), sources=hits), "a2")
    assert f'<mark class="qda-hl">{text}</mark>' in body and "highlighted: the whole passage" in body
    assert 'id="a2-2"' not in body  # only cited sources are listed


def test_score_label_prefers_the_cosine_similarity() -> None:
    from types import SimpleNamespace

    from ui.web.render import source_block

    hit = SimpleNamespace(title="Manual", text="Two years.", page_start=3, page_end=4, score=0.0312)
    assert "· pp. 3-4 · score 0.031</summary>" in source_block(1, hit, "a", "two years")
    hit.similarity = None
    assert "score 0.031" in source_block(1, hit, "a", "")
    hit.similarity = 0.8123
    assert "· cosine 0.812</summary>" in source_block(1, hit, "a", "")


def test_retrieval_only_shows_passages_as_short_quotes(assistant_kb: Path) -> None:
    from assistant.answer import Assistant
    from index.records import Hit
    from ui.web.app import chat_turn, overrides
    from ui.web.chat import ask_history
    from ui.web.render import quotes_html

    bot = Assistant(kb=assistant_kb, model="never-loaded", condense="off")
    states = list(chat_turn(bot, TARGETS[7][0], [], overrides(2, "bm25", False, 0, False, True)))
    assert all(status != "✍️ generating…" for _, status in states) and states[-1][1] == "✅ 2 passages retrieved"
    body = final_chat(states)[1]["content"]
    assert body.startswith('<div class="qda-quotes">') and "#" not in body.split("id=")[0]
    assert '<blockquote class="qda-quote" id="qda-' in body and "<strong>[1] handbook, p. 3</strong> · score" in body
    assert ask_history(final_chat(states))[1]["content"].startswith("[1] handbook, p. 3 · score")
    long = Hit("c", "# Heading\n" + "word " * 200, 1.25, "sha", "Long", "l.md", 1, 2, 0, 1000)
    quote = quotes_html([long], "a")
    assert "<strong>[1] Long, pp. 1-2</strong> · score 1.250" in quote and "…</div>" in quote
    assert "<details><summary>Full passage</summary>" in quote and "# Heading<br>word" in quote


def test_empty_chat_summarises_the_kb_with_examples_in_its_languages(tmp_path: Path) -> None:
    from index.kb import KnowledgeBase
    from ui.web.welcome import example_questions, overview_markdown

    docs = Path(__file__).resolve().parents[1] / "demo" / "docs"
    with KnowledgeBase.open(tmp_path / "kb", embedder="hash-64") as kb:
        assert "knowledge base is empty" in overview_markdown(kb) and example_questions(kb) == []
        kb.add([docs / "nordhaven_hv320_manual.pdf", docs / "yunshan_employee_handbook.pdf"])
        overview, questions = overview_markdown(kb), example_questions(kb)
    assert "**2 documents · 5 chunks · embedder hash-64**" in overview
    assert len(questions) == 4
    english = [q for q in questions if q.startswith("What does Nordhaven HV-320 Cordless Vacuum")]
    chinese = [q for q in questions if q.startswith("《云杉数据科技有限公司 员工手册（2024年版）》里关于")]
    assert len(english) == 2 and len(chinese) == 2, questions


def test_ingest_progress_is_drawn_on_the_report_only(assistant_kb: Path) -> None:
    from assistant.answer import Assistant
    from ui.web.app import build_app

    demo = build_app(Assistant(kb=assistant_kb, model="spy", backend=SpyBackend()), kb_dir=assistant_kb)
    ids = {c["id"]: c["props"].get("elem_id") for c in demo.config["components"]}
    by_name = {d["api_name"]: d for d in demo.config["dependencies"]}
    assert [ids[i] for i in by_name["add_documents"]["show_progress_on"]] == ["ingest-report"]
    assert [ids[i] for i in by_name["chat"]["show_progress_on"]] == ["chatbot"]


def test_chat_turn_and_cli_show_removed_marks_and_uncited_answers(assistant_kb: Path) -> None:
    import io

    from rich.console import Console

    from assistant.answer import Assistant
    from ui.cli.assistant import answer_json, print_sources
    from ui.web.app import ask_history, chat_turn, overrides
    from ui.web.render import history_text

    replies = iter([["It is two years [", "1][", "7] at ", "most [9", "]."], "I cannot say."])
    bot = Assistant(kb=assistant_kb, model="spy", backend=SpyBackend(lambda m: next(replies)), condense="off")
    settings = overrides(2, "bm25", False, 0.0, False, False)
    states = list(chat_turn(bot, TARGETS[6][0], [], settings))
    assert all("7" not in chat[-1]["content"] for chat, _ in states[:-1])  # never shown, not even while streaming
    final = final_chat(states)
    assert history_text(final[1]["content"]) == "It is two years [1] at most."
    assert final[2]["metadata"]["title"] == "⚠️ [7] and [9] named no source and were removed"
    assert '<div class="qda-sources-head">Sources</div>' in final[1]["content"]
    assert "<strong>[1] handbook</strong> · p. 2" in final[1]["content"]
    assert ask_history(final) == [{"role": "user", "content": TARGETS[6][0]},
                                  {"role": "assistant", "content": "It is two years [1] at most."}]
    uncited = final_chat(list(chat_turn(bot, TARGETS[6][0], [], settings)))
    assert uncited[2]["metadata"]["title"] == "⚠️ the answer cites none of its sources: check it against them"
    assert "Retrieved (none cited)" in uncited[1]["content"] and "not cited by the answer" in uncited[1]["content"]

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
    from ui.web.assets import page_assets

    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                max_file_size=demo.max_file_size, **page_assets())
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


def test_eight_concurrent_ui_chats_keep_their_own_sources(assistant_kb: Path, tmp_path: Path) -> None:
    from gradio_client import Client

    from assistant.answer import Assistant
    from ui.web.app import build_app
    from ui.web.render import history_text

    bot = Assistant(kb=assistant_kb, model="spy", backend=SpyBackend(echo_source), condense="off")
    with launched(build_app(bot, kb_dir=assistant_kb)) as url:
        client = Client(url, verbose=False, analytics_enabled=False, download_files=str(tmp_path))
        jobs = [client.submit(q, [], 1, "bm25", False, 0.0, False, False, api_name="/chat") for q, _, _ in TARGETS]
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda job: job.result(timeout=120), jobs))
    for (question, title, page), (chat, box, status) in zip(TARGETS, results):
        assert box == "" and status == "✅ answered"
        texts = [part["text"] for m in chat for part in m["content"]]
        assert history_text(texts[1]) == f"It is in {title} page {page} [1].", question
        assert f"<strong>[1] {title}</strong> · p. {page}" in texts[1], question


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


def test_a_declined_turn_says_so_in_the_status(assistant_kb: Path) -> None:
    from assistant.answer import Assistant
    from ui.web.chat import chat_turn, overrides

    spy = SpyBackend()
    bot = Assistant(kb=assistant_kb, model="spy", backend=spy, condense="off", abstain_threshold=1.0)
    final, status = list(chat_turn(bot, TARGETS[6][0], [], overrides(1, "bm25", False, 0, False, False)))[-1]
    assert status.startswith("🚫 declined: ") and spy.calls == []
    assert final[1]["content"] == "The documents do not contain this information."


def test_example_questions_file_for_the_empty_chat(tmp_path: Path) -> None:
    from ui.cli.assistant import _example_questions

    good = tmp_path / "examples.txt"
    good.write_text("年假有几天？\n\n  What is the restocking fee?  \n", encoding="utf-8")
    assert _example_questions(good) == ["年假有几天？", "What is the restocking fee?"]
    (tmp_path / "blank.txt").write_text("\n \n", encoding="utf-8")
    (tmp_path / "gbk.txt").write_bytes("年假".encode("gbk"))
    with pytest.raises(ValueError, match="no question"):
        _example_questions(tmp_path / "blank.txt")
    with pytest.raises(ValueError, match="not UTF-8"):
        _example_questions(tmp_path / "gbk.txt")
    with pytest.raises(FileNotFoundError, match="--examples"):
        _example_questions(tmp_path / "missing.txt")


def test_the_documents_tab_leaves_no_temporary_upload_behind(tmp_path: Path, kb: object,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Accepted and rejected uploads alike: Gradio's temporary copies go once ingested (the KB keeps its
    own copy of accepted files); other files are never touched."""
    from types import SimpleNamespace

    from ui.web.app import _Documents

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    files = [upload(tmp_path, "manual.md", TEXT.encode()), upload(tmp_path, "evil.exe", b"MZ"),
             upload(tmp_path, "empty.txt", b"")]
    outside = tmp_path / "mine.md"
    outside.write_text(TEXT, encoding="utf-8")
    docs = _Documents(SimpleNamespace(kb=kb), None, max_upload_mb=1)
    summary, rows = docs.add([str(p) for p in files] + [str(outside)])
    assert [r[1] for r in rows] == ["added", "failed", "failed", "unchanged"], rows
    assert not any((tmp_path / "gradio").rglob("*")) and outside.is_file()
    assert len(kb.documents()) == 1
