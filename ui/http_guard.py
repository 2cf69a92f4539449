"""What the HTTP server checks before a request reaches FastAPI: the Host header, the API key, the body size.

Order matters and is the point of this module: a request with a foreign ``Host`` (DNS rebinding
against a local server) is refused first (400, Starlette's ``TrustedHostMiddleware``); then, with
``--api-key``, a request without the key gets 401 before its body is read or parsed (the docs and
OpenAPI schema too; ``/health`` stays open); then a body over ``--max-body-mb`` gets 413 without
being read past the limit (by ``Content-Length``, or counted as it arrives for chunked bodies).

>>> allowed_hosts("127.0.0.1"), allowed_hosts("0.0.0.0"), allowed_hosts("0.0.0.0", ("kb.example.org",))
(['127.0.0.1', 'localhost', '::1', '[::1]'], ['*'], ['kb.example.org'])
"""
from __future__ import annotations

import hmac
import json
from collections.abc import Sequence
from typing import Any, Awaitable, Callable

LOOPBACK = ("127.0.0.1", "localhost", "::1")
OPEN_PATHS = ("/health",)  # answered without the key (a load balancer's probe)
DEFAULT_MAX_BODY_MB = 4.0  # MB: a chat request with a long history is well under 1 MB
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


def allowed_hosts(bind: str, extra: Sequence[str] = ()) -> list[str]:
    """Host header values the server answers: the names of the loopback interface when bound to it,
    the bind address otherwise; ``extra`` (``--allowed-host``) replaces them; a server bound to every
    interface (0.0.0.0, ::) without ``extra`` answers any name ("*")."""
    if extra:
        return list(extra)
    if bind in LOOPBACK:
        return ["127.0.0.1", "localhost", "::1", "[::1]"]
    return ["*"] if bind in ("0.0.0.0", "::", "") else [bind]


def error_response(status: int, message: str, kind: str, code: str | None = None) -> tuple[dict, bytes]:
    """An OpenAI-style JSON error: the ASGI start message and the body."""
    body = json.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}}).encode()
    start = {"type": "http.response.start", "status": status,
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]}
    return start, body


class Guard:
    """ASGI middleware: the API key (when set), then the body size limit, before the app sees the request."""

    def __init__(self, app: Any, *, api_key: str | None, max_body_bytes: int) -> None:
        if max_body_bytes < 1:
            raise ValueError(f"max_body_bytes={max_body_bytes} must be >= 1")
        self.app, self.api_key, self.max_body = app, api_key, max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.api_key is not None and scope.get("path") not in OPEN_PATHS and not self._key_ok(headers):
            return await self._refuse(send, 401, "missing or wrong API key: send the header `Authorization: "
                                      "Bearer <key>` with the key the server was started with (--api-key)",
                                      "invalid_request_error", "invalid_api_key")
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body:
            return await self._too_large(send)
        messages, size = [], 0
        while True:  # read the body up to the limit, then hand it on unchanged
            message = await receive()
            messages.append(message)
            size += len(message.get("body", b""))
            if size > self.max_body:
                return await self._too_large(send)
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        return await self.app(scope, _replay(messages, receive), send)

    def _key_ok(self, headers: dict[str, str]) -> bool:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), str(self.api_key).encode())

    async def _too_large(self, send: Send) -> None:
        mb = self.max_body / 1e6
        await self._refuse(send, 413, f"request body over {mb:g} MB: send less (a shorter history), or start "
                           "the server with a larger --max-body-mb", "invalid_request_error", "request_too_large")

    @staticmethod
    async def _refuse(send: Send, status: int, message: str, kind: str, code: str) -> None:
        start, body = error_response(status, message, kind, code)
        await send(start)
        await send({"type": "http.response.body", "body": body})


def _replay(messages: list[dict], receive: Receive) -> Receive:
    """A ``receive`` that returns the buffered body messages, then whatever comes next (a disconnect)."""
    pending = list(messages)

    async def replay() -> dict:
        return pending.pop(0) if pending else await receive()
    return replay
