"""The OpenAI-compatible server: the official client (plain + streamed), concurrency, errors, API key."""
from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from assistant.prompt import DEFAULT_SYSTEM_PROMPT

from fixtures_assistant import SpyBackend

# Eight questions, each retrieving a distinct (document, page) first in bm25 mode.
TARGETS = [
    ("aspirin reduces pain fever inflammation", "aspirin", 1),
    ("side effects stomach upset heartburn bleeding", "aspirin_side_effects", 1),
    ("refund policy returns thirty days purchase", "refund_policy", 1),
    ("green tea unoxidised leaves catechins", "green_tea", 1),
    ("退货政策 退款 工作日", "退货政策", 1),
    ("office hours weekdays welcome", "handbook", 1),
    ("warranty company laptops delivery date", "handbook", 2),
    ("parking permits facilities desk ground floor", "handbook", 3),
]
SOURCE_LINE = re.compile(r"^\[1\] (.+) \(p\. (\d+)\)$", re.M)


def echo_source(messages: list[dict]) -> str:
    """Exact fake answer naming source [1] as the prompt numbered it (so mixing would show)."""
    title, page = SOURCE_LINE.search(messages[0]["content"]).groups()
    return f"It is in {title} page {page} [1]."


@contextlib.contextmanager
def running(app: object) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread on a free loopback port; yields the base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):  # up to 10 s
        if server.started:
            break
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def spy_url(assistant_kb: Path) -> Iterator[str]:
    from assistant.answer import Assistant
    from ui.http import create_app

    bot = Assistant(kb=assistant_kb, model="spy", backend=SpyBackend(echo_source), condense="off", mode="bm25", k=1)
    with running(create_app(bot)) as url:
        yield url


@pytest.fixture(scope="module")
def tiny_url(assistant_kb: Path, tiny_qwen3: Path) -> Iterator[str]:
    from assistant.answer import Assistant
    from ui.http import create_app

    bot = Assistant(kb=assistant_kb, model=str(tiny_qwen3), condense="off", mode="bm25", k=2, max_new_tokens=6,
                    device="cpu")
    with running(create_app(bot, api_key="s3cret")) as url:
        yield url


def test_openai_client_plain_and_streamed(tiny_url: str, tiny_qwen3: Path, assistant_kb: Path) -> None:
    from openai import OpenAI

    from assistant.answer import Assistant
    from assistant.config import AskOptions
    from assistant.prompt import compose_system

    client = OpenAI(base_url=f"{tiny_url}/v1", api_key="s3cret", max_retries=0, timeout=60)
    assert [m.id for m in client.models.list().data] == [tiny_qwen3.name]
    messages = [{"role": "system", "content": "Answer briefly."},
                {"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi."},
                {"role": "user", "content": "What is the refund policy?"}]
    r = client.chat.completions.create(model="anything", messages=messages, temperature=0, max_tokens=4)
    assert r.object == "chat.completion" and r.model == tiny_qwen3.name
    assert r.choices[0].message.role == "assistant"
    # a random tiny model rarely stops before its 4 tokens: then it was cut off, as OpenAI says
    assert r.choices[0].finish_reason == ("length" if r.usage.completion_tokens >= 4 else "stop")
    assert isinstance(r.choices[0].message.content, str)
    sources = r.model_extra["sources"]
    assert sources[0]["title"] == "refund_policy" and sources[0]["page"] == 1
    assert isinstance(r.model_extra["citations"], list)
    same = Assistant(kb=assistant_kb, model=str(tiny_qwen3), condense="off", mode="bm25", k=2, device="cpu")
    # the request's system message goes before the grounding instructions, which stay
    prompt, _ = same.prompt(messages[-1]["content"], messages[1:3],
                            AskOptions(system_prompt=compose_system("Answer briefly.")))
    assert r.usage.prompt_tokens == same.backend.count_tokens(prompt) > 0  # the model's own tokenizer
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens

    stream = client.chat.completions.create(model="x", messages=messages, max_tokens=4, stream=True,
                                            extra_body={"k": 1})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert chunks[-1].choices[0].finish_reason == r.choices[0].finish_reason
    assert [s["title"] for s in chunks[-1].model_extra["sources"]] == ["refund_policy"]
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    plain = client.chat.completions.create(model="x", messages=messages, max_tokens=4, extra_body={"k": 1})
    assert text == plain.choices[0].message.content
    with_usage = list(client.chat.completions.create(model="x", messages=messages, max_tokens=4, stream=True,
                                                     extra_body={"k": 1}, stream_options={"include_usage": True}))
    assert with_usage[-1].choices == [] and with_usage[-1].usage == plain.usage  # greedy: the same generation


