"""The assistant over a real knowledge base (fake embedder hash-64) with a spy backend."""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from assistant.answer import ABSTAIN_EN, ABSTAIN_ZH, Assistant, normalise_history
from assistant.config import AskOptions
from assistant.errors import ConfigError
from assistant.prompt import format_source
from index.errors import NoKnowledgeBase

from fixtures_assistant import SpyBackend

REFUND_Q = "Does the refund policy allow returns within thirty days?"


class RecordingKB:
    """The real knowledge base, recording every query it is searched with."""

    def __init__(self, path: Path) -> None:
        from index.kb import KnowledgeBase

        self.kb = KnowledgeBase.open(path)
        self.queries: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def search(self, query: str, k: int | None = None, mode: str | None = None) -> list:
        with self._lock:
            self.queries.append((query, mode))
        return self.kb.search(query, k=k, mode=mode)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.kb, name)


@pytest.fixture()
def kb(assistant_kb: Path) -> RecordingKB:  # noqa: F811
    rec = RecordingKB(assistant_kb)
    yield rec
    rec.kb.close()


def test_answer_cites_sources_mapped_to_doc_and_page(kb: RecordingKB) -> None:
    spy = SpyBackend("The warranty lasts two years [1].")
    answer = Assistant(kb, backend=spy, k=3).ask("How long is the warranty on company laptops?")
    assert answer.text == "The warranty lasts two years [1]." and not answer.abstained
    (cite,) = answer.citations
    assert (cite.number, cite.title, cite.page, cite.path) == (1, "handbook", 2, "/docs/handbook.pdf")
    assert "two years" in cite.snippet and answer.sources[0].page_start == 2
    messages, params = spy.calls[0]
    assert format_source(1, answer.sources[0]) in messages[0]["content"]
    assert answer.timings.total_s >= answer.timings.retrieval_s > 0


def test_prompt_holds_sources_in_rank_order_within_budget(kb: RecordingKB) -> None:
    spy = SpyBackend(context=4096)
    bot = Assistant(kb, backend=spy, k=6, max_new_tokens=64)
    messages, sources = bot.prompt("aspirin side effects bleeding")
    hits = kb.kb.search("aspirin side effects bleeding", k=6, mode="hybrid")
    assert [h.chunk_id for h in sources] == [h.chunk_id for h in hits]
    system = messages[0]["content"]
    positions = [system.index(format_source(n, h)) for n, h in enumerate(sources, 1)]
    assert positions == sorted(positions)
    full = spy.count_tokens(messages)
    small = Assistant(kb, backend=SpyBackend(context=full + 64 + 32 - 30), k=6, max_new_tokens=64)
    messages, kept = small.prompt("aspirin side effects bleeding")
    assert 0 < len(kept) < len(sources) and [h.chunk_id for h in kept] == [h.chunk_id for h in sources[:len(kept)]]
    assert spy.count_tokens(messages) <= full - 30


def test_abstains_below_threshold_without_calling_the_model(kb: RecordingKB) -> None:
    spy = SpyBackend()
    bot = Assistant(kb, backend=spy, abstain_threshold=0.3)  # hash-64: off-topic < 0.22 < on-topic
    for question, message in (("quantum chromodynamics lattice gauge simulations", ABSTAIN_EN),
                              ("量子色动力学的晶格规范模拟", ABSTAIN_ZH)):
        answer = bot.ask(question)
        assert answer.abstained and answer.text == message and answer.citations == ()
        assert answer.abstain_reason.startswith("best chunk cosine ") and "< threshold 0.300" in answer.abstain_reason
        streamed = bot.stream(question)
        assert list(streamed) == [message] and streamed.answer.abstained
    assert spy.calls == []
    answer = bot.ask(REFUND_Q)
    assert not answer.abstained and len(spy.calls) == 1 and answer.citations[0].title == "refund_policy"
    assert answer.abstain_reason == ""
    assert not bot.ask("quantum chromodynamics lattice gauge simulations",
                       options=AskOptions(abstain_threshold=-1)).abstained


