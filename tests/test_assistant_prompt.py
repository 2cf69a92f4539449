"""Pure parts of the assistant: prompt fitting, citation parsing, condensing, thinking split, config."""
from __future__ import annotations

import pytest

from assistant.backends.base import ThinkSplitter
from assistant.citations import cited_numbers, extract_citations, strip_citations
from assistant.condense import clean_rewrite, condense, condense_messages, heuristic_standalone
from assistant.config import AssistantConfig
from assistant.errors import ConfigError, PromptTooLong
from assistant.prompt import DEFAULT_SYSTEM_PROMPT, build_messages, format_source
from index.records import Hit


def hit(i: int, words: int = 10, page: int = 1) -> Hit:
    text = " ".join(f"w{i}" for _ in range(words))
    return Hit(f"c{i}", text, 1.0 - i / 100, f"sha{i}", f"doc{i}", f"/d/doc{i}.pdf", page, page, 0, len(text))


def words(messages: list[dict]) -> int:
    """Exact fake token count: one token per whitespace-separated word."""
    return sum(len(m["content"].split()) for m in messages)


SYSTEM = "Answer from the sources."  # 4 words
HISTORY = [{"role": "user", "content": "first question here"}, {"role": "assistant", "content": "first answer [1]"},
           {"role": "user", "content": "second question here"}, {"role": "assistant", "content": "second answer"}]


def fitted(budget: int, n_hits: int = 4, history: list[dict] | None = None) -> tuple[list[dict], list[Hit]]:
    return build_messages("the question", [hit(i) for i in range(1, n_hits + 1)], history, system=SYSTEM,
                          count_tokens=words, budget=budget)


def test_sources_numbered_in_rank_order_then_conversation() -> None:
    messages, used = fitted(budget=10_000, history=HISTORY)
    system = messages[0]["content"]
    assert messages[0]["role"] == "system" and system.startswith(SYSTEM)
    positions = [system.index(format_source(n, h)) for n, h in enumerate(used, 1)]
    assert positions == sorted(positions) and [h.chunk_id for h in used] == ["c1", "c2", "c3", "c4"]
    assert "[2] doc2 (p. 1)\nw2 w2" in system
    assert [m["role"] for m in messages[1:]] == ["user", "assistant", "user", "assistant", "user"]
    assert messages[2]["content"] == "first answer"  # old citation marks are stripped from history
    assert messages[-1] == {"role": "user", "content": "the question"}


def test_history_is_trimmed_oldest_first_before_any_source_is_dropped() -> None:
    full = words(fitted(budget=10_000, history=HISTORY)[0])
    messages, used = fitted(budget=full - 1, history=HISTORY)  # one turn too many
    assert len(used) == 4 and [m["content"] for m in messages[1:-1]] == ["second question here", "second answer"]
    messages, used = fitted(budget=full - 7, history=HISTORY)  # neither turn fits any more
    assert len(used) == 4 and len(messages) == 2
    messages, used = fitted(budget=full - 14, history=HISTORY)  # history gone, then the lowest-ranked source
    assert [h.chunk_id for h in used] == ["c1", "c2", "c3"] and len(messages) == 2
    assert words(messages) <= full - 14


def test_lowest_ranked_sources_dropped_to_fit_budget() -> None:
    no_sources = words(fitted(budget=10_000, n_hits=0)[0])  # with the 2-word "(no sources)" line
    for keep in range(5):
        budget = no_sources - 2 + keep * 14 + 5  # a source is 14 words: "[n] docN (p. 1)" + 10 words
        messages, used = fitted(budget=budget)
        assert [h.chunk_id for h in used] == [f"c{i}" for i in range(1, keep + 1)]
        assert words(messages) <= budget
    with pytest.raises(PromptTooLong, match="question alone needs"):
        fitted(budget=no_sources - 1)


