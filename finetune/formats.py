"""Read JSON / JSONL training files and normalise alpaca, ShareGPT and OpenAI records.

Files are read position-aware so every record keeps the 1-based line where it starts: JSONL by
line, JSON arrays element by element with ``json.JSONDecoder.raw_decode`` (a bad element is
reported and reading resumes at the next element with the same indentation). A JSON object file
is either one record or a container with one list of records (e.g. ``{"data": [...]}``).

Formats, detected per record from its keys:
  alpaca    instruction, input, output [, system, history = [[user, assistant], ...]]
  sharegpt  conversations (or messages): [{from, value}], from = human/user, gpt/assistant, system
  openai    messages (or conversations): [{role, content}], role = user, assistant, system
ShareGPT and OpenAI records may carry a top-level ``system`` string.

Example:
    >>> import json, tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.json"
    >>> _ = p.write_text(json.dumps([{"instruction": "hi", "input": "", "output": "hello"}], indent=1))
    >>> [(fmt, conv.source) for fmt, conv in (convert(r) for r in iter_records(p))]  # doctest: +ELLIPSIS
    [('alpaca', '.../a.json:2')]
"""
from __future__ import annotations

import bisect
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from finetune.records import Conversation, Message, Problem
from finetune.validate import BAD_FIELD, BAD_JSON, NO_RECORDS, UNKNOWN_FORMAT, UNKNOWN_ROLE, UNREADABLE, problem

FORMATS = ("alpaca", "sharegpt", "openai")
ACCEPTED = ("alpaca (instruction, input, output [, system, history]), "
            "sharegpt (conversations or messages: list of {from, value} [, system]), "
            "openai (messages: list of {role, content} [, system])")
ROLE_NAMES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
RECORD_KEYS = ("instruction", "output", "conversations", "messages")
_WS = re.compile(r"[ \t\n\r]*")
_UNDECODED = re.compile("[\udc80-\udcff]")  # a byte that is not UTF-8, escaped by "surrogateescape"


@dataclass(frozen=True)
class RawRecord:
    """One parsed JSON value and where it starts ("file:line", 1-based)."""

    source: str
    value: object


class _Text:
    """A file's text with offset -> line lookups."""

    def __init__(self, name: str, text: str) -> None:
        self.name, self.text = name, text
        self._newlines = [m.start() for m in re.finditer("\n", text)]

    def line(self, pos: int) -> int:
        return bisect.bisect_left(self._newlines, pos) + 1

    def source(self, pos: int) -> str:
        return f"{self.name}:{self.line(pos)}"

    def skip_ws(self, pos: int) -> int:
        return _WS.match(self.text, pos).end()


def iter_records(path: Path) -> Iterator[RawRecord | Problem]:
    """Yield the records of one JSON or JSONL file in file order, with a Problem in place of each bad one."""
    name = str(path)
    # Bytes that are not UTF-8 become lone surrogates (U+DC80-DCFF): only the records holding them are lost.
    text = path.read_bytes().decode("utf-8-sig", errors="surrogateescape")
    doc = _Text(name, text)
    start = doc.skip_ws(0)
    count = 0
    if start == len(text):
        pass
    elif path.suffix.lower() in (".jsonl", ".ndjson") or (text[start] == "{" and _looks_like_jsonl(text)):
        for item in _iter_jsonl(doc):  # by line, whatever a line holds (a JSONL file is never one array)
            count += 1
            yield item
    elif text[start] == "[":
        for item in _iter_array(doc, start):
            count += 1
            yield item
    else:
        for item in _iter_document(doc, start):
            count += 1
            yield item
    if count == 0:  # nothing at all, not even a bad record
        yield problem(f"{name}:1", NO_RECORDS, "the file holds no records",
                      "check the file is the intended one (JSON array, object with a list, or JSONL)")


def _looks_like_jsonl(text: str) -> bool:
    """JSONL under a .json name: not one JSON value, and one of the first 20 lines is a whole object."""
    try:
        _decode(text)
        return False  # one JSON value (also a one-line object file)
    except json.JSONDecodeError:
        pass
    lines = [line for line in text.split("\n", 200)[:200] if line.strip()][:20]
    for line in lines:
        try:
            if isinstance(_decode(line)[0], dict):
                return True
        except json.JSONDecodeError:
            continue
    return False


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON; write a number or null")


