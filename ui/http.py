"""An OpenAI-compatible HTTP API over an :class:`assistant.Assistant` (``assistant serve``).

``POST /v1/chat/completions`` (plain or streamed as server-sent events, in OpenAI's chunk
format ending with ``data: [DONE]``) and ``GET /v1/models``. The last user message is the
question, earlier user/assistant messages are the history; system messages are a persona put
before the assistant's own system prompt (its grounding instructions stay: see
:func:`assistant.prompt.compose_system`). Citations come back in an extra ``citations`` list on
the response (and on the last chunk of a stream), with ``unknown_citations`` (numbers the model
cited that name no source: removed from the text), ``cited_nothing`` (sources were given, none
was cited) and ``search_queries`` (what retrieval searched: the question, its standalone
rewrite for a follow-up, or both when unsure).
``usage`` (the model's tokens, :class:`assistant.records.Usage`) is on every plain response
and, with ``stream_options: {"include_usage": true}``, in a last chunk with empty ``choices``.
Extra request fields ``k``, ``mode``, ``thinking``, ``retrieval_only`` and ``use_adapter`` are
per-request settings (``extra_body`` in the ``openai`` client).

>>> from openai import OpenAI                                        # doctest: +SKIP
>>> client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="-")  # doctest: +SKIP
>>> r = client.chat.completions.create(model="assistant",            # doctest: +SKIP
...     messages=[{"role": "user", "content": "What is the refund policy?"}])
>>> r.choices[0].message.content, r.model_extra["citations"]          # doctest: +SKIP
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Literal, Sequence, Union

from pydantic import BaseModel, ConfigDict, Field

from ui.http_guard import DEFAULT_MAX_BODY_MB, LOOPBACK

if TYPE_CHECKING:
    from fastapi import FastAPI, Request

    from assistant.answer import AnswerStream, Assistant
    from assistant.config import AskOptions
    from assistant.records import Answer

log = logging.getLogger(__name__)


# -- request schema ---------------------------------------------------------------------
# strict: "3" is not an int and "yes" not a bool (422 naming the field); JSON ints are still floats
class TextPart(BaseModel):
    model_config = ConfigDict(strict=True)

    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)  # name, tool_calls, ...: accepted, not used

    role: Literal["system", "developer", "user", "assistant"]
    content: Union[str, list[TextPart], None] = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text for p in self.content)
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    include_usage: bool = False


class ChatRequest(BaseModel):
    """The fields of OpenAI's chat-completion request we honour, plus our retrieval settings."""

    model_config = ConfigDict(extra="ignore", strict=True)  # seed, user, stop, ...: accepted, not used

    model: str | None = None
    messages: list[Message]
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1, le=32768)
    max_completion_tokens: int | None = Field(None, ge=1, le=32768)
    n: int = Field(1, ge=1, le=1, description="only one choice is generated")
    # our extensions (extra_body in the openai client)
    k: int | None = Field(None, ge=1, le=200)
    mode: Literal["hybrid", "dense", "bm25"] | None = None
    thinking: Union[bool, Literal["on", "off"], None] = None
    retrieval_only: bool | None = None
    use_adapter: bool | None = None


class RequestError(Exception):
    """A well-formed request we cannot serve (HTTP 400)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def split_messages(messages: list[Message]) -> tuple[str, list[dict], str | None]:
    """(question, history, system prompt or None) from the request's messages."""
    if not messages:
        raise RequestError("messages is empty: send at least one user message", "messages")
    if messages[-1].role != "user":
        raise RequestError(f"the last message must come from the user (it is from {messages[-1].role!r}): "
                           "it is the question", "messages")
    question = messages[-1].text()
    if not question.strip():
        raise RequestError("the last user message is empty: it is the question", "messages")
    systems = [m.text() for m in messages if m.role in ("system", "developer") and m.text().strip()]
    history = [{"role": m.role, "content": m.text()} for m in messages[:-1] if m.role in ("user", "assistant")]
    return question, history, "\n\n".join(systems) or None


def request_system_prompt(assistant: "Assistant", persona: str | None, use_adapter: bool) -> str | None:
    """The request's system messages (``persona``) before the assistant's own system prompt, which keeps
    the grounding instructions; None (the assistant's own) without system messages."""
    from assistant.prompt import compose_system

    if persona is None:
        return None
    return compose_system(persona, assistant.system_prompt(use_adapter=use_adapter))


def ask_options(req: ChatRequest, system: str | None) -> "AskOptions":
    """The per-call settings of ``Assistant.ask`` the request sets (None: the server's own); ``system``:
    the whole system prompt (see :func:`request_system_prompt`)."""
    from assistant.config import AskOptions

    return AskOptions(temperature=req.temperature, top_p=req.top_p,
                      max_new_tokens=req.max_completion_tokens or req.max_tokens, system_prompt=system,
                      k=req.k, mode=req.mode, retrieval_only=req.retrieval_only, thinking=req.thinking,
                      use_adapter=True if req.use_adapter is None else req.use_adapter)


