"""``finetune data from-kb``: training records built from the knowledge base with the assistant's own prompt.

Unit tests use the fake-embedder knowledge base and the tiny Qwen3 (real tokenizer) of
fixtures_assistant; the integration test builds a small knowledge base of real zh_rgb passages.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from assistant.adapter_prompt import adapter_system_prompt
from assistant.answer import ABSTAIN_EN, ABSTAIN_ZH, Assistant
from assistant.backends.local import LocalBackend
from assistant.errors import ConfigError, TrainingDataError
from assistant.evaluation.metrics import contains_answer
from assistant.from_kb.build import FromKBConfig, build_from_kb
from assistant.from_kb.gold import Gold, as_digits, cite, holds_answer, mentions_answer, on_gold_page
from assistant.from_kb.questions import GEN_SYSTEM_EN, GEN_SYSTEM_ZH, parse_pair
from assistant.qa import QAItem, read_qa
from index.records import Hit

from fixtures_assistant import SpyBackend

K = 3
WARRANTY = {"question": "How long is the warranty on company laptops?", "answer": "The warranty lasts two years [7].",
            "doc": "handbook", "page": 2}
TEA = {"question": "What does green tea contain?", "answer": "Green tea contains caffeine and catechins."}
REFUND_ZH = {"question": "退货政策是什么？", "answer": "购买后三十天内可以退货。", "answers": ["三十天内可以退货"]}
# Misses at k=3 with the hash-64 knowledge base (the precondition is checked in the test that uses them):
OFFICE = {"question": "When are office hours?", "answer": "From nine in the morning to five in the afternoon.",
          "doc": "handbook", "page": 1}
MONEY = {"question": "When do I get my money back?", "answer": "Refunds are paid to the original card within five "
                                                                "business days."}


def write_qa(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows) + "\n",
                    encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture()
def make(tmp_path: Path, assistant_kb: Path, tiny_qwen3: Path):
    """FromKBConfig over the test knowledge base and the tiny Qwen3's tokenizer, for these Q&A rows."""
    def make(rows: list, **settings) -> FromKBConfig:
        qa = write_qa(tmp_path / "qa.jsonl", rows)
        settings = {"k": K, "distractor_ratio": 0.0, **settings}
        return FromKBConfig(qa=(qa,), out=tmp_path / "out" / "train.jsonl", kb=assistant_kb, model=str(tiny_qwen3),
                            **settings)
    return make


@pytest.fixture(scope="module")
def counter(tiny_qwen3: Path) -> LocalBackend:
    """One token counter (the tiny Qwen3's tokenizer) shared by the builds of this module."""
    return LocalBackend(str(tiny_qwen3))


@pytest.fixture()
def build(counter: LocalBackend):
    return lambda config: build_from_kb(config, backend=counter)


@pytest.fixture(scope="module")
def bot(assistant_kb: Path, tiny_qwen3: Path) -> Assistant:
    """The assistant as it will be used (default thinking, no adapter): the prompts records must equal."""
    return Assistant(kb=assistant_kb, model=str(tiny_qwen3), k=K)


def gold_of(row: dict) -> Gold:
    answers = (row["answer"], *row.get("answers", []))
    return Gold(QAItem(row["question"], answers, "t", doc=row.get("doc"), page=row.get("page")))


