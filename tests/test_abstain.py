"""The decline decision (assistant/abstain.py): constructed features, the gate, and the real e5 calibration."""
from __future__ import annotations

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from assistant import abstain
from assistant.abstain import PROBES, Features, Gate, LanguageModel, decide, load_calibration, save_calibration
from assistant.config import AskOptions
from index.records import Hit

ROOT = Path(__file__).resolve().parents[1]
EN = LanguageModel(weights=(0.0, 20.0, 4.0), bias=-2.0, threshold=0.5)  # margin and coverage count
ZH = LanguageModel(weights=(0.0, 20.0, 0.0), bias=-1.0, threshold=0.5)  # margin only, and a higher bar


def hit(text: str, score: float) -> Hit:
    return Hit("c", text, score, "sha", "doc", "/docs/doc.md", 1, 1, 0, len(text))


def test_decide_per_language_on_constructed_features() -> None:
    models = {"en": EN, "zh": ZH}
    assert decide(Features("en", 0.86, 0.08, 0.5), models) == ""  # 20*.08 + 2 - 2 = 1.6 > 0
    reason = decide(Features("en", 0.80, 0.0, 0.25), models)
    assert reason.startswith("off-topic for these documents (en: p=0.27 < 0.50") and "25% of its terms" in reason
    # The same margin answers in English and declines in Chinese: the bar is per language.
    assert decide(Features("en", 0.85, 0.03, 0.5), models) == ""
    assert "zh: p=0.40" in decide(Features("zh", 0.85, 0.03, 0.5), models)
    assert decide(Features("zh", 0.85, -0.2, 0.0), {"en": EN}) == ""  # no model for the language: answered


class ProbeKB:
    """A knowledge base with one chunk: the dense cosine of a query is given per query, probes score ``probe``."""

    def __init__(self, cosines: dict[str, float], probe: float, embedder: str = "fake-emb") -> None:
        self.cosines, self.probe = cosines, probe
        self.embedder, self.config, self.searches = type("Embedder", (), {"name": embedder})(), None, []

    def search(self, query: str, k: int | None = None, mode: str | None = None) -> list[Hit]:
        self.searches.append((query, mode))
        return [hit("The warranty lasts two years.", self.cosines.get(query, self.probe))]


@pytest.fixture()
def calibrated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(abstain, "CALIBRATION_DIR", tmp_path)
    load_calibration.cache_clear()
    save_calibration(abstain.calibration_path("fake-emb"), "fake-emb", {"en": EN, "zh": ZH})
    yield
    load_calibration.cache_clear()


def test_gate_uses_the_margin_over_this_kbs_probes(calibrated: None) -> None:
    kb = ProbeKB({"How long is the warranty?": 0.90, "Who won the cup?": 0.81, "保修期多长？": 0.88}, probe=0.80)
    gate = Gate(kb)
    for question, answered in (("How long is the warranty?", True), ("Who won the cup?", False)):
        assert (gate.reason(question, kb.search(question), "dense", None, -1.0) == "") is answered, question
    features = gate.features("保修期多长？", kb.search("保修期多长？"), "hybrid")
    assert features.language == "zh" and features.margin == pytest.approx(0.08) and features.cosine == 0.88
    probe_searches = [q for q, _ in kb.searches if q in PROBES["en"] + PROBES["zh"]]
    assert sorted(probe_searches) == sorted(PROBES["en"] + PROBES["zh"])  # each probe once, then kept in memory
    # The same question over a knowledge base whose probes score higher is declined: the margin adapts.
    high = ProbeKB({"How long is the warranty?": 0.90}, probe=0.92)
    question = "How long is the warranty?"
    assert Gate(high).reason(question, high.search(question), "dense", None, -1.0).startswith("off-topic")


def test_override_and_uncalibrated_embedders_keep_the_cosine_rule(calibrated: None) -> None:
    kb = ProbeKB({"Who won the cup?": 0.81}, probe=0.80)
    gate = Gate(kb)
    assert gate.reason("Who won the cup?", [], "dense", None, -1.0) == "no passage was retrieved"
    hits = kb.search("Who won the cup?")
    assert gate.reason("Who won the cup?", hits, "dense", 0.5, -1.0) == ""  # the override wins over the model
    assert gate.reason("Who won the cup?", hits, "dense", 0.82, -1.0) == "best chunk cosine 0.810 < threshold 0.820"
    other = Gate(ProbeKB({}, probe=0.80, embedder="other-emb"))  # no calibration file: the plain rule
    assert other.reason("Who won the cup?", hits, "dense", None, -1.0) == ""  # never declines by default
    assert other.reason("Who won the cup?", hits, "dense", None, 0.9) == "best chunk cosine 0.810 < threshold 0.900"