# -- responses --------------------------------------------------------------------------
def citations_json(answer: "Answer") -> list[dict]:
    return [asdict(c) for c in answer.citations]


def sources_json(answer: "Answer") -> list[dict]:
    """Every passage the model was given, numbered as in the prompt (cited or not)."""
    from assistant.citations import all_citations

    return [asdict(c) for c in all_citations(answer.sources)]


def extra_fields(answer: "Answer") -> dict:
    """Our additions to OpenAI's response: citations, sources, abstained (and why), unknown_citations,
    cited_nothing, search_queries."""
    return {"citations": citations_json(answer), "sources": sources_json(answer), "abstained": answer.abstained,
            "abstain_reason": answer.abstain_reason,
            "unknown_citations": list(answer.unknown_citations), "cited_nothing": answer.cited_nothing,
            "search_queries": list(answer.search_queries)}


def usage_json(answer: "Answer") -> dict:
    """OpenAI's ``usage``: prompt_tokens, completion_tokens, total_tokens (all 0 when no model was called)."""
    return asdict(answer.usage)


def completion(answer: "Answer", model: str, cid: str, created: int) -> dict:
    message: dict[str, Any] = {"role": "assistant", "content": answer.text}
    if answer.reasoning:
        message["reasoning_content"] = answer.reasoning  # the convention of vLLM/DeepSeek
    return {"id": cid, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": answer.finish_reason or "stop"}],
            "usage": usage_json(answer), **extra_fields(answer)}


def chunk(cid: str, created: int, model: str, delta: dict | None, finish: str | None = None, **extra: Any) -> str:
    """One ``data:`` event; ``delta`` None: a chunk with empty ``choices`` (the usage chunk)."""
    choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": choices, **extra}
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


def sse_stream(pieces: "AnswerStream", model: str, cid: str, created: int,
               include_usage: bool = False) -> Iterator[str]:
    """OpenAI chunks for ``Assistant.stream``'s pieces; the final Answer's citations last, then (``include_usage``)
    a chunk with empty ``choices`` and the usage, the others carrying ``usage: null``, as OpenAI's API does."""
    nulls: dict[str, Any] = {"usage": None} if include_usage else {}
    yield chunk(cid, created, model, {"role": "assistant", "content": ""}, **nulls)
    try:
        with pieces:
            for piece in pieces:
                yield chunk(cid, created, model, {"content": piece}, **nulls)
            answer = pieces.answer
        extra = {"reasoning_content": answer.reasoning} if answer.reasoning else {}
        yield chunk(cid, created, model, extra, answer.finish_reason or "stop", **nulls, **extra_fields(answer))
        if include_usage:
            yield chunk(cid, created, model, None, usage=usage_json(answer))
    except Exception as e:  # noqa: BLE001 - headers are sent: the error goes into the stream
        log.exception("generation failed mid-stream")
        yield f"data: {json.dumps(error_body(f'generation failed: {e}', 'server_error'))}\n\n"
    yield "data: [DONE]\n\n"


def error_body(message: str, kind: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def model_id(assistant: "Assistant") -> str:
    """The model name the API reports: the model's folder name (not its full path) or hub id; the
    endpoint's model behind ``--endpoint``; ``retrieval-only`` when no model answers."""
    cfg = assistant.config
    if cfg.retrieval_only:
        return "retrieval-only"
    base = Path(cfg.model).name if Path(cfg.model).expanduser().is_dir() else cfg.model
    return f"{base}+{Path(cfg.adapter).name}" if cfg.adapter else base


# -- the app ----------------------------------------------------------------------------
def create_app(assistant: "Assistant", api_key: str | None = None, *, host: str = "127.0.0.1",
               allowed_host: Sequence[str] = (), max_body_mb: float = DEFAULT_MAX_BODY_MB) -> "FastAPI":
    """The FastAPI app serving ``assistant``; with ``api_key`` every request but ``/health`` needs
    ``Bearer <key>`` (checked before the body is read); ``host`` is the bind address, which decides the
    Host headers answered unless ``allowed_host`` names them; bodies over ``max_body_mb`` get 413.
    See :mod:`ui.http_guard`.

    >>> app = create_app(bot, api_key="secret")      # doctest: +SKIP
    """
    from fastapi import FastAPI, HTTPException
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    from ui.http_guard import Guard, allowed_hosts

    app = FastAPI(title="qwen-domain-assistant", description="OpenAI-compatible RAG assistant API")
    _install_error_handlers(app)
    app.add_middleware(Guard, api_key=api_key, max_body_bytes=int(max_body_mb * 1e6))
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(host, allowed_host))  # outermost: first
    name = model_id(assistant)
    started = int(time.time())

    @app.get("/v1/models")
    def models() -> dict:
        return {"object": "list", "data": [_model_card(name, started)]}

    @app.get("/v1/models/{model:path}")  # :path: hub ids such as Qwen/Qwen3-0.6B
    def model(model: str) -> dict:
        if model != name:
            raise HTTPException(404, f"model {model!r} is not served here; this server serves {name!r}")
        return _model_card(name, started)

    @app.post("/v1/chat/completions")
    def chat_completions(req: ChatRequest) -> Any:  # sync: FastAPI runs it in its thread pool
        return _complete(assistant, req, name)

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "model": name}

    return app