def test_follow_up_is_condensed_before_retrieval(kb: RecordingKB) -> None:
    rewrite = "What are the side effects of aspirin?"
    spy = SpyBackend("Stomach upset [1].", rewrite=rewrite)
    history = [{"role": "user", "content": "What is aspirin used for?"},
               {"role": "assistant", "content": "Pain, fever and inflammation [1]."}]
    answer = Assistant(kb, backend=spy, k=2).ask("What about its side effects?", history=history)
    assert answer.standalone_question == rewrite and kb.queries[0] == (rewrite, "hybrid")
    assert answer.sources[0].title == "aspirin_side_effects"
    condense_call, answer_call = spy.calls
    assert "What is aspirin used for?" in condense_call[0][-1]["content"]
    # The answer prompt carries the conversation and the original follow-up, not the rewrite.
    assert [m["content"] for m in answer_call[0][1:]] == [
        "What is aspirin used for?", "Pain, fever and inflammation.", "What about its side effects?"]


def test_retrieval_only_lists_passages_and_condenses_heuristically(kb: RecordingKB) -> None:
    bot = Assistant(kb, model="/nonexistent/model", retrieval_only=True, k=2)
    answer = bot.ask("What about its side effects?", history=[("What is aspirin used for?", "Pain [1].")])
    assert answer.standalone_question == "What is aspirin used for? What about its side effects?"
    assert answer.text == "\n\n".join(format_source(n, h) for n, h in enumerate(answer.sources, 1))
    assert [c.number for c in answer.citations] == [1, 2] and answer.sources == answer.hits
    assert answer.sources[0].title == "aspirin_side_effects"
    stream = bot.stream(REFUND_Q)
    pieces = list(stream)
    assert pieces == [stream.answer.text] and stream.answer.citations[0].title == "refund_policy"
    assert json.loads(json.dumps(stream.answer.timings.__dict__))["total_s"] >= 0


def test_concurrent_asks_each_get_their_own_sources(kb: RecordingKB) -> None:
    expected = {REFUND_Q: "refund_policy",
                "What are the side effects of aspirin?": "aspirin_side_effects",
                "How long is the warranty on company laptops?": "handbook",
                "退货政策是什么？": "退货政策",
                "What does green tea contain?": "green_tea",
                "Where are parking permits issued?": "handbook",
                "Why take aspirin daily against heart attacks?": "aspirin",
                "laptop warranty": "handbook"}
    spy = SpyBackend(lambda messages: messages[0]["content"].split("\n\n[1] ")[1].split(" (")[0] + " [1]")
    bot = Assistant(kb, backend=spy, k=2)
    results: dict[str, Any] = {}

    def run(q: str) -> None:
        results[q] = bot.ask(q)

    threads = [threading.Thread(target=run, args=(q,)) for q in expected]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for q, title in expected.items():
        assert results[q].question == q and results[q].sources[0].title == title
        assert results[q].text == f"{title} [1]" and results[q].citations[0].title == title


def test_bad_input_is_reported_up_front(kb: RecordingKB, tmp_path: Path) -> None:
    bot = Assistant(kb, backend=SpyBackend())
    with pytest.raises(ConfigError, match="question is empty"):
        bot.ask("  ")
    with pytest.raises(TypeError):
        bot.ask("q", model="x")  # per-call settings are an AskOptions, not keywords
    with pytest.raises(ConfigError, match="options must be an AskOptions"):
        bot.ask("q", options={"k": 3})
    with pytest.raises(ConfigError, match="k=0"):
        bot.ask("q", options=AskOptions(k=0))
    with pytest.raises(ConfigError, match="use_adapter"):
        AskOptions(use_adapter="no")
    with pytest.raises(ConfigError, match=r"history\[0\]"):
        normalise_history([{"role": "tool", "content": "x"}])
    with pytest.raises(NoKnowledgeBase, match="ingest add"):
        Assistant(kb=tmp_path / "missing")
    parts = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}, {"role": "system", "content": "s"}]
    assert normalise_history(parts) == [{"role": "user", "content": "hi"}]


def test_thinking_goes_to_reasoning_not_to_the_text(kb: RecordingKB) -> None:
    spy = SpyBackend("<think>\nThe handbook says two years.\n</think>\n\nTwo years [1].")
    bot = Assistant(kb, backend=spy, k=2)
    answer = bot.ask("How long is the warranty on company laptops?", options=AskOptions(thinking="on"))
    assert answer.text == "Two years [1]." and answer.reasoning == "The handbook says two years."
    assert spy.calls[-1][1].thinking is True and answer.citations[0].page == 2
    pieces = list(bot.stream("How long is the warranty on company laptops?"))
    assert "".join(pieces) == "Two years [1]." and "think" not in "".join(pieces)
    assert spy.calls[-1][1].thinking is False  # default "auto" without an adapter: off