def test_records_carry_the_assistants_prompt_and_cite_the_source_holding_the_answer(make, bot, tiny_qwen3) -> None:
    backend = LocalBackend(str(tiny_qwen3))
    report = build_from_kb(make([WARRANTY, TEA, REFUND_ZH]), backend=backend)
    records = read_jsonl(report.out)
    assert report.records == {"answer": 3} and report.found == {"doc/page": 1, "text": 2} and not report.problems
    assert backend._model is None  # counting tokens loads the tokenizer only, never the weights
    for row, record in zip((WARRANTY, TEA, REFUND_ZH), records):
        messages, sources = bot.prompt(row["question"])
        assert record["messages"][:2] == messages  # system (prompt + numbered sources) and the question
        meta = record["meta"]
        assert meta["kind"] == "answer" and meta["retrieved"] == [h.chunk_id for h in sources]
        assert meta["source"] == f"{report.out.parent.parent / 'qa.jsonl'}:{[WARRANTY, TEA, REFUND_ZH].index(row) + 1}"
        cited = sources[meta["gold"] - 1]
        assert holds_answer(cited, gold_of(row)) and meta["gold_chunk"] == cited.chunk_id
        assert record["messages"][2] == {"role": "assistant", "content": cite(row["answer"], meta["gold"])}
    warranty, tea, refund = records
    assert on_gold_page(bot.prompt(WARRANTY["question"])[1][warranty["meta"]["gold"] - 1], gold_of(WARRANTY).item)
    assert warranty["messages"][2]["content"] == f"The warranty lasts two years [{warranty['meta']['gold']}]."
    assert refund["messages"][2]["content"] == f"购买后三十天内可以退货 [{refund['meta']['gold']}]。"


def test_distractor_records_hold_no_answer_and_target_the_abstention(make, bot, build) -> None:
    rows = [WARRANTY, TEA, REFUND_ZH, OFFICE, MONEY,
            {"question": "What is the capital of Mongolia?", "answer": "", "answerable": False}]
    report = build(make(rows, distractor_ratio=1.0))
    records = read_jsonl(report.out)
    assert report.records == {"answer": 5, "distractor": 6}
    distractors = [r for r in records if r["meta"]["kind"] == "distractor"]
    assert [r["meta"]["found"] for r in distractors] == ["distractor"] * 5 + ["unanswerable"]
    for record in distractors:
        question = record["messages"][1]["content"]
        assert record["messages"][2]["content"] == (ABSTAIN_ZH if question == REFUND_ZH["question"] else ABSTAIN_EN)
        assert record["meta"]["gold"] is None and len(record["meta"]["retrieved"]) == K
        hits = _hits(bot, record["meta"]["retrieved"])
        assert record["messages"][:2] == bot.prompt_from_hits(question, hits)[0]
        row = next((r for r in rows if r["question"] == question and r.get("answerable", True)), None)
        if row is not None:  # no source of a distractor record holds the answer
            assert not any(holds_answer(h, gold_of(row)) for h in hits)
    # the default ratio is a seeded 20 % share, added on top of the answer records
    again = build(make(rows[:5], distractor_ratio=0.2))
    assert again.records == {"answer": 5, "distractor": 1}


def test_distractors_search_deeper_and_report_the_questions_left_without_one(make, bot, build, monkeypatch) -> None:
    # precondition: among the k best chunks for the warranty question one holds the answer
    assert any(holds_answer(h, gold_of(WARRANTY)) for h in bot.kb.search(WARRANTY["question"], k=K))
    report = build(make([WARRANTY], distractor_ratio=1.0, distractor_depth=1))
    (record,) = [r for r in read_jsonl(report.out) if r["meta"]["kind"] == "distractor"]
    assert report.found == {"doc/page": 1, "distractor searched deeper": 1} and not report.problems
    hits = _hits(bot, record["meta"]["retrieved"])
    assert len(hits) == K and not any(holds_answer(h, gold_of(WARRANTY)) for h in hits)  # k sources, like answers

    monkeypatch.setattr("assistant.from_kb.build.holds_answer", lambda hit, gold: True)  # every chunk holds it
    report = build(make([WARRANTY, TEA], distractor_ratio=1.0))
    assert report.records == {"answer": 2} and report.found["distractor without sources"] == 2
    assert [p.reason for p in report.problems] == ["distractor without sources"] * 2
    assert "each of the 8 chunks retrieved" in report.problems[0].detail  # the whole knowledge base was searched
    assert "2 problem(s)" in report.render() and report.as_dict()["found"]["distractor without sources"] == 2


