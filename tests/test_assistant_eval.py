"""`assistant eval`: metrics on constructed cases, the four-system table with an exact fake backend, the CLI."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable, Iterator

import pytest
from typer.testing import CliRunner

from assistant.answer import ABSTAIN_EN, Assistant
from assistant.backends.base import GenParams
from assistant.errors import ConfigError
from assistant.evaluation.metrics import (
    citation_precision,
    contains_answer,
    exact_match,
    gold_rank,
    gold_rule,
    is_abstention,
    normalise,
    reciprocal_rank,
    token_f1,
)
from assistant.evaluation.records import CLOSED_BOOK_PROMPT, SYSTEMS, RetrievalRow
from assistant.evaluation.run import EvalConfig, plan_systems, retrieval_summary, run_eval
from assistant.qa import QAItem
from index.records import Hit

WARRANTY_Q = "How long is the warranty on company laptops?"
REFUND_Q = "What does the refund policy allow?"
ZH_Q = "退货政策规定多少天内可以退货？"
DISTRACTOR_Q = "Who won the football world cup in 1998?"
GOLD = [
    {"question": WARRANTY_Q, "answer": "two years", "doc": "handbook", "page": 2},
    {"question": REFUND_Q, "answers": ["returns within thirty days", "thirty days"], "doc": "refund_policy.txt"},
    {"question": ZH_Q, "answer": "三十天"},
    {"question": DISTRACTOR_Q, "answerable": False},
]


def hit(text: str, title: str = "doc", page: int = 1, page_end: int | None = None, sha: str = "0" * 64) -> Hit:
    return Hit(f"{title}-{page}", text, 1.0, sha, title, f"/docs/{title}.pdf", page, page_end or page, 0, len(text))


# -- metrics on constructed cases ------------------------------------------------------------------
def test_exact_match_and_token_f1_en_zh_and_several_references() -> None:
    assert normalise(" Thirty  Days [1]【2】! ") == "thirty days" and normalise("三十 天，[3]") == "三十天"
    assert exact_match("Thirty days [1].", ["returns within thirty days", "thirty days"])
    assert not exact_match("within thirty days", ["returns within thirty days", "thirty days"])
    assert exact_match("３０ DAYS", ["30 days"])  # NFKC: full-width digits and letters
    assert exact_match("三十 天。", ["三十天"]) and not exact_match("三十天内", ["三十天"])
    assert not exact_match("anything", [])
    # "within thirty days" vs "thirty days": P 2/3, R 1 -> 0.8; vs "returns within thirty days": P 1, R 3/4 -> 6/7
    assert token_f1("within thirty days", ["thirty days", "returns within thirty days"]) == pytest.approx(6 / 7)
    assert token_f1("The warranty lasts two years [1].", ["two years"]) == pytest.approx(2 * 0.4 / 1.4)
    # jieba: 退货/期限/是/三十天 vs 三十天 -> P 1/4, R 1 -> 0.4; 三十天/内 vs 三十天 -> 2/3
    assert token_f1("退货期限是三十天", ["三十天"]) == pytest.approx(0.4)
    assert token_f1("三十天内", ["三十天"]) == pytest.approx(2 / 3)
    assert token_f1("no overlap", ["two years"]) == 0.0 and token_f1("x", []) == 0.0
    assert contains_answer("Returns within THIRTY days.", ["thirty days"])
    assert contains_answer("退货期限是三十天", ["三十天"])
    assert not contains_answer("It costs 300 dollars", ["30"]) and not contains_answer("text", [""])
    # Chinese text: a reference with punctuation or Latin words (normalised to "4 8", "anthony albanese")
    assert contains_answer("经济增长率为4.8%，延续恢复", ["4.8%"])
    assert not contains_answer("增长率为2048", ["4.8%"])
    assert contains_answer("新总理Anthony Albanese宣誓", ["Anthony Albanese"])


def test_gold_rank_and_mrr_by_page_doc_and_answer_rules() -> None:
    hits = [hit("Office hours", "handbook", 1), hit("Laptops: two years", "handbook", 2, 3),
            hit("Refunds within thirty days", "refund_policy"), hit("Parking", "handbook", 4)]
    page_item = QAItem("q", ("two years",), "g:1", doc="handbook.pdf", page=3)  # inside the range 2-3
    doc_item = QAItem("q", ("thirty days",), "g:2", doc="refund_policy")
    answer_item = QAItem("q", ("thirty days",), "g:3")
    sha_item = QAItem("q", ("x",), "g:4", doc="0" * 8, page=4)  # a sha256 prefix names the document
    distractor = QAItem("q", (), "g:5", answerable=False)
    assert [gold_rule(i) for i in (page_item, doc_item, answer_item, distractor)] == ["page", "doc", "answer", None]
    assert [gold_rank(hits, i) for i in (page_item, doc_item, answer_item, sha_item, distractor)] == [2, 3, 3, 4, None]
    assert gold_rank(hits, QAItem("q", ("two years",), "g:6", doc="handbook", page=9)) is None
    assert [reciprocal_rank(r) for r in (1, 4, None)] == [1.0, 0.25, 0.0]
    rows = [RetrievalRow("g:1", "page", 1, 0.1), RetrievalRow("g:2", "doc", 3, 0.2),
            RetrievalRow("g:3", "answer", None, 0.3), RetrievalRow("g:4", "page", 2, 0.4)]
    s = retrieval_summary(rows, k=5, mode="hybrid")
    assert (s["hit@1"], s["hit@3"], s["hit@5"]) == (0.25, 0.75, 0.75)
    assert s["mrr"] == pytest.approx((1 + 1 / 3 + 0 + 1 / 2) / 4) and s["rules"] == {"page": 2, "doc": 1, "answer": 1}
    assert s["timings"]["retrieval_s"]["mean"] == pytest.approx(0.25) and s["items"] == 4


def test_citation_precision_maps_cited_numbers_to_sources() -> None:
    sources = [hit("Returns within thirty days.", "policy"), hit("Green tea.", "tea"),
               hit("Laptops are covered.", "handbook", 2), hit("Refunds take 30 days.", "policy", 3)]
    item = QAItem("q", ("thirty days",), "g:1")
    assert citation_precision([1], sources, item) == 1.0
    assert citation_precision([1, 2], sources, item) == 0.5
    assert citation_precision([2, 4], sources, item) == 0.0  # "30 days" is not "thirty days"
    assert citation_precision([], sources, item) is None and citation_precision([9], sources, item) is None
    gold_page = QAItem("q", ("two years",), "g:2", doc="handbook", page=2)
    assert citation_precision([3, 2], sources, gold_page) == 0.5  # the gold page supports without the answer text


def test_abstention_detection() -> None:
    yes = [ABSTAIN_EN, "文档中没有包含这方面的信息。", "The documents do not contain this information, sorry.",
           "The provided sources don't mention the 1998 final.", "I don't know.", "I do not know the answer.",
           "资料中未提及保修期。", "无法回答这个问题。", "我不知道。"]
    no = ["France won the 1998 world cup.", "Returns within thirty days [1].", "三十天。", "", "Not sure it is green."]
    assert [is_abstention(t) for t in yes] == [True] * len(yes)
    assert [is_abstention(t) for t in no] == [False] * len(no)
    assert is_abstention("Anything", abstained=True) and is_abstention("Nope, nope.", abstain_texts=["nope"])


def test_config_and_system_plan_name_bad_values(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        EvalConfig(data=(), systems=("base", "oracle"), limit=0, plot=tmp_path / "x.jpg", out=tmp_path / "r.txt")
    for needle in ("--data", "oracle", "limit=0", "x.jpg", "r.txt"):
        assert needle in str(err.value)
    cfg = EvalConfig(data="gold.jsonl", out=str(tmp_path / "r.json"))
    assert cfg.data == (Path("gold.jsonl"),) and cfg.markdown_path == tmp_path / "r.md"
    assert plan_systems(None, adapter=True) == (SYSTEMS, {})
    assert plan_systems(("base+rag",), adapter=False) == (
        ("base+rag",), {"base": "not in --systems", "adapter": "not in --systems", "adapter+rag": "not in --systems"})
    with pytest.raises(ConfigError, match="needs --adapter"):
        plan_systems(("adapter",), adapter=False)
    assert plan_systems(None, adapter=True, retrieval_only=True)[0] == ()


# -- the table with an exact fake backend --------------------------------------------------------
SOURCE = re.compile(r"^\[(\d+)\] (.+?) \(pp?\. (\d+)(?:-\d+)?\)\n(.*?)(?=\n\n\[\d+\] |\Z)", re.S | re.M)


def sources_in(messages: list[dict]) -> list[tuple[int, str, int, str]]:
    return [(int(n), title, int(page), text) for n, title, page, text in SOURCE.findall(messages[0]["content"])]


def numbered(messages: list[dict], good: Callable[[str, int, str], bool]) -> int:
    """The number of the first source in the prompt for which ``good(title, page, text)``."""
    return next(n for n, title, page, text in sources_in(messages) if good(title, page, text))


def gold_source(question: str, messages: list[dict]) -> int:
    checks = {WARRANTY_Q: lambda t, p, x: t == "handbook" and p == 2, REFUND_Q: lambda t, p, x: "thirty days" in x,
              ZH_Q: lambda t, p, x: "三十天" in x}
    return numbered(messages, checks[question])


def other_source(question: str, messages: list[dict]) -> int:
    return numbered(messages, lambda t, p, x: not (t == "handbook" and p == 2) and "thirty" not in x
                    and "two years" not in x and "三十天" not in x)


ANSWERS: dict[str, dict[str, Callable[[list[dict]], str]]] = {
    "base": {WARRANTY_Q: lambda m: "I don't know.", REFUND_Q: lambda m: "Thirty days.", ZH_Q: lambda m: "七天",
             DISTRACTOR_Q: lambda m: "France won it."},
    "base+rag": {WARRANTY_Q: lambda m: f"The warranty lasts two years [{gold_source(WARRANTY_Q, m)}].",
                 REFUND_Q: lambda m: f"Returns within thirty days [{gold_source(REFUND_Q, m)}]"
                                     f"[{other_source(REFUND_Q, m)}].",
                 ZH_Q: lambda m: "三十天。", DISTRACTOR_Q: lambda m: ABSTAIN_EN},
    "adapter": {WARRANTY_Q: lambda m: "two years", REFUND_Q: lambda m: "<think>hmm</think>Within thirty days.",
                ZH_Q: lambda m: "三十天内", DISTRACTOR_Q: lambda m: "I do not know."},
    "adapter+rag": {WARRANTY_Q: lambda m: f"Two years [{other_source(WARRANTY_Q, m)}].",
                    REFUND_Q: lambda m: ABSTAIN_EN, ZH_Q: lambda m: f"三十天 [{gold_source(ZH_Q, m)}]。",
                    DISTRACTOR_Q: lambda m: "It was France [1]."},
}
EXPECTED = {  # system -> (EM, F1, contains, citation precision, no citation, abstention correct, false abstention)
    "base": (1 / 3, 1 / 3, 1 / 3, None, None, 0.0, 1 / 3),
    "base+rag": (2 / 3, (2 * 0.4 / 1.4 + 1 + 1) / 3, 1.0, 0.75, 1 / 3, 1.0, 0.0),
    "adapter": (1 / 3, (1 + 6 / 7 + 2 / 3) / 3, 1.0, None, None, 1.0, 0.0),
    "adapter+rag": (2 / 3, 2 / 3, 2 / 3, 0.5, 1 / 3, 0.0, 1 / 3),
}
FIGURES = ("exact_match", "token_f1", "contains", "citation_precision", "no_citation", "abstention_correct",
           "false_abstention")


class SystemsBackend:
    """Exact fake: the answer of ANSWERS[system][question]; the system is read off the call
    (closed-book prompt vs numbered sources; GenParams.use_adapter)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, GenParams]] = []

    def context_tokens(self) -> int:
        return 4096

    def count_tokens(self, messages: list[dict], *, thinking: bool = False) -> int:
        return sum(len(m["content"].split()) + 4 for m in messages)

    def count_text(self, text: str) -> int:
        return len(text.split())

    def generate(self, messages: list[dict], params: GenParams, *, stream: bool = False,
                 on_first_token: Callable[[], None] | None = None) -> Iterator[str]:
        question = messages[-1]["content"]
        if question == "Hi":  # the warm-up
            self.calls.append(("warm-up", params))
            return iter(["Hello"])
        closed = messages[0]["content"] == CLOSED_BOOK_PROMPT
        assert closed or "Sources:" in messages[0]["content"]
        system = ("adapter" if params.use_adapter else "base") + ("" if closed else "+rag")
        self.calls.append((system, params))
        if on_first_token:
            on_first_token()
        return iter([ANSWERS[system][question](messages)])


