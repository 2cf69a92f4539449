"""The ``finetune`` command: train, merge, eval, chat (and ``data check`` from finetune.data_cli).

``finetune train`` has one flag per :class:`finetune.config.TrainConfig` field (generated from the
dataclass, so they cannot drift apart) plus ``--config FILE.toml``; flags override the file.
Multi-GPU: ``accelerate launch -m finetune.cli train ...`` or ``torchrun --nproc-per-node N -m
finetune.cli train ...``. Nothing heavy (torch, transformers) is imported before a command runs.

Example:
    >>> from typer.testing import CliRunner
    >>> CliRunner().invoke(app, ["train", "--lora-r", "0", "--data", "x.jsonl"]).exit_code
    1
"""
from __future__ import annotations

import collections.abc
import dataclasses
import functools
import inspect
import json
import typing
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from finetune.config import TrainConfig, load_config
from finetune.errors import FinetuneError

app = typer.Typer(help="Fine-tune Qwen3 with LoRA on your Q&A data: train, merge, eval, chat.",
                  no_args_is_help=True, add_completion=False)
console = Console()


def say(text: str) -> None:
    """Print progress text as is (user data may contain [brackets] that rich would read as markup)."""
    console.print(text, markup=False, highlight=False)

try:  # the data stage's sub-app (finetune data check); the rest of the CLI works without it
    from finetune.data_cli import data_app
except ModuleNotFoundError as err:
    if err.name != "finetune.data_cli":
        raise
else:
    app.add_typer(data_app, name="data")


def _friendly(func: Callable[..., Any]) -> Callable[..., Any]:
    """Typed errors become one red message and exit status 1 (no traceback)."""

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except FinetuneError as err:
            console.print(f"[red]error:[/red] {escape(str(err))}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return run


def _option_type(hint: Any) -> Any:
    """CLI type of a TrainConfig field type: every flag is optional (None = not given, keep the file/default)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if hint in (bool, int, float, str):
        return Optional[hint]
    if typing.get_origin(hint) in (tuple, collections.abc.Mapping):  # repeatable flag (--data A --data B)
        return Optional[list[str]]
    if args and args[0] in (bool, int, float, str):
        return Optional[args[0]]
    raise TypeError(f"no CLI type for TrainConfig field type {hint!r}")


def _help_text(f: Any) -> str:
    default = f.default if f.default is not dataclasses.MISSING else None
    if isinstance(default, tuple):
        default = ",".join(default) or None
    return f.metadata.get("help", "") + (f" (default: {default})" if default not in (None, "") else "")


def _train_signature() -> inspect.Signature:
    hints = typing.get_type_hints(TrainConfig)
    params = [inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path],
                                default=typer.Option(None, "--config", help="TOML file with the same keys "
                                                     "(TRL options in a trl table); flags override it"))]
    for f in fields(TrainConfig):
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=_option_type(hints[f.name]),
                                        default=typer.Option(None, help=_help_text(f))))
    return inspect.Signature(params)


def parse_trl(items: list[str]) -> dict[str, Any]:
    """``["weight_decay=0.01", "optim=adamw_torch"]`` -> {"weight_decay": 0.01, "optim": "adamw_torch"}."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"--trl {item!r}: expected KEY=VALUE, e.g. --trl weight_decay=0.01")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def flags_to_overrides(flags: dict[str, Any]) -> dict[str, Any]:
    """CLI values -> TrainConfig keyword values (lists to tuples, --trl KEY=VALUE to a dict); None dropped."""
    out = {k: tuple(v) if isinstance(v, list) else v for k, v in flags.items() if v is not None}
    if "trl" in out:
        out["trl"] = parse_trl(list(out["trl"]))
    return out


@_friendly
def train_command(**flags: Any) -> None:
    """Fine-tune a LoRA adapter (TRL SFTTrainer) on chat / instruction data."""
    config_file = flags.pop("config", None)
    config = load_config(config_file, flags_to_overrides(flags))
    from finetune.train import train

    result = train(config, say=say)
    shown = {k: round(v, 4) for k, v in result.metrics.items()
             if k in ("train_loss", "eval_loss", "eval_perplexity", "global_step", "train_tokens_per_second")}
    say(f"adapter saved to {result.adapter_dir} (run card: run_card.json) {shown}")


train_command.__signature__ = _train_signature()  # type: ignore[attr-defined]
app.command("train")(train_command)


@app.command("merge")
@_friendly
def merge_command(
    adapter: Path = typer.Option(..., help="adapter folder (the --output-dir of finetune train)"),
    out: Path = typer.Option(..., help="new folder for the merged model"),
    base: Optional[str] = typer.Option(None, help="base model (default: the one the adapter was trained on)"),
    precision: str = typer.Option("auto", help="auto (the base model's dtype), fp32, bf16 or fp16"),
) -> None:
    """Merge an adapter into its base model (loads with AutoModelForCausalLM and vLLM)."""
    from finetune.merge import merge_adapter

    folder = merge_adapter(adapter, out, base=base, precision=precision)
    say(f"merged model saved to {folder}")


@app.command("eval")
@_friendly
def eval_command(
    adapter: Path = typer.Option(..., help="adapter folder"),
    data: list[Path] = typer.Option(..., help="evaluation file(s), same formats as training"),
    base: Optional[str] = typer.Option(None, help="base model (default: the adapter's)"),
    max_examples: int = typer.Option(50, help="records scored (spread evenly over the file)"),
    samples: int = typer.Option(0, help="print N question / reference / base / adapted rows"),
    max_new_tokens: int = typer.Option(128, help="longest generated answer (tokens)"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
) -> None:
    """Compare base and adapted model: loss, perplexity, BLEU-4, ROUGE-L (jieba for Chinese)."""
    from finetune.evaluate import evaluate_adapter

    report = evaluate_adapter(adapter, data, base=base, max_examples=max_examples, samples=samples,
                              max_new_tokens=max_new_tokens, device=device, say=say)
    table = Table(title=f"{report.examples} records")
    for name in ("metric", "base", "adapted"):
        table.add_column(name, justify="left" if name == "metric" else "right")
    for row in report.rows():
        table.add_row(*row)
    console.print(table)
    if report.samples:
        samples_table = Table(show_lines=True)
        for name in ("question", "reference", "base", "adapted"):
            samples_table.add_column(name, overflow="fold")
        for s in report.samples:
            samples_table.add_row(*(Text(t) for t in (s.question, s.reference, s.base, s.adapted)))
        console.print(samples_table)


@app.command("chat")
@_friendly
def chat_command(
    adapter: Path = typer.Option(..., help="adapter folder"),
    base: Optional[str] = typer.Option(None, help="base model (default: the adapter's)"),
    system: Optional[str] = typer.Option(None, help="system prompt (default: the run card's)"),
    max_new_tokens: int = typer.Option(512, help="longest reply (tokens)"),
    temperature: float = typer.Option(0.7, help="sampling temperature (0: greedy)"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
) -> None:
    """Chat with an adapter in the terminal (streamed replies; /reset, /exit)."""
    from finetune.chat import chat

    chat(adapter, base=base, system=system, max_new_tokens=max_new_tokens, temperature=temperature, device=device)


if __name__ == "__main__":  # accelerate launch -m finetune.cli train ... / torchrun -m finetune.cli train ...
    app()
