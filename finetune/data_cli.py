"""``finetune data check``: validate, clean and measure training files without training.

Mounted by finetune.cli as ``app.add_typer(data_app, name="data")``; runnable alone with
``python -m finetune.data_cli check data.json``. Exit status: 1 when a file is missing, an option
is bad or --strict meets an invalid record; 0 otherwise (dropped records are reported, not fatal).

Example:
    >>> from typer.testing import CliRunner
    >>> CliRunner().invoke(data_app, ["check", "missing.json"]).exit_code
    1
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from finetune.data import DataConfig, prepare_config
from finetune.errors import ConfigError, FinetuneError

data_app = typer.Typer(help="Check fine-tuning data (alpaca / ShareGPT / OpenAI messages, JSON or JSONL).",
                       no_args_is_help=True, add_completion=False)


@data_app.callback()
def _group() -> None:
    """Check fine-tuning data (alpaca / ShareGPT / OpenAI messages, JSON or JSONL)."""


@data_app.command()
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
    try:
        if max_length < 1:
            raise ConfigError(f"--max-length must be a positive number of tokens, got {max_length}")
        config = DataConfig(system=system, system_override=system_override, strict=strict, dedup=dedup,
                            min_chars=min_chars, max_chars=max_chars, scrub_pii=scrub_pii, val_ratio=val_ratio,
                            val_files=tuple(val_file), seed=seed)
        report = prepare_config(files, config)
    except FinetuneError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
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


if __name__ == "__main__":
    data_app()
