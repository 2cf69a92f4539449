"""The ``assistant`` command line: ``ask``, ``chat``, ``serve``, ``eval`` and ``ui``.

    assistant ask "What is the refund policy?" --kb kb --model ~/models/Qwen3-0.6B
    assistant ask "退货政策是什么？" --retrieval-only --json
    assistant chat --adapter outputs/qwen3-lora
    assistant serve --port 8000

Every flag of ``ask``/``chat``/``serve`` is a field of :class:`assistant.config.AssistantConfig`.
"""
import dataclasses
import functools
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

import typer

from assistant.config import AssistantConfig
from assistant.evaluation.run import EvalConfig
from ui.cli.options import K_FLAG, KB_FLAG, Flag, config_options
from ui.errors import friendly
from ui.http_guard import DEFAULT_MAX_BODY_MB
from ui.web.uploads import DEFAULT_MAX_UPLOAD_MB

app = typer.Typer(help="Ask questions about your documents: answers grounded in cited pages.",
                  no_args_is_help=True, add_completion=False)

# One option per AssistantConfig field (help and default from the dataclass), in place of the
# command's ``config`` parameter; not given: AssistantConfig's default.
assistant_options = functools.partial(config_options, AssistantConfig,
                                      flags={"kb": KB_FLAG, "k": K_FLAG, "api_key": Flag(envvar="OPENAI_API_KEY")})


def _assistant(config: AssistantConfig) -> Any:
    from assistant.answer import Assistant

    return Assistant(config=config)


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def print_sources(answer: Any, console: Any) -> None:
    """What was searched when it was not the question as typed (a follow-up), then a table of the sources
    in the prompt: number, document, page(s), cosine similarity to the question (the BM25 score when
    none was computed: ``ui.cli.index.score_column``), cited or not; then a warning for citation marks
    that named no source (removed) and for an answer citing none."""
    from rich.markup import escape
    from rich.table import Table

    from assistant.citations import citation_notes
    from assistant.condense import searched_note
    from ui.cli.index import score_column

    searched = searched_note(answer.question, answer.search_queries)
    if searched:  # a follow-up: retrieval searched its rewrite (or both)
        console.print(f"[dim]{escape(searched)}[/]")
    if answer.abstained:
        reason = f": {escape(answer.abstain_reason)}" if answer.abstain_reason else ""
        console.print(f"[dim](declined without asking the model{reason})[/]")
        return
    cited = {c.number for c in answer.citations}
    header, scores = score_column(answer.sources)
    table = Table("#", "document", "page", header, "cited", title="Sources", title_justify="left")
    for n, (hit, score) in enumerate(zip(answer.sources, scores), 1):
        pages = str(hit.page_start) if hit.page_end == hit.page_start else f"{hit.page_start}-{hit.page_end}"
        table.add_row(f"[{n}]", hit.title, pages, score, "✓" if n in cited else "")
    console.print(table)
    for note in citation_notes(answer):
        console.print(f"[yellow]⚠ {escape(note)}[/]")


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
@assistant_options()
def ask(question: str = typer.Argument(..., help="the question (any language)"),
        stream: bool = typer.Option(False, "--stream", help="print the answer as it is generated"),
        as_json: bool = typer.Option(False, "--json", help="print the Answer as JSON (no streaming)"),
        *, config: AssistantConfig) -> None:
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
@assistant_options()
def chat(*, config: AssistantConfig) -> None:
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
@assistant_options(exclude=("api_key",))
def serve(host: str = typer.Option("127.0.0.1", help="address to listen on (0.0.0.0: every interface)"),
          port: int = typer.Option(8000, help="TCP port"),
          api_key: Optional[str] = typer.Option(None, "--api-key", envvar="ASSISTANT_API_KEY",
                                                help="API key clients must send as 'Bearer KEY'; none: open"),
          allowed_host: list[str] = typer.Option([], "--allowed-host", help=(
              "Host header the server answers (repeatable); default: the loopback names when --host is "
              "loopback, any name when it is 0.0.0.0")),
          max_body_mb: float = typer.Option(DEFAULT_MAX_BODY_MB, min=0.001,
                                            help="largest request body, MB (413 above)"),
          *, config: AssistantConfig) -> None:
    """Serve the assistant over HTTP (OpenAI-compatible API).

    Here --api-key is the key clients must send; the key of an --endpoint behind this server
    comes from $OPENAI_API_KEY.
    """
    from ui.http import serve as run_server

    run_server(_assistant(config), host=host, port=port, api_key=api_key, allowed_host=tuple(allowed_host),
               max_body_mb=max_body_mb)


def _systems(values: tuple[str, ...]) -> tuple[str, ...]:
    """``--systems base,adapter --systems base+rag`` -> ("base", "adapter", "base+rag")."""
    return tuple(s.strip() for part in values for s in part.split(",") if s.strip())


@app.command("eval")
@friendly
@assistant_options()
@config_options(EvalConfig, into="settings", exclude=("progress",), flags={"systems": Flag(convert=_systems)})
def eval_command(*, settings: EvalConfig,
                 progress: bool = typer.Option(True, "--progress/--no-progress", help="progress bar on stderr"),
                 config: AssistantConfig) -> None:
    """Score retrieval (hit@k, MRR) and four systems (base / adapter, closed-book / RAG) in one table.

    --compare-embedder DIR_OR_ID scores retrieval once more over a cached copy of the knowledge base re-embedded
    with that embedder, beside the KB's own (only retrieval: the systems answer with the KB's embedder)."""
    from assistant.evaluation.run import run_eval

    cfg = replace(settings, progress=progress)  # the library is quiet by default; the command shows progress
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
@assistant_options()
def ui(host: str = typer.Option("127.0.0.1", help="address to listen on (0.0.0.0: every interface)"),
       port: int = typer.Option(7860, help="TCP port"),
       max_upload_mb: float = typer.Option(DEFAULT_MAX_UPLOAD_MB, "--max-upload-mb",
                                           help="largest file the Documents tab accepts"),
       examples: Optional[Path] = typer.Option(None, "--examples", help=(
           "UTF-8 text file, one example question per line, shown on the empty chat (default: made "
           "from the knowledge base)")),
       *, config: AssistantConfig) -> None:
    """Open the web UI: chat with cited answers, upload and manage documents."""
    from index.store import store_path

    questions = _example_questions(examples) if examples is not None else None

    kb = Path(config.kb)
    if not store_path(kb).is_file():
        from index.kb import KnowledgeBase

        KnowledgeBase.open(kb, embedder=config.embedder).close()
        typer.secho(f"created an empty knowledge base at {kb}; add documents in the Documents tab", err=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        typer.secho(f"warning: serving on {host}: anyone who can reach it can read and change your documents",
                    fg="yellow", err=True)
    from ui.web.app import launch

    launch(_assistant(config), kb_dir=kb, host=host, port=port, max_upload_mb=max_upload_mb, examples=questions)


def _example_questions(path: Path) -> list[str]:
    """The non-blank lines of ``path``; FileNotFoundError / ValueError (exit 2) naming the file."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise ValueError(f"--examples {path}: not UTF-8 text ({err.reason} at byte {err.start}); "
                         "save it as UTF-8") from None
    except OSError as err:
        raise FileNotFoundError(f"--examples {path}: {err.strerror or err}") from None
    questions = [line.strip() for line in lines if line.strip()]
    if not questions:
        raise ValueError(f"--examples {path}: no question in it (one per line)")
    return questions


if __name__ == "__main__":
    app()
