"""Bench: is `finetune train` faster than the tutorial recipe, at no more memory and no worse loss?

Question: trained tokens per second, peak memory and validation loss of ``finetune train``
(TRL SFTTrainer, padding-free batches, LM head on labelled positions only) against the Qwen3 LoRA
tutorial recipe (self-llm: transformers Trainer + DataCollatorForSeq2Seq padding, per-device batch
4, gradient accumulation 4, max length 384), same LoRA (r 8, alpha 32, dropout 0.1, q/k/v/o/gate/
up/down), same base model, same learning rate and linear schedule, on the same huanhuan.json records
rendered by the same chat template into identical token ids and labels; one epoch each, so both see
the same tokens. Each recipe runs in its own process (peak RSS = VmHWM of that process, model
included). Validation loss: mean cross-entropy per answer token on held-out records, both models
scored by the same function. Both run without gradient checkpointing (the CPU default of
`finetune train`; the tutorial's GPU setting would trade time for memory in the baseline only).

Time is measured twice per step: wall clock, and CPU seconds of the recipe's own process, which
other load on a shared machine does not inflate (with ``--threads 1``; more threads add OpenMP
spin-waiting to it). The first step (warm-up) is left out of both.

Models: the real gemma-3-270m from ../shared/tools/offline-lm.py (reported figure; its tokenizer
has no chat template, so both recipes use the ChatML fallback), or ``--tiny`` (random 2-layer
Qwen3 with the real Qwen3 tokenizer, CI speed).

    nice -n 10 .venv/bin/python bench/finetune.py --threads 1     # gemma-3-270m, 96 records, 6 steps
    .venv/bin/python bench/finetune.py --tiny --records 32        # ~1 minute
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT.parent / "shared" / "data" / "sft" / "huanhuan.json"
GEMMA = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "offline-lm" / "gemma-3-270m"
SYSTEM = "现在你要扮演皇帝身边的女人--甄嬛"  # the tutorial's system prompt
BATCH, ACCUM, MAX_LENGTH, LR = 4, 4, 384, 1e-4


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def make_clock():
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        """Step end times, peak RSS and the trained model at the end of training."""

        def __init__(self) -> None:
            self.ends: list[float] = []
            self.cpu: list[float] = []  # process CPU seconds: what the recipe itself spent, whatever else runs
            self.model = None
            self.rss = float("nan")

        def on_step_end(self, args, state, control, **kwargs):
            self.ends.append(time.perf_counter())
            self.cpu.append(time.process_time())

        def on_train_end(self, args, state, control, model=None, **kwargs):
            self.rss, self.model = peak_rss_mb(), model

    return Clock()


def load_examples(spec: dict):
    """Identical tokenized train / validation examples for both recipes (finetune's data stage + template)."""
    from finetune.data import prepare
    from finetune.loading import load_tokenizer
    from finetune.template import encode_all, ensure_chat_template

    tok = load_tokenizer(spec["model"])
    ensure_chat_template(tok)
    report = prepare([Path(spec["train"])], val_files=[Path(spec["val"])], system=SYSTEM, dedup=False)
    enc = dict(thinking="off", max_length=MAX_LENGTH)
    return tok, encode_all(tok, report.train, **enc), encode_all(tok, report.validation, **enc)


def result(clock, train_set, val_set, extra: dict) -> dict:
    from finetune.evaluate import token_loss

    steps = len(clock.ends)
    per_step = (clock.ends[-1] - clock.ends[0]) / (steps - 1) if steps > 1 else float("nan")
    cpu_per_step = (clock.cpu[-1] - clock.cpu[0]) / (steps - 1) if steps > 1 else float("nan")
    clock.model.eval()
    return {"steps": steps, "s_per_step": per_step, "cpu_s_per_step": cpu_per_step, "tokens": train_set.tokens,
            "trained_tokens": train_set.trained_tokens, "peak_rss_mb": clock.rss,
            "val_loss": token_loss(clock.model, val_set.examples), **extra}


def run_tutorial(spec: dict) -> dict:
    """The tutorial recipe: Trainer + DataCollatorForSeq2Seq(padding=True), full-logits loss."""
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments, set_seed

    from finetune.loading import load_model

    tok, train_set, val_set = load_examples(spec)
    ds = Dataset.from_dict({"input_ids": [list(e.input_ids) for e in train_set.examples],
                            "attention_mask": [[1] * len(e.input_ids) for e in train_set.examples],
                            "labels": [list(e.labels) for e in train_set.examples]})
    model = load_model(spec["model"], device="cpu", precision="fp32")
    set_seed(42)  # as SFTTrainer does before it adds the adapter: the same LoRA initialisation in both recipes
    model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=32, lora_dropout=0.1,
                                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                             "gate_proj", "up_proj", "down_proj"]))
    pads = {"real": 0, "total": 0}
    seq2seq = DataCollatorForSeq2Seq(tokenizer=tok, padding=True)

    def collate(rows):
        batch = seq2seq(rows)
        pads["real"] += int(batch["attention_mask"].sum())
        pads["total"] += batch["attention_mask"].numel()
        return batch

    args = TrainingArguments(output_dir=spec["out"] + "/tutorial", per_device_train_batch_size=BATCH,
                             gradient_accumulation_steps=ACCUM, max_steps=spec["steps"], learning_rate=LR,
                             lr_scheduler_type="linear", logging_steps=1, save_strategy="no", report_to=[],
                             use_cpu=True, seed=42, disable_tqdm=True)
    clock = make_clock()
    Trainer(model=model, args=args, train_dataset=ds, data_collator=collate, callbacks=[clock]).train()
    return result(clock, train_set, val_set, {"padding": 1 - pads["real"] / max(pads["total"], 1)})


