"""The Gradio app: chat with streamed, cited answers; manage the knowledge base's documents.

* **Chat**: answers stream in; under each answer a collapsed "Sources" block lists every cited
  source (document, page, score, snippet); a "⚠️" note says when the model cited numbers that
  name no source (removed from the text) or cited none of its sources; a "🔎 searched: …" line
  says what retrieval searched when it was not the question as typed (a follow-up's rewrite).
  Settings beside the chat: number of sources, retrieval mode, adapter on/off, temperature,
  thinking on/off, retrieval-only.
* **Documents**: upload documents (every type `ingest add` reads; type and size checked), ingested with a progress bar
  into the same per-file status table as ``ingest add``; list and delete documents.

Serving on http://127.0.0.1:7860 by default:

>>> from assistant.answer import Assistant                          # doctest: +SKIP
>>> from ui.web.app import build_app, launch                        # doctest: +SKIP
>>> launch(Assistant(kb="kb", model="Qwen/Qwen3-0.6B"))             # doctest: +SKIP
"""
from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from ui.web.uploads import (
    DEFAULT_MAX_UPLOAD_MB,
    DOC_COLUMNS,
    REPORT_COLUMNS,
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
    from assistant.config import AskOptions
    from assistant.records import Answer, Citation

log = logging.getLogger(__name__)
SOURCES_TITLE_ITEMS = 3  # sources named in the collapsed block's title
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#|~])")


# -- chat --------------------------------------------------------------------------------
def overrides(k: float, mode: str, use_adapter: bool, temperature: float, thinking: bool,
              retrieval_only: bool) -> "AskOptions":
    """Per-call settings of ``Assistant.stream`` from the settings panel's values."""
    from assistant.config import AskOptions

    return AskOptions(k=int(k), mode=mode, use_adapter=bool(use_adapter), temperature=float(temperature),
                      thinking="on" if thinking else "off", retrieval_only=bool(retrieval_only))


def message_text(message: dict) -> str:
    """The text of a chat message whose content is a string or Gradio's list of parts."""
    content = message.get("content")
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type", "text") == "text")
    return content if isinstance(content, str) else ""


def ask_history(chat: Sequence[dict]) -> list[dict]:
    """The conversation for ``Assistant.ask``: user/answer turns only (no sources, reasoning or errors)."""
    out: list[dict] = []
    for m in chat:
        if (m.get("metadata") or {}).get("title") or m.get("role") not in ("user", "assistant"):
            continue
        if out and out[-1]["role"] == m["role"] == "user":
            out.pop()  # a question that got no answer (an error) is left out
        out.append({"role": m["role"], "content": message_text(m)})
    if out and out[-1]["role"] == "user":
        out.pop()
    return out


def chat_turn(assistant: "Assistant", message: str, chat: list[dict] | None,
              settings: "AskOptions") -> Iterator[list[dict]]:
    """Stream one turn: yields the whole chat after each piece, then with the sources added."""
    chat = list(chat or [])
    question = (message or "").strip()
    if not question:
        yield chat
        return
    history = ask_history(chat)
    chat = chat + [{"role": "user", "content": question}, {"role": "assistant", "content": ""}]
    yield list(chat)
    try:
        with assistant.stream(question, history=history, options=settings) as pieces:
            for piece in pieces:
                chat[-1] = {"role": "assistant", "content": chat[-1]["content"] + piece}
                yield list(chat)
            answer = pieces.answer
    except Exception as e:  # noqa: BLE001 - shown in the chat; the app goes on
        log.exception("ask failed")
        chat[-1] = {"role": "assistant", "content": f"⚠️ {e}", "metadata": {"title": "Error"}}
        yield chat
        return
    yield chat[:-1] + answer_messages(answer)


def answer_messages(answer: "Answer") -> list[dict]:
    """The answer as chat messages: reasoning (collapsed), the text, citation notes, the sources (collapsed).

    A note's title is the note itself (visible while collapsed); titled messages are never history.
    """
    from assistant.citations import citation_notes
    from assistant.condense import searched_note

    out = []
    if answer.reasoning:
        out.append({"role": "assistant", "content": answer.reasoning,
                    "metadata": {"title": "Reasoning", "status": "done"}})
    out.append({"role": "assistant", "content": answer.text or "(empty answer)"})
    searched = searched_note(answer.question, answer.search_queries)
    if searched:  # retrieval searched a rewrite of the question (a follow-up), or both
        out.append({"role": "assistant", "content": "\n\n".join(md_escape(q) for q in answer.search_queries),
                    "metadata": {"title": f"🔎 {searched}", "status": "done"}})
    if answer.abstained and answer.abstain_reason:  # why the model was not asked
        out.append({"role": "assistant", "content": md_escape(answer.abstain_reason),
                    "metadata": {"title": "Why declined", "status": "done"}})
    out += [{"role": "assistant", "content": md_escape(note[0].upper() + note[1:]) + ".",
             "metadata": {"title": f"⚠️ {note}", "status": "done"}} for note in citation_notes(answer)]
    sources = sources_message(answer)
    if sources:
        out.append(sources)
    return out


def sources_message(answer: "Answer") -> dict | None:
    """A collapsed block naming the sources (document, page) and listing score and snippet of each."""
    from assistant.citations import all_citations

    cited = list(answer.citations)
    shown = cited or list(all_citations(answer.sources))
    if not shown:
        return None
    names = "; ".join(f"{c.title} {pages(c)}" for c in shown[:SOURCES_TITLE_ITEMS])
    more = f" (+{len(shown) - SOURCES_TITLE_ITEMS} more)" if len(shown) > SOURCES_TITLE_ITEMS else ""
    label = "Sources" if cited else "Retrieved (none cited)"
    body = "\n\n".join(source_markdown(c) for c in shown)
    return {"role": "assistant", "content": body, "metadata": {"title": f"{label}: {names}{more}", "status": "done"}}


def pages(c: "Citation") -> str:
    return f"p. {c.page}" if c.page_end == c.page else f"pp. {c.page}-{c.page_end}"


def source_markdown(c: "Citation") -> str:
    return (f"**[{c.number}] {md_escape(c.title)}** · {pages(c)} · score {c.score:.3f}\n\n"
            f"> {md_escape(c.snippet)}")


def md_escape(text: str) -> str:
    """Backslash-escape Markdown/HTML punctuation so document text shows as written."""
    return _MD_SPECIAL.sub(r"\\\1", text)


# -- documents ---------------------------------------------------------------------------
class _Documents:
    """The knowledge base the chat searches, written one upload/delete at a time."""

    def __init__(self, assistant: "Assistant", kb_dir: str | Path | None, max_upload_mb: float) -> None:
        self.assistant = assistant
        self.kb_dir = Path(kb_dir) if kb_dir is not None else None  # None: wherever the assistant's KB is
        self.max_bytes = int(max_upload_mb * 2**20)
        self.lock = threading.Lock()

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

        with self.lock:
            rows = ingest_uploads(self.kb, paths, max_bytes=self.max_bytes, progress=report)
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
              max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, chat_concurrency: int = 8) -> "gr.Blocks":
    """The Gradio Blocks app over ``assistant`` (uploads go to ``kb_dir``, the assistant's KB).

    ``chat_concurrency``: answers generated at once (more wait in Gradio's queue).
    """
    import gradio as gr

    if max_upload_mb <= 0:
        raise ValueError(f"max_upload_mb={max_upload_mb} must be > 0")
    docs = _Documents(assistant, kb_dir, max_upload_mb)
    with gr.Blocks(title="Domain assistant", analytics_enabled=False) as demo:
        gr.Markdown("## Domain assistant — answers from your documents, with sources")
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"):
                _chat_tab(gr, assistant, chat_concurrency)
            with gr.Tab("Documents", id="documents"):
                _documents_tab(gr, docs, max_upload_mb, demo)
    demo.max_file_size = int(max_upload_mb * 2**20)  # what Gradio's upload route enforces (launch() resets it)
    return demo