@pytest.fixture()
def gold_file(tmp_path: Path) -> Path:
    path = tmp_path / "gold.jsonl"
    lines = [json.dumps(g, ensure_ascii=False) for g in GOLD] + ['{"question": ""}']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def fake_adapter(folder: Path) -> Path:
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")  # enough for AssistantConfig; the fake backend loads nothing
    return folder


def expected_ranks(bot: Assistant) -> list[int | None]:
    """Gold ranks found by reading the hits directly (page 2 of handbook; refund_policy.txt; a hit with 三十天)."""
    checks = [(WARRANTY_Q, lambda h: h.title == "handbook" and h.page_start <= 2 <= h.page_end),
              (REFUND_Q, lambda h: Path(h.path).name == "refund_policy.txt"), (ZH_Q, lambda h: "三十天" in h.text)]
    return [next((i for i, h in enumerate(bot.kb.search(q, k=5, mode="hybrid"), 1) if ok(h)), None)
            for q, ok in checks]


def test_evaluate_four_systems_exact_table_json_markdown_png(assistant_kb: Path, gold_file: Path,  # noqa: F811
                                                             tmp_path: Path) -> None:
    backend = SystemsBackend()
    bot = Assistant(kb=assistant_kb, backend=backend, adapter=str(fake_adapter(tmp_path / "adapter")), k=5)
    cfg = EvalConfig(data=(gold_file,), out=tmp_path / "eval" / "results.json", plot=tmp_path / "eval" / "bars.png")
    result = run_eval(cfg, bot)
    assert result.systems == SYSTEMS and result.skipped == {} and result.items == 4
    for system, figures in EXPECTED.items():
        got = result.results[system]
        assert (got["items"], got["answerable"], got["distractor"], got["errors"]) == (4, 3, 1, 0)
        for name, want in zip(FIGURES, figures):
            assert got[name] == (None if want is None else pytest.approx(want)), (system, name)
        assert got["cited_answers"] == ({"base+rag": 2, "adapter+rag": 2}.get(system))
        assert all(got["timings"][s]["mean"] is not None for s in ("prompt_s", "generation_s", "total_s"))
    assert result.results["base+rag"]["timings"]["retrieval_s"]["mean"] > 0
    assert result.results["base"]["timings"]["retrieval_s"]["mean"] is None  # closed-book: no retrieval
    # one warm-up per adapter setting, then 4 questions x 4 systems; greedy throughout
    assert [c[0] for c in backend.calls].count("warm-up") == 2 and len(backend.calls) == 2 + 16
    assert all(p.temperature == 0.0 for _, p in backend.calls)

    ranks = expected_ranks(bot)
    assert [r.rank for r in result.retrieval_rows] == ranks and None not in ranks
    assert [r.rule for r in result.retrieval_rows] == ["page", "doc", "answer"]
    assert result.retrieval["hit@1"] == pytest.approx(sum(r == 1 for r in ranks) / 3)
    assert result.retrieval["hit@5"] == 1.0 and result.retrieval["mrr"] == pytest.approx(sum(1 / r for r in ranks) / 3)
    assert [(p.source, p.reason) for p in result.problems] == [(f"{gold_file}:5", "bad gold field")]

    data = json.loads(cfg.out.read_text(encoding="utf-8"))
    assert data["results"]["base+rag"]["citation_precision"] == pytest.approx(0.75)
    assert len(data["rows"]) == 16 and data["closed_book_prompt"] == CLOSED_BOOK_PROMPT
    assert "api_key" not in data["config"] and data["problems"][0]["source"].endswith(":5")
    md = cfg.markdown_path.read_text(encoding="utf-8")
    assert "| base+rag | 66.7 | 85.7 | 100.0 | 75.0 (2 cited) | 33.3 | 100.0 | 0.0 | 0 |" in md
    assert "| base | 33.3 | 33.3 | 33.3 | – | – | 0.0 | 33.3 | 0 |" in md
    assert "gold page (doc + page): 1" in md and f"{gold_file}:5" in md
    assert "| hit@1 % | hit@3 % | hit@5 % | MRR |" in md
    png = cfg.plot.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000


