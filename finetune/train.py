"""``finetune train``: data files -> LoRA adapter folder (PEFT format) with tokenizer, chat template, run card.

Stages: preflight checks (all problems at once) -> data stage (:func:`finetune.data.prepare`) ->
tokenizer and one tokenized example per assistant turn (:mod:`finetune.template`) -> SFTConfig ->
base model -> TRL SFTTrainer (:class:`finetune.trainer.AssistantSFTTrainer`) -> adapter +
``run_card.json``.
Multi-GPU is the same entry point under ``accelerate launch`` or ``torchrun``: every process runs
all stages (data parallelism); the main process reads the data and tokenizer first and is the only
one that prints, logs and writes the adapter and run card; the run card records the world size
and the adapter digest of every process (:func:`finetune.trainer.replica_digests`).

Example:
    >>> from finetune.config import TrainConfig
    >>> result = train(TrainConfig(data=("qa.jsonl",), model="./Qwen3-0.6B", max_steps=20))  # doctest: +SKIP
    >>> result.adapter_dir, result.metrics["eval_loss"]  # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune.config import TrainConfig
from finetune.errors import ConfigError, FinetuneError
from finetune.loading import (
    check_4bit,
    load_model,
    load_tokenizer,
    model_source,
    resolve_device,
    resolve_precision,
)
from finetune.runcard import write_run_card
from finetune.template import Encoded, encode_all, ensure_chat_template
from finetune.train_errors import MissingDependency, NoTrainingData, RunError


@dataclass(frozen=True)
class TrainResult:
    """Where the adapter went, and the figures also written to its run_card.json."""

    adapter_dir: Path
    metrics: dict[str, float]
    run_card: dict[str, Any]
    main_process: bool = True  # False in the other processes of a multi-process run: they report nothing


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def _last_checkpoint(output_dir: str) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(output_dir) if Path(output_dir).is_dir() else None


def _output_problem(config: TrainConfig) -> str | None:
    out = Path(config.output_dir)
    if config.resume:
        if _last_checkpoint(config.output_dir) is None:
            return (f"--resume: {out} holds no checkpoint-N folder to continue from; run without --resume "
                    "to start, or point --output-dir at the interrupted run")
        return None
    taken = out.is_dir() and (any(out.glob("checkpoint-*")) or (out / "adapter_config.json").exists())
    if taken:
        return (f"--output-dir {out} already holds a training run; pass --resume to continue it, or choose "
                "another --output-dir (nothing is overwritten)")
    return None


def _preflight(config: TrainConfig) -> None:
    """Every check that needs no model or data loading; raises once with all problems."""
    from trl import SFTConfig

    problems: list[FinetuneError] = []
    unknown = sorted(set(config.trl) - {f.name for f in dataclasses.fields(SFTConfig)})
    if unknown:
        problems.append(ConfigError(f"trl options {unknown} are not trl.SFTConfig fields; see "
                                    "https://huggingface.co/docs/trl/sft_trainer#trl.SFTConfig"))
    if config.report_to != "none" and not _installed(config.report_to):
        problems.append(MissingDependency(config.report_to, f"--report-to {config.report_to}"))
    missing = [f for f in (*config.data, *config.val_data) if not Path(f).is_file()]
    if missing:
        problems.append(ConfigError(f"data files not found: {', '.join(missing)}"))
    if (msg := _output_problem(config)) is not None:
        problems.append(RunError(msg))
    checks = [lambda: model_source(config.model),
              lambda: resolve_precision(config.precision, resolve_device(config.device))]
    if config.load_in_4bit:
        checks.append(check_4bit)
    for check in checks:
        try:
            check()
        except FinetuneError as err:
            problems.append(err)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise RunError("\n".join(str(p) for p in problems))


def _prepare_data(config: TrainConfig) -> Any:
    from finetune.data import prepare

    return prepare([Path(f) for f in config.data], system=config.system, system_override=config.system_override,
                   strict=config.strict, dedup=config.dedup, min_chars=config.min_chars,
                   max_chars=config.max_chars, scrub_pii=config.scrub_pii, val_ratio=config.val_ratio,
                   val_files=[Path(f) for f in config.val_data], seed=config.seed,
                   thinking=config.thinking)


def _dataset(encoded: Encoded) -> Any:
    from datasets import Dataset

    return Dataset.from_dict({"input_ids": [list(e.input_ids) for e in encoded.examples],
                              "labels": [list(e.labels) for e in encoded.examples]})


def sft_kwargs(config: TrainConfig, *, device: str, precision: str, has_eval: bool) -> dict[str, Any]:
    """trl.SFTConfig keyword arguments of a TrainConfig on a device (the [trl] options passed through last)."""
    checkpointing = device != "cpu" if config.gradient_checkpointing is None else config.gradient_checkpointing
    evaluate = has_eval and config.eval_steps > 0
    best = evaluate and config.early_stopping_patience > 0
    return dict(
        output_dir=config.output_dir, num_train_epochs=config.epochs, max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size, per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum, learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler, warmup_steps=float(config.warmup_ratio),
        logging_steps=config.logging_steps, eval_strategy="steps" if evaluate else "no",
        eval_steps=config.eval_steps if evaluate else None, save_strategy="steps", save_steps=config.save_steps,
        save_total_limit=config.save_total_limit, report_to=[] if config.report_to == "none" else [config.report_to],
        seed=config.seed, use_cpu=device == "cpu", bf16=precision == "bf16", fp16=precision == "fp16",
        gradient_checkpointing=checkpointing, packing=config.batching == "packed",
        padding_free=config.batching == "padding_free",
        # Examples arrive tokenized and cut to max_length; packing needs it as the row length.
        max_length=config.max_length if config.batching == "packed" else None,
        load_best_model_at_end=best, metric_for_best_model="eval_loss" if best else None,
        greater_is_better=False if best else None,
        # Several processes: the sampler's seed is fixed here rather than read from torch's global seed,
        # which ReplicaSeed makes differ per rank; replicas log errors only (the main process reports).
        data_seed=config.seed, log_level_replica="error") | dict(config.trl)


def sft_config(config: TrainConfig, *, device: str, precision: str, has_eval: bool) -> Any:
    """trl.SFTConfig of a TrainConfig (see :func:`sft_kwargs`)."""
    from trl import SFTConfig

    kwargs = sft_kwargs(config, device=device, precision=precision, has_eval=has_eval)
    if "activation_checkpointing" in {f.name for f in dataclasses.fields(SFTConfig)}:  # transformers >= 5.23 name
        kwargs["activation_checkpointing"] = kwargs.pop("gradient_checkpointing")
    return SFTConfig(**kwargs)


def _build_trainer(config: TrainConfig, args: Any, model: Any, tok: Any, train_set: Encoded,
                   val_set: Encoded, callbacks: Sequence[Any]) -> Any:
    from transformers import EarlyStoppingCallback
    from transformers.trainer_callback import ProgressCallback

    from finetune.lora import lora_config
    from finetune.trainer import AssistantSFTTrainer, ReplicaSeed, TrainProgress

    if config.load_in_4bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=args.gradient_checkpointing)
    extra = [EarlyStoppingCallback(config.early_stopping_patience)] if args.load_best_model_at_end else []
    trainer = AssistantSFTTrainer(
        model=model, args=args, train_dataset=_dataset(train_set),
        eval_dataset=_dataset(val_set) if args.eval_strategy != "no" else None, processing_class=tok,
        peft_config=lora_config(config, model), callbacks=[*extra, ReplicaSeed(), *callbacks])
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(TrainProgress())
    return trainer


def _report_env(config: TrainConfig) -> None:
    if config.report_to == "swanlab":  # offline: logs under the run folder, no account or network needed
        os.environ.setdefault("SWANLAB_MODE", "offline")
        os.environ.setdefault("SWANLAB_LOG_DIR", str(Path(config.output_dir) / "swanlog"))


def _final_metrics(trainer: Any, output: Any, has_eval: bool) -> dict[str, float]:
    import math

    metrics = {k: float(v) for k, v in output.metrics.items() if isinstance(v, (int, float))}
    seen = [h["num_tokens"] for h in trainer.state.log_history if "num_tokens" in h]
    if seen and metrics.get("train_runtime"):
        metrics["train_tokens"] = float(seen[-1])
        metrics["train_tokens_per_second"] = seen[-1] / metrics["train_runtime"]
    metrics["global_step"] = float(trainer.state.global_step)
    if has_eval:
        ev = trainer.evaluate()
        metrics["eval_loss"] = float(ev["eval_loss"])
        metrics["eval_perplexity"] = math.exp(min(ev["eval_loss"], 50.0))
    return metrics


def _summary(name: str, encoded: Encoded, say: Callable[[str], None]) -> None:
    say(f"{name}: {len(encoded.examples)} examples, {encoded.tokens} tokens ({encoded.trained_tokens} trained)"
        + (f", {encoded.truncated} cut to max_length" if encoded.truncated else ""))
    for p in encoded.problems[:10]:
        say(f"  skipped: {p.detail}")
    if len(encoded.problems) > 10:
        say(f"  ... and {len(encoded.problems) - 10} more skipped")


def _silent(_: str) -> None:
    return None


def _start_processes(device: str) -> Any:
    """This process's accelerate PartialState (joins the process group under torchrun / accelerate launch).

    Started before the data stage so the main process can go first through it and be the only one
    that reports. The other processes are silenced: their logs, warnings and progress bars would
    repeat the main process's line for line.
    """
    from accelerate import PartialState

    # cpu=True as TrainingArguments(use_cpu=True) will ask: gloo rather than a GPU backend.
    state = PartialState(cpu=device == "cpu")
    if not state.is_main_process:
        import warnings

        import datasets
        import huggingface_hub.utils
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        datasets.disable_progress_bars()
        huggingface_hub.utils.disable_progress_bars()
        warnings.simplefilter("ignore")
    return state


@dataclass(frozen=True)
class _Data:
    report: Any  # finetune.data.DataReport
    tok: Any
    template_notice: str | None
    train_set: Encoded
    val_set: Encoded


def _data_stage(config: TrainConfig, say: Callable[[str], None]) -> _Data:
    """Records -> report, tokenizer, encoded train / validation sets; NoTrainingData when nothing is left."""
    report = _prepare_data(config)
    say(report.render())
    tok = load_tokenizer(config.model)
    notice = ensure_chat_template(tok)
    if notice:
        say(f"note: {notice}")
    encode = dict(thinking=config.thinking, max_length=config.max_length)
    train_set, val_set = encode_all(tok, report.train, **encode), encode_all(tok, report.validation, **encode)
    _summary("train", train_set, say)
    _summary("validation", val_set, say)
    if not train_set.examples:
        raise NoTrainingData(f"no training example left from {', '.join(config.data)}; see the problems above")
    return _Data(report, tok, notice, train_set, val_set)


def _main_first(state: Any, stage: Callable[[], Any]) -> Any:
    """``stage()`` in the main process, then in the others (a hub tokenizer is downloaded once, the data
    report printed before the others start). An error is raised only once past the barrier, so the
    other processes run into the same error themselves instead of a barrier broken by a dead process."""
    failure: Exception | None = None
    with state.main_process_first():
        try:
            result = stage()
        except Exception as err:  # noqa: BLE001 - raised again just below
            failure = err
    if failure is not None:
        raise failure
    return result


def _check_replicas(digests: list[str] | None) -> None:
    if digests and len(set(digests)) > 1:
        raise RunError(f"the {len(digests)} training processes ended with different adapter weights (sha256 by "
                       f"rank: {', '.join(d[:12] for d in digests)}); data-parallel training went out of step, "
                       "so the saved adapter (rank 0's) is not the jointly trained one: rerun with one process")


def train(config: TrainConfig, *, callbacks: Sequence[Any] = (), say: Callable[[str], None] = print) -> TrainResult:
    """Fine-tune a LoRA adapter as configured; ``callbacks`` are extra transformers TrainerCallbacks."""
    from finetune.trainer import replica_digests

    _preflight(config)
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    state = _start_processes(device)
    main = state.is_main_process
    say = say if main else _silent
    data = _main_first(state, lambda: _data_stage(config, say))
    _report_env(config)
    # The training arguments exist before the model loads: under DeepSpeed ZeRO-3 from_pretrained then
    # partitions the weights across GPUs as it reads them instead of materialising the model on every rank.
    args = sft_config(config, device=device, precision=precision, has_eval=bool(data.val_set.examples))
    model = load_model(config.model, device=device, precision=precision, load_in_4bit=config.load_in_4bit,
                       place=False)  # the Trainer puts it on this process's device
    trainer = _build_trainer(config, args, model, data.tok, data.train_set, data.val_set, callbacks)
    say(f"training on {device} ({precision}) in {args.world_size} process(es), output {config.output_dir}")
    output = trainer.train(resume_from_checkpoint=_last_checkpoint(config.output_dir) if config.resume else None)
    metrics = _final_metrics(trainer, output, has_eval=trainer.eval_dataset is not None)
    digests = replica_digests(trainer)
    trainer.save_model(config.output_dir)  # adapter_config.json + adapter weights + tokenizer + chat template
    card = write_run_card(config, trainer=trainer, report=data.report, sets=(data.train_set, data.val_set),
                          device=device, precision=precision, template_notice=data.template_notice,
                          metrics=metrics, replicas=digests)
    _check_replicas(digests)
    return TrainResult(Path(config.output_dir), metrics, card, main_process=main)