def test_query_is_embedded_once_per_ask(assistant_kb: Path) -> None:  # noqa: F811
    bot = Assistant(kb=assistant_kb, backend=SpyBackend(), abstain_threshold=0.1)  # hybrid + dense abstain check
    inner = bot.kb.embedder.inner
    seen: list[str] = []
    encode = inner.encode_queries
    inner.encode_queries = lambda texts: seen.extend(texts) or encode(texts)
    answer = bot.ask(REFUND_Q)
    assert seen == [REFUND_Q] and not answer.abstained and answer.sources[0].title == "refund_policy"
    bot.close()


def test_ask_options_name_only_assistant_config_fields() -> None:
    """Per-call settings are AssistantConfig fields (validated there), plus use_adapter."""
    import dataclasses

    from assistant.config import AssistantConfig

    names = {f.name for f in dataclasses.fields(AskOptions)} - {"use_adapter"}
    assert names <= {f.name for f in dataclasses.fields(AssistantConfig)}
    base = AssistantConfig(k=5, thinking="auto")
    assert AskOptions(k=2, thinking=False).apply(base) == dataclasses.replace(base, k=2, thinking="off")


def test_usage_counts_prompt_and_generated_tokens_with_the_backend(kb: RecordingKB) -> None:
    reply = "<think>\nThe handbook says two years.\n</think>\n\nTwo years [1]."
    spy = SpyBackend(reply)
    bot = Assistant(kb, backend=spy, k=2)
    for answer in (bot.ask("How long is the warranty on company laptops?", options=AskOptions(thinking="on")),
                   _streamed(bot, "How long is the warranty on company laptops?")):
        messages = spy.calls[-1][0]
        assert answer.usage.prompt_tokens == spy.count_tokens(messages)
        assert answer.usage.completion_tokens == spy.count_text(reply) == 10  # the reasoning is generated too
        assert answer.usage.total_tokens == answer.usage.prompt_tokens + 10
    passages = bot.ask(REFUND_Q, options=AskOptions(retrieval_only=True))
    declined = Assistant(kb, backend=spy, abstain_threshold=0.99).ask("quantum chromodynamics lattice gauge")
    for answer in (passages, declined):  # no model was called: nothing to count
        assert (answer.usage.prompt_tokens, answer.usage.completion_tokens, answer.usage.total_tokens) == (0, 0, 0)


def _streamed(bot: Assistant, question: str) -> Any:
    stream = bot.stream(question, options=AskOptions(thinking="on"))
    list(stream)
    return stream.answer


def test_usage_a_model_server_reported_wins_over_the_count(kb: RecordingKB) -> None:
    from assistant.backends.openai_compat import Generated

    class Server(SpyBackend):
        def generate(self, messages, params, *, stream=False, on_first_token=None):  # type: ignore[override]
            out = Generated()  # as OpenAIBackend returns it, with the usage the server reported
            out.pieces, out.usage = super().generate(messages, params, stream=stream), (321, 12)
            return out

    answer = Assistant(kb, backend=Server("Two years [1]."), k=2).ask("laptop warranty")
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens, answer.usage.total_tokens) == (321, 12, 333)


def test_an_adapter_brings_its_base_model_unless_one_is_given(tmp_path: Path) -> None:
    """`assistant ask --adapter DIR` without --model answers with the base the adapter was trained on
    (run card first, then adapter_config.json), as `finetune chat` does; --model still wins."""
    import json

    from assistant.config import DEFAULT_MODEL, AssistantConfig

    base = tmp_path / "my-base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    carded, plain = tmp_path / "carded", tmp_path / "plain"
    for folder, base_in_config in ((carded, "somewhere/else"), (plain, str(base))):
        folder.mkdir()
        (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": base_in_config}))
    (carded / "run_card.json").write_text(json.dumps({"base_model": str(base)}))
    assert AssistantConfig(kb="kb", adapter=str(carded)).model == str(base)
    assert AssistantConfig(kb="kb", adapter=str(plain)).model == str(base)
    assert AssistantConfig(kb="kb", adapter=str(carded), model=str(base)).model == str(base)
    assert AssistantConfig(kb="kb").model == DEFAULT_MODEL
