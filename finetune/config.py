"""TrainConfig: every option of ``finetune train``, validated once, up front.

CLI flags map 1:1 to the fields (``--lora-r`` is ``lora_r``); a TOML file holds the same keys
(top level) plus an optional ``[trl]`` table passed through untouched to ``trl.SFTConfig``.
Flags given on the command line override the file.

Example:
    >>> cfg = TrainConfig(data=("qa.jsonl",), max_steps=10)
    >>> cfg.thinking, cfg.lora_r, cfg.target_modules[:2]
    ('off', 8, ('q_proj', 'k_proj'))
    >>> TrainConfig(data=("qa.jsonl",), lora_r=0)
    Traceback (most recent call last):
    ...
    finetune.errors.ConfigError: lora_r must be an integer >= 1, got 0
"""
from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

from finetune.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, packaged as tomli
    import tomli as tomllib

DEFAULT_MODEL = "Qwen/Qwen3-0.6B"
# Every linear projection of a Qwen3 / Llama-style block; the MoE router ("mlp.gate") never matches.
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
THINKING = ("off", "keep")
BATCHING = ("padding_free", "packed", "padded")
SCHEDULERS = ("cosine", "linear", "constant_with_warmup")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
REPORTERS = ("none", "tensorboard", "swanlab")

# SFTConfig / TrainingArguments names this config already sets: a [trl] option may not repeat them.
OWNED_SFT_KEYS = frozenset({
    "output_dir", "num_train_epochs", "max_steps", "per_device_train_batch_size", "per_device_eval_batch_size",
    "gradient_accumulation_steps", "learning_rate", "lr_scheduler_type", "warmup_steps", "eval_strategy",
    "eval_steps", "save_strategy", "save_steps", "save_total_limit", "logging_steps", "report_to", "seed",
    "bf16", "fp16", "use_cpu", "gradient_checkpointing", "activation_checkpointing", "max_length", "packing",
    "padding_free",
    "load_best_model_at_end", "metric_for_best_model", "greater_is_better", "completion_only_loss",
    "assistant_only_loss",
})


