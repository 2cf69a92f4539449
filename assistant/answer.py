"""The assistant: condense the question, retrieve, abstain or build the prompt, generate, cite.

>>> from assistant import Assistant
>>> bot = Assistant(kb="kb", model="path/to/Qwen3-0.6B")              # doctest: +SKIP
>>> answer = bot.ask("退货政策是什么？")                                  # doctest: +SKIP
>>> answer.text, [(c.title, c.page) for c in answer.citations]         # doctest: +SKIP
('购买后三十天内可以退货 [1]。', [('policy', 2)])
>>> stream = bot.stream("What about refunds?", history=[...])            # doctest: +SKIP
>>> for piece in stream:                                                 # doctest: +SKIP
...     print(piece, end="")
>>> stream.answer.citations                                              # doctest: +SKIP
>>> bot.ask("保修期多长？", options=AskOptions(k=3, mode="dense"))         # doctest: +SKIP
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, fields, replace
from typing import Any, Iterable, Iterator, Mapping, Sequence

from assistant.abstain import Gate, QueryMemo
from assistant.adapter_prompt import run_card, served_system_prompt
from assistant.backends import make_backend
from assistant.backends.base import Backend, GenParams, ThinkSplitter, generation_usage
from assistant.citations import CitationFilter, all_citations, extract_citations
from assistant.condense import merge_hits, plan_search
from assistant.config import MARGIN_TOKENS, AskOptions, AssistantConfig
from assistant.errors import ConfigError
from assistant.prompt import DEFAULT_SYSTEM_PROMPT, build_messages, format_source
from assistant.records import Answer, Timings, Usage
from common.cjk import is_chinese  # the abstention text's language (also importable from here)
from index.records import Hit
from index.store import require_store

ABSTAIN_EN = "The documents do not contain this information."
ABSTAIN_ZH = "文档中没有包含这方面的信息。"
CONDENSE_TOKENS = 64  # a standalone question is short


def abstain_message(question: str) -> str:
    return ABSTAIN_ZH if is_chinese(question) else ABSTAIN_EN


__all__ = ["ABSTAIN_EN", "ABSTAIN_ZH", "Answer", "AnswerStream", "Assistant", "abstain_message", "normalise_history"]


def normalise_history(history: Sequence[Any] | None) -> list[dict]:
    """``[{"role", "content"}, ...]`` from messages (Gradio/OpenAI style) or (user, assistant) pairs."""
    out: list[dict] = []
    for i, item in enumerate(history or []):
        if isinstance(item, Mapping):
            role, content = item.get("role"), item.get("content")
            if isinstance(content, list):  # content parts: keep the text ones
                content = "".join(p.get("text", "") for p in content if isinstance(p, Mapping))
            if role == "system":
                continue
            if role not in ("user", "assistant") or not isinstance(content, str):
                raise ConfigError(f"history[{i}] must have role user/assistant and text content, got {item!r}")
            out.append({"role": role, "content": content})
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            out += [{"role": r, "content": str(c)} for r, c in zip(("user", "assistant"), item) if c]
        else:
            raise ConfigError(f"history[{i}] must be a message dict or a (user, assistant) pair, got {item!r}")
    return out


class _Clock:
    """Stage timings of one ask (seconds since its start)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.marks: dict[str, float] = {}

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def first_token(self) -> None:
        self.marks.setdefault("first_token_s", self.elapsed())


@dataclass
class _Call:
    """Everything one ask works on; nothing here is shared between calls."""

    question: str
    history: list[dict]
    cfg: AssistantConfig
    use_adapter: bool
    clock: _Clock
    standalone: str = ""
    queries: tuple[str, ...] = ()  # what was searched (assistant.condense.SearchPlan)
    per_query: tuple[tuple[Hit, ...], ...] = ()  # each query's own hits
    hits: tuple[Hit, ...] = ()  # merged
    timings: dict[str, float] | None = None

    def timed(self, **extra: float) -> Timings:
        t = dict(self.timings or {}, **extra)
        t.setdefault("first_token_s", self.clock.marks.get("first_token_s", 0.0))
        return Timings(**t, total_s=self.clock.elapsed())