# (source text, reference, holds it in another form): the closed loop's 2月4日 case and others of its kind
ANOTHER_FORM = [
    ("开幕式于北京当地时间2月4日举行。", "2022年2月4日", True),  # a date without its year (closed loop, zh_rgb)
    ("The Games open on Feb. 4th in Beijing.", "2022年2月4日", True),
    ("Opening ceremony: 4 February 2022.", "February 4, 2022", True),
    ("开幕日期：2022-02-04", "2月4日", True),
    ("二〇二二年二月四日开幕", "2022年2月4日", True),
    ("闭幕式于2月20日举行。", "2022年2月4日", False),  # another day
    ("退货期限为三十天。", "30天", True),
    ("Returns are accepted within thirty days.", "30天", True),
    ("Returns are accepted within 30 days.", "三十天", True),
    ("退货期限为三百天。", "30天", False),
    ("全年国内生产总值1,210,207亿元。", "1210207亿元", True),  # thousand separators
    ("参赛队伍共３２支。", "32支", True),  # full-width digits
    ("规模达60500亿美元。", "6.05万亿美元", True),  # the same value, another scale word
    ("a trade volume of 6.05 trillion dollars", "6.05万亿美元", True),
    ("同比增长百分之六点四。", "6.4%", True),
    ("同比增长6.9%。", "6.4%", False),
    ("澳大利亚派出四十四名运动员。", "44", True),
    ("中国派出176名运动员参赛。", "44", False),
    ("两岸统一", "1", False),  # the 一 of a word is no number
    ("Returns are accepted within thirty days.", "购买后三十天内可以退货", True),  # its quantity, in English
    ("保修期为两年。", "购买后三十天内可以退货", False),
    ("《长津湖》续集《水门桥》登顶首日票房。", "长津湖之水门桥", True),  # most of its words
    ("长津湖战役纪念馆开馆。", "长津湖之水门桥", False),
    ("Eiffel designed the tower that stands in Paris.", "The Eiffel Tower stands in Paris [2].", True),
    ("Paris is the capital of France.", "The Eiffel Tower stands in Paris.", False),
]


@pytest.mark.parametrize(("text", "reference", "holds"), ANOTHER_FORM)
def test_a_distractor_source_never_holds_the_answer_in_another_form(text: str, reference: str, holds: bool) -> None:
    hit = Hit("c9", text, 1.0, "sha9", "doc9", "/d/doc9.txt", 1, 1, 0, len(text))
    gold = Gold(QAItem("q?", (reference,), "qa.jsonl:1"))
    assert mentions_answer(text, [reference]) is holds and holds_answer(hit, gold) is holds
    if holds and reference in ("2022年2月4日", "30天", "6.05万亿美元", "长津湖之水门桥"):
        assert not contains_answer(text, [reference])  # `assistant eval` scores with the unchanged exact rule


def test_numbers_are_compared_as_digits() -> None:
    assert as_digits("一千八百万日圆，十二月三十一日，第一，一百零五") == "18000000日圆、12月31日、第1、105"
    assert as_digits("1，234、1,234") == "1、234、1234"  # a full-width comma separates clauses, not thousands
    assert as_digits("两万亿、5千米、Forty-two") == "2000000000000、5千米、42"
    assert not mentions_answer("anything", ["", " "]) and not mentions_answer("", ["30天"])


