"""Follow-up rewriting only when the question leans on the conversation (a topic change is searched as typed).

A knowledge base of two documents built with the exact fake embedder hash-64: a Chinese employee
handbook (annual leave, travel expenses) and an English vacuum manual (restocking fee, filter care).
Retrieval-only unless said otherwise, so the heuristic rewrite (previous question + follow-up) runs.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterator

import pytest

from assistant.answer import Assistant
from assistant.condense import merge_hits, plan_search
from assistant.followup import FOLLOW_UP, STANDALONE, UNSURE, dependence

from fixtures_assistant import KB_EMBEDDER, KB_MAX_TOKENS, SpyBackend

HANDBOOK, MANUAL = "员工手册", "HV vacuum manual"
HANDBOOK_PAGES = (
    "第三章 年假：员工入职满一年后每年享有五天带薪年假，入职满十年后每年享有十天带薪年假。"
    "年假需提前一周向部门经理申请，未休完的年假可顺延到次年三月底。",
    "第四章 报销：差旅费用需在出差结束后三十天内提交发票和行程单报销，逾期不予报销。"
    "住宿标准按城市等级执行，超出部分由员工自理。",
)
MANUAL_PAGES = (
    "Returns and refunds: an opened HV300 or HV500 vacuum cleaner returned within 30 days is subject to a 15 "
    "percent restocking fee. Unopened vacuum cleaners are refunded in full.",
    "Maintenance: wash the dust filter of the vacuum cleaner every month with cold water and let the filter dry "
    "for 24 hours before you use the cleaner again.",
)
LEAVE_Q, FEE_Q, FILTER_Q = "年假有几天？", "What restocking fee applies to an opened vacuum?", \
    "How often should the dust filter be washed?"


def document(title: str, path: str, pages: tuple[str, ...]) -> object:
    from ingest.records import Document, Page

    body = "\f".join(pages).encode()
    return Document(path=Path(path), sha256=hashlib.sha256(body).hexdigest(), title=title, kind="pdf",
                    pages=tuple(Page(i, t) for i, t in enumerate(pages, 1)))


@pytest.fixture(scope="module")
def two_docs_kb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from index.kb import KnowledgeBase

    kb = KnowledgeBase.open(tmp_path_factory.mktemp("followups") / "kb", embedder=KB_EMBEDDER,
                            max_tokens=KB_MAX_TOKENS, overlap=0)
    assert kb.add_documents([document(HANDBOOK, "/docs/员工手册.pdf", HANDBOOK_PAGES),
                             document(MANUAL, "/docs/hv-vacuum.pdf", MANUAL_PAGES)]).ok
    yield kb
    kb.close()


@pytest.fixture(scope="module")
def bot(two_docs_kb: object) -> Assistant:
    return Assistant(kb=two_docs_kb, retrieval_only=True, k=2)


def turn(question: str, answer: str = "[1]") -> list[dict]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


# (history question, new question, top document): the new question is searched exactly as typed
TOPIC_CHANGES = {
    "zh->en": (LEAVE_Q, FEE_Q, MANUAL),  # the issue: was rewritten into the annual-leave question
    "zh->en short": (LEAVE_Q, "What fee applies?", MANUAL),  # prepending the old question put the handbook first
    "en->zh": (FEE_Q, LEAVE_Q, HANDBOOK),
    "en->en": (FEE_Q, FILTER_Q, MANUAL),
    "zh->zh": (LEAVE_Q, "差旅费用多久内报销？", HANDBOOK),
}


@pytest.mark.parametrize("case", sorted(TOPIC_CHANGES))
def test_a_topic_change_is_searched_as_typed(bot: Assistant, case: str) -> None:
    before, question, top = TOPIC_CHANGES[case]
    answer = bot.ask(question, history=turn(before))
    assert answer.search_queries == (question,) and answer.standalone_question == question
    assert answer.sources[0].title == top
    assert dependence(question, turn(before)).kind == STANDALONE


# (history question, follow-up, searched, top document): rewritten from the history, in both languages
FOLLOW_UPS = {
    "en pronoun": (FILTER_Q, "How long must it dry?", (f"{FILTER_Q} How long must it dry?",), MANUAL),
    "en ellipsis": ("What restocking fee applies to an opened HV300 vacuum?", "What about the HV500?",
                    ("What restocking fee applies to an opened HV300 vacuum? What about the HV500?",), MANUAL),
    "zh pronoun": (LEAVE_Q, "它需要提前多久申请？", (f"{LEAVE_Q} 它需要提前多久申请？",), HANDBOOK),
    "zh ellipsis": ("入职满一年有几天年假？", "那满十年呢？", ("入职满一年有几天年假？ 那满十年呢？",), HANDBOOK),
    "zh bare": (LEAVE_Q, "还有呢", (f"{LEAVE_Q} 还有呢",), HANDBOOK),
    # a language switch makes a follow-up unsure: both are searched, the rewrite first
    "en->zh ellipsis": (FEE_Q, "那 HV500 呢？", (f"{FEE_Q} 那 HV500 呢？", "那 HV500 呢？"), MANUAL),
}


@pytest.mark.parametrize("case", sorted(FOLLOW_UPS))
def test_a_follow_up_is_searched_rewritten(bot: Assistant, case: str) -> None:
    before, question, searched, top = FOLLOW_UPS[case]
    answer = bot.ask(question, history=turn(before))
    assert answer.search_queries == searched and answer.standalone_question == searched[0]
    assert answer.sources[0].title == top
    assert answer.question == question


def test_a_chain_of_follow_ups_keeps_the_first_topic(bot: Assistant) -> None:
    history = turn(FILTER_Q) + turn("How long must it dry?")
    answer = bot.ask("And in winter?", history=history)
    assert answer.search_queries == (f"{FILTER_Q} How long must it dry? And in winter?",)
    assert answer.sources[0].title == MANUAL


def test_unsure_searches_both_and_merges_by_chunk_keeping_the_best_rank(two_docs_kb, bot: Assistant) -> None:
    question = "Does this fee apply to refurbished vacuums too?"  # a reference, but content words of its own
    assert dependence(question, turn(FEE_Q)).kind == UNSURE
    answer = bot.ask(question, history=turn(FEE_Q))
    assert answer.search_queries == (question, f"{FEE_Q} {question}")
    each = [two_docs_kb.search(q, k=2) for q in answer.search_queries]
    assert [h.chunk_id for h in answer.hits] == [h.chunk_id for h in merge_hits(each, 2)]
    assert len({h.chunk_id for h in answer.hits}) == len(answer.hits) and answer.sources[0].title == MANUAL


@pytest.mark.parametrize("question, history, kind", [
    ("Why?", turn(FEE_Q), FOLLOW_UP),
    ("How much?", turn(FEE_Q), FOLLOW_UP),
    ("为什么？", turn(LEAVE_Q), FOLLOW_UP),
    ("这个怎么申请？", turn(LEAVE_Q), FOLLOW_UP),
    ("保修期呢？", turn("HV500 吸尘器多少钱？"), FOLLOW_UP),
    ("年假有几天呢？", turn("差旅费用多久内报销？"), STANDALONE),  # 呢 after a question word: not an ellipsis
    ("应该什么时候提交发票？", turn(LEAVE_Q), STANDALONE),  # 该 of 应该 is no reference
    ("其他城市的住宿标准是多少？", turn(LEAVE_Q), STANDALONE),  # nor 其 of 其他
    ("Does this restocking fee also apply to opened vacuums?", turn(LEAVE_Q), STANDALONE),  # weak + switch
    ("Does this restocking fee also apply to opened vacuums?", turn(FEE_Q), UNSURE),  # weak, same language
    ("Why?", [], STANDALONE),
    ("Why?", [{"role": "assistant", "content": "Hello."}], STANDALONE),
])
def test_dependence_rules(question: str, history: list[dict], kind: str) -> None:
    assert dependence(question, history).kind == kind


def test_the_model_rewrites_only_follow_ups_and_its_output_is_cleaned(two_docs_kb: object) -> None:
    spy = SpyBackend("Fine [1].", rewrite="Standalone question: “How long must the HV vacuum filter dry?”")
    bot = Assistant(kb=two_docs_kb, backend=spy, model="spy", k=2)
    answer = bot.ask(FEE_Q, history=turn(LEAVE_Q, "五天 [1]。"))
    assert len(spy.calls) == 1 and answer.search_queries == (FEE_Q,)  # standalone: no rewrite asked
    answer = bot.ask("How long must it dry?", history=turn(FILTER_Q, "Every month [1]."))
    condense_call, answer_call = spy.calls[1:]
    assert "Standalone question:" in condense_call[0][-1]["content"]
    assert answer.search_queries == ("How long must the HV vacuum filter dry?",)
    assert answer_call[0][-1]["content"] == "How long must it dry?"  # the model still answers what was typed
    assert plan_search("What about it?", turn(FEE_Q), method="llm", generate=lambda m: "\n").queries == (
        f"{FEE_Q} What about it?",)  # unusable output: the heuristic


def test_searched_question_is_shown_in_json_server_and_ui(two_docs_kb: object, bot: Assistant) -> None:
    from fastapi.testclient import TestClient

    from ui.cli.assistant import answer_json
    from ui.http import create_app
    from ui.web.app import answer_messages

    answer = bot.ask("What about the HV500?", history=turn(FEE_Q))
    searched = f"{FEE_Q} What about the HV500?"
    assert json.loads(answer_json(answer))["search_queries"] == [searched]
    notes = [m for m in answer_messages(answer) if "searched" in (m.get("metadata") or {}).get("title", "")]
    assert [m["metadata"]["title"] for m in notes] == [f"🔎 searched: {searched}"]
    plain = bot.ask(FEE_Q, history=turn(LEAVE_Q))
    assert not any("searched" in (m.get("metadata") or {}).get("title", "") for m in answer_messages(plain))
    client = TestClient(create_app(bot, allowed_host=("testserver",)))
    messages = [*turn(FEE_Q), {"role": "user", "content": "What about the HV500?"}]
    body = client.post("/v1/chat/completions", json={"messages": messages}).json()
    assert body["search_queries"] == [searched] and body["citations"][0]["title"] == MANUAL


def test_chat_prints_what_it_searched(two_docs_kb: object) -> None:
    from typer.testing import CliRunner

    from ui.cli.assistant import app

    result = CliRunner().invoke(app, ["chat", "--kb", str(two_docs_kb.path), "--retrieval-only", "-k", "1"],
                                input=f"{FEE_Q}\nWhat about the HV500?\n/exit\n")
    assert result.exit_code == 0, result.output
    assert result.output.count("searched:") == 1  # the second question only
