"""The ``assistant`` command line: ``ask``, ``chat``, ``serve``, ``eval`` and ``ui``.

    assistant ask "What is the refund policy?" --kb kb --model ~/models/Qwen3-0.6B
    assistant ask "退货政策是什么？" --retrieval-only --json
    assistant chat --adapter outputs/qwen3-lora
    assistant serve --port 8000

Every flag of ``ask``/``chat``/``serve`` is a field of :class:`assistant.config.AssistantConfig`.
"""
import dataclasses
import functools
import inspect
import json
import sys
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer

from assistant.config import CONDENSE, THINKING, AssistantConfig
from index.config import KB_ENV, MODES
from ui.cli.errors import friendly

app = typer.Typer(help="Ask questions about your documents: answers grounded in cited pages.",
                  no_args_is_help=True, add_completion=False)

# AssistantConfig field -> (type, typer.Option); None defaults leave AssistantConfig's default.
CONFIG_OPTIONS: dict[str, tuple[Any, Any]] = {
    "kb": (Optional[Path], typer.Option(None, "--kb", envvar=KB_ENV, help="knowledge-base folder \\[default: ./kb]")),
    "model": (Optional[str], typer.Option(None, help="model folder (base or merged) or HF id; with --endpoint, "
                                                     "the served model's name \\[default: Qwen/Qwen3-0.6B]")),
    "adapter": (Optional[Path], typer.Option(None, help="LoRA adapter folder written by `finetune train`")),
    "endpoint": (Optional[str], typer.Option(None, help="OpenAI-compatible base URL, e.g. http://localhost:8000/v1 "
                                                        "(instead of a local model)")),
    "api_key": (Optional[str], typer.Option(None, "--api-key", envvar="OPENAI_API_KEY",
                                            help="API key of --endpoint")),
    "k": (Optional[int], typer.Option(None, "--k", "-k", help="chunks to retrieve \\[default: 5]")),
    "mode": (Optional[str], typer.Option(None, help=f"retrieval: {' | '.join(MODES)} \\[default: hybrid]")),
    "max_new_tokens": (Optional[int], typer.Option(None, help="longest answer in tokens \\[default: 512]")),
    "temperature": (Optional[float], typer.Option(None, help="0 = greedy \\[default: 0]")),
    "top_p": (Optional[float], typer.Option(None, help="nucleus sampling when temperature > 0 \\[default: 0.8]")),
    "thinking": (Optional[str], typer.Option(None, help=f"Qwen3 thinking: {' | '.join(THINKING)} (auto: as the "
                                                        "adapter was trained, else off)")),
    "retrieval_only": (bool, typer.Option(False, "--retrieval-only", help="no model: list the retrieved passages")),
    "abstain_threshold": (Optional[float], typer.Option(
        None, help="answer 'not in the documents' when the best chunk's cosine is below this \\[default: per embedder]")),
    "system_prompt": (Optional[str], typer.Option(
        None, help="system prompt \\[default: the adapter's, else built-in]")),
    "embedder": (Optional[str], typer.Option(None, help="embedder \\[default: the one the KB was built with]")),
    "context_tokens": (Optional[int], typer.Option(None, help="context length \\[default: the model's]")),
    "condense": (Optional[str], typer.Option(None, help=f"make follow-ups standalone: {' | '.join(CONDENSE)}")),
    "device": (Optional[str], typer.Option(None, help="auto | cpu | cuda | cuda:N | mps \\[default: auto]")),
    "timeout_s": (Optional[float], typer.Option(None, help="endpoint timeout, seconds \\[default: 120]")),
}


def config_options(fn: Callable[..., Any] | None = None, *, exclude: tuple[str, ...] = ()) -> Any:
    """Add the CONFIG_OPTIONS flags (but ``exclude``) to ``fn``'s signature; ``fn`` gets ``config=AssistantConfig``."""
    if fn is None:
        return functools.partial(config_options, exclude=exclude)
    names = [name for name in CONFIG_OPTIONS if name not in exclude]
    own = [p for name, p in inspect.signature(fn).parameters.items() if name != "config"]
    extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=CONFIG_OPTIONS[name][1],
                               annotation=CONFIG_OPTIONS[name][0]) for name in names]

    @functools.wraps(fn)
    def wrapper(**kwargs: Any) -> Any:
        fields = {name: kwargs.pop(name) for name in names}
        fields = {k: str(v) if isinstance(v, Path) and k == "adapter" else v for k, v in fields.items()
                  if v is not None and not (k == "retrieval_only" and v is False)}
        return fn(config=AssistantConfig(**fields), **kwargs)

    wrapper.__signature__ = inspect.Signature(own + extra)  # type: ignore[attr-defined]
    return wrapper


