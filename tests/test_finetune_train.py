"""End to end on a tiny random Qwen3 with the real tokenizer: train (interrupted, resumed), memorise, reload,
merge, eval, chat, the CLI, and the errors a user meets first."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import TrainerCallback

from finetune.config import TrainConfig
from finetune.errors import FinetuneError

SYSTEM = "You are a test bot."
QA = [("What is the capital of France?", "Paris."), ("Who wrote Hamlet?", "Shakespeare."),
      ("你好吗？", "我很好，谢谢！"), ("Color of the sky?", "Blue, mostly.")]
VAL = [("Capital of Italy?", "Rome."), ("Who painted the Mona Lisa?", "Leonardo.")]
STEPS, SAVE = 28, 14


class Interrupted(Exception):
    """Raised by a callback to simulate a crash / Ctrl-C right after a checkpoint."""


class InterruptAfterSave(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise Interrupted(f"stopped after checkpoint-{self.step}")


class BeginStep(TrainerCallback):
    step: int | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.step = state.global_step


def write_alpaca(path: Path, pairs) -> Path:
    path.write_text("\n".join(json.dumps({"instruction": q, "input": "", "output": a}, ensure_ascii=False)
                              for q, a in pairs), encoding="utf-8")
    return path


def quiet(_: str) -> None:
    return None


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from finetune.tiny import build_tiny_qwen3
    from finetune.train import train

    root = tmp_path_factory.mktemp("finetune")
    base = build_tiny_qwen3(root / "base")
    base_digest = hashlib.sha256((base / "model.safetensors").read_bytes()).hexdigest()
    config = TrainConfig(
        data=(str(write_alpaca(root / "qa.jsonl", QA)),), val_data=(str(write_alpaca(root / "val.jsonl", VAL)),),
        model=str(base), output_dir=str(root / "adapter"), system=SYSTEM, max_steps=STEPS, batch_size=4,
        grad_accum=1, learning_rate=1e-2, lr_scheduler="constant_with_warmup", warmup_ratio=0.0, lora_r=8,
        lora_alpha=16, lora_dropout=0.0, modules_to_save=("lm_head",), eval_steps=SAVE, save_steps=SAVE,
        logging_steps=7)
    with pytest.raises(Interrupted):
        train(config, callbacks=[InterruptAfterSave(SAVE)], say=quiet)
    interrupted = sorted(p.name for p in (root / "adapter").iterdir())
    begin = BeginStep()
    result = train(dataclasses.replace(config, resume=True), callbacks=[begin], say=quiet)
    return SimpleNamespace(root=root, base=base, base_digest=base_digest, config=config, result=result,
                           begin_step=begin.step, interrupted=interrupted)


def test_resume_continues_from_the_saved_step(run):
    assert f"checkpoint-{SAVE}" in run.interrupted and "adapter_config.json" not in run.interrupted
    assert run.begin_step == SAVE
    assert run.result.metrics["global_step"] == STEPS
    state = json.loads((run.root / "adapter" / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())
    assert [h["step"] for h in state["log_history"] if "loss" in h] == [7, 14, 21, 28]


def test_memorises_the_training_answers(run):
    from finetune.generation import generate_reply
    from finetune.merge import load_adapted

    model, tok = load_adapted(run.root / "adapter")
    for question, answer in QA:
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
        assert generate_reply(model, tok, messages, enable_thinking=False, max_new_tokens=16) == answer


def test_base_weights_unchanged_and_adapter_is_a_standard_peft_folder(run):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert hashlib.sha256((run.base / "model.safetensors").read_bytes()).hexdigest() == run.base_digest
    base = AutoModelForCausalLM.from_pretrained(run.base)
    reference = {k: v.clone() for k, v in base.state_dict().items()}
    adapted = PeftModel.from_pretrained(base, run.root / "adapter")
    assert any("lora_A" in k for k in adapted.state_dict())
    for name, value in adapted.get_base_model().state_dict().items():
        clean = name.replace(".base_layer", "").replace(".original_module", "")
        if "lora_" in name or "modules_to_save" in name:
            continue
        torch.testing.assert_close(value, reference[clean], rtol=0, atol=0)
    folder = run.root / "adapter"
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "chat_template.jinja",
            "run_card.json"} <= {p.name for p in folder.iterdir()}
    tok = AutoTokenizer.from_pretrained(folder)
    assert "enable_thinking" in tok.chat_template  # Qwen3's own template travels with the adapter


def test_run_card(run):
    card = json.loads((run.root / "adapter" / "run_card.json").read_text(encoding="utf-8"))
    assert card["system"] == SYSTEM and card["thinking"] == "off" and card["enable_thinking"] is False
    assert card["base_model"] == str(run.base) and card["config"]["lora_r"] == 8
    digest = hashlib.sha256(Path(run.config.data[0]).read_bytes()).hexdigest()
    assert card["data"]["train_files"][0]["sha256"] == digest
    assert {"torch", "transformers", "trl", "peft"} <= set(card["versions"])
    metrics = card["metrics"]
    assert metrics["eval_perplexity"] == pytest.approx(math.exp(metrics["eval_loss"]))
    assert metrics["global_step"] == STEPS and metrics["train_tokens"] > 0
    assert card["examples"]["train"]["examples"] == 4 and card["examples"]["validation"]["examples"] == 2
    assert card["effective"]["device"] == "cpu" and card["effective"]["precision"] == "fp32"


def test_merged_model_logits_equal_adapter_logits(run):
    """fp32 throughout; tolerance 1e-5 absolute on logits (merging reorders float additions only)."""
    from transformers import AutoModelForCausalLM

    from finetune.merge import load_adapted, merge_adapter

    out = merge_adapter(run.root / "adapter", run.root / "merged")
    merged = AutoModelForCausalLM.from_pretrained(out).eval()  # a plain transformers folder: no finetune needed
    adapted, tok = load_adapted(run.root / "adapter")
    ids = torch.tensor([tok.apply_chat_template([{"role": "user", "content": QA[0][0]}], tokenize=True,
                                                add_generation_prompt=True, return_dict=True)["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=ids).logits, adapted(input_ids=ids).logits, atol=1e-5, rtol=0)
    # the base ties lm_head to the input embeddings; the trained copy is tied too, so the merged model stays tied
    assert merged.get_output_embeddings().weight.data_ptr() == merged.get_input_embeddings().weight.data_ptr()
    assert (out / "chat_template.jinja").is_file() and (out / "run_card.json").is_file()
    with pytest.raises(FinetuneError, match="not empty"):
        merge_adapter(run.root / "adapter", out)


def test_chat_streams_replies(run):
    from finetune.chat import chat

    lines = iter([QA[1][0], "/reset", QA[0][0], "/exit"])
    written: list[str] = []
    history = chat(run.root / "adapter", read=lambda prompt: next(lines), write=written.append, temperature=0.0,
                   max_new_tokens=16)
    assert history[0] == {"role": "system", "content": SYSTEM}
    assert len(history) == 3 and history[-1] == {"role": "assistant", "content": QA[0][1]}  # /reset forgot turn 1
    assert "(conversation cleared)\n" in written
    assert len(written) > 3 and "Paris." in "".join(written)


def test_ctrl_c_during_a_reply_stops_it_and_returns_to_the_prompt(run):
    import threading

    from finetune.chat import STOPPED, chat

    lines = iter([QA[0][0], QA[1][0], "/exit"])
    written: list[str] = []
    interrupted: list[str] = []

    def write(text: str) -> None:  # Ctrl-C arrives while the first piece of the first reply is shown
        if len(written) == 2 and not interrupted:
            interrupted.append(text)
            raise KeyboardInterrupt
        written.append(text)

    history = chat(run.root / "adapter", read=lambda prompt: next(lines), write=write, temperature=0.0,
                   max_new_tokens=16)
    assert written[1:4] == ["assistant> ", STOPPED, "\n"]
    assert history[1:] == [{"role": "user", "content": QA[1][0]}, {"role": "assistant", "content": QA[1][1]}]
    assert not [t for t in threading.enumerate() if t.name == "finetune-generate"]


def test_cli_train_merge_eval(run, tmp_path):
    from typer.testing import CliRunner

    from ui.cli.finetune import app

    cli, out = CliRunner(), tmp_path / "cli-adapter"
    result = cli.invoke(app, ["train", "--data", run.config.data[0], "--val-data", run.config.val_data[0],
                              "--model", str(run.base), "--output-dir", str(out), "--max-steps", "2",
                              "--batch-size", "2", "--grad-accum", "1", "--eval-steps", "1", "--save-steps", "1",
                              "--early-stopping-patience", "3", "--report-to", "tensorboard",
                              "--logging-steps", "1", "--trl", "weight_decay=0.01"])
    assert result.exit_code == 0, result.output
    assert "adapter saved to" in result.output and (out / "adapter_config.json").is_file()
    card = json.loads((out / "run_card.json").read_text(encoding="utf-8"))
    assert card["config"]["trl"] == {"weight_decay": 0.01} and card["metrics"]["global_step"] == 2
    assert list((out / "runs").glob("*/events.out.tfevents.*"))  # TensorBoard logs next to the adapter
    merged = tmp_path / "merged"
    result = cli.invoke(app, ["merge", "--adapter", str(out), "--out", str(merged)])
    assert result.exit_code == 0, result.output
    assert (merged / "config.json").is_file()
    result = cli.invoke(app, ["eval", "--adapter", str(run.root / "adapter"), "--data", run.config.data[0],
                              "--max-examples", "1", "--samples", "1", "--max-new-tokens", "6"])
    assert result.exit_code == 0, result.output
    for word in ("eval loss", "perplexity", "BLEU-4", "ROUGE-L", "Paris."):
        assert word in result.output


def test_eval_report_adapter_beats_base_on_trained_data(run):
    from finetune.evaluate import evaluate_adapter

    report = evaluate_adapter(run.root / "adapter", run.config.data, max_new_tokens=12, samples=1, say=quiet)
    assert report.examples == 4 and report.adapted["loss"] < report.base["loss"]
    # exact answers: ROUGE-L 100; BLEU-4 stays below 100 for answers shorter than 4 words (smoothed 3/4-grams)
    assert report.adapted["rouge_l"] == pytest.approx(100.0) and report.adapted["bleu4"] > report.base["bleu4"]
    assert report.samples[0].adapted == QA[0][1]


def test_existing_run_is_not_overwritten_and_all_problems_reported_at_once(run, monkeypatch):
    import finetune.train as train_module

    monkeypatch.setattr(train_module, "_installed", lambda package: False)
    bad = dataclasses.replace(run.config, report_to="swanlab", trl={"no_such_option": 1},
                              val_data=("missing.jsonl",))
    with pytest.raises(FinetuneError) as err:
        train_module.train(bad, say=quiet)
    msg = str(err.value)
    for part in ("already holds a training run", "pip install swanlab", "no_such_option", "missing.jsonl"):
        assert part in msg


def test_resume_without_checkpoint(tmp_path, run):
    from finetune.train import train

    with pytest.raises(FinetuneError, match="no checkpoint-N folder"):
        train(dataclasses.replace(run.config, output_dir=str(tmp_path / "new"), resume=True), say=quiet)


def test_offline_hub_model_error_says_how_to_use_a_local_folder(tmp_path, run, monkeypatch):
    from finetune.train import train

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = dataclasses.replace(run.config, model="no-such-org/no-such-model", output_dir=str(tmp_path / "o"))
    with pytest.raises(FinetuneError) as err:
        train(config, say=quiet)
    assert "--model ./no-such-model" in str(err.value) and "hf download" in str(err.value)


def test_qlora_needs_cuda(tmp_path, run):
    from finetune.train import train

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    with pytest.raises(FinetuneError, match="needs a CUDA GPU"):
        train(dataclasses.replace(run.config, load_in_4bit=True, output_dir=str(tmp_path / "q")), say=quiet)
