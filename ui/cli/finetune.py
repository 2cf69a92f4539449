"""The ``finetune`` command: train, merge, eval, chat, ``data check`` and ``data from-kb``.

``finetune train`` has one flag per :class:`finetune.config.TrainConfig` field (generated from the
dataclass, so they cannot drift apart) plus ``--config FILE.toml``; flags override the file.
Multi-GPU: ``accelerate launch -m ui.cli.finetune train ...`` or ``torchrun --nproc-per-node N -m
ui.cli.finetune train ...``. Nothing heavy (torch, transformers) is imported before a command runs.

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
from finetune.data import DataConfig, prepare_config
from finetune.errors import ConfigError
from finetune.errors import FinetuneError
from ui.cli.errors import friendly

app = typer.Typer(help="Fine-tune Qwen3 with LoRA on your Q&A data: train, merge, eval, chat.",
                  no_args_is_help=True, add_completion=False)
console = Console()


def say(text: str) -> None:
    """Print progress text as is (user data may contain [brackets] that rich would read as markup)."""
    console.print(text, markup=False, highlight=False)



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


@friendly
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
def check(
    files: list[Path] = typer.Argument(..., help="Training files (.json array/object or .jsonl)."),
    system: Optional[str] = typer.Option(None, "--system", help="Default system prompt for records without one."),
    system_override: bool = typer.Option(False, "--system-override", help="Replace every record's system prompt."),
    strict: bool = typer.Option(False, "--strict", help="Stop with exit status 1 at the first invalid record."),
    dedup: bool = typer.Option(True, "--dedup/--no-dedup", help="Drop exact duplicates (NFKC, whitespace)."),
    min_chars: int = typer.Option(1, "--min-chars", help="Minimum characters of assistant text."),
    max_chars: Optional[int] = typer.Option(None, "--max-chars", help="Maximum characters of assistant text."),
    scrub_pii: bool = typer.Option(False, "--scrub-pii", help="Mask phone numbers and e-mails."),
    val_ratio: float = typer.Option(0.1, "--val-ratio", help="Validation share when no --val-file is given."),
    val_file: list[Path] = typer.Option([], "--val-file", help="Validation file (repeatable); disables the split."),
    seed: int = typer.Option(42, "--seed", help="Seed of the train/validation split."),
    max_length: int = typer.Option(1024, "--max-length", help="Token budget per record; longer ones are counted."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Report formats, kept/dropped counts by reason, problems with file:line and token statistics."""
    if max_length < 1:
        raise ConfigError(f"--max-length must be a positive number of tokens, got {max_length}")
    config = DataConfig(system=system, system_override=system_override, strict=strict, dedup=dedup,
                        min_chars=min_chars, max_chars=max_chars, scrub_pii=scrub_pii, val_ratio=val_ratio,
                        val_files=tuple(val_file), seed=seed)
    report = prepare_config(files, config)
    stats, stats_error = _token_stats([*report.train, *report.validation], max_length)
    if as_json:
        out = report.as_dict()
        out["token_stats"] = stats.as_dict() if stats else None
        if stats_error:
            out["token_stats_error"] = stats_error
        typer.echo(json.dumps(out, ensure_ascii=False, indent=2))
        return
    typer.echo(report.render())
    typer.echo(stats.render() if stats else f"token statistics skipped: {stats_error}")


def _token_stats(convs: list, max_length: int):
    """TokenStats of the kept records, or (None, reason) when the tokenizer cannot be loaded."""
    from finetune.stats import token_stats

    try:
        return token_stats(convs, max_length=max_length, progress=True), None
    except FinetuneError as err:  # tokenizer package missing, bad max_length
        return None, str(err)


@data_app.command("from-kb")
@friendly
def from_kb(
    qa: list[Path] = typer.Argument(None, help="Gold Q&A files: alpaca / ShareGPT / OpenAI messages or "
                                    "{question, answer(s)} records, optional doc, page, answerable."),
    out: Path = typer.Option(..., "--out", help="JSONL of training records to write (atomically)."),
    kb: Optional[Path] = typer.Option(None, "--kb", envvar="QDA_KB", help="Knowledge base [default: ./kb]."),
    model: Optional[str] = typer.Option(None, "--model", help="Base model whose tokenizer and context length size "
                                        "the prompt (no weights loaded) [default: Qwen/Qwen3-0.6B]."),
    k: int = typer.Option(5, "--k", "-k", help="Chunks retrieved per question (as the assistant will use)."),
    mode: str = typer.Option("hybrid", "--mode", help="Retrieval: hybrid | dense | bm25."),
    embedder: Optional[str] = typer.Option(None, "--embedder", help="Embedder [default: the KB's]."),
    system_prompt: Optional[str] = typer.Option(None, "--system-prompt", help="System prompt [default: built-in]."),
    max_new_tokens: int = typer.Option(512, "--max-new-tokens", help="Answer room the assistant reserves (tokens)."),
    context_tokens: Optional[int] = typer.Option(None, "--context-tokens", help="Context length [default: model's]."),
    distractor_ratio: float = typer.Option(0.2, "--distractor-ratio", help="Distractor-only records per answerable "
                                           "question, added on top (0-1)."),
    distractor_depth: int = typer.Option(3, "--distractor-depth", help="Distractor retrieval depth, times k."),
    on_miss: str = typer.Option("inject", "--on-miss", help="No retrieved source holds the answer: inject (the "
                                "gold chunk replaces the lowest-ranked source) | abstain | skip."),
    seed: int = typer.Option(0, "--seed", help="Seed of distractor picks, injection positions, chunk sampling."),
    generate_questions: int = typer.Option(0, "--generate-questions", help="Also generate Q&A from N sampled "
                                           "chunks (all when N >= their count)."),
    generator_model: Optional[str] = typer.Option(None, "--generator-model", help="Model that generates questions "
                                                  "[default: --model]."),
    endpoint: Optional[str] = typer.Option(None, "--endpoint", help="OpenAI-compatible server that generates the "
                                           "questions, e.g. http://localhost:8000/v1."),
    qa_out: Optional[Path] = typer.Option(None, "--qa-out", help="Also write the generated Q&A pairs (JSONL)."),
    device: str = typer.Option("auto", "--device", help="Where a local generator runs: auto | cpu | cuda."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Training records whose prompt is the assistant's own RAG prompt, cited gold answers, distractors."""
    from assistant.from_kb.build import FromKBConfig, build_from_kb

    given = dict(kb=kb, model=model, embedder=embedder, system_prompt=system_prompt, context_tokens=context_tokens,
                 generator_model=generator_model, endpoint=endpoint, qa_out=qa_out)
    config = FromKBConfig(qa=tuple(qa or ()), out=out, k=k, mode=mode, max_new_tokens=max_new_tokens,
                          distractor_ratio=distractor_ratio, distractor_depth=distractor_depth, on_miss=on_miss,
                          seed=seed, generate_questions=generate_questions, device=device,
                          **{name: value for name, value in given.items() if value is not None})
    report = build_from_kb(config, progress=not as_json)
    typer.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2) if as_json else report.render())


app.add_typer(data_app, name="data")


if __name__ == "__main__":  # accelerate launch -m ui.cli.finetune train ... / torchrun -m ui.cli.finetune train ...
    app()
