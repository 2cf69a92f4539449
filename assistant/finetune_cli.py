"""The installed ``finetune`` command: finetune's own CLI plus ``finetune data from-kb``.

``finetune`` stands alone (it imports nothing of ``assistant``), so the command that needs the
knowledge base and the assistant's prompt builder is composed here: this module takes
:data:`finetune.cli.app` and its ``data`` sub-app, registers ``from-kb`` on the latter and is the
``[project.scripts] finetune`` entry point. ``python -m finetune.cli`` still works, without from-kb.
Nothing heavy (torch, transformers, faiss) is imported before a command runs.

    finetune data from-kb qa.jsonl --kb kb --model ./Qwen3-0.6B --out kb_train.jsonl
    finetune data from-kb --generate-questions 200 --qa-out generated_qa.jsonl --out kb_train.jsonl
    finetune data check kb_train.jsonl && finetune train --data kb_train.jsonl --model ./Qwen3-0.6B

Example:
    >>> from typer.testing import CliRunner
    >>> result = CliRunner().invoke(app, ["data", "from-kb", "--on-miss", "guess", "--out", "x.jsonl", "qa.jsonl"])
    >>> result.exit_code, "on_miss='guess'" in result.output
    (1, True)
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from finetune.cli import app
from finetune.data_cli import data_app

__all__ = ["app"]


@data_app.command("from-kb")
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
    from assistant.errors import AssistantError
    from assistant.training_data import FromKBConfig, build_from_kb
    from index.errors import IndexError_

    given = dict(kb=kb, model=model, embedder=embedder, system_prompt=system_prompt, context_tokens=context_tokens,
                 generator_model=generator_model, endpoint=endpoint, qa_out=qa_out)
    try:
        config = FromKBConfig(qa=tuple(qa or ()), out=out, k=k, mode=mode, max_new_tokens=max_new_tokens,
                              distractor_ratio=distractor_ratio, distractor_depth=distractor_depth, on_miss=on_miss,
                              seed=seed, generate_questions=generate_questions, device=device,
                              **{name: value for name, value in given.items() if value is not None})
        report = build_from_kb(config, progress=not as_json)
    except (AssistantError, IndexError_, ValueError, OSError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2) if as_json else report.render())


if __name__ == "__main__":
    app()
