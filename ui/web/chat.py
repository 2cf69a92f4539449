"""One chat turn as the UI shows it: status while it runs, streamed text, stop, regenerate, the
final answer with clickable citations and its notes.

A turn yields ``(chat, status)`` pairs: the whole chat (Gradio's message dicts) and a one-line
status: ``⏳ retrieving…`` (the question is being searched), ``✍️ generating…`` (the model is
writing), then ``✅ answered``, ``🚫 declined: …``, ``⏹ stopped`` or ``⚠️ failed``. While nothing has
been written, the chat shows the status as a pending (spinning) message instead of an empty bubble.

Stopping: :class:`Runs` holds a ``threading.Event`` per running turn of each browser session;
the turn checks it after every piece and, once set, closes the :class:`~assistant.answer.AnswerStream`
(which stops the generation behind it) and keeps the text so far, marked "⏹ Stopped".
"""
from __future__ import annotations

import contextlib
import logging
import threading
from typing import TYPE_CHECKING, Generator, Iterator, Sequence

from ui.web.render import answer_html, history_text, is_retrieval_only, md_escape, new_anchor, quotes_html

if TYPE_CHECKING:
    from assistant.answer import Assistant
    from assistant.config import AskOptions
    from assistant.records import Answer

log = logging.getLogger(__name__)
RETRIEVING = "⏳ retrieving…"
GENERATING = "✍️ generating…"
ANSWERED = "✅ answered"
STOPPED = "⏹ stopped"
FAILED = "⚠️ failed"
STOPPED_TITLE = "⏹ Stopped"
Turn = Iterator[tuple[list[dict], str]]


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
    """The conversation for ``Assistant.ask``: user/answer turns as plain text (no sources, notes,
    reasoning, status or errors)."""
    out: list[dict] = []
    for m in chat:
        if (m.get("metadata") or {}).get("title") or m.get("role") not in ("user", "assistant"):
            continue
        if out and out[-1]["role"] == m["role"] == "user":
            out.pop()  # a question that got no answer (an error) is left out
        text = message_text(m)
        out.append({"role": m["role"], "content": history_text(text) if m["role"] == "assistant" else text})
    if out and out[-1]["role"] == "user":
        out.pop()
    return out


def pending(status: str) -> dict:
    """The placeholder message shown while nothing is written yet (Gradio draws a spinner)."""
    return {"role": "assistant", "content": "", "metadata": {"title": status, "status": "pending"}}


def note(title: str, text: str) -> dict:
    """A titled (collapsed) message: a note under the answer, never part of the history."""
    return {"role": "assistant", "content": text, "metadata": {"title": title, "status": "done"}}


def chat_turn(assistant: "Assistant", message: str, chat: list[dict] | None, settings: "AskOptions",
              stop: threading.Event | None = None) -> Turn:
    """Stream one turn: ``(chat, status)`` after each step, piece and the final answer (see the module doc)."""
    chat = list(chat or [])
    question = (message or "").strip()
    if not question:
        yield chat, ""
        return
    stop = stop or threading.Event()
    history = ask_history(chat)
    chat = chat + [{"role": "user", "content": question}, pending(RETRIEVING)]
    yield list(chat), RETRIEVING
    try:
        answer, text = yield from _generate(assistant, question, history, settings, stop, chat)
    except Exception as e:  # noqa: BLE001 - shown in the chat; the app goes on
        log.exception("ask failed")
        chat[-1] = {"role": "assistant", "content": f"⚠️ {e}", "metadata": {"title": "Error"}}
        yield chat, f"{FAILED}: {e}"
        return
    if answer is None:  # stopped: the stream is closed, so is the generation behind it
        yield chat[:-1] + stopped_messages(text), STOPPED
        return
    yield chat[:-1] + answer_messages(answer), final_status(answer)