_DECODER = json.JSONDecoder(parse_constant=_no_constant)  # NaN / Infinity are Python's extension, not JSON


def _decode(text: str, pos: int = 0, *, whole: bool = True) -> tuple[object, int]:
    """The JSON value at ``pos`` and its end (``whole``: nothing but blanks may surround it), every
    failure a JSONDecodeError: bad syntax, NaN/Infinity, an integer over Python's 4,300-digit
    conversion limit (a ValueError there) and nesting past the recursion limit (a RecursionError).

    >>> _decode(' {"a": [1, 2]} ')[0], _decode('[1, 2], [3]', 1, whole=False)
    ({'a': [1, 2]}, (1, 2))
    >>> for bad in ('{"n": NaN}', '{"n": ' + '9' * 5000 + '}', '[' * 5000 + ']' * 5000, '{} {}'):
    ...     try:
    ...         _decode(bad)
    ...     except json.JSONDecodeError as err:
    ...         print(err.msg)
    NaN is not JSON; write a number or null
    a number with over 4,300 digits
    nested too deeply to read
    Extra data
    """
    pos = _WS.match(text, pos).end() if whole else pos
    try:
        value, end = _DECODER.raw_decode(text, pos)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply to read", text, pos) from None
    except ValueError as err:
        message = "a number with over 4,300 digits" if "digits" in str(err) else str(err)
        raise json.JSONDecodeError(message, text, pos) from None
    if whole and text[end:].strip():
        raise json.JSONDecodeError("Extra data", text, _WS.match(text, end).end())
    return value, end


def _bad_bytes(doc: "_Text", start: int, end: int) -> Problem | None:
    """The problem of a record whose text holds bytes that are not UTF-8 (see :func:`iter_records`)."""
    bad = _UNDECODED.search(doc.text, start, end)
    if bad is None:
        return None
    byte = ord(bad.group()) - 0xDC00
    return problem(doc.source(bad.start()), UNREADABLE, f"not UTF-8 text (byte 0x{byte:02x} at line "
                   f"{doc.line(bad.start())})", "save the file as UTF-8; the other records were read")


def _bad_json(doc: _Text, err: json.JSONDecodeError, fix: str) -> Problem:
    source = f"{doc.name}:{err.lineno}"
    return problem(source, BAD_JSON, f"bad JSON: {err.msg} (line {err.lineno} column {err.colno})", fix)


def _iter_jsonl(doc: _Text) -> Iterator[RawRecord | Problem]:
    offset = 0
    for number, line in enumerate(doc.text.split("\n"), start=1):
        start, offset = offset, offset + len(line) + 1
        if not line.strip():
            continue
        bad = _bad_bytes(doc, start, offset)
        if bad is not None:
            yield bad
            continue
        try:
            value, _ = _decode(line)
        except json.JSONDecodeError as err:
            source = f"{doc.name}:{number}"
            yield problem(source, BAD_JSON, f"bad JSON: {err.msg} (line {number} column {err.colno})",
                          "each JSONL line must be one complete JSON object; fix the syntax on this line")
            continue
        yield RawRecord(f"{doc.name}:{number}", value)


def _iter_document(doc: _Text, start: int) -> Iterator[RawRecord | Problem]:
    """A file holding one JSON value: one record, or an object with one list of records."""
    bad = _bad_bytes(doc, start, len(doc.text))
    if bad is not None:
        yield bad
        return
    try:
        value, _ = _decode(doc.text)
    except json.JSONDecodeError as err:
        yield _bad_json(doc, err, "fix the syntax there; nothing else in this file could be read")
        return
    if not isinstance(value, dict) or any(k in value for k in RECORD_KEYS):
        yield RawRecord(doc.source(start), value)
        return
    lists = [k for k, v in value.items() if isinstance(v, list)]
    if len(lists) != 1:
        seen = f"lists under {lists}" if lists else "no list"
        yield problem(doc.source(start), UNKNOWN_FORMAT,
                      f"the top-level object has keys {sorted(value)} and {seen}, so the records cannot be found",
                      "put the records in a top-level JSON array, in an object with exactly one list, or in JSONL")
        return
    pos = _value_position(doc, start, lists[0])
    yield from _iter_array(doc, pos)