def _help(text: str, default: Any = None, *, factory: Any = None) -> Any:
    if factory is not None:
        return field(default_factory=factory, metadata={"help": text})
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class TrainConfig:
    """Options of ``finetune train``; see each field's help (also shown by ``finetune train --help``)."""

    data: tuple[str, ...] = _help("training file(s): alpaca / ShareGPT / OpenAI messages, JSON or JSONL", ())
    val_data: tuple[str, ...] = _help("validation file(s); default: --val-ratio of the training data", ())
    model: str = _help("base model: hub id (cached), local folder, or .gguf file", DEFAULT_MODEL)
    output_dir: str = _help("adapter folder (checkpoints go in it too)", "outputs/qwen3-lora")
    system: str | None = _help("system prompt for records without one (saved in run_card.json)")
    system_override: bool = _help("replace every record's system prompt by --system", False)
    val_ratio: float = _help("share of training records held out for validation, in [0, 1)", 0.1)
    strict: bool = _help("stop at the first invalid record instead of dropping and reporting it", False)
    dedup: bool = _help("drop duplicate records", True)
    min_chars: int = _help("drop records whose assistant text is shorter (characters)", 1)
    max_chars: int | None = _help("drop records whose assistant text is longer (characters)")
    scrub_pii: bool = _help("mask phone numbers and e-mail addresses", False)
    thinking: str = _help("Qwen3 thinking: off (empty <think> block in the prompt, untrained) or keep "
                          "(records' <think>...</think> is trained)", "off")
    max_length: int = _help("max tokens per example; longer ones are cut (reported)", 1024)
    batching: str = _help("padding_free (no padding, no cross-example attention), packed, or padded",
                          "padding_free")
    lora_r: int = _help("LoRA rank", 8)
    lora_alpha: int = _help("LoRA alpha (scale = alpha / r)", 32)
    lora_dropout: float = _help("LoRA dropout (must be 0 for MoE expert weights)", 0.1)
    target_modules: tuple[str, ...] = _help("module names to adapt; MoE expert weights are found "
                                            "automatically", DEFAULT_TARGETS)
    modules_to_save: tuple[str, ...] = _help("modules trained in full and saved with the adapter, "
                                             "e.g. lm_head", ())
    use_dora: bool = _help("DoRA instead of plain LoRA", False)
    load_in_4bit: bool = _help("QLoRA: load the base model in 4-bit NF4 (needs CUDA and bitsandbytes)", False)
    epochs: float = _help("training epochs (ignored when --max-steps is set)", 3.0)
    max_steps: int = _help("stop after this many optimizer steps (-1: use --epochs)", -1)
    batch_size: int = _help("examples per device per micro-batch", 4)
    grad_accum: int = _help("micro-batches per optimizer step", 4)
    learning_rate: float = _help("peak learning rate", 1e-4)
    lr_scheduler: str = _help("cosine, linear or constant_with_warmup", "cosine")
    warmup_ratio: float = _help("share of steps with linear warm-up, in [0, 1)", 0.03)
    eval_steps: int = _help("evaluate on the validation split every N steps (0: never)", 50)
    save_steps: int = _help("save a checkpoint every N steps", 50)
    save_total_limit: int = _help("checkpoints kept", 2)
    early_stopping_patience: int = _help("stop after N evaluations without a lower eval loss (0: off)", 0)
    logging_steps: int = _help("log loss / learning rate / tokens per second every N steps", 10)
    precision: str = _help("auto (fp32 on CPU, bf16 on GPUs that have it, else fp16), fp32, bf16, fp16", "auto")
    device: str = _help("auto, cpu or cuda", "auto")
    gradient_checkpointing: bool | None = _help("default: on for GPU, off for CPU")
    report_to: str = _help("none, tensorboard, or swanlab (offline, no account)", "none")
    resume: bool = _help("continue from the last checkpoint in --output-dir", False)
    seed: int = _help("random seed (data split, adapter init, shuffling)", 42)
    trl: Mapping[str, Any] = field(default_factory=dict, hash=False, metadata={
        "help": "extra trl.SFTConfig options as KEY=VALUE (JSON values), e.g. weight_decay=0.01"})

    def __post_init__(self) -> None:
        for name in ("data", "val_data", "target_modules", "modules_to_save"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))
        object.__setattr__(self, "trl", MappingProxyType(dict(self.trl)))
        problems = _problems(self)
        if problems:
            raise ConfigError("\n".join(problems))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready copy (tuples become lists, trl a plain dict)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        for key, value in out.items():
            out[key] = list(value) if isinstance(value, tuple) else value
        out["trl"] = dict(self.trl)
        return out


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_num(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _range_problems(c: TrainConfig) -> list[str]:
    ints = {"lora_r": 1, "lora_alpha": 1, "max_length": 16, "batch_size": 1, "grad_accum": 1, "eval_steps": 0,
            "save_steps": 1, "save_total_limit": 1, "early_stopping_patience": 0, "logging_steps": 1,
            "min_chars": 0}
    out = [f"{k} must be an integer >= {lo}, got {getattr(c, k)!r}"
           for k, lo in ints.items() if not _is_int(getattr(c, k)) or getattr(c, k) < lo]
    if not _is_int(c.max_steps) or (c.max_steps != -1 and c.max_steps < 1):
        out.append(f"max_steps must be -1 (use epochs) or an integer >= 1, got {c.max_steps!r}")
    if not _is_int(c.seed):
        out.append(f"seed must be an integer, got {c.seed!r}")
    if c.max_chars is not None and (not _is_int(c.max_chars) or c.max_chars < 1):
        out.append(f"max_chars must be empty or an integer >= 1, got {c.max_chars!r}")
    floats = {"val_ratio": (0, 1), "lora_dropout": (0, 1), "warmup_ratio": (0, 1)}
    out += [f"{k} must be a number in [{lo}, {hi}), got {getattr(c, k)!r}"
            for k, (lo, hi) in floats.items() if not _is_num(getattr(c, k)) or not lo <= getattr(c, k) < hi]
    if not _is_num(c.epochs) or c.epochs <= 0:
        out.append(f"epochs must be a number > 0, got {c.epochs!r}")
    if not _is_num(c.learning_rate) or not 0 < c.learning_rate < 1:
        out.append(f"learning_rate must be a number in (0, 1), got {c.learning_rate!r}")
    return out


def _choice_problems(c: TrainConfig) -> list[str]:
    choices = {"thinking": THINKING, "batching": BATCHING, "lr_scheduler": SCHEDULERS,
               "precision": PRECISIONS, "device": DEVICES, "report_to": REPORTERS}
    return [f"{k} must be one of {', '.join(v)}; got {getattr(c, k)!r}"
            for k, v in choices.items() if getattr(c, k) not in v]


def _combination_problems(c: TrainConfig) -> list[str]:
    out = []
    if not c.data:
        out.append("data is empty: pass at least one training file (--data FILE)")
    if not isinstance(c.model, str) or not c.model.strip():
        out.append(f"model must name a hub id, folder or .gguf file, got {c.model!r}")
    if not c.target_modules:
        out.append("target_modules is empty: name at least one module (default: q/k/v/o/gate/up/down_proj)")
    if c.system is not None and not str(c.system).strip():
        out.append("system is blank: give a system prompt or leave it out")
    if c.system_override and c.system is None:
        out.append("system_override needs a system prompt (--system TEXT)")
    if _is_int(c.early_stopping_patience) and c.early_stopping_patience > 0:
        if c.eval_steps == 0:
            out.append("early_stopping_patience needs evaluation: set eval_steps > 0")
        elif _is_int(c.save_steps) and _is_int(c.eval_steps) and c.save_steps % c.eval_steps:
            out.append(f"early_stopping_patience keeps the best checkpoint, so save_steps ({c.save_steps}) "
                       f"must be a multiple of eval_steps ({c.eval_steps})")
    if c.load_in_4bit and c.device == "cpu":
        out.append("load_in_4bit (QLoRA) needs a CUDA GPU; drop --load-in-4bit to train in full precision "
                   "on CPU")
    if c.load_in_4bit and c.precision == "fp32":
        out.append("load_in_4bit computes in bf16/fp16; use --precision auto, bf16 or fp16")
    clash = sorted(set(c.trl) & OWNED_SFT_KEYS)
    if clash:
        out.append(f"trl options {clash} repeat options of this command; use the flags "
                   "(e.g. --learning-rate, --max-steps) instead")
    return out


def _problems(c: TrainConfig) -> list[str]:
    return _combination_problems(c) + _range_problems(c) + _choice_problems(c)


def field_names() -> tuple[str, ...]:
    """Names of every TrainConfig field, in declaration order (the CLI flags, with - for _)."""
    return tuple(f.name for f in fields(TrainConfig))


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """TrainConfig from a TOML file (optional) with ``overrides`` (e.g. CLI flags) applied on top.

    Keys may use - or _; a ``[trl]`` table is merged with ``overrides["trl"]`` (overrides win).
    Unknown keys raise ConfigError naming the file, the keys and the valid names.
    """
    values: dict[str, Any] = {}
    if path is not None:
        values = _read_toml(Path(path))
    overrides = dict(overrides or {})
    trl = {**dict(values.pop("trl", {})), **dict(overrides.pop("trl", {}) or {})}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**values, trl=trl)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid TOML ({err}); see https://toml.io") from None
    values = {k.replace("-", "_"): v for k, v in raw.items()}
    unknown = sorted(set(values) - set(field_names()))
    if unknown:
        raise ConfigError(f"{path}: unknown keys {unknown}; valid keys: {', '.join(field_names())} "
                          "(TRL options go in a [trl] table)")
    if not isinstance(values.get("trl", {}), dict):
        raise ConfigError(f"{path}: trl must be a table ([trl]) of SFTConfig options")
    return values
