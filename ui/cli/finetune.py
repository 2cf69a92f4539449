"""The ``finetune`` command: train, merge, eval, chat, ``data check``, ``data from-kb`` and ``embedder``.

``finetune train`` has one flag per :class:`finetune.config.TrainConfig` field (made from the
dataclass by :mod:`ui.cli.options`, so they cannot drift apart) plus ``--config FILE.toml``; flags
override the file. ``data check`` and ``data from-kb`` take theirs from :class:`finetune.data.DataConfig`
and :class:`assistant.from_kb.config.FromKBConfig` the same way. Exit status: :mod:`ui.errors`
(2 for a bad option or bad data, 1 when it cannot be done here and now).
Multi-GPU: ``accelerate launch -m ui.cli.finetune train ...`` or ``torchrun --nproc-per-node N -m
ui.cli.finetune train ...``. Nothing heavy (torch, transformers) is imported before a command runs.

Example:
    >>> from typer.testing import CliRunner
    >>> CliRunner().invoke(app, ["train", "--lora-r", "0", "--data", "x.jsonl"]).exit_code
    2
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from assistant.from_kb.config import FromKBConfig
from finetune.config import TrainConfig, load_config
from finetune.data import DataConfig, prepare_config
from finetune.errors import ConfigError, FinetuneError
from ui.cli.finetune_embedder import embedder_command
from ui.cli.options import K_FLAG, KB_FLAG, Flag, config_options, default_of
from ui.errors import BAD_INPUT, friendly

app = typer.Typer(help="Fine-tune Qwen3 with LoRA on your Q&A data: train, merge, eval, chat.",
                  no_args_is_help=True, add_completion=False)
console = Console()


def say(text: str) -> None:
    """Print progress text as is (user data may contain [brackets] that rich would read as markup)."""
    console.print(text, markup=False, highlight=False)


def parse_trl(items: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``["weight_decay=0.01", "optim=adamw_torch"]`` -> {"weight_decay": 0.01, "optim": "adamw_torch"}.

    >>> parse_trl(["weight_decay=0.01", "optim=adamw_torch", "betas=[0.9, 0.95]"])
    {'weight_decay': 0.01, 'optim': 'adamw_torch', 'betas': [0.9, 0.95]}
    """
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


@app.command("train")
@friendly
@config_options(TrainConfig, into="overrides", build=dict, flags={"trl": Flag(convert=parse_trl)})
def train_command(config: Optional[Path] = typer.Option(None, "--config", help="TOML file with the same keys (TRL "
                                                        "options in a trl table); flags override it"),
                  *, overrides: dict[str, Any]) -> None:
    """Fine-tune a LoRA adapter (TRL SFTTrainer) on chat / instruction data."""
    settings = load_config(config, overrides)
    from finetune.train import train

    result = train(settings, say=say)
    if not result.main_process:  # torchrun / accelerate launch: the main process reports
        return
    shown = {k: round(v, 4) for k, v in result.metrics.items()
             if k in ("train_loss", "eval_loss", "eval_perplexity", "global_step", "train_tokens_per_second")}
    say(f"adapter saved to {result.adapter_dir} (run card: run_card.json) {shown}")


@app.command("merge")
@friendly
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
@friendly
def eval_command(
    adapter: Path = typer.Option(..., help="adapter folder"),
    data: list[Path] = typer.Option(..., help="evaluation file(s), same formats as training"),
    base: Optional[str] = typer.Option(None, help="base model (default: the adapter's)"),
    max_examples: int = typer.Option(50, help="records scored (spread evenly over the file)"),
    samples: int = typer.Option(0, help="print N question / reference / base / adapted rows"),
    max_new_tokens: int = typer.Option(128, help="longest generated answer (tokens)"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="progress bar on stderr"),
) -> None:
    """Compare base and adapted model: loss, perplexity, BLEU-4, ROUGE-L (jieba for Chinese)."""
    from finetune.evaluate import evaluate_adapter

    report = evaluate_adapter(adapter, data, base=base, max_examples=max_examples, samples=samples,
                              max_new_tokens=max_new_tokens, device=device, say=say, progress=progress)
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
@friendly
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


data_app = typer.Typer(help="Check fine-tuning data (alpaca / ShareGPT / OpenAI messages, JSON or JSONL).",
                       no_args_is_help=True, add_completion=False)


@data_app.callback()
def _group() -> None:
    """Check fine-tuning data (alpaca / ShareGPT / OpenAI messages, JSON or JSONL)."""


@data_app.command()
@friendly
@config_options(DataConfig, flags={"val_files": Flag(names=("--val-file",))})
def check(
    files: list[Path] = typer.Argument(..., help="training files (.json array/object or .jsonl)"),
    *,
    config: DataConfig,
    max_length: int = typer.Option(default_of(TrainConfig, "max_length"), "--max-length",
                                   help="token budget per record, as finetune train's; longer ones are counted"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
) -> None:
    """Report formats, kept/dropped counts by reason, problems with file:line and token statistics.

    Exit status 2 when no record is left to train on (so `data check X && finetune train ...` stops).
    """
    if max_length < 1:
        raise ConfigError(f"--max-length must be a positive number of tokens, got {max_length}")
    report = prepare_config(files, config)
    kept = [*report.train, *report.validation]
    stats, stats_error = _token_stats(kept, max_length) if kept else (None, "no record kept")
    if as_json:
        out = report.as_dict()
        out["token_stats"] = stats.as_dict() if stats else None
        if stats_error:
            out["token_stats_error"] = stats_error
        typer.echo(json.dumps(out, ensure_ascii=False, indent=2))
    else:
        typer.echo(report.render())
        typer.echo(stats.render() if stats else f"token statistics skipped: {stats_error}")
    if not kept:
        typer.secho(f"error: no record of {', '.join(map(str, files))} is left to train on (see the problems above)",
                    fg="red", err=True)
        raise typer.Exit(BAD_INPUT)


def _token_stats(convs: list, max_length: int) -> tuple[Any, str | None]:
    """TokenStats of the kept records, or (None, reason) when the tokenizer cannot be loaded."""
    from finetune.stats import token_stats

    try:
        return token_stats(convs, max_length=max_length, progress=True), None
    except FinetuneError as err:  # tokenizer package missing, bad max_length
        return None, str(err)


@data_app.command("from-kb")
@friendly
@config_options(FromKBConfig, flags={"qa": Flag(argument=True), "out": Flag(required=True), "kb": KB_FLAG, "k": K_FLAG})
def from_kb(*, config: FromKBConfig,
            as_json: bool = typer.Option(False, "--json", help="print the report as JSON")) -> None:
    """Training records whose prompt is the assistant's own RAG prompt, cited gold answers, distractors."""
    from assistant.from_kb.build import build_from_kb

    report = build_from_kb(config, progress=not as_json)
    typer.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2) if as_json else report.render())


app.add_typer(data_app, name="data")
app.command("embedder")(embedder_command)


if __name__ == "__main__":  # accelerate launch -m ui.cli.finetune train ... / torchrun -m ui.cli.finetune train ...
    app()