def test_without_adapter_only_base_systems_run_and_the_table_says_why(assistant_kb: Path, gold_file: Path,  # noqa: F811
                                                                      tmp_path: Path) -> None:
    bot = Assistant(kb=assistant_kb, backend=SystemsBackend(), k=5)
    result = run_eval(EvalConfig(data=(gold_file,), out=tmp_path / "r.json", limit=2), bot)
    assert result.systems == ("base", "base+rag") and result.items == 2
    assert result.results["base"]["answerable"] == 2 and result.results["base"]["abstention_correct"] is None
    md = (tmp_path / "r.md").read_text(encoding="utf-8")
    assert "Not run: adapter (no --adapter given)." in md and "Not run: adapter+rag (no --adapter given)." in md
    with pytest.raises(ConfigError, match="no usable gold question"):
        run_eval(EvalConfig(data=(tmp_path / "missing.jsonl",), out=tmp_path / "r.json"), bot)


# -- the CLI, end to end with a tiny Qwen3 and a random LoRA --------------------------------------
def random_lora(model_dir: Path, out: Path) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(model_dir)),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    model.save_pretrained(out)
    return out


def test_cli_runs_four_systems_end_to_end(assistant_kb: Path, tiny_qwen3: Path, gold_file: Path,  # noqa: F811
                                          tmp_path: Path) -> None:
    from ui.cli.assistant import app

    with gold_file.open("a", encoding="utf-8") as f:
        f.write(json.dumps({"question": "What is the parking rule?", "answer": "one year", "doc": "nosuch.pdf"}) + "\n")
    adapter = random_lora(tiny_qwen3, tmp_path / "lora")
    out = tmp_path / "eval" / "results.json"
    args = ["eval", "--kb", str(assistant_kb), "--model", str(tiny_qwen3), "--adapter", str(adapter),
            "--data", str(gold_file), "--out", str(out), "--plot", str(tmp_path / "eval" / "bars.png"),
            "--max-new-tokens", "4", "--condense", "off", "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["systems"] == list(SYSTEMS) and len(data["rows"]) == 4 * 5 and data["items"] == 5
    assert {r["error"] for r in data["rows"]} == {None} and data["load_s"] > 0
    assert data["retrieval"]["items"] == 4 and data["retrieval"]["rules"] == {"page": 1, "doc": 2, "answer": 1}
    assert [p["reason"] for p in data["problems"]] == ["bad gold field", "unknown gold doc"]
    assert "warning:" in result.output and "nosuch.pdf" in result.output and "| adapter+rag |" in result.output
    base = {r["question"]: r["text"] for r in data["rows"] if r["system"] == "base"}
    tuned = {r["question"]: r["text"] for r in data["rows"] if r["system"] == "adapter"}
    assert base != tuned  # the random adapter changes the greedy answers: it was on for one, off for the other
    assert (out.with_suffix(".md")).is_file() and (tmp_path / "eval" / "bars.png").stat().st_size > 0
    bad = CliRunner().invoke(app, ["eval", "--kb", str(assistant_kb), "--data", str(gold_file), "--systems",
                                   "adapter", "--out", str(out)])
    assert bad.exit_code == 2 and "needs --adapter" in bad.output


def test_assistant_help_lists_eval_without_heavy_imports(cli_help) -> None:
    out, heavy = cli_help("ui.cli.assistant", ["--help"], ["eval", "--help"])
    for needle in ("eval", "--data", "--systems", "--plot", "--limit", "--adapter", "--kb"):
        assert needle in out, needle
    assert heavy == []