def test_sse_wire_format_ends_with_done(spy_url: str) -> None:
    body = {"messages": [{"role": "user", "content": TARGETS[2][0]}], "stream": True}
    with httpx.stream("POST", f"{spy_url}/v1/chat/completions", json=body, timeout=30) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line[6:]) for line in lines[:-1]]
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events) == \
        "It is in refund_policy page 1 [1]."
    last = events[-1]
    assert last["choices"][0]["finish_reason"] == "stop" and last["choices"][0]["delta"] == {}
    assert [(c["number"], c["title"], c["page"]) for c in last["citations"]] == [(1, "refund_policy", 1)]


def test_eight_concurrent_requests_keep_their_own_sources(spy_url: str) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=f"{spy_url}/v1", api_key="unused", max_retries=0, timeout=60)

    def ask(target: tuple[str, str, int]) -> tuple:
        question, title, page = target
        if page == 2:  # one streamed request among the plain ones
            chunks = list(client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": question}], stream=True))
            text = "".join(c.choices[0].delta.content or "" for c in chunks)
            return text, chunks[-1].model_extra["citations"]
        r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": question}])
        return r.choices[0].message.content, r.model_extra["citations"]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(ask, TARGETS))
    for (question, title, page), (text, citations) in zip(TARGETS, results):
        assert text == f"It is in {title} page {page} [1].", question
        assert [(c["title"], c["page"]) for c in citations] == [(title, page)], question


@pytest.mark.parametrize("body, fragment", [
    ({"messages": []}, "messages is empty"),
    ({"messages": [{"role": "assistant", "content": "hi"}]}, "last message must come from the user"),
    ({"messages": [{"role": "user", "content": "  "}]}, "last user message is empty"),
    ({}, "messages: Field required"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),
    ({"messages": [{"role": "user", "content": "hi"}], "temperature": 7}, "temperature"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, "max_tokens"),
    ({"messages": [{"role": "user", "content": "hi"}], "n": 3}, "n: Input should be less than or equal to 1"),
    ({"messages": [{"role": "user", "content": "hi"}], "mode": "fuzzy"}, "mode"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, "messages.0.content"),
    ({"messages": "hello"}, "messages"),
])
def test_malformed_requests_are_refused_with_a_message(spy_url: str, body: dict, fragment: str) -> None:
    """A request the schema refuses: 422 naming the field (param); a well-formed one we cannot serve: 400."""
    r = httpx.post(f"{spy_url}/v1/chat/completions", json=body, timeout=10)
    schema = ":" in fragment or fragment in ("temperature", "max_tokens", "mode", "messages.0.role",
                                             "messages.0.content", "messages")
    assert r.status_code == (422 if schema else 400), r.text
    assert fragment in r.json()["error"]["message"]
    if schema:
        assert r.json()["error"]["param"].split(".")[0] in ("messages", "temperature", "max_tokens", "n", "mode")


@pytest.mark.parametrize("field, value", [("k", "3"), ("stream", "yes"), ("temperature", "0.5"), ("max_tokens", 4.5),
                                          ("retrieval_only", 1)])
def test_strict_types_name_the_field(spy_url: str, field: str, value: object) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], field: value}
    r = httpx.post(f"{spy_url}/v1/chat/completions", json=body, timeout=10)
    assert r.status_code == 422 and r.json()["error"]["param"] == field, r.text