def _generate(assistant: "Assistant", question: str, history: list[dict], settings: "AskOptions",
              stop: threading.Event, chat: list[dict]) -> Generator[tuple[list[dict], str], None, tuple]:
    """Retrieve, then stream the text into ``chat[-1]``; returns (the Answer or None when stopped, the text)."""
    text = ""
    with assistant.stream(question, history=history, options=settings) as pieces:  # retrieval happens here
        if stop.is_set():
            return None, text
        only = settings.retrieval_only
        live = not (assistant.config.retrieval_only if only is None else only)  # passages: at once, as quotes
        if live:
            chat[-1] = pending(GENERATING)
            yield list(chat), GENERATING
        for piece in pieces:
            text += piece
            if live:
                chat[-1] = {"role": "assistant", "content": text}
                yield list(chat), GENERATING
            if stop.is_set():
                return None, text  # leaving the with block closes the stream
        return pieces.answer, text


def regenerate_turn(assistant: "Assistant", chat: list[dict] | None, settings: "AskOptions",
                    stop: threading.Event | None = None) -> Turn:
    """Ask the last question again, replacing its answer (and everything after it)."""
    chat = list(chat or [])
    for i in range(len(chat) - 1, -1, -1):
        m = chat[i]
        if m.get("role") == "user" and not (m.get("metadata") or {}).get("title"):
            yield from chat_turn(assistant, message_text(m), chat[:i], settings, stop)
            return
    yield chat, "Nothing to regenerate: ask a question first."


def stopped_messages(text: str) -> list[dict]:
    """The text written before Stop, and the note saying it was stopped."""
    kept = [{"role": "assistant", "content": text}] if text.strip() else []
    return kept + [note(STOPPED_TITLE, "Stopped before the answer was complete." if kept else
                        "Stopped before anything was written.")]


def final_status(answer: "Answer") -> str:
    """The status line once the answer is complete."""
    if answer.abstained:
        return f"🚫 declined: {answer.abstain_reason or 'the documents do not seem to hold the answer'}"
    if is_retrieval_only(answer):
        n = len(answer.sources)
        return f"✅ {n} passage{'s' if n != 1 else ''} retrieved"
    return ANSWERED


def answer_messages(answer: "Answer", anchor: str | None = None) -> list[dict]:
    """The answer as chat messages: reasoning (collapsed), the text with clickable citations and its
    sources (or, retrieval-only, the passages as quotes), then notes (searched, why declined, ⚠️).

    A note's title is the note itself (visible while collapsed); titled messages are never history.
    """
    from assistant.citations import citation_notes
    from assistant.condense import searched_note

    anchor = anchor or new_anchor()
    out = []
    if answer.reasoning:
        out.append(note("Reasoning", answer.reasoning))
    body = quotes_html(answer.sources, anchor) if is_retrieval_only(answer) else answer_html(answer, anchor)
    out.append({"role": "assistant", "content": body})
    searched = searched_note(answer.question, answer.search_queries)
    if searched:  # retrieval searched a rewrite of the question (a follow-up), or both
        out.append(note(f"🔎 {searched}", "\n\n".join(md_escape(q) for q in answer.search_queries)))
    if answer.abstained and answer.abstain_reason:  # why the model was not asked
        out.append(note("Why declined", md_escape(answer.abstain_reason)))
    out += [note(f"⚠️ {n}", md_escape(n[0].upper() + n[1:]) + ".") for n in citation_notes(answer)]
    return out


class Runs:
    """The turns running now, per browser session, so that Stop can end them (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, set[threading.Event]] = {}

    @contextlib.contextmanager
    def running(self, session: str | None) -> Iterator[threading.Event]:
        """A stop switch for one turn of ``session``, registered while the block runs."""
        event, key = threading.Event(), session or ""
        with self._lock:
            self._running.setdefault(key, set()).add(event)
        try:
            yield event
        finally:
            with self._lock:
                events = self._running.get(key, set())
                events.discard(event)
                if not events:
                    self._running.pop(key, None)

    def stop(self, session: str | None) -> int:
        """Stop every running turn of ``session``; how many there were."""
        with self._lock:
            events = list(self._running.get(session or "", ()))
        for event in events:
            event.set()
        return len(events)