def test_on_miss_inject_abstain_and_skip(make, bot, build) -> None:
    for row in (OFFICE, MONEY):  # precondition: retrieval at k misses the gold source
        assert not any(holds_answer(h, gold_of(row)) for h in bot.prompt(row["question"])[1])
    manual = {"question": "What does the manual say?", "answer": "Nothing.", "doc": "manual.pdf"}
    rows = [WARRANTY, OFFICE, MONEY, manual]

    inject = build(make(rows))
    records = read_jsonl(inject.out)
    assert inject.found == {"doc/page": 1, "injected": 2, "gold not in kb": 1} and inject.records == {"answer": 3}
    (missing,) = inject.problems
    assert missing.source.endswith("qa.jsonl:4") and "manual.pdf" in missing.detail
    for row, record in zip((OFFICE, MONEY), records[1:]):
        retrieved = bot.prompt(row["question"])[1]
        meta = record["meta"]
        cited = bot.kb.store.hits([(r[0], 0.0) for r in bot.kb.store.db.execute(
            "SELECT id FROM chunks WHERE chunk_id=?", (meta["gold_chunk"],))])[0]
        assert meta["found"] == "injected" and holds_answer(cited, gold_of(row)) and len(meta["retrieved"]) == K
        others = [c for c in meta["retrieved"] if c != cited.chunk_id]
        assert others == [h.chunk_id for h in retrieved[:K - 1]]  # the lowest-ranked source was replaced
        assert meta["retrieved"][meta["gold"] - 1] == cited.chunk_id
        assert record["messages"][2]["content"] == cite(row["answer"], meta["gold"])
        hits = [cited if c == cited.chunk_id else next(h for h in retrieved if h.chunk_id == c)
                for c in meta["retrieved"]]
        assert record["messages"][:2] == bot.prompt_from_hits(row["question"], hits)[0]
    first = inject.out.read_bytes()
    assert build(make(rows)).out.read_bytes() == first  # seeded positions: the same file again

    abstain = build(make(rows[:3], on_miss="abstain"))
    records = read_jsonl(abstain.out)
    assert abstain.found == {"doc/page": 1, "abstain": 2} and abstain.records == {"answer": 1, "distractor": 2}
    assert [r["messages"][2]["content"] for r in records[1:]] == [ABSTAIN_EN, ABSTAIN_EN]
    assert [r["meta"]["found"] for r in records[1:]] == ["abstain", "abstain"]

    skip = build(make(rows[:3], on_miss="skip"))
    assert skip.found == {"doc/page": 1, "skipped": 2} and len(read_jsonl(skip.out)) == 1

    # a distractor is the contrast to an answer record: a question without one gets none
    assert build(make(rows[:3], on_miss="skip", distractor_ratio=1.0)).records == {"answer": 1, "distractor": 1}
    abstain = build(make(rows[:3], on_miss="abstain", distractor_ratio=1.0))
    assert [r["meta"]["found"] for r in read_jsonl(abstain.out)] == ["doc/page", "distractor", "abstain", "abstain"]


def test_bad_input_lines_are_reported_and_the_rest_is_written(make, build) -> None:
    rows = [WARRANTY, "{not json", {"question": "No answer here?"}, {"question": "x", "answer": "y", "page": 0}, TEA]
    report = build(make(rows))
    assert report.records == {"answer": 2} and len(read_jsonl(report.out)) == 2
    assert [p.source.rsplit(":", 1)[1] for p in report.problems] == ["2", "3", "4"]
    text = report.render()
    assert "wrote 2 records" in text and "qa.jsonl:3: the record has no reference answer" in text

    out = report.out
    with pytest.raises(TrainingDataError, match="qa.jsonl:1"):
        build(make(["{oops"]))
    assert len(read_jsonl(out)) == 2  # nothing built: the previous file is left as it was


def test_config_names_every_bad_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        FromKBConfig(qa=("qa.jsonl",), distractor_ratio=2, on_miss="guess", k=0, distractor_depth=0)
    for needle in ("distractor_ratio=2", "on_miss='guess'", "k=0", "distractor_depth=0"):
        assert needle in str(err.value)
    with pytest.raises(ConfigError, match="no questions"):
        FromKBConfig()
    with pytest.raises(ConfigError, match="overwrite"):
        FromKBConfig(qa=(tmp_path / "qa.jsonl",), out=tmp_path / "qa.jsonl")
    with pytest.raises(ConfigError, match="--generate-questions"):
        FromKBConfig(qa=("qa.jsonl",), qa_out=tmp_path / "gen.jsonl")
    with pytest.raises(ConfigError, match="endpoint='localhost:8000' must be an http"):
        FromKBConfig(generate_questions=5, endpoint="localhost:8000")
    generator = FromKBConfig(generate_questions=5, endpoint="http://localhost:8000/v1", generator_model="qwen3")
    assert (generator.generator_config().model, generator.assistant_config().endpoint) == ("qwen3", None)