def run_ours(spec: dict) -> dict:
    """`finetune train` itself (the function the CLI calls), with the tutorial's batch / LoRA / schedule."""
    from finetune.config import TrainConfig
    from finetune.train import train

    _, train_set, val_set = load_examples(spec)
    config = TrainConfig(data=(spec["train"],), val_data=(spec["val"],), model=spec["model"], system=SYSTEM,
                         dedup=False, output_dir=spec["out"] + "/ours", max_steps=spec["steps"], batch_size=BATCH,
                         grad_accum=ACCUM, max_length=MAX_LENGTH, learning_rate=LR, lr_scheduler="linear",
                         warmup_ratio=0.0, eval_steps=0, save_steps=10_000, logging_steps=1)
    clock = make_clock()
    train(config, callbacks=[clock], say=lambda _: None)
    return result(clock, train_set, val_set, {"padding": 0.0})


def write_subset(folder: Path, records: int, val_records: int) -> tuple[Path, Path]:
    rows = json.loads(DATA.read_text(encoding="utf-8"))
    train, val = folder / "train.json", folder / "val.json"
    train.write_text(json.dumps(rows[:records], ensure_ascii=False), encoding="utf-8")
    val.write_text(json.dumps(rows[-val_records:], ensure_ascii=False), encoding="utf-8")
    return train, val


def worker(recipe: str, spec: dict) -> dict:
    """Run one recipe in a fresh process so that its peak memory is its own."""
    cmd = [sys.executable, __file__, "--worker", recipe, "--spec", json.dumps(spec)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if spec.get("threads"):
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(spec["threads"])
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"{recipe} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(tut: dict, ours: dict, spec: dict) -> None:
    print(f"model {spec['model']}, {spec['records']} huanhuan records (+{spec['val_records']} held out), "
          f"{spec['steps']} optimizer steps of {BATCH}x{ACCUM} examples, {os.cpu_count()} CPUs, "
          f"threads {spec['threads'] or 'default'}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'':24}{'tutorial':>12}{'finetune':>12}")
    for key, label, fmt in (("s_per_step", "s / optimizer step", ".2f"), ("tok_s", "real tokens / s", ".1f"),
                            ("cpu_s_per_step", "CPU s / optimizer step", ".2f"),
                            ("tok_cpu_s", "real tokens / CPU s", ".1f"),
                            ("peak_rss_mb", "peak RSS (MB)", ".0f"), ("padding", "padding share", ".1%"),
                            ("val_loss", "validation loss", ".4f")):
        print(f"{label:24}{tut[key]:>12{fmt}}{ours[key]:>12{fmt}}")
    print(f"speed-up (tokens/s) {ours['tok_s'] / tut['tok_s']:.2f}x, per CPU second "
          f"{ours['tok_cpu_s'] / tut['tok_cpu_s']:.2f}x; peak memory ratio "
          f"{ours['peak_rss_mb'] / tut['peak_rss_mb']:.2f}; validation loss difference "
          f"{ours['val_loss'] - tut['val_loss']:+.4f} (same {tut['tokens']} tokens, {tut['trained_tokens']} trained)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="random tiny Qwen3 with the real tokenizer")
    ap.add_argument("--model", default=str(GEMMA), help="model folder (default: offline-lm's gemma-3-270m)")
    ap.add_argument("--records", type=int, default=BATCH * ACCUM * 6, help="training records (one epoch)")
    ap.add_argument("--val-records", type=int, default=32)
    ap.add_argument("--threads", type=int, help="torch threads per recipe (default: torch's, one per core)")
    ap.add_argument("--worker", choices=["tutorial", "ours"], help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        run = run_tutorial if args.worker == "tutorial" else run_ours
        print(json.dumps(run(json.loads(args.spec))))
        return
    if not DATA.is_file():
        sys.exit(f"huanhuan.json not found at {DATA}")
    with tempfile.TemporaryDirectory() as tmp:
        if args.tiny:
            from finetune.tiny import build_tiny_qwen3

            args.model = str(build_tiny_qwen3(Path(tmp) / "tiny"))
        elif not (Path(args.model) / "config.json").is_file():
            sys.exit(f"{args.model} is not a model folder; build it with: python ../shared/tools/offline-lm.py")
        train, val = write_subset(Path(tmp), args.records, args.val_records)
        spec = {"model": args.model, "train": str(train), "val": str(val), "out": tmp, "records": args.records,
                "val_records": args.val_records, "steps": max(args.records // (BATCH * ACCUM), 1),
                "threads": args.threads}
        tut, ours = worker("tutorial", spec), worker("ours", spec)
    for r in (tut, ours):
        r["tok_s"] = r["tokens"] / (r["s_per_step"] * r["steps"])
        r["tok_cpu_s"] = r["tokens"] / (r["cpu_s_per_step"] * r["steps"])
    report(tut, ours, spec)


if __name__ == "__main__":
    main()