def test_default_system_prompt_is_bilingual_and_asks_for_citations() -> None:
    assert "[1]" in DEFAULT_SYSTEM_PROMPT and "只根据" in DEFAULT_SYSTEM_PROMPT and "ONLY" in DEFAULT_SYSTEM_PROMPT


def test_citation_forms_and_out_of_range_numbers() -> None:
    assert cited_numbers("a [1] b [1, 3] c [2][4] d 【5】 e 【６，1】 f [7-8]", 8) == [1, 3, 2, 4, 5, 6, 7, 8]
    assert cited_numbers("in [2023] and [0] and [9], see [x]", 3) == []
    assert cited_numbers("见【١】和 [٣, ٢]", 3) == [1, 3, 2]  # Arabic-Indic digits
    hits = [hit(1, page=4), hit(2, page=7)]
    cites = extract_citations("Two years【2】, not one [1][3].", hits)
    assert [(c.number, c.title, c.page, c.path) for c in cites] == [(2, "doc2", 7, "/d/doc2.pdf"),
                                                                    (1, "doc1", 4, "/d/doc1.pdf")]
    assert strip_citations("Yes [1, 2]. 是的【1】。") == "Yes. 是的。"


def test_condense_llm_heuristic_and_off() -> None:
    history = [{"role": "user", "content": "What is aspirin?"}, {"role": "assistant", "content": "A drug [1]."}]
    asked: list[list[dict]] = []

    def rewrite(messages: list[dict]) -> str:
        asked.append(messages)
        return "Standalone question: What are the side effects of aspirin?"

    q = "What about its side effects?"
    assert condense(q, history, method="llm", generate=rewrite) == "What are the side effects of aspirin?"
    assert "What is aspirin?" in asked[0][-1]["content"] and "[1]" not in asked[0][-1]["content"]
    assert condense(q, history, method="llm", generate=None) == heuristic_standalone(q, history) \
        == "What is aspirin? What about its side effects?"
    assert condense(q, history, method="llm", generate=lambda m: "  \n") == heuristic_standalone(q, history)
    assert condense(q, history, method="off", generate=rewrite) == q
    assert condense(q, [], method="llm", generate=rewrite) == q and len(asked) == 1
    rewritten = clean_rewrite("<think>\nhmm\n</think>\n\n“阿司匹林有哪些副作用？”", "它的副作用呢？")
    assert rewritten == "阿司匹林有哪些副作用？"
    assert condense_messages(q, history)[0]["role"] == "system"


def test_think_splitter_keeps_reasoning_out_of_the_answer() -> None:
    text = "<think>\nThe user asks X.\n</think>\n\nAnswer [1]."
    for size in (1, 3, 7, len(text)):
        s = ThinkSplitter()
        pieces = [s.feed(text[i:i + size]) for i in range(0, len(text), size)] + [s.finish()]
        assert "".join(pieces) == s.answer == "Answer [1]." and s.reasoning == "The user asks X."
    s = ThinkSplitter()
    assert s.feed("<thin") == "" and s.feed("g is fun") == "<thing is fun" and s.reasoning == ""
    s = ThinkSplitter()
    s.feed("<think>never closed")
    assert s.finish() == "" and s.answer == "" and s.reasoning == "never closed"


def test_config_reports_every_problem_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        AssistantConfig(k=0, mode="fuzzy", temperature=-1, thinking="maybe", endpoint="localhost:8000",
                        abstain_threshold=3.0, condense="always")
    for name in ("k=0", "mode='fuzzy'", "temperature=-1", "thinking='maybe'", "endpoint=", "abstain_threshold=3.0",
                 "condense='always'"):
        assert name in str(err.value)
    with pytest.raises(ConfigError, match="not a PEFT adapter folder"):
        AssistantConfig(adapter="/nonexistent/adapter")
    assert AssistantConfig(thinking=False).thinking == "off"
    assert AssistantConfig().threshold_for("multilingual-e5-small") > 0 > AssistantConfig().threshold_for("hash-64")
