"""``finetune eval`` shows a progress bar per pass (base, adapter) on stderr, one step per record; stdout is
the same with and without it (--no-progress). A tiny random Qwen3 with an untrained LoRA adapter."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RECORDS = [("What is the capital of France?", "Paris."), ("Who wrote Hamlet?", "Shakespeare."),
           ("Color of the sky?", "Blue.")]


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from finetune.tiny import build_tiny_qwen3

    root = tmp_path_factory.mktemp("eval-progress")
    base = build_tiny_qwen3(root / "base", hidden=32)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
    model.save_pretrained(root / "adapter")
    return root / "adapter"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("eval-data") / "qa.jsonl"
    path.write_text("\n".join(json.dumps({"instruction": q, "input": "", "output": a}) for q, a in RECORDS),
                    encoding="utf-8")
    return path


def test_progress_goes_to_stderr_and_stdout_is_unchanged(adapter: Path, data: Path) -> None:
    from ui.cli.finetune import app

    args = ["eval", "--adapter", str(adapter), "--data", str(data), "--max-new-tokens", "2", "--device", "cpu"]
    shown, quiet = CliRunner().invoke(app, args), CliRunner().invoke(app, [*args, "--no-progress"])
    assert shown.exit_code == 0 and quiet.exit_code == 0, (shown.output, quiet.output)
    for bar in ("base", "adapter"):  # one bar per pass, counting the records
        assert re.search(rf"{bar}: 100%.*\b3/3 ", shown.stderr), shown.stderr
        assert f"{bar}:" not in shown.stdout
    assert "base:" not in quiet.stderr and "adapter:" not in quiet.stderr
    assert shown.stdout == quiet.stdout
    assert "3 records" in shown.stdout and "ROUGE-L" in shown.stdout