def test_training_prompt_token_ids_equal_what_the_model_is_fed(make, bot, tiny_qwen3, build) -> None:
    from transformers import AutoTokenizer

    from finetune.records import Conversation, Message
    from finetune.template import IGNORE, encode_conversation

    report = build(make([WARRANTY, REFUND_ZH, OFFICE], distractor_ratio=1.0))
    tok = AutoTokenizer.from_pretrained(str(tiny_qwen3))
    backend = bot.backend
    for record in read_jsonl(report.out):
        question, target = record["messages"][1]["content"], record["messages"][2]["content"]
        conv = Conversation(tuple(Message(m["role"], m["content"]) for m in record["messages"]), "t")
        (example,), problems = encode_conversation(tok, conv, thinking="off", max_length=4096)
        assert not problems and not example.truncated
        if record["meta"]["found"] in ("doc/page", "text"):  # the prompt of ask itself
            messages = bot.prompt(question)[0]
        else:  # injected or distractor sources: the prompt ask sends when retrieval returns those sources
            messages = record["messages"][:2]
            assert messages == bot.prompt_from_hits(question, _hits(bot, record["meta"]["retrieved"]))[0]
        fed = backend.tokenizer()(backend.render(messages, thinking=bot.thinking()), add_special_tokens=False)
        assert list(example.input_ids[:example.prompt_len]) == fed["input_ids"]
        trained = [t for t in example.labels if t != IGNORE]
        assert tok.decode(trained) == target + "<|im_end|>"
        assert all(t == IGNORE for t in example.labels[:example.prompt_len])


def _hits(bot: Assistant, chunk_ids: list[str]) -> list:
    rows = {cid: i for i, cid in bot.kb.store.db.execute("SELECT id, chunk_id FROM chunks")}
    return bot.kb.store.hits([(rows[c], 0.0) for c in chunk_ids])


def test_generated_questions_keep_their_chunk(tmp_path: Path, assistant_kb: Path, tiny_qwen3: Path,
                                             counter: LocalBackend) -> None:
    def reply(messages: list[dict]) -> str:
        passage = messages[1]["content"].split("\n", 1)[1]
        if "Green tea" in passage:
            return "Sorry, I cannot write a question about this."  # unparsable: reported and skipped
        if "Parking permits" in passage:  # the template copied (gemma-3-270m does this): unparsable
            return "Q: <question>\nA: <answer>"
        if "Side effects" in passage:  # a question about something else (gemma-3-270m): not grounded
            return "Q: What is the capital of France?\nA: Paris is the capital of France."
        if messages[0]["content"] == GEN_SYSTEM_ZH:
            return f"问：这份文件规定了什么？\n答：{passage.split('。')[0]}。"
        return f"**Q:** What does this document say?\n**A:** {passage.split('. ')[0].rstrip('.')}."

    spy = SpyBackend(reply)
    config = FromKBConfig(out=tmp_path / "train.jsonl", kb=assistant_kb, model=str(tiny_qwen3), k=K,
                          distractor_ratio=0.0, generate_questions=50, qa_out=tmp_path / "generated.jsonl")
    report = build_from_kb(config, backend=counter, generator=spy)
    assert report.generated == {"chunks": 8, "pairs": 5, "unparsable": 2, "ungrounded": 1} and len(spy.calls) == 8
    assert sum(m[0]["content"] == GEN_SYSTEM_ZH for m, _ in spy.calls) == 1  # the Chinese chunk, in Chinese
    assert sum(m[0]["content"] == GEN_SYSTEM_EN for m, _ in spy.calls) == 7
    bad, echo, invented = sorted(report.problems, key=lambda p: ("Sorry" not in p.detail, "<question>" not in p.detail))
    assert bad.reason == "unparsable generation" and bad.source.startswith("generated:") and "Sorry" in bad.detail
    assert echo.reason == "unparsable generation" and "<question>" in echo.detail
    assert invented.reason == "answer not in its chunk" and "Paris" in invented.detail
    pairs = [json.loads(line) for line in config.qa_out.read_text(encoding="utf-8").splitlines()]
    items, problems = read_qa([config.qa_out])
    assert len(items) == len(pairs) == 5 and not problems  # reviewable and readable back as gold
    records = read_jsonl(config.out)
    assert report.records == {"answer": 5} and set(report.found) <= {"chunk", "injected"}
    for pair, record in zip(pairs, records):
        meta = record["meta"]
        assert meta["source"] == f"generated:{pair['chunk_id']}" and meta["gold_chunk"] == pair["chunk_id"]
        assert meta["retrieved"][meta["gold"] - 1] == pair["chunk_id"]
        assert record["messages"][2]["content"] == cite(pair["answer"], meta["gold"])


