"""Where a Milvus knowledge base lives: ``--kb`` values that name a Milvus collection set.

Two forms (anything else is a knowledge-base folder):

- ``milvus://HOST:PORT/NAME``: a Milvus server (standalone, cluster, or ``milvus-lite server``),
  reached with ``pymilvus`` at ``http://HOST:PORT``; ``milvuss://`` for TLS (``https://``).
- ``milvus-lite:PATH.db`` or ``milvus-lite:PATH.db/NAME``: Milvus Lite in this process, its data in
  the folder ``PATH.db`` (one process at a time; see the README).

``NAME`` (default ``kb``) prefixes the collections of the knowledge base (``NAME_chunks``,
``NAME_docs``, ``NAME_pages``, ``NAME_meta``), so one Milvus holds many knowledge bases.
``pathlib.Path`` folds ``//`` into ``/``, so ``milvus:/HOST:PORT/NAME`` is read the same way.

>>> loc = parse_kb_location("milvus://db.internal:19530/handbook")
>>> loc.uri, loc.name, loc.local
('http://db.internal:19530', 'handbook', False)
>>> parse_kb_location(Path("milvus://db.internal:19530/handbook")) == loc
True
>>> parse_kb_location("milvus-lite:/data/kb.db").uri, parse_kb_location("milvus-lite:kb.db/hr").name
('/data/kb.db', 'hr')
>>> parse_kb_location("kb") is None
True
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from index.config import KB_HELP
from index.errors import MilvusError

DEFAULT_NAME = "kb"
_REMOTE = re.compile(r"^milvus(s?):/+([^/]+)(?:/([^/]*))?/?$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,200}$")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")  # two letters at least: C:\kb is a Windows folder


@dataclass(frozen=True)
class MilvusLocation:
    """A Milvus knowledge base: the ``pymilvus`` URI, the collection-name prefix, and whether the
    engine runs in this process (Milvus Lite on a local folder)."""

    uri: str
    name: str
    local: bool

    def __str__(self) -> str:
        if self.local:
            return f"milvus-lite:{self.uri}/{self.name}"
        scheme = "milvuss" if self.uri.startswith("https://") else "milvus"
        return f"{scheme}://{self.uri.split('://', 1)[1]}/{self.name}"


def is_milvus(kb: str | Path | None) -> bool:
    """True when ``kb`` names a Milvus knowledge base rather than a folder.

    >>> is_milvus("milvus://localhost:19530/kb"), is_milvus("milvus-lite:kb.db"), is_milvus("./kb")
    (True, True, False)
    """
    return kb is not None and str(kb).startswith(("milvus:", "milvuss:", "milvus-lite:"))


def parse_kb_location(kb: str | Path) -> MilvusLocation | None:
    """The :class:`MilvusLocation` ``kb`` names, or None for a folder. Raises ``ValueError`` for a
    malformed Milvus location or an unknown scheme.

    >>> try:
    ...     parse_kb_location("milvus-lit:kb.db")
    ... except ValueError as err:
    ...     print(str(err)[:47])
    'milvus-lit:kb.db': unknown scheme 'milvus-lit'
    """
    text = str(kb)
    if not is_milvus(text):
        if m := _SCHEME.match(text):  # a mistyped scheme made a folder named "milvus-lit:" (a new user's trial)
            raise ValueError(f"{text!r}: unknown scheme {m.group(1)!r}; {KB_HELP} (./{text} for a folder so named)")
        return None
    if text.startswith("milvus-lite:"):
        return _local(text[len("milvus-lite:"):])
    m = _REMOTE.match(text)
    if not m:
        raise ValueError(f"{text!r}: expected milvus://HOST:PORT/NAME")
    host = m.group(2) if ":" in m.group(2) else f"{m.group(2)}:19530"
    if not (port := host.rpartition(":")[2]).isdigit():
        shown = re.sub(r"^(milvuss?):/+", r"\1://", text)  # as typed: pathlib folds the // of a --kb Path
        raise ValueError(f"{shown!r}: the port {port!r} is not a number; expected milvus://HOST:PORT/NAME")
    return MilvusLocation(f"{'https' if m.group(1) else 'http'}://{host}", _checked(m.group(3) or DEFAULT_NAME), False)


def _local(rest: str) -> MilvusLocation:
    path, name = rest, DEFAULT_NAME
    head, _, tail = rest.rstrip("/").rpartition("/")
    if head.endswith(".db"):
        path, name = head, tail
    if not path.rstrip("/").endswith(".db"):
        raise ValueError(f"milvus-lite:{rest}: the data folder must end in .db (milvus-lite:PATH.db[/NAME])")
    return MilvusLocation(os.path.abspath(path.rstrip("/")), _checked(name), True)


def _checked(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"{name!r}: a Milvus knowledge-base name is letters, digits and _ (not first a digit)")
    return name


KEEPALIVE = {"grpc.keepalive_time_ms": 300_000, "grpc.keepalive_permit_without_calls": False}  # 5 min, in calls


def connect(loc: MilvusLocation) -> Any:
    """A ``pymilvus.MilvusClient`` for ``loc`` (Milvus Lite starts here for a local one), whose calls raise
    :class:`~index.errors.MilvusFailed` naming the server, the call and the fix instead of pymilvus's own
    exception (which reached users as a traceback). Raises MilvusFailed when the server cannot be reached."""
    import logging

    from pymilvus import MilvusClient
    from pymilvus.exceptions import MilvusException

    # Milvus Lite logs a failed start (its folder locked by another process) with a traceback; it raises too, and
    # that becomes one MilvusFailed line
    logging.getLogger("milvus_lite").setLevel(logging.CRITICAL)
    # pymilvus logs every failed call at ERROR with its traceback (and "failed to get mvccTs" from Milvus Lite's
    # iterators); the failure is raised as MilvusFailed anyway, so only CRITICAL records are let through
    logging.getLogger("pymilvus").setLevel(logging.CRITICAL)
    if loc.local:
        if Path(loc.uri).is_file():
            raise MilvusError(f"milvus-lite:{loc.uri} is a file, not a Milvus Lite data folder; name a new folder "
                              "ending in .db")
        Path(loc.uri).parent.mkdir(parents=True, exist_ok=True)
    # pymilvus pings every 10 s even while idle; a server on gRPC's default policy (Milvus Lite's Python server)
    # answers an idle client's third ping within 5 min with GOAWAY "too many pings", and the next call after a
    # few idle minutes failed (a fresh clone's test suite, twice). Ping only during calls, at the policy's pace.
    # dedicated: pymilvus 3 shares one channel per address and token, made with the options of whichever client
    # came first (grpc_options are not in its key), so a caller's earlier default client made these options void
    # (CI: the test fixture's readiness probe, then "Too many pings" 6 min later). Closed by MilvusStore.close().
    try:
        client = MilvusClient(uri=loc.uri, token=os.environ.get("MILVUS_TOKEN", ""), grpc_options=KEEPALIVE,
                              dedicated=True)
    except MilvusException as err:
        raise failed(loc, "connect", err) from err
    return GuardedClient(client, loc, MilvusException)


def failed(loc: MilvusLocation, call: str, err: Any) -> Exception:
    """The MilvusFailed for pymilvus's ``err`` raised by ``call`` on ``loc``, with what to do."""
    from index.errors import MilvusFailed

    message = getattr(err, "message", None) or str(err)
    if call == "connect" or getattr(err, "code", None) == 2:  # pymilvus's "Fail connecting" / unavailable
        hint = ("is the server running and reachable there? check the host and port of --kb, and MILVUS_TOKEN "
                "if it requires authentication" if not loc.local else "is another process using this Milvus Lite "
                "folder? (one process at a time; run `python -m milvus_lite server` to share it)")
    else:
        hint = "the server refused or failed this call; see its message, and its log"
    return MilvusFailed(f"Milvus at {loc}: {call} failed: {message} ({hint})")


class GuardedClient:
    """A ``MilvusClient`` whose method calls raise MilvusFailed instead of pymilvus's ``MilvusException``; every
    other attribute is the client's own."""

    def __init__(self, client: Any, loc: MilvusLocation, exc: type[Exception]) -> None:
        self._client, self._loc, self._exc = client, loc, exc

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return attr(*args, **kwargs)
            except self._exc as err:
                raise failed(self._loc, name, err) from err

        return call