def test_key_host_and_body_size_are_checked_before_the_body(assistant_kb: Path) -> None:
    """Key first (401 for malformed JSON without a key), docs behind the key, /health open; a foreign
    Host header refused (DNS rebinding); a body over the limit 413 (by length and when chunked)."""
    from assistant.answer import Assistant
    from ui.http import create_app

    bot = Assistant(kb=assistant_kb, model="spy", backend=SpyBackend(echo_source), condense="off", mode="bm25", k=1)
    with running(create_app(bot, api_key="k3y", max_body_mb=0.01)) as url:
        chat = f"{url}/v1/chat/completions"
        r = httpx.post(chat, content=b"{not json", headers={"content-type": "application/json"}, timeout=10)
        assert r.status_code == 401
        for path in ("/docs", "/openapi.json", "/redoc"):
            assert httpx.get(f"{url}{path}", timeout=10).status_code == 401, path
        key = {"Authorization": "Bearer k3y"}
        assert httpx.get(f"{url}/openapi.json", headers=key, timeout=10).status_code == 200
        assert httpx.get(f"{url}/health", timeout=10).json()["status"] == "ok"
        rebound = httpx.get(f"{url}/health", headers={"Host": "evil.example.com"}, timeout=10)
        assert rebound.status_code == 400
        big = {"messages": [{"role": "user", "content": "x" * 20_000}]}
        r = httpx.post(chat, json=big, headers=key, timeout=10)
        assert r.status_code == 413 and "--max-body-mb" in r.json()["error"]["message"]
        chunked = httpx.post(chat, content=iter([json.dumps(big).encode()]), timeout=10,
                             headers={**key, "content-type": "application/json"})
        assert chunked.status_code == 413
        small = httpx.post(chat, json={"messages": [{"role": "user", "content": "refund policy"}]}, headers=key,
                           timeout=10)
        assert small.status_code == 200 and small.json()["model"] == "spy"


def test_retrieval_only_server_names_no_model(assistant_kb: Path) -> None:
    from assistant.answer import Assistant
    from ui.http import create_app

    bot = Assistant(kb=assistant_kb, retrieval_only=True, mode="bm25", k=1)
    with running(create_app(bot)) as url:
        assert httpx.get(f"{url}/v1/models", timeout=10).json()["data"][0]["id"] == "retrieval-only"


def test_invalid_json_and_wrong_method(spy_url: str) -> None:
    r = httpx.post(f"{spy_url}/v1/chat/completions", content=b"{not json", timeout=10,
                   headers={"content-type": "application/json"})
    assert r.status_code == 400 and "JSON" in r.json()["error"]["message"]
    r = httpx.get(f"{spy_url}/v1/chat/completions", timeout=10)
    assert r.status_code == 405 and r.json()["error"]["message"]


def test_api_key_is_enforced(tiny_url: str) -> None:
    from openai import AuthenticationError, OpenAI

    body = {"messages": [{"role": "user", "content": "hi"}]}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
        for method, path in (("POST", "/v1/chat/completions"), ("GET", "/v1/models")):
            r = httpx.request(method, f"{tiny_url}{path}", json=body, headers=headers, timeout=10)
            assert r.status_code == 401, (headers, path)
            assert "API key" in r.json()["error"]["message"]
    with pytest.raises(AuthenticationError):
        OpenAI(base_url=f"{tiny_url}/v1", api_key="wrong", max_retries=0).models.list()
    key = {"Authorization": "Bearer s3cret"}
    ok = httpx.get(f"{tiny_url}/v1/models", headers=key, timeout=10)
    assert ok.status_code == 200
    name = ok.json()["data"][0]["id"]
    assert httpx.get(f"{tiny_url}/v1/models/{name}", headers=key, timeout=10).json()["id"] == name
    missing = httpx.get(f"{tiny_url}/v1/models/Qwen/Other", headers=key, timeout=10)
    assert missing.status_code == 404 and "not served here" in missing.json()["error"]["message"]