def _chat_tab(gr: Any, assistant: "Assistant", concurrency: int) -> None:
    cfg = assistant.config
    with gr.Row():
        with gr.Column(scale=3):
            chatbot = gr.Chatbot(label="Chat", height=520, elem_id="chatbot", buttons=["copy"])
            with gr.Row():
                box = gr.Textbox(placeholder="Ask a question about your documents…", show_label=False,
                                 scale=5, elem_id="question", autofocus=True)
                send = gr.Button("Send", variant="primary", scale=1, elem_id="send")
            clear = gr.Button("Clear conversation", size="sm")
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

    def respond(message: str, chat: list[dict], *values: Any) -> Iterator[tuple[list[dict], str]]:
        for state in chat_turn(assistant, message, chat, overrides(*values)):
            yield state, ""

    inputs = [box, chatbot, k, mode, adapter, temperature, thinking, retrieval_only]
    box.submit(respond, inputs, [chatbot, box], api_name="chat", concurrency_limit=concurrency,
               concurrency_id="chat")
    send.click(respond, inputs, [chatbot, box], api_visibility="private", concurrency_limit=concurrency,
               concurrency_id="chat")
    clear.click(lambda: [], None, chatbot, api_visibility="private")


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
    listing, choice = outputs["listing"], outputs["choice"]

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

    add.click(add_files, files, [outputs["summary"], outputs["report"], files, listing, choice],
              api_name="add_documents", concurrency_limit=1, concurrency_id="kb_write")
    delete.click(delete_doc, choice, [outputs["deleted"], listing, choice], api_name="delete_document",
                 concurrency_limit=1, concurrency_id="kb_write")
    refresh.click(refreshed, None, [listing, choice], api_visibility="private")
    demo.load(refreshed, None, [listing, choice], api_visibility="private")


def launch(assistant: "Assistant", *, kb_dir: str | Path | None = None, host: str = "127.0.0.1", port: int = 7860,
           max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, **launch_kwargs: Any) -> Any:
    """Build the app and serve it on ``host:port`` (loopback unless told otherwise)."""
    demo = build_app(assistant, kb_dir=kb_dir, max_upload_mb=max_upload_mb)
    demo.queue()
    return demo.launch(server_name=host, server_port=port, max_file_size=int(max_upload_mb * 2**20),
                       share=False, **launch_kwargs)