def _complete(assistant: "Assistant", req: ChatRequest, name: str) -> Any:
    from fastapi.responses import StreamingResponse

    question, history, persona = split_messages(req.messages)
    cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    use_adapter = True if req.use_adapter is None else req.use_adapter
    options = ask_options(req, request_system_prompt(assistant, persona, use_adapter))
    if req.stream:  # retrieval runs here, so its errors are still plain HTTP errors
        pieces = assistant.stream(question, history=history, options=options)
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return StreamingResponse(sse_stream(pieces, name, cid, created, include_usage), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    return completion(assistant.ask(question, history=history, options=options), name, cid, created)


def _model_card(name: str, created: int) -> dict:
    return {"id": name, "object": "model", "created": created, "owned_by": "local"}


def _install_error_handlers(app: "FastAPI") -> None:
    """OpenAI-style JSON errors: 400 for bad requests, 401 for a bad key; the packages' typed errors by
    the one table of :mod:`ui.errors` (bad input: 400; could not be done here and now, e.g. the model
    does not load or the endpoint behind failed: 503); 500 with a message for anything else."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    from ui.errors import BAD_INPUT, FAILED, exit_code

    def reply(status: int, message: str, kind: str = "invalid_request_error", param: str | None = None,
              code: str | None = None) -> JSONResponse:
        return JSONResponse(error_body(message, kind, param, code), status_code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: "Request", exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):  # not JSON at all: a bad request
            return reply(400, "invalid request: the body is not valid JSON: " + validation_message(errors))
        return reply(422, "invalid request: " + validation_message(errors), param=first_field(errors))

    @app.exception_handler(RequestError)
    async def bad(_: "Request", exc: RequestError) -> JSONResponse:
        return reply(400, str(exc), param=exc.param)

    @app.exception_handler(HTTPException)
    async def http(_: "Request", exc: HTTPException) -> JSONResponse:
        return reply(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def typed_or_unexpected(_: "Request", exc: Exception) -> JSONResponse:
        code = exit_code(exc)
        if code == BAD_INPUT:
            return reply(400, str(exc))
        if code == FAILED:
            return reply(503, str(exc), "server_error")
        log.exception("unexpected error")
        return reply(500, f"internal error: {type(exc).__name__}: {exc}", "server_error")


def first_field(errors: Any) -> str | None:
    """The dotted name of the first field pydantic refused (OpenAI's ``param``), e.g. ``messages.0.role``."""
    for e in errors:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
        if loc:
            return loc
    return None


def validation_message(errors: Any) -> str:
    """``messages.0.role: Input should be 'system', 'user'...; temperature: ...`` from pydantic errors."""
    parts = []
    for e in errors:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
        parts.append(f"{loc}: {e.get('msg', 'invalid')}")
    return "; ".join(parts)


def serve(assistant: "Assistant", *, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          allowed_host: Sequence[str] = (), max_body_mb: float = DEFAULT_MAX_BODY_MB) -> None:
    """Serve ``assistant`` with uvicorn until interrupted (loopback only unless ``host`` says otherwise)."""
    import uvicorn

    if host not in LOOPBACK and not api_key:
        log.warning("serving on %s without --api-key: anyone who can reach this address can query "
                    "your documents", host)
    check_port(host, port)  # uvicorn would log it and exit 3, outside the one exit-code table
    app = create_app(assistant, api_key=api_key, host=host, allowed_host=allowed_host, max_body_mb=max_body_mb)
    uvicorn.run(app, host=host, port=port, log_level="info")


def check_port(host: str, port: int) -> None:
    """Raise OSError (exit 1: could not be done here and now) naming the fix when ``host:port`` cannot
    be listened on (in use, or an address this machine does not have)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as err:
            raise OSError(err.errno, f"cannot listen on {host}:{port} ({err.strerror}): pick another --port, "
                                     "or stop the program holding it") from None