def test_settings_reach_the_assistant(assistant_kb: Path) -> None:
    """temperature, top_p, max_tokens, the system prompt, k and mode map onto Assistant.ask."""
    from fastapi.testclient import TestClient

    from assistant.answer import Assistant
    from ui.http import create_app

    spy = SpyBackend("Fine [1].")
    bot = Assistant(kb=assistant_kb, model="spy", backend=spy, condense="off")
    client = TestClient(create_app(bot, allowed_host=("testserver",)))
    r = client.post("/v1/chat/completions", json={
        "messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": TARGETS[6][0]}],
        "temperature": 0.7, "top_p": 0.5, "max_tokens": 33, "k": 2, "mode": "bm25", "thinking": False})
    assert r.status_code == 200, r.text
    messages, params = spy.calls[-1]
    assert messages[0]["content"].startswith(f"You are terse.\n\n{DEFAULT_SYSTEM_PROMPT}\n\nSources:")
    assert (params.temperature, params.top_p, params.max_new_tokens, params.thinking) == (0.7, 0.5, 33, False)
    assert len(r.json()["sources"]) == 2 and r.json()["citations"][0]["title"] == "handbook"
    r = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": TARGETS[0][0]}],
                                                  "retrieval_only": True, "k": 3})
    assert r.status_code == 200 and len(r.json()["citations"]) == 3


def test_failure_mid_stream_is_reported_in_the_stream(assistant_kb: Path) -> None:
    from fastapi.testclient import TestClient

    from assistant.answer import Assistant
    from ui.http import create_app

    class Failing(SpyBackend):
        def generate(self, messages, params, *, stream=False, on_first_token=None):  # type: ignore[override]
            yield "Partial"
            raise RuntimeError("out of memory")

    bot = Assistant(kb=assistant_kb, model="spy", backend=Failing(), condense="off", mode="bm25")
    # as uvicorn: answer, then log
    client = TestClient(create_app(bot, allowed_host=("testserver",)), raise_server_exceptions=False)
    body = {"messages": [{"role": "user", "content": TARGETS[0][0]}], "stream": True}
    lines = [line for line in client.post("/v1/chat/completions", json=body).text.splitlines() if line]
    assert lines[-1] == "data: [DONE]"
    assert json.loads(lines[-2][6:])["error"]["message"] == "generation failed: out of memory"
    assert json.loads(lines[1][6:])["choices"][0]["delta"]["content"] == "Partial"
    plain = client.post("/v1/chat/completions", json={**body, "stream": False})
    assert plain.status_code == 500 and "out of memory" in plain.json()["error"]["message"]


def test_errors_map_to_status_codes_by_the_one_table(assistant_kb: Path, tmp_path: Path) -> None:
    """A model that does not load: 503 naming the fix; a bad query: 400 (ui.errors decides both)."""
    from fastapi.testclient import TestClient

    from assistant.answer import Assistant
    from ui.http import create_app

    bot = Assistant(kb=assistant_kb, model="Qwen/Qwen3-0.6B-not-cached-here", condense="off", mode="bm25")
    client = TestClient(create_app(bot, allowed_host=("testserver",)), raise_server_exceptions=False)
    r = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": TARGETS[0][0]}]})
    assert r.status_code == 503 and "--retrieval-only" in r.json()["error"]["message"], r.text
    r = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "   "}]})
    assert r.status_code == 400, r.text


def spy_prompt_tokens(assistant_kb: Path, question: str) -> int:
    """Prompt tokens of ``question`` at the spy server (its settings, SpyBackend's exact count)."""
    from assistant.answer import Assistant

    bot = Assistant(kb=assistant_kb, model="spy", backend=SpyBackend(echo_source), condense="off", mode="bm25", k=1)
    messages, _ = bot.prompt(question)
    return SpyBackend().count_tokens(messages)


def test_usage_plain_and_streamed_with_include_usage(spy_url: str, assistant_kb: Path) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=f"{spy_url}/v1", api_key="unused", max_retries=0, timeout=60)
    question, title, page = TARGETS[2]
    messages = [{"role": "user", "content": question}]
    prompt = spy_prompt_tokens(assistant_kb, question)
    completion = len(f"It is in {title} page {page} [1].".split())  # SpyBackend counts words
    r = client.chat.completions.create(model="m", messages=messages)
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == \
        (prompt, completion, prompt + completion)

    chunks = list(client.chat.completions.create(model="m", messages=messages, stream=True,
                                                 stream_options={"include_usage": True}))
    *text_chunks, last = chunks
    assert last.choices == [] and last.usage == r.usage  # OpenAI's final usage chunk
    assert all(c.usage is None for c in text_chunks) and text_chunks[-1].choices[0].finish_reason == "stop"
    assert "".join(c.choices[0].delta.content or "" for c in text_chunks) == r.choices[0].message.content
    plain_stream = list(client.chat.completions.create(model="m", messages=messages, stream=True))
    assert all(c.choices and c.usage is None for c in plain_stream)

    passages = client.chat.completions.create(model="m", messages=messages, extra_body={"retrieval_only": True})
    assert (passages.usage.prompt_tokens, passages.usage.total_tokens) == (0, 0)  # no model was called
    assert passages.choices[0].finish_reason == "stop"

    # a reply that used all of max_tokens may be cut off: finish_reason "length", plain and streamed
    cut = client.chat.completions.create(model="m", messages=messages, max_tokens=completion)
    assert cut.choices[0].finish_reason == "length"
    streamed = list(client.chat.completions.create(model="m", messages=messages, max_tokens=completion, stream=True))
    assert streamed[-1].choices[0].finish_reason == "length"