def _value_position(doc: _Text, start: int, wanted: str) -> int:
    """Offset of ``wanted``'s value in the (valid) top-level object starting at ``start``."""
    decoder = json.JSONDecoder()
    pos = doc.skip_ws(start + 1)
    while True:
        key, pos = decoder.raw_decode(doc.text, pos)
        pos = doc.skip_ws(doc.skip_ws(pos) + 1)  # past ':'
        if key == wanted:
            return pos
        _, pos = decoder.raw_decode(doc.text, pos)
        pos = doc.skip_ws(doc.skip_ws(pos) + 1)  # past ','


def _iter_array(doc: _Text, start: int) -> Iterator[RawRecord | Problem]:
    """Elements of the array at ``start`` with their start lines; bad elements become problems."""
    text = doc.text
    pos = doc.skip_ws(start + 1)
    if text.startswith("]", pos):
        return
    while pos < len(text):
        try:
            value, end = _decode(text, pos, whole=False)
        except json.JSONDecodeError as err:
            nxt = _resync(doc, pos)
            yield _bad_json(doc, err, _resync_fix(doc, pos, nxt))
            if nxt is None:
                return
            pos = nxt
            continue
        yield _bad_bytes(doc, pos, end) or RawRecord(doc.source(pos), value)
        pos = doc.skip_ws(end)
        if text.startswith(",", pos):
            pos = doc.skip_ws(pos + 1)
            if text.startswith("]", pos):
                yield problem(doc.source(pos), BAD_JSON, "bad JSON: trailing comma before ']'",
                              "remove the comma after the last record")
                return
        elif text.startswith("]", pos):
            return
        else:
            yield problem(doc.source(pos), BAD_JSON, "bad JSON: expected ',' or ']' after the record ending here",
                          "add the missing comma between records (or close the array with ']')")
            if not text.startswith("{", pos):
                nxt = _resync(doc, pos)
                if nxt is None:
                    return
                pos = nxt
    yield problem(doc.source(len(text)), BAD_JSON, "bad JSON: the file ends before the array is closed with ']'",
                  "the file looks truncated; restore its end")


def _resync(doc: _Text, pos: int) -> int | None:
    """Start of the next element with the same indentation as the one at ``pos`` (None if not pretty-printed)."""
    line_start = doc.text.rfind("\n", 0, pos) + 1
    indent = doc.text[line_start:pos]
    if indent.strip():
        return None
    # any value's first character at the element's indentation (not the closing bracket of this element)
    match = re.compile("\n" + re.escape(indent) + r"[^\s\]\},]").search(doc.text, pos + 1)
    return None if match is None else match.end() - 1


def _resync_fix(doc: _Text, pos: int, nxt: int | None) -> str:
    where = f"the record starting at line {doc.line(pos)}"
    if nxt is None:
        return f"fix the syntax of {where}; the rest of the file could not be read past it"
    return f"fix the syntax of {where}; reading went on at line {doc.line(nxt)}"


def detect_format(value: object) -> str | None:
    """Name of the format of one record ("alpaca", "sharegpt", "openai"), or None when unknown.

    >>> detect_format({"conversations": [{"from": "human", "value": "hi"}]})
    'sharegpt'
    """
    if not isinstance(value, dict):
        return None
    turns = _turns(value)
    if isinstance(turns, list):
        first = next((t for t in turns if isinstance(t, dict)), {})
        return "sharegpt" if "from" in first or "value" in first else "openai"
    if "instruction" in value or "output" in value:
        return "alpaca"
    return None


def _turns(value: dict) -> object:
    return value.get("conversations", value.get("messages"))


class _Invalid(Exception):
    """A record field that cannot be converted; carries (reason, message, fix)."""