def _assistant(config: AssistantConfig) -> Any:
    from assistant.answer import Assistant

    return Assistant(config=config)


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def print_sources(answer: Any, console: Any) -> None:
    """A table of the sources in the prompt: number, document, page(s), score, cited or not."""
    from rich.table import Table

    if answer.abstained:
        console.print("[dim](no passage was relevant enough: the model was not asked)[/]")
        return
    cited = {c.number for c in answer.citations}
    table = Table("#", "document", "page", "score", "cited", title="Sources", title_justify="left")
    for n, hit in enumerate(answer.sources, 1):
        pages = str(hit.page_start) if hit.page_end == hit.page_start else f"{hit.page_start}-{hit.page_end}"
        table.add_row(f"[{n}]", hit.title, pages, f"{hit.score:.3f}", "✓" if n in cited else "")
    console.print(table)


def answer_json(answer: Any) -> str:
    return json.dumps(dataclasses.asdict(answer), ensure_ascii=False, indent=2)


def _print_stream(pieces: Any) -> Any:
    """Print an ``AnswerStream``'s pieces as they come; return the final Answer."""
    with pieces:
        for piece in pieces:
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        return pieces.answer


@app.command()
@friendly
@config_options
def ask(question: str = typer.Argument(..., help="the question (any language)"),
        stream: bool = typer.Option(False, "--stream", help="print the answer as it is generated"),
        as_json: bool = typer.Option(False, "--json", help="print the Answer as JSON (no streaming)"),
        config: Optional[AssistantConfig] = None) -> None:
    """Answer one question from the knowledge base, with the cited sources."""
    bot = _assistant(config)
    if as_json:
        sys.stdout.write(answer_json(bot.ask(question)) + "\n")
        return
    console = _console()
    if stream:
        answer = _print_stream(bot.stream(question))
    else:
        answer = bot.ask(question)
        console.print(answer.text, markup=False)
    if answer.reasoning:
        console.print(f"[dim]reasoning: {answer.reasoning}[/]", markup=True)
    print_sources(answer, console)


@app.command()
@friendly
@config_options
def chat(config: Optional[AssistantConfig] = None) -> None:
    """Multi-turn chat in the terminal (streamed); /reset forgets the conversation, /exit or Ctrl-D quits."""
    bot = _assistant(config)
    console = _console()
    console.print("[dim]Ask about your documents. /reset starts over, /exit quits.[/]")
    history: list[dict] = []
    while True:
        try:
            question = console.input("[bold green]you> [/]").strip()
        except EOFError:
            console.print()
            return
        if question in ("/exit", "/quit"):
            return
        if question == "/reset":
            history.clear()
            console.print("[dim](conversation cleared)[/]")
            continue
        if not question:
            continue
        answer = _print_stream(bot.stream(question, history=history))
        print_sources(answer, console)
        history += [{"role": "user", "content": question}, {"role": "assistant", "content": answer.text}]


@app.command()
@friendly
@config_options(exclude=("api_key",))
def serve(host: str = typer.Option("127.0.0.1", help="address to listen on (0.0.0.0: every interface)"),
          port: int = typer.Option(8000, help="TCP port"),
          api_key: Optional[str] = typer.Option(None, "--api-key", envvar="ASSISTANT_API_KEY",
                                                help="API key clients must send as 'Bearer KEY'; none: open"),
          config: Optional[AssistantConfig] = None) -> None:
    """Serve the assistant over HTTP (OpenAI-compatible API).

    Here --api-key is the key clients must send; the key of an --endpoint behind this server
    comes from $OPENAI_API_KEY.
    """
    from ui.http import serve as run_server

    run_server(_assistant(config), host=host, port=port, api_key=api_key)


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
    from assistant.evaluation.run import EvalConfig, run_eval

    chosen = None if not systems else tuple(s.strip() for part in systems for s in part.split(",") if s.strip())
    cfg = EvalConfig(data=tuple(data), out=out, markdown=markdown, plot=plot, systems=chosen, limit=limit,
                     progress=progress)
    bot = _assistant(config)
    try:
        result = run_eval(cfg, bot)
    finally:
        bot.close()
    from assistant.evaluation.report import markdown as render

    for problem in result.problems:
        typer.secho(f"warning: {problem.detail}", fg="yellow", err=True)
    typer.echo(render(result))
    written = [cfg.out, cfg.markdown_path] + ([cfg.plot] if cfg.plot else [])
    typer.echo("wrote " + ", ".join(map(str, written)))


@app.command()
@friendly
@config_options
def ui(host: str = typer.Option("127.0.0.1", help="address to listen on (0.0.0.0: every interface)"),
       port: int = typer.Option(7860, help="TCP port"),
       max_upload_mb: float = typer.Option(100.0, "--max-upload-mb", help="largest file the Documents tab accepts"),
       config: Optional[AssistantConfig] = None) -> None:
    """Open the web UI: chat with cited answers, upload and manage documents."""
    kb = Path(config.kb)
    if not (kb / "kb.sqlite").is_file():
        from index.kb import KnowledgeBase

        KnowledgeBase.open(kb, embedder=config.embedder).close()
        typer.secho(f"created an empty knowledge base at {kb}; add documents in the Documents tab", err=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        typer.secho(f"warning: serving on {host}: anyone who can reach it can read and change your documents",
                    fg="yellow", err=True)
    from ui.app import launch

    launch(_assistant(config), kb_dir=kb, host=host, port=port, max_upload_mb=max_upload_mb)


if __name__ == "__main__":
    app()