def test_openai_backend_reports_the_usage_of_the_server_behind_it(spy_url: str, assistant_kb: Path) -> None:
    """`--endpoint` at an OpenAI-compatible server: the Answer's usage is the one that server reported."""
    from openai import OpenAI

    from assistant.answer import Assistant

    question = TARGETS[2][0]
    bot = Assistant(kb=assistant_kb, model="m", endpoint=f"{spy_url}/v1", condense="off", mode="bm25", k=1)
    messages, _ = bot.prompt(question)
    direct = OpenAI(base_url=f"{spy_url}/v1", api_key="unused", max_retries=0).chat.completions.create(
        model="m", messages=messages, max_tokens=bot.config.max_new_tokens, temperature=0).usage
    answer = bot.ask(question)
    stream = bot.stream(question)
    assert "".join(stream) == answer.text == "It is in refund_policy page 1 [1]."
    for usage in (answer.usage, stream.answer.usage):
        assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == \
            (direct.prompt_tokens, direct.completion_tokens, direct.total_tokens)
    assert answer.usage.prompt_tokens != bot.backend.count_tokens(messages)  # the server's count, not an estimate


def test_unknown_citations_and_cited_nothing_in_responses(assistant_kb: Path) -> None:
    from fastapi.testclient import TestClient

    from assistant.answer import Assistant
    from ui.http import create_app

    replies = iter(["A restocking fee [7]. Refunded in full [1][9].", "A restocking fee [7]. Refunded in full [1][9].",
                    "No idea, honestly.", "No idea, honestly."])
    bot = Assistant(kb=assistant_kb, model="spy", backend=SpyBackend(lambda m: next(replies)), condense="off",
                    mode="bm25", k=2)
    client = TestClient(create_app(bot, allowed_host=("testserver",)))
    body = {"messages": [{"role": "user", "content": TARGETS[2][0]}]}
    plain = client.post("/v1/chat/completions", json=body).json()
    assert plain["choices"][0]["message"]["content"] == "A restocking fee. Refunded in full [1]."
    assert (plain["unknown_citations"], plain["cited_nothing"]) == ([7, 9], False)
    lines = [line for line in client.post("/v1/chat/completions", json={**body, "stream": True}).text.splitlines()
             if line.startswith("data: {")]
    events = [json.loads(line[6:]) for line in lines]
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events) == \
        "A restocking fee. Refunded in full [1]."
    assert (events[-1]["unknown_citations"], events[-1]["cited_nothing"]) == ([7, 9], False)
    nothing = client.post("/v1/chat/completions", json=body).json()
    assert (nothing["unknown_citations"], nothing["cited_nothing"], nothing["citations"]) == ([], True, [])
    events = [json.loads(line[6:]) for line in client.post("/v1/chat/completions", json={**body, "stream": True})
              .text.splitlines() if line.startswith("data: {")]
    assert events[-1]["cited_nothing"] is True


def test_a_busy_port_is_a_failure_naming_the_fix(assistant_kb: Path) -> None:
    """uvicorn alone logs the bind error and exits 3; the CLI exits 1 (could not be done) with the fix."""
    import socket

    from ui.errors import FAILED, exit_code
    from ui.http import check_port

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}.*pick another --port") as err:
            check_port("127.0.0.1", port)
    assert exit_code(err.value) == FAILED