def test_a_users_own_calibration_wins_over_the_shipped_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bench/abstain_calibration.py writes to the user's folder (never into the installed package) and the
    assistant looks there first."""
    shipped, own = tmp_path / "package", tmp_path / "user"
    shipped.mkdir()
    monkeypatch.setattr(abstain, "CALIBRATION_DIR", shipped)
    monkeypatch.setenv("QDA_CALIBRATION_DIR", str(own))
    load_calibration.cache_clear()
    try:
        save_calibration(abstain.calibration_path("emb"), "emb", {"en": EN})
        assert load_calibration("emb") == {"en": EN} and abstain.find_calibration("emb").parent == shipped
        own.mkdir()
        save_calibration(abstain.calibration_path("emb", abstain.user_calibration_dir()), "emb", {"zh": ZH})
        load_calibration.cache_clear()
        assert load_calibration("emb") == {"zh": ZH} and abstain.find_calibration("emb").parent == own
    finally:
        load_calibration.cache_clear()


def test_shipped_calibration_of_the_default_embedder_loads() -> None:
    body = json.loads(abstain.calibration_path("multilingual-e5-small").read_text(encoding="utf-8"))
    assert body["probes_sha"] == abstain.probes_sha(), "PROBES changed: rerun bench/abstain_calibration.py"
    models = load_calibration("multilingual-e5-small")
    assert set(models) == {"zh", "en"} and all(0 < m.threshold < 1 and len(m.weights) == 3 for m in models.values())
    assert load_calibration("/models/multilingual-e5-small") == models  # a model path: its last part counts


def test_the_reason_reaches_json_and_the_server() -> None:
    from assistant.records import Answer
    from ui.cli.assistant import answer_json
    from ui.http import extra_fields

    declined = Answer(text="文档中没有包含这方面的信息。", abstained=True,
                      abstain_reason="off-topic for these documents")
    assert json.loads(answer_json(declined))["abstain_reason"] == "off-topic for these documents"
    assert extra_fields(declined)["abstain_reason"] == "off-topic for these documents"
    assert extra_fields(Answer(text="Yes [1]."))["abstain_reason"] == ""


# -- integration: a stand-in model behind the OpenAI API, over the demo documents with e5 ----------------------
class StandIn(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat endpoint that always answers with a citation; counts its requests."""

    requests: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        StandIn.requests.append(body)
        reply = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                 "choices": [{"index": 0, "finish_reason": "stop",
                              "message": {"role": "assistant", "content": "According to the documents [1]."}}],
                 "usage": {"prompt_tokens": 10, "completion_tokens": 6, "total_tokens": 16}}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def stand_in_model() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        thread.join(timeout=10)


ANSWERABLE = ["带薪年假有几天？", "出差住宿标准是多少？", "How long is the warranty on the vacuum?",
              "What is the restocking fee for an opened product?"]
OFF_TOPIC = ["北京今天天气怎么样？", "怎么做红烧肉？", "去美国旅游需要办什么签证？",
             "How do I make pizza dough?", "Who won the football match last night?"]


@pytest.mark.integration
def test_stand_in_model_is_asked_only_what_the_demo_documents_hold(tmp_path: Path) -> None:
    from assistant.answer import Assistant
    from index.kb import KnowledgeBase

    with KnowledgeBase.open(tmp_path / "kb") as kb:  # the default embedder: multilingual-e5-small
        assert kb.add(sorted((ROOT / "demo" / "docs").iterdir())).ok
    StandIn.requests = []
    with stand_in_model() as url:
        bot = Assistant(kb=tmp_path / "kb", model="stand-in", endpoint=url, condense="off")
        for question in OFF_TOPIC:
            answer = bot.ask(question)
            assert answer.abstained and answer.abstain_reason.startswith("off-topic"), (question, answer)
        assert StandIn.requests == []
        for question in ANSWERABLE:
            answer = bot.ask(question)
            assert not answer.abstained and answer.abstain_reason == "", (question, answer.abstain_reason)
            assert [c.number for c in answer.citations] == [1]
        assert len(StandIn.requests) == len(ANSWERABLE)
        override = bot.ask("北京今天天气怎么样？", options=AskOptions(abstain_threshold=-1))
        assert not override.abstained  # --abstain-threshold -1: the plain rule, never declines
        bot.close()
