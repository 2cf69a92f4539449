"""The `assistant` command line: ask (table / JSON), chat, serve delegation, one-line errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ui.cli.assistant import app

runner = CliRunner()


def test_ask_retrieval_only_json_and_table(assistant_kb: Path) -> None:  # noqa: F811
    args = ["ask", "How long is the warranty on company laptops?", "--kb", str(assistant_kb), "--retrieval-only",
            "-k", "2"]
    result = runner.invoke(app, args + ["--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["citations"][0]["title"] == "handbook" and answer["citations"][0]["page"] == 2
    assert answer["abstained"] is False and len(answer["sources"]) == 2
    result = runner.invoke(app, args + ["--stream"])
    assert result.exit_code == 0, result.output
    assert "[1] handbook (p. 2)" in result.output and "Sources" in result.output and "✓" in result.output


def test_errors_are_one_friendly_line(assistant_kb: Path, tmp_path: Path) -> None:  # noqa: F811
    cases = [(["--kb", str(assistant_kb), "--model", str(tmp_path / "nope")], 2, "no such folder"),
             (["--kb", str(assistant_kb), "--model", "Qwen/Qwen3-0.6B-not-cached-here"], 1, "--retrieval-only"),
             (["--kb", str(tmp_path / "nokb")], 2, "ingest add"),
             (["--kb", str(assistant_kb), "-k", "0", "--mode", "fuzzy"], 2, "mode='fuzzy'")]
    for extra, code, needle in cases:
        result = runner.invoke(app, ["ask", "What is the refund policy?", *extra])
        assert result.exit_code == code, result.output
        assert result.output.startswith("error: ") and needle in result.output and "Traceback" not in result.output


def test_chat_keeps_history_and_condenses_follow_ups(assistant_kb: Path) -> None:  # noqa: F811
    result = runner.invoke(app, ["chat", "--kb", str(assistant_kb), "--retrieval-only", "-k", "1"],
                           input="What is aspirin used for?\nWhat about its side effects?\n/exit\n")
    assert result.exit_code == 0, result.output
    assert result.output.count("Sources") == 2 and "Side effects of aspirin" in result.output


def test_serve_delegates_to_the_server_module(assistant_kb: Path,  # noqa: F811
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    server = pytest.importorskip("ui.http")
    seen = {}
    monkeypatch.setattr(server, "serve", lambda assistant, **kw: seen.update(kw, assistant=assistant))
    result = runner.invoke(app, ["serve", "--kb", str(assistant_kb), "--port", "8123", "--api-key", "s3cret",
                                 "--retrieval-only"])
    assert result.exit_code == 0, result.output
    assert (seen["host"], seen["port"], seen["api_key"]) == ("127.0.0.1", 8123, "s3cret")
    assert seen["assistant"].config.retrieval_only and seen["assistant"].config.api_key is None


def test_ui_delegates_to_the_web_app_and_creates_a_missing_kb(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    web = pytest.importorskip("ui.web.app")
    seen = {}
    monkeypatch.setattr(web, "launch", lambda assistant, **kw: seen.update(kw, assistant=assistant))
    kb = tmp_path / "new_kb"
    result = runner.invoke(app, ["ui", "--kb", str(kb), "--embedder", "hash-64", "--retrieval-only",
                                 "--port", "7999"])
    assert result.exit_code == 0, result.output
    assert (kb / "kb.sqlite").is_file() and "created an empty knowledge base" in result.output
    assert (seen["kb_dir"], seen["port"], seen["max_upload_mb"]) == (kb, 7999, 100.0)
    assert seen["assistant"].config.retrieval_only and seen["assistant"].config.k == 5  # AssistantConfig's default


def test_a_declined_question_says_why(assistant_kb: Path) -> None:  # noqa: F811
    result = runner.invoke(app, ["ask", "What is the refund policy?", "--kb", str(assistant_kb), "--retrieval-only",
                                 "--abstain-threshold", "0.999"])
    assert result.exit_code == 0, result.output
    assert "declined without asking the model: best chunk cosine" in " ".join(result.output.split())
    data = json.loads(runner.invoke(app, ["ask", "What is the refund policy?", "--kb", str(assistant_kb),
                                          "--retrieval-only", "--abstain-threshold", "0.999", "--json"]).output)
    assert data["abstained"] and data["abstain_reason"].startswith("best chunk cosine")
