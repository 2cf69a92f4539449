"""Citation marks that name no source: removed from the answer (whole or streamed), listed, and noted."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from assistant.answer import Assistant
from assistant.citations import CitationFilter, citation_notes, clean_citations
from assistant.config import AskOptions
from assistant.records import Answer
from ui.cli.assistant import answer_json

from fixtures_assistant import SpyBackend

WARRANTY_Q = "How long is the warranty on company laptops?"


@pytest.mark.parametrize("text, n_sources, cleaned, unknown", [
    ("A restocking fee [7]. Refunded in full [2][9].", 3, "A restocking fee. Refunded in full [2].", (7, 9)),
    ("Yes [1,2] and [1, 9].", 2, "Yes [1,2] and [1].", (9,)),
    ("Yes [1][2].", 2, "Yes [1][2].", ()),
    ("三十天【1】，五天【４】。", 3, "三十天【1】，五天。", (4,)),
    ("见【1，9】。", 3, "见【1】。", (9,)),
    ("Days [1-3].", 2, "Days [1, 2].", (3,)),
    ("Days [2-3].", 1, "Days.", (2, 3)),
    ("Full width ［１］ and ［５］.", 2, "Full width ［１］ and.", (5,)),
    ("Arabic-Indic [١] and [٩].", 2, "Arabic-Indic [١] and.", (9,)),
    ("array[0] and [0, 7] stay; [a] and [ 1 ] too.", 2, "array[0] and [0, 7] stay; [a] and [ 1 ] too.", ()),
    ("[7] Thirty days.\n\n[9]", 2, "Thirty days.", (7, 9)),
    ("The [2024] report [1].", 3, "The report [1].", (2024,)),
    ("Unclosed [7", 2, "Unclosed [7", ()),
])
def test_marks_naming_no_source_are_removed_and_listed(text: str, n_sources: int, cleaned: str,
                                                        unknown: tuple[int, ...]) -> None:
    assert clean_citations(text, n_sources) == (cleaned, unknown)


@pytest.mark.parametrize("text", [
    "A restocking fee [7]. Unopened units are refunded in full [2][9].",
    "见【１，９】和【١】。array[0] x[12]y [1 , 9] [1-3] [a] [1, [2] 【",
    "Two [1]\n[8] \nthree [3]  [2] end [", "[9][1] starts, 【2】ends【8】",
])
def test_streamed_pieces_join_to_the_whole_text_filtered_at_once(text: str) -> None:
    whole = clean_citations(text, 2)
    rng = random.Random(0)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(text)), k=rng.randint(0, min(10, len(text) - 1))))
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
        marks = CitationFilter(2)
        out = [marks.feed(p) for p in pieces] + [marks.finish()]
        assert "".join(out) == marks.text == whole[0] and marks.unknown == whole[1], pieces


def test_a_split_mark_is_held_until_complete_or_proven_not_a_mark() -> None:
    marks = CitationFilter(n_sources=3)
    assert marks.feed("fee [") == "fee"  # the blank and "[" wait
    assert marks.feed("7") == ""
    assert marks.feed("].") == "."
    assert marks.feed(" See [") == " See"
    assert marks.feed("x") == " [x"  # not a mark: released as written
    assert marks.feed("] 【1") == "]"
    assert marks.feed("】") == " 【1】"
    assert marks.finish() == "" and marks.text == "fee. See [x] 【1】" and marks.unknown == (7,)


def test_notes_name_the_removed_numbers_and_an_answer_citing_nothing() -> None:
    assert citation_notes(Answer(text="x")) == []
    assert citation_notes(Answer(text="x", unknown_citations=(7,))) == ["[7] named no source and was removed"]
    assert citation_notes(Answer(text="x", unknown_citations=(3, 7, 9), cited_nothing=True)) == [
        "[3], [7] and [9] named no source and were removed",
        "the answer cites none of its sources: check it against them"]


@pytest.fixture()
def bot_of(assistant_kb: Path):  # noqa: ANN201 - a factory
    made: list[Assistant] = []

    def make(reply: object, **settings: object) -> Assistant:
        made.append(Assistant(kb=assistant_kb, backend=SpyBackend(reply), condense="off", mode="bm25", k=3,
                              **settings))
        return made[-1]

    yield make
    for bot in made:
        bot.close()


def test_ask_and_stream_remove_unknown_marks_and_list_them(bot_of) -> None:  # noqa: ANN001
    pieces = ["A restocking fee [", "7", "]. Unopened units are refunded in full [2", "][9", "]."]
    bot = bot_of(pieces)
    answer = bot.ask(WARRANTY_Q)
    expected = "A restocking fee. Unopened units are refunded in full [2]."
    assert answer.text == expected and answer.unknown_citations == (7, 9) and not answer.cited_nothing
    assert [c.number for c in answer.citations] == [2]
    stream = bot.stream(WARRANTY_Q)
    streamed = list(stream)
    assert "".join(streamed) == expected == stream.answer.text and stream.answer.unknown_citations == (7, 9)
    assert "7" not in "".join(streamed) and "[9" not in "".join(streamed)
    as_json = json.loads(answer_json(answer))  # what `assistant ask --json` prints
    assert as_json["unknown_citations"] == [7, 9] and as_json["cited_nothing"] is False


def test_thinking_and_marks_split_across_pieces(bot_of) -> None:  # noqa: ANN001
    bot = bot_of(["<think>\nsource [", "5] is off</th", "ink>\n\n两年【", "١", "】，不是【", "8】。"])
    answer = bot.ask(WARRANTY_Q, options=AskOptions(thinking="on"))
    assert answer.text == "两年【١】，不是。" and answer.unknown_citations == (8,)
    assert answer.reasoning == "source [5] is off"  # reasoning is left as the model wrote it
    assert [c.number for c in answer.citations] == [1]


def test_an_answer_citing_nothing_is_marked(bot_of) -> None:  # noqa: ANN001
    answer = bot_of("Two years, I think.").ask(WARRANTY_Q)
    assert answer.cited_nothing and answer.citations == () and answer.unknown_citations == ()
    only_unknown = bot_of("Two years [8].").ask(WARRANTY_Q)
    assert only_unknown.text == "Two years." and only_unknown.cited_nothing and only_unknown.unknown_citations == (8,)


def test_retrieval_only_and_abstained_answers_are_unaffected(bot_of) -> None:  # noqa: ANN001
    passages = bot_of("unused").ask(WARRANTY_Q, options=AskOptions(retrieval_only=True))
    assert passages.text.startswith("[1] ") and len(passages.citations) == len(passages.sources) >= 2
    assert not passages.cited_nothing and passages.unknown_citations == ()
    declined = bot_of("Off [9].", abstain_threshold=0.99).ask("quantum chromodynamics lattice gauge")
    assert declined.abstained and not declined.cited_nothing and declined.unknown_citations == ()
