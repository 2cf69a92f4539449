"""run_card.json: what produced an adapter (effective config, data hashes, versions, metrics, system prompt).

Written next to the adapter by ``finetune train``; read by merge / eval / chat and, leniently, by
the assistant (which reuses ``system`` and ``enable_thinking``).

Example:
    >>> card = read_run_card("outputs/qwen3-lora")  # doctest: +SKIP
    >>> card["system"], card["enable_thinking"], card["metrics"]["eval_loss"]  # doctest: +SKIP
"""
from __future__ import annotations

import json
import platform
import time
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any

from common.files import file_sha256
from finetune.config import TrainConfig
from finetune.loading import adapter_config
from finetune.template import Encoded, thinking_for_inference
from finetune.train_errors import ModelLoadError

RUN_CARD = "run_card.json"
FORMAT = "qwen-domain-assistant/run-card/1"
_PACKAGES = ("qwen-domain-assistant", "torch", "transformers", "trl", "peft", "accelerate", "datasets",
             "tokenizers", "deepspeed", "bitsandbytes")


def file_digest(path: str | Path) -> dict[str, Any]:
    """{"path", "bytes", "sha256"} of a file (hashed by :func:`common.files.file_sha256`)."""
    return {"path": str(path), "bytes": Path(path).stat().st_size, "sha256": file_sha256(path)}


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def system_prompt(config: TrainConfig, conversations: Any) -> tuple[str | None, str]:
    """(system prompt the adapter was trained with, where it came from): the flag, else the data's most common."""
    if config.system is not None:
        return config.system, "--system" + (" (override)" if config.system_override else "")
    seen = Counter(c.messages[0].content for c in conversations if c.messages and c.messages[0].role == "system")
    if not seen:
        return None, "none"
    prompt, n = seen.most_common(1)[0]
    return prompt, f"data ({n} of {len(conversations)} records)"


def _effective(trainer: Any, device: str, precision: str, replicas: list[str] | None) -> dict[str, Any]:
    peft_cfg = trainer.model.peft_config["default"]
    return {"device": device, "precision": precision, "gradient_checkpointing": trainer.args.gradient_checkpointing,
            "world_size": trainer.args.world_size,
            # sha256 of the adapter weights each process ended with, by rank (finetune.trainer.replica_digests)
            "adapter_sha256_by_rank": replicas,
            "target_modules": sorted(peft_cfg.target_modules or []),
            "target_parameters": list(peft_cfg.target_parameters or []),
            "trainable_parameters": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)}


def _portable(spec: str) -> str:
    """A local model folder or file as an absolute path (the adapter is used from other folders than
    the one it was trained in); a hub id as it is.

    >>> _portable("Qwen/Qwen3-0.6B") == "Qwen/Qwen3-0.6B", Path(_portable(".")).is_absolute()
    (True, True)
    """
    path = Path(spec).expanduser()
    return str(path.resolve()) if path.exists() else spec


def write_run_card(config: TrainConfig, *, trainer: Any, report: Any, sets: tuple[Encoded, Encoded], device: str,
                   precision: str, template_notice: str | None, metrics: dict[str, float],
                   replicas: list[str] | None = None) -> dict[str, Any]:
    """Build the run card, write it to ``<output_dir>/run_card.json`` (process 0 only) and return it.

    ``replicas``: :func:`finetune.trainer.replica_digests` of the run (None: not computed).
    """
    train_set, val_set = sets
    system, system_from = system_prompt(config, report.train)
    summary = report.as_dict()
    summary["problems"] = summary["problems"][:50]  # the full list is in `finetune data check`
    card = {
        "format": FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "base_model": _portable(config.model),
        "system": system, "system_source": system_from, "thinking": config.thinking,
        "enable_thinking": thinking_for_inference(config.thinking),
        "chat_template": "chatml-fallback" if template_notice else "tokenizer",
        "config": config.as_dict(), "effective": _effective(trainer, device, precision, replicas),
        "data": {"train_files": [file_digest(f) for f in config.data],
                 "val_files": [file_digest(f) for f in config.val_data], "report": summary},
        "examples": {name: {"examples": len(s.examples), "tokens": s.tokens, "trained_tokens": s.trained_tokens,
                            "truncated": s.truncated, "skipped": len(s.problems)}
                     for name, s in (("train", train_set), ("validation", val_set))},
        "versions": library_versions(), "metrics": metrics,
    }
    if trainer.is_world_process_zero():
        path = Path(config.output_dir) / RUN_CARD
        path.write_text(json.dumps(card, ensure_ascii=False, indent=2), encoding="utf-8")
    return card


def run_card_path(adapter_dir: str | Path) -> Path | None:
    """The run card of an adapter folder: its own, else its parent's (a checkpoint-N folder of a run); None."""
    folder = Path(adapter_dir)
    return next((p for p in (folder / RUN_CARD, folder.parent / RUN_CARD) if p.is_file()), None)


def read_run_card(adapter_dir: str | Path, *, lenient: bool = False) -> dict[str, Any]:
    """The run card of an adapter folder ({} when it has none, e.g. an adapter trained elsewhere).

    Strict (the default, for train/merge/eval/chat): ModelLoadError when the folder is not a PEFT
    adapter or its card is not a JSON object. ``lenient`` (for the assistant, which only reads hints
    from the card): the card when there is a readable one, else {}; the folder is not checked.

    >>> read_run_card("no-such-adapter", lenient=True)
    {}
    """
    try:
        if not lenient:
            adapter_config(adapter_dir)  # checks the folder is an adapter
        path = run_card_path(adapter_dir)
        if path is None:
            return {}
        try:
            card = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ModelLoadError(f"{path}: not valid JSON ({err}); restore it or delete it") from err
        if not isinstance(card, dict):
            raise ModelLoadError(f"{path}: not a run card (a JSON object); restore it or delete it")
        return card
    except ModelLoadError:
        if lenient:
            return {}
        raise
