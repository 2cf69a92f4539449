"""``assistant eval``: closed-book vs RAG vs adapter on a gold Q&A set (registered on :data:`assistant.cli.app`).

    assistant eval --kb kb --model ~/models/Qwen3-0.6B --adapter outputs/qwen3-lora --data gold.jsonl
    assistant eval --data gold.jsonl --systems base,base+rag --limit 20 --plot eval/systems.png

The AssistantConfig flags (--kb, --model, --adapter, -k, --mode, --max-new-tokens, ...) choose
the model and retrieval; the rest are :class:`assistant.evaluate.EvalConfig` fields.
"""
from pathlib import Path
from typing import List, Optional

import typer

from assistant.cli import _assistant, app, config_options, friendly
from assistant.config import AssistantConfig

__all__ = ["eval_command"]

DATA_HELP = "gold Q&A file (JSON/JSONL; repeatable): question, answer(s), optional doc/page/answerable"


@app.command("eval")
@friendly
@config_options
def eval_command(data: List[Path] = typer.Option(..., "--data", help=DATA_HELP),
                 out: Path = typer.Option(Path("eval/results.json"), "--out", help="results JSON"),
                 markdown: Optional[Path] = typer.Option(None, "--markdown",
                                                         help="Markdown table \\[default: beside --out, .md]"),
                 plot: Optional[Path] = typer.Option(None, "--plot", help="bar chart PNG of the systems"),
                 systems: Optional[List[str]] = typer.Option(
                     None, "--systems", help="comma-separated subset of base, base+rag, adapter, adapter+rag "
                                             "\\[default: all that can run]"),
                 limit: Optional[int] = typer.Option(None, "--limit", help="the first N questions only"),
                 progress: bool = typer.Option(True, "--progress/--no-progress", help="progress bar on stderr"),
                 config: Optional[AssistantConfig] = None) -> None:
    """Score retrieval (hit@k, MRR) and four systems (base / adapter, closed-book / RAG) in one table."""
    from assistant.evaluate import EvalConfig, run_eval

    chosen = None if not systems else tuple(s.strip() for part in systems for s in part.split(",") if s.strip())
    cfg = EvalConfig(data=tuple(data), out=out, markdown=markdown, plot=plot, systems=chosen, limit=limit,
                     progress=progress)
    bot = _assistant(config)
    try:
        result = run_eval(cfg, bot)
    finally:
        bot.close()
    from assistant.eval_report import markdown as render

    for problem in result.problems:
        typer.secho(f"warning: {problem.detail}", fg="yellow", err=True)
    typer.echo(render(result))
    written = [cfg.out, cfg.markdown_path] + ([cfg.plot] if cfg.plot else [])
    typer.echo("wrote " + ", ".join(map(str, written)))