def convert(raw: RawRecord) -> tuple[str | None, Conversation | Problem]:
    """Normalise one record to a Conversation (its own system prompt, if any, as a leading message).

    Returns (format, Conversation) or (format or None, Problem). Structure (alternation, empty
    turns) is checked later by :func:`finetune.validate.check_conversation`.
    """
    fmt = detect_format(raw.value)
    if fmt is None:
        return None, _unknown_format(raw)
    try:
        messages = _alpaca(raw.value) if fmt == "alpaca" else _chat(raw.value, fmt)
    except _Invalid as err:
        reason, message, fix = err.args
        return fmt, problem(raw.source, reason, f"{fmt} record: {message}", fix)
    return fmt, Conversation(tuple(messages), raw.source)


def _unknown_format(raw: RawRecord) -> Problem:
    if isinstance(raw.value, dict):
        seen = f"keys seen: {sorted(raw.value)}"
    else:
        seen = f"a JSON {type(raw.value).__name__} where an object was expected"
    return problem(raw.source, UNKNOWN_FORMAT, f"unknown record format ({seen})",
                   f"use one of the accepted formats: {ACCEPTED}")


def _text(value: dict, key: str, *, required: bool) -> str:
    if key not in value or value[key] is None:
        if required:
            raise _Invalid(BAD_FIELD, f"field {key!r} is missing (keys seen: {sorted(value)})",
                           f"add {key!r} as a string")
        return ""
    if not isinstance(value[key], str):
        raise _Invalid(BAD_FIELD, f"field {key!r} must be a string, got {type(value[key]).__name__}",
                       f"make {key!r} a string")
    return value[key]


def _alpaca(value: dict) -> list[Message]:
    instruction = _text(value, "instruction", required=True)
    query = _text(value, "input", required=False)
    output = _text(value, "output", required=True)
    system = _text(value, "system", required=False)
    messages = [Message("system", system)] if system.strip() else []
    history = [] if value.get("history") is None else value["history"]  # 0 or "" is a mistake, not "none"
    if not isinstance(history, list):
        raise _Invalid(BAD_FIELD, f"'history' must be a list of [user, assistant] pairs, got "
                       f"{type(history).__name__}", "write history as [[user, assistant], ...]")
    for n, pair in enumerate(history, start=1):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise _Invalid(BAD_FIELD, f"history item {n} is not a [user, assistant] pair of strings: {pair!r:.80}",
                           "write history as [[user, assistant], ...]")
        messages += [Message("user", pair[0]), Message("assistant", pair[1])]
    # LLaMA-Factory joins instruction and input with a newline.
    user = "\n".join(part for part in (instruction, query) if part)
    return messages + [Message("user", user), Message("assistant", output)]


def _chat(value: dict, fmt: str) -> list[Message]:
    turns = _turns(value)
    messages = [_message(turn, n) for n, turn in enumerate(turns, start=1)]
    system = _text(value, "system", required=False)
    if system.strip() and not (messages and messages[0].role == "system"):
        messages.insert(0, Message("system", system))
    return messages


def _message(turn: object, n: int) -> Message:
    if not isinstance(turn, dict):
        raise _Invalid(BAD_FIELD, f"message {n} is a {type(turn).__name__}, not an object",
                       "write each message as {\"from\": ..., \"value\": ...} or {\"role\": ..., \"content\": ...}")
    role_key, content_key = ("from", "value") if "from" in turn else ("role", "content")
    tag = turn.get(role_key)
    role = ROLE_NAMES.get(tag.strip().lower()) if isinstance(tag, str) else None
    if role is None:
        raise _Invalid(UNKNOWN_ROLE, f"message {n} has {role_key}={tag!r} (keys: {sorted(turn)})",
                       f"use one of {sorted(ROLE_NAMES)}; tool/function-call turns are not supported")
    return Message(role, _content(turn.get(content_key), n, content_key))


def _content(content: object, n: int, key: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts: keep text parts only
        if all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content):
            return "".join(p["text"] for p in content)
        raise _Invalid(BAD_FIELD, f"message {n} has non-text content parts", "keep only text parts")
    raise _Invalid(BAD_FIELD, f"message {n} field {key!r} must be a string, got {type(content).__name__}",
                   f"make {key!r} a string")