class Assistant:
    """Retrieval-augmented answers with citations over a knowledge base (thread-safe).

    ``Assistant(kb="kb", model="Qwen/Qwen3-0.6B", adapter=None, **fields)`` or
    ``Assistant(config=AssistantConfig(...))``; ``kb`` may also be an open ``KnowledgeBase``
    and ``backend`` any :class:`assistant.backends.Backend`. Models load on first use.
    """

    def __init__(self, kb: Any = None, model: str | None = None, adapter: str | None = None, *,
                 config: AssistantConfig | None = None, backend: Backend | None = None, **settings: Any) -> None:
        given = {k: v for k, v in dict(model=model, adapter=adapter, **settings).items() if v is not None}
        if kb is not None and not hasattr(kb, "search"):
            given["kb"] = kb
        unknown = sorted(set(given) - {f.name for f in fields(AssistantConfig)})
        if unknown:
            raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; see AssistantConfig")
        self.config = replace(config, **given) if config else AssistantConfig(**given)
        self._kb = kb if kb is not None and hasattr(kb, "search") else None
        if self._kb is None:
            require_store(self.config.kb)  # fail now, naming `ingest add`, not at the first question
        self._backend = backend
        self._gate: Gate | None = None
        self._card_cache: tuple[Any, dict] | None = None  # ((run card path, mtime), card): see _adapter_card
        self._lock = threading.Lock()

    # -- lazily opened parts ------------------------------------------------------------
    @property
    def kb(self) -> Any:
        with self._lock:
            if self._kb is None:
                from index.kb import KnowledgeBase

                kb = KnowledgeBase.open(self.config.kb, embedder=self.config.embedder)
                kb.embedder = QueryMemo(kb.embedder)  # the abstain check re-encodes the query
                self._kb = kb
        return self._kb

    @property
    def gate(self) -> Gate:
        """The decline decision for this knowledge base (:mod:`assistant.abstain`)."""
        kb = self.kb
        with self._lock:
            if self._gate is None:
                self._gate = Gate(kb)
        return self._gate

    @property
    def backend(self) -> Backend:
        with self._lock:
            if self._backend is None:
                self._backend = make_backend(self.config)
        return self._backend

    def close(self) -> None:
        if self._kb is not None and hasattr(self._kb, "close"):
            self._kb.close()

    # -- asking ---------------------------------------------------------------------------
    def ask(self, question: str, history: Sequence[Any] | None = None,
            options: AskOptions | None = None) -> Answer:
        """Answer ``question`` from the knowledge base, citing sources as [n].

        ``history``: earlier messages (oldest first), as ``{"role", "content"}`` dicts or
        (user, assistant) pairs. ``options``: per-call settings (:class:`AskOptions`).
        Raises ConfigError (empty question, bad option), PromptTooLong, BackendError,
        finetune's ModelLoadError.
        """
        with self._run(question, history, options, stream=False) as pieces:
            for _ in pieces:
                pass
            return pieces.answer

    def stream(self, question: str, history: Sequence[Any] | None = None,
               options: AskOptions | None = None) -> "AnswerStream":
        """Like :meth:`ask`, but the answer text comes in pieces as it is generated.

        Retrieval (and its errors) happen here, before the first piece; iterate the result for
        the text pieces, then read its ``answer`` (the final :class:`Answer`). Closing the stream
        early (``close()``, ``with``, or dropping it) stops the generation behind it.
        """
        return self._run(question, history, options, stream=True)

    def _run(self, question: str, history: Sequence[Any] | None, options: AskOptions | None, *,
             stream: bool) -> "AnswerStream":
        call = self._start(question, history, options)
        self._retrieve(call)
        reason = self._abstains(call)
        if reason:
            return AnswerStream(self._fixed(call, abstain_message(question), abstained=True, reason=reason))
        if call.cfg.retrieval_only:
            text = "\n\n".join(format_source(i, h) for i, h in enumerate(call.hits, 1))
            return AnswerStream(self._fixed(call, text, abstained=False, sources=call.hits))
        messages, sources = self._prompt(call)
        gen_start = call.clock.elapsed()
        pieces = self.backend.generate(messages, self._params(call.cfg, call.use_adapter), stream=stream,
                                       on_first_token=call.clock.first_token)
        return AnswerStream(self._answers(call, pieces, tuple(sources), gen_start, messages))

    def prompt(self, question: str, history: Sequence[Any] | None = None,
               options: AskOptions | None = None) -> tuple[list[dict], list[Hit]]:
        """The chat messages (and the sources in them) ``ask`` would send to the model."""
        call = self._start(question, history, options)
        self._retrieve(call)
        return self._prompt(call)

    def prompt_from_hits(self, question: str, hits: Sequence[Hit], history: Sequence[Any] | None = None,
                         options: AskOptions | None = None) -> tuple[list[dict], list[Hit]]:
        """The messages ``ask`` would send had retrieval returned ``hits`` (rank order, best first).

        Same system prompt, token budget and source dropping as :meth:`prompt`; used to build
        training records whose sources are not the plain retrieval (an injected gold chunk, or
        distractors only: see :mod:`assistant.from_kb.build`).
        """
        call = self._start(question, history, options)
        call.standalone, call.queries, call.timings = call.question, (call.question,), {}
        call.hits = tuple(hits)
        call.per_query = (call.hits,)
        return self._prompt(call)

    def _start(self, question: str, history: Sequence[Any] | None, options: AskOptions | None) -> _Call:
        clock = _Clock()
        options = options or AskOptions()
        if not isinstance(options, AskOptions):
            raise ConfigError(f"options must be an AskOptions, got {type(options).__name__}")
        cfg = options.apply(self.config)
        if not isinstance(question, str) or not question.strip():
            raise ConfigError(f"the question is empty ({question!r})")
        return _Call(question.strip(), normalise_history(history), cfg, options.use_adapter, clock)

    def _retrieve(self, call: _Call) -> None:
        cfg, clock = call.cfg, call.clock
        generate = None if cfg.retrieval_only else self._condense_generate
        plan = plan_search(call.question, call.history, method=cfg.condense, generate=generate)
        call.standalone, call.queries = plan.standalone, plan.queries
        condensed = clock.elapsed()
        call.per_query = tuple(tuple(self.kb.search(q, k=cfg.k, mode=cfg.mode)) for q in plan.queries)
        call.hits = tuple(merge_hits(call.per_query, cfg.k))
        call.timings = {"condense_s": condensed, "retrieval_s": clock.elapsed() - condensed}

    def _condense_generate(self, messages: list[dict]) -> str:
        params = GenParams(max_new_tokens=CONDENSE_TOKENS, temperature=0.0, thinking=False, use_adapter=False)
        return "".join(self.backend.generate(messages, params))

    def _abstains(self, call: _Call) -> str:
        """Why the question is declined ("" to answer it: some searched query passes the gate on its own
        hits); the time it takes counts as retrieval."""
        start = call.clock.elapsed()
        threshold = call.cfg.threshold_for(getattr(self.kb.embedder, "name", ""))
        reasons = [self.gate.reason(q, hits, call.cfg.mode, call.cfg.abstain_threshold, threshold)
                   for q, hits in zip(call.queries, call.per_query)]
        reason = "" if "" in reasons else reasons[0]
        call.timings["retrieval_s"] += call.clock.elapsed() - start
        return reason

    def _prompt(self, call: _Call) -> tuple[list[dict], list[Hit]]:
        start = call.clock.elapsed()
        backend, cfg = self.backend, call.cfg
        thinking = self.thinking(cfg, call.use_adapter)
        budget = backend.context_tokens() - cfg.max_new_tokens - MARGIN_TOKENS
        out = build_messages(call.question, call.hits, call.history, system=self.system_prompt(cfg, call.use_adapter),
                             count_tokens=lambda m: backend.count_tokens(m, thinking=thinking), budget=budget)
        call.timings["prompt_s"] = call.clock.elapsed() - start
        return out

    def system_prompt(self, cfg: AssistantConfig | None = None, use_adapter: bool = True) -> str:
        """The system prompt before the sources: the explicit one (whole), else, while the adapter is
        used, the one its run card calls for (:func:`assistant.adapter_prompt.served_system_prompt`:
        its RAG prompt exactly, or its persona then the grounding instructions), else the default."""
        cfg = cfg or self.config
        if cfg.system_prompt:
            return cfg.system_prompt
        if cfg.adapter and use_adapter:
            return served_system_prompt(self._adapter_card)
        return DEFAULT_SYSTEM_PROMPT

    @property
    def _adapter_card(self) -> dict:
        """The adapter's run card, parsed again only when its file changed (every question's prompt and
        thinking setting read and parsed it, the training file's first record too, several times)."""
        from finetune.runcard import run_card_path

        path = run_card_path(self.config.adapter)
        key = (path, path.stat().st_mtime_ns) if path is not None else None
        if self._card_cache is None or self._card_cache[0] != key:
            self._card_cache = (key, run_card(self.config.adapter))
        return self._card_cache[1]

    def thinking(self, cfg: AssistantConfig | None = None, use_adapter: bool = True) -> bool:
        """``on``/``off`` as set; ``auto``: the run card's ``enable_thinking`` while the adapter is used."""
        cfg = cfg or self.config
        if cfg.thinking != "auto":
            return cfg.thinking == "on"
        return bool(cfg.adapter and use_adapter and self._adapter_card.get("enable_thinking") is True)

    def _params(self, cfg: AssistantConfig, use_adapter: bool) -> GenParams:
        return GenParams(max_new_tokens=cfg.max_new_tokens, temperature=float(cfg.temperature),
                         top_p=float(cfg.top_p), thinking=self.thinking(cfg, use_adapter), use_adapter=use_adapter)

    def _fixed(self, call: _Call, text: str, *, abstained: bool, reason: str = "",
               sources: tuple[Hit, ...] = ()) -> Iterator[str | Answer]:
        call.clock.first_token()
        answer = Answer(text=text, citations=all_citations(sources), hits=call.hits, sources=sources,
                        abstained=abstained, abstain_reason=reason, question=call.question,
                        standalone_question=call.standalone, search_queries=call.queries, timings=call.timed())
        return iter([text, answer])

    def _answers(self, call: _Call, pieces: Iterator[str], sources: tuple[Hit, ...], gen_start: float,
                 messages: list[dict]) -> Iterator[str | Answer]:
        """The answer's pieces (reasoning split off, marks naming no source removed), then the Answer."""
        splitter, marks, raw = ThinkSplitter(), CitationFilter(len(sources)), []
        try:
            for piece in pieces:
                raw.append(piece)
                out = marks.feed(splitter.feed(piece))
                if out:
                    yield out
        finally:  # closed early by the consumer: stop the generation behind it now
            getattr(pieces, "close", lambda: None)()
        tail = marks.feed(splitter.finish()) + marks.finish()
        if tail:
            yield tail
        timings, citations = call.timed(generation_s=call.clock.elapsed() - gen_start), \
            extract_citations(marks.text, sources)
        usage = generation_usage(self.backend, messages, "".join(raw), pieces,
                                 thinking=self.thinking(call.cfg, call.use_adapter))
        yield Answer(text=marks.text, citations=citations, hits=call.hits, sources=sources, timings=timings,
                     reasoning=splitter.reasoning, question=call.question, standalone_question=call.standalone,
                     search_queries=call.queries,
                     unknown_citations=marks.unknown, cited_nothing=bool(sources) and not citations,
                     usage=Usage.of(*usage), finish_reason="length" if usage[1] >= call.cfg.max_new_tokens else "stop")


class AnswerStream:
    """The text pieces of one answer as they are generated; afterwards ``answer`` is the final Answer.

    >>> final = Answer(text="Yes [1].", citations=(), hits=(), sources=())
    >>> stream = AnswerStream(iter(["Yes", " [1].", final]))
    >>> "".join(stream), stream.answer.text
    ('Yes [1].', 'Yes [1].')
    """

    def __init__(self, items: Iterable[str | Answer]) -> None:
        self._items = iter(items)
        self._answer: Answer | None = None

    def __iter__(self) -> Iterator[str]:
        for item in self._items:
            if isinstance(item, Answer):
                self._answer = item
            elif item:
                yield item

    @property
    def answer(self) -> Answer:
        """The final Answer (text, citations, sources, timings); raises RuntimeError before the end."""
        if self._answer is None:
            raise RuntimeError("the answer is not complete: iterate the stream to its end first")
        return self._answer

    def close(self) -> None:
        """Stop early: the generation behind the stream stops too."""
        getattr(self._items, "close", lambda: None)()

    def __enter__(self) -> "AnswerStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