def test_parse_pair_is_robust() -> None:
    assert parse_pair('{"question": "Q1?", "answer": "A1."}') == ("Q1?", "A1.")
    assert parse_pair("Question: Where?\nAnswer: Here.\n\nQ: Another?\nA: No.") == ("Where?", "Here.")
    assert parse_pair("问题：多久？\n答案：三十天。") == ("多久？", "三十天。")
    assert parse_pair("<think>\nlet me see\n</think>\n\nQ: Why?\nA: Because\nof this.") == ("Why?", "Because of this.")
    assert parse_pair("Q: What does <b> mean?\nA: Bold <b>.") == ("What does <b> mean?", "Bold <b>.")
    for bad in ("Q: <question>\nA: <answer>", "问：<问题>\n答：<答案>", "Q: Why?\nA: <answer>",
                "", "Q: only a question?", "A: only an answer.", "Q: \nA: empty question", f"Q: x\nA: {'y' * 2000}"):
        assert parse_pair(bad) is None, bad


def test_cite_and_reference_matching() -> None:
    assert cite("Thirty days [1][2].", 3) == "Thirty days [3]." and cite("Yes!", 1) == "Yes [1]!"
    assert cite("No final stop", 2) == "No final stop [2]" and cite("是的……", 1) == "是的 [1]……"
    assert contains_answer("退款在 五个 工作日内", ["五个工作日"]) and contains_answer("ＡＢＣ", ["abc"])
    assert not contains_answer("nothing", ["something"]) and not contains_answer("x", [])


def test_adapter_trained_on_from_kb_records_reuses_the_prompt_not_the_sources(make, tmp_path, build) -> None:
    record = read_jsonl(build(make([TEA], system_prompt="Answer from the sources.")).out)[0]
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    # finetune train without --system stores the data's most common system message: prompt + sources
    (adapter / "run_card.json").write_text(json.dumps({"system": record["messages"][0]["content"]}))
    assert adapter_system_prompt(adapter) == "Answer from the sources."


