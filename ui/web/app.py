"""The Gradio app: chat with streamed, cited answers; manage the knowledge base's documents.

* **Chat** (:mod:`ui.web.chat`, :mod:`ui.web.render`): a status line (retrieving…, generating…,
  answered / declined / stopped) while answers stream in; Stop ends the generation and keeps the text
  so far, Regenerate asks the last question again. Each ``[n]`` in an answer is a link that opens
  source n under it (document, page, score, the passage with the cited sentences highlighted);
  retrieval-only answers are the passages as quotes. A "⚠️" note says when the model cited numbers
  that name no source (removed from the text) or cited none of its sources; a "🔎 searched: …" note
  says what retrieval searched when it was not the question as typed (a follow-up's rewrite). The
  empty chat shows the knowledge base (documents, chunks, embedder) and example questions made from
  it (:mod:`ui.web.welcome`). Settings beside the chat: number of sources, retrieval mode, adapter
  on/off, temperature, thinking on/off, retrieval-only.
* **Documents**: upload documents (every type `ingest add` reads; type and size checked), ingested with a progress bar
  into the same per-file status table as ``ingest add``; list and delete documents.

Serving on http://127.0.0.1:7860 by default:

>>> from assistant.answer import Assistant                          # doctest: +SKIP
>>> from ui.web.app import build_app, launch                        # doctest: +SKIP
>>> launch(Assistant(kb="kb", model="Qwen/Qwen3-0.6B"))             # doctest: +SKIP
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from ui.web.assets import page_assets
from ui.web.chat import (  # noqa: F401 - chat_turn, ask_history, answer_messages: importable from here too
    Runs,
    answer_messages,
    ask_history,
    chat_turn,
    overrides,
    regenerate_turn,
)
from ui.web.render import md_escape
from ui.web.uploads import (
    DEFAULT_MAX_UPLOAD_MB,
    DOC_COLUMNS,
    REPORT_COLUMNS,
    discard_uploads,
    document_rows,
    ingest_uploads,
    remove_document,
    report_rows,
    report_summary,
    supported_suffixes,
)

if TYPE_CHECKING:
    import gradio as gr

    from assistant.answer import Assistant


# -- documents ---------------------------------------------------------------------------
class _Documents:
    """The knowledge base the chat searches, written one upload/delete at a time."""

    def __init__(self, assistant: "Assistant", kb_dir: str | Path | None, max_upload_mb: float) -> None:
        self.assistant = assistant
        self.kb_dir = Path(kb_dir) if kb_dir is not None else None  # None: wherever the assistant's KB is
        self.max_bytes = int(max_upload_mb * 2**20)
        self.lock = threading.Lock()
        self.events: list[Any] = []  # the Gradio events that change the documents (for what follows them)

    @property
    def kb(self) -> Any:
        kb = self.assistant.kb  # the chat's own KnowledgeBase: uploads are searchable at once
        if self.kb_dir is not None and Path(kb.path).resolve() != self.kb_dir.resolve():
            raise ValueError(f"the assistant searches {kb.path}, not {self.kb_dir}: start the UI with the same --kb")
        return kb

    def add(self, files: Sequence[Any] | None, progress: Any = None) -> tuple[str, list[list]]:
        paths = [Path(f if isinstance(f, str) else getattr(f, "name", f)) for f in files or []]
        if not paths:
            return "Choose one or more files first.", []

        def report(done: int, total: int, name: str) -> None:
            if progress is not None:
                progress((done, total), desc=f"ingesting {name}", unit="files")

        from gradio.utils import get_upload_folder

        with self.lock:
            rows = ingest_uploads(self.kb, paths, max_bytes=self.max_bytes, progress=report)
        discard_uploads(paths, get_upload_folder())  # the KB keeps its own copy of each accepted file
        return f"**Ingested:** {report_summary(rows)}", report_rows(rows)

    def delete(self, sha256: str | None) -> str:
        if not sha256:
            return "Choose a document to delete."
        with self.lock:
            info = remove_document(self.kb, sha256)
        return f"Deleted **{md_escape(info.title)}** ({info.n_chunks} chunks)."

    def listing(self) -> tuple[list[list], list[tuple[str, str]]]:
        docs = self.kb.documents()
        return document_rows(docs), [(f"{d.title} ({d.sha256[:12]})", d.sha256) for d in docs]


# -- the app -----------------------------------------------------------------------------
def build_app(assistant: "Assistant", *, kb_dir: str | Path | None = None,
              max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, chat_concurrency: int = 8,
              examples: Sequence[str] | None = None) -> "gr.Blocks":
    """The Gradio Blocks app over ``assistant`` (uploads go to ``kb_dir``, the assistant's KB).

    ``chat_concurrency``: answers generated at once (more wait in Gradio's queue). ``examples``: the
    example questions of the empty chat (default: made from the knowledge base). Serve it with
    ``launch`` (or pass :func:`ui.web.assets.page_assets` to ``Blocks.launch``: the citation links need it).
    """
    import gradio as gr

    if max_upload_mb <= 0:
        raise ValueError(f"max_upload_mb={max_upload_mb} must be > 0")
    docs = _Documents(assistant, kb_dir, max_upload_mb)
    welcome = _welcome(gr, docs, examples)
    # delete_cache: Gradio's own temporary files (uploads) older than an hour go every hour, and all of
    # this app's at shutdown
    with gr.Blocks(title="Domain assistant", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown("## Domain assistant — answers from your documents, with sources")
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"):
                chatbot = _chat_tab(gr, assistant, chat_concurrency)
            with gr.Tab("Documents", id="documents"):
                _documents_tab(gr, docs, max_upload_mb, demo)
        demo.load(welcome, None, chatbot, api_visibility="private", show_progress="hidden")
        for event in docs.events:  # uploads and deletions change the summary and the examples
            event.then(welcome, None, chatbot, api_visibility="private", show_progress="hidden")
    demo.max_file_size = int(max_upload_mb * 2**20)  # what Gradio's upload route enforces (launch() resets it)
    return demo


def _welcome(gr: Any, docs: _Documents, examples: Sequence[str] | None) -> Callable[[], Any]:
    """The empty chat's summary and example questions, as an update of the chatbot."""
    from ui.web.welcome import example_questions, overview_markdown

    def welcome() -> Any:
        try:
            kb = docs.kb
            questions = list(examples) if examples is not None else example_questions(kb)
            return gr.update(placeholder=overview_markdown(kb), examples=[{"text": q} for q in questions] or None)
        except Exception as e:  # noqa: BLE001 - e.g. another --kb: the chat still works
            return gr.update(placeholder=f"⚠️ {md_escape(str(e))}", examples=None)

    return welcome


def _typed(fn: Callable, **hints: Any) -> Callable:
    """``fn`` with these parameters' annotations as objects: Gradio passes ``gr.Request`` and event data
    by annotation, which it cannot read from this module's string annotations."""
    fn.__annotations__ = dict(hints)
    return fn


def _session(request: Any) -> str:
    return str(getattr(request, "session_hash", None) or "")


def _chat_tab(gr: Any, assistant: "Assistant", concurrency: int) -> Any:
    cfg = assistant.config
    with gr.Row():
        with gr.Column(scale=3):
            chatbot = gr.Chatbot(label="Chat", height=520, elem_id="chatbot", buttons=["copy"])
            with gr.Row():
                box = gr.Textbox(placeholder="Ask a question about your documents…", show_label=False,
                                 scale=5, elem_id="question", autofocus=True)
                send = gr.Button("Send", variant="primary", scale=1, elem_id="send")
            with gr.Row(equal_height=True):
                status = gr.Markdown(elem_id="status")
                stop = gr.Button("⏹ Stop", size="sm", variant="stop", scale=0, min_width=90, elem_id="stop")
                again = gr.Button("🔄 Regenerate", size="sm", scale=0, min_width=130, elem_id="regenerate")
                clear = gr.Button("Clear conversation", size="sm", scale=0, min_width=150, elem_id="clear")
        with gr.Column(scale=1):
            gr.Markdown("### Settings")
            k = gr.Slider(1, 20, value=cfg.k, step=1, label="Number of sources (k)")
            mode = gr.Radio(["hybrid", "dense", "bm25"], value=cfg.mode, label="Retrieval mode")
            adapter = gr.Checkbox(value=bool(cfg.adapter), interactive=bool(cfg.adapter), label="Use the LoRA adapter",
                                  info=None if cfg.adapter else "no adapter loaded (--adapter)")
            temperature = gr.Slider(0, 2, value=float(cfg.temperature), step=0.05, label="Temperature (0 = greedy)")
            thinking = gr.Checkbox(value=cfg.thinking == "on", label="Thinking (Qwen3 reasoning)")
            retrieval_only = gr.Checkbox(value=cfg.retrieval_only, label="Retrieval only (no model)",
                                         elem_id="retrieval-only")
    settings = [k, mode, adapter, temperature, thinking, retrieval_only]
    _chat_events(gr, assistant, concurrency, dict(chatbot=chatbot, box=box, status=status, send=send, stop=stop,
                                                    again=again, clear=clear), settings)
    return chatbot


def _chat_events(gr: Any, assistant: "Assistant", concurrency: int, ui: dict[str, Any], settings: list) -> None:
    chatbot, box, status = ui["chatbot"], ui["box"], ui["status"]
    runs = Runs()

    def respond(message: str, chat: list[dict], k: float, mode: str, adapter: bool, temperature: float,
                thinking: bool, retrieval_only: bool, request: Any = None) -> Iterator[tuple[list[dict], str, str]]:
        options = overrides(k, mode, adapter, temperature, thinking, retrieval_only)
        with runs.running(_session(request)) as stop:
            for state, line in chat_turn(assistant, message, chat, options, stop):
                yield state, "", line

    def regenerate(chat: list[dict], k: float, mode: str, adapter: bool, temperature: float, thinking: bool,
                   retrieval_only: bool, request: Any = None) -> Iterator[tuple[list[dict], str]]:
        options = overrides(k, mode, adapter, temperature, thinking, retrieval_only)
        with runs.running(_session(request)) as stop:
            yield from regenerate_turn(assistant, chat, options, stop)

    def stop(request: Any = None) -> None:
        runs.stop(_session(request))

    inputs, outputs = [box, chatbot, *settings], [chatbot, box, status]
    queued = dict(concurrency_limit=concurrency, concurrency_id="chat", show_progress="minimal",
                  show_progress_on=[chatbot])
    respond, regenerate = _typed(respond, request=gr.Request), _typed(regenerate, request=gr.Request)
    box.submit(respond, inputs, outputs, api_name="chat", **queued)
    ui["send"].click(respond, inputs, outputs, api_visibility="private", **queued)
    ui["again"].click(regenerate, [chatbot, *settings], [chatbot, status], api_visibility="private", **queued)
    pick = _typed(lambda evt: example_text(evt), evt=gr.SelectData)
    chatbot.example_select(pick, None, box, api_visibility="private", show_progress="hidden") \
        .then(respond, inputs, outputs, api_visibility="private", **queued)
    ui["stop"].click(_typed(stop, request=gr.Request), None, None, api_visibility="private", queue=False)
    ui["clear"].click(lambda: ([], ""), None, [chatbot, status], api_visibility="private")


def example_text(evt: Any) -> str:
    """The clicked example question (``gr.SelectData.value`` of ``Chatbot.example_select``)."""
    value = getattr(evt, "value", None)
    return str(value.get("text", "")) if isinstance(value, dict) else str(value or "")


def _documents_tab(gr: Any, docs: _Documents, max_upload_mb: float, demo: Any) -> None:
    kinds = ", ".join(supported_suffixes())
    # No file_types: Gradio would refuse the whole batch for one bad file; ours reports it in its row.
    files = gr.File(label=f"Upload documents ({kinds}; at most {max_upload_mb:g} MB each)", file_count="multiple",
                    type="filepath", elem_id="upload")
    add = gr.Button("Add to knowledge base", variant="primary", elem_id="add")
    summary = gr.Markdown(elem_id="ingest-summary")
    report = gr.Dataframe(headers=REPORT_COLUMNS, label="Ingest report", interactive=False, wrap=True,
                          elem_id="ingest-report")
    gr.Markdown("### Documents in the knowledge base")
    listing = gr.Dataframe(headers=DOC_COLUMNS, label="Documents", interactive=False, wrap=True, elem_id="documents")
    with gr.Row():
        choice = gr.Dropdown(label="Document to delete", choices=[], scale=4, elem_id="delete-choice")
        delete = gr.Button("Delete", variant="stop", scale=1)
        refresh = gr.Button("Refresh", scale=1)
    deleted = gr.Markdown()
    _documents_events(gr, docs, demo, files, add, delete, refresh,
                      outputs=dict(summary=summary, report=report, listing=listing, choice=choice, deleted=deleted))


def frame(rows: list[list], columns: list[str]) -> Any:
    import pandas as pd

    return pd.DataFrame(rows, columns=columns)


def _documents_events(gr: Any, docs: _Documents, demo: Any, files: Any, add: Any, delete: Any, refresh: Any,
                      outputs: dict[str, Any]) -> None:
    listing, choice, report = outputs["listing"], outputs["choice"], outputs["report"]

    def refreshed() -> tuple[Any, Any]:
        rows, choices = docs.listing()
        return frame(rows, DOC_COLUMNS), gr.update(choices=choices, value=None)

    def add_files(paths: list[str] | None, progress: Any = gr.Progress()) -> tuple:
        text, rows = docs.add(paths, progress)
        return (text, frame(rows, REPORT_COLUMNS), None, *refreshed())

    def delete_doc(sha: str | None) -> tuple:
        try:
            text = docs.delete(sha)
        except Exception as e:  # noqa: BLE001 - e.g. already deleted in another tab
            text = f"⚠️ {e}"
        return (text, *refreshed())

    # The ingest progress bar is drawn on the report table only (not over all five outputs).
    added = add.click(add_files, files, [outputs["summary"], report, files, listing, choice],
                      api_name="add_documents", concurrency_limit=1, concurrency_id="kb_write",
                      show_progress_on=[report])
    removed = delete.click(delete_doc, choice, [outputs["deleted"], listing, choice], api_name="delete_document",
                           concurrency_limit=1, concurrency_id="kb_write", show_progress_on=[listing])
    refreshing = refresh.click(refreshed, None, [listing, choice], api_visibility="private")
    docs.events = [added, removed, refreshing]
    demo.load(refreshed, None, [listing, choice], api_visibility="private", show_progress="hidden")


def launch(assistant: "Assistant", *, kb_dir: str | Path | None = None, host: str = "127.0.0.1", port: int = 7860,
           max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, examples: Sequence[str] | None = None,
           **launch_kwargs: Any) -> Any:
    """Build the app and serve it on ``host:port`` (loopback unless told otherwise)."""
    demo = build_app(assistant, kb_dir=kb_dir, max_upload_mb=max_upload_mb, examples=examples)
    demo.queue()
    return demo.launch(server_name=host, server_port=port, max_file_size=int(max_upload_mb * 2**20),
                       share=False, **{**page_assets(), **launch_kwargs})