def test_cli_from_kb_then_check_accepts_the_file(tmp_path: Path, assistant_kb: Path, tiny_qwen3: Path) -> None:
    from typer.testing import CliRunner

    from ui.cli.finetune import app

    qa = write_qa(tmp_path / "qa.jsonl", [WARRANTY, TEA, REFUND_ZH, OFFICE, MONEY])
    out = tmp_path / "x.jsonl"
    runner = CliRunner()
    args = ["data", "from-kb", str(qa), "--kb", str(assistant_kb), "--model", str(tiny_qwen3), "--k", "3",
            "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"wrote 6 records to {out}: 5 answer, 1 distractor" in result.output and "injected 2" in result.output
    result = runner.invoke(app, [*args, "--json", "--distractor-ratio", "0"])
    assert result.exit_code == 0 and json.loads(result.stdout)["records"] == {"answer": 5}
    result = runner.invoke(app, ["data", "check", str(out), "--json", "--val-ratio", "0.2", "--no-dedup"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["train"] + data["validation"], data["dropped"]) == (5, 0) and data["formats"] == {str(out): "openai"}
    # a knowledge base that does not exist is a bad --kb: exit status 2 (ui.errors)
    result = runner.invoke(app, ["data", "from-kb", str(qa), "--kb", str(tmp_path / "nokb"), "--out", str(out)])
    assert result.exit_code == 2 and "no knowledge base at" in result.output and "Traceback" not in result.output


def test_finetune_help_stays_light(cli_help) -> None:
    out, heavy = cli_help("ui.cli.finetune", ["--help"], ["data", "from-kb", "--help"])
    assert "--on-miss" in out and heavy == []


# -- real data --------------------------------------------------------------------------------
@pytest.mark.integration
def test_from_kb_on_real_zh_rgb_passages(shared_data: Path, tmp_path: Path, tiny_qwen3: Path) -> None:
    from index.beir import load_beir, subset, to_documents
    from index.kb import KnowledgeBase

    folder = shared_data / "retrieval" / "zh_rgb"
    if not (folder / "corpus.jsonl").is_file():
        pytest.skip(f"zh_rgb not found under {folder}")
    beir = subset(load_beir(folder, "dev"), 20, 60, seed=3)
    answers = {json.loads(line)["_id"]: json.loads(line)["answers"]
               for line in (folder / "queries.jsonl").read_text(encoding="utf-8").splitlines()}
    with KnowledgeBase.open(tmp_path / "kb", embedder="hash-64") as kb:
        assert kb.add_documents(to_documents(beir)).ok
    rows, rng = [], random.Random(0)
    for qid, question in beir.queries.items():
        flat = [a for item in answers[qid] for a in (item if isinstance(item, list) else [item])]  # RGB nests some
        refs = [a for a in flat if isinstance(a, str) and a.strip()]
        holding = [d for d in beir.qrels[qid] if d in beir.corpus and contains_answer(beir.corpus[d][1], refs)]
        row = {"question": question, "answers": refs}
        if holding and rng.random() < 0.5:  # half name their gold passage, half are matched by text
            row["doc"] = holding[0]
        rows.append(row)
    qa = write_qa(tmp_path / "qa.jsonl", rows)
    config = FromKBConfig(qa=(qa,), out=tmp_path / "train.jsonl", kb=tmp_path / "kb", model=str(tiny_qwen3), k=5)
    report = build_from_kb(config)
    print("\nzh_rgb from-kb:", report.render())
    records = read_jsonl(config.out)
    bot = Assistant(kb=tmp_path / "kb", model=str(tiny_qwen3), k=5)
    answered = [r for r in records if r["meta"]["kind"] == "answer"]
    assert len(answered) >= 15 and report.records.get("distractor", 0) >= 3
    for record in answered:
        row = next(r for r in rows if r["question"] == record["messages"][1]["content"])
        cited = _hits(bot, [record["meta"]["retrieved"][record["meta"]["gold"] - 1]])[0]
        assert contains_answer(cited.text, row["answers"]), (row, cited.text[:200])
        if record["meta"]["found"] in ("doc/page", "text"):
            assert record["messages"][:2] == bot.prompt(row["question"])[0]
    for record in records:
        if record["meta"]["kind"] == "distractor":
            row = next(r for r in rows if r["question"] == record["messages"][1]["content"])
            assert not any(contains_answer(h.text, row["answers"]) for h in _hits(bot, record["meta"]["retrieved"]))
            assert record["messages"][2]["content"] == ABSTAIN_ZH
