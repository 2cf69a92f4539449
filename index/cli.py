"""The ``ingest`` and ``index`` command lines (thin: parse flags, call the library, print).

The ``ingest`` commands live here, beside ``index``, because storing a document needs the
embedder and the store (``index``), and imports point one way: ``index -> ingest``.
"""
from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from index.config import DEFAULT_KB, KB_ENV, MODES, IndexConfig

ingest_app = typer.Typer(help="Add documents (PDF, .txt, .md) to a knowledge base, list and remove them.",
                         no_args_is_help=True, add_completion=False)
index_app = typer.Typer(help="Search a knowledge base, evaluate retrieval on BEIR sets, re-embed.",
                        no_args_is_help=True, add_completion=False)

KbOpt = typer.Option(Path(DEFAULT_KB), "--kb", envvar=KB_ENV, help="knowledge-base folder")
JsonOpt = typer.Option(False, "--json", help="print machine-readable JSON")
EmbedderOpt = typer.Option(None, "--embedder", help="sentence-transformers id or path "
                           "(default: what the KB was built with; new KBs: multilingual-e5-small)")


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the library's typed errors into one-line messages and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from index.errors import IndexError_
        from ingest.errors import IngestError

        try:
            return fn(*args, **kwargs)
        except (IndexError_, IngestError, ValueError, FileNotFoundError) as e:
            typer.secho(f"error: {e}", fg="red", err=True)
            raise typer.Exit(2) from None

    return wrapper


def _open(kb: Path, **fields: Any) -> Any:
    import logging

    from index.kb import KnowledgeBase

    # pypdf reports recoverable damage through logging; the summary table says what matters.
    logging.getLogger("pypdf").propagate = False

    config = IndexConfig(kb=kb, **{k: v for k, v in fields.items() if v is not None})
    return KnowledgeBase.open(kb, config=config)


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def _finish(report: Any, as_json: bool) -> None:
    if as_json:
        _print_json(report.to_json())
    else:
        from rich.console import Console

        Console().print(report.render())
    if not report.ok:
        raise typer.Exit(1)


@ingest_app.command("add")
@friendly
def add(paths: list[str] = typer.Argument(..., help="files, globs or folders"),
        kb: Path = KbOpt, password: Optional[str] = typer.Option(None, help="password of encrypted PDFs"),
        ocr: bool = typer.Option(True, help="OCR pages that have no usable text layer"),
        embedder: Optional[str] = EmbedderOpt,
        max_tokens: Optional[int] = typer.Option(None, help="chunk size in embedder tokens (new KB: 500)"),
        overlap: Optional[int] = typer.Option(None, help="tokens shared by neighbouring chunks (new KB: 50)"),
        lock_timeout_s: float = typer.Option(10.0, help="seconds to wait for another writer"),
        as_json: bool = JsonOpt) -> None:
    """Add (or update) documents; unchanged files are skipped without re-embedding."""
    with _open(kb, embedder=embedder, max_tokens=max_tokens, overlap=overlap, ocr=ocr,
               lock_timeout_s=lock_timeout_s) as base:
        report = base.add(paths, password=password, progress=not as_json)
    _finish(report, as_json)


@ingest_app.command("sync")
@friendly
def sync(folder: Path = typer.Argument(..., help="folder to mirror"), kb: Path = KbOpt,
         password: Optional[str] = typer.Option(None, help="password of encrypted PDFs"),
         ocr: bool = typer.Option(True, help="OCR pages that have no usable text layer"),
         as_json: bool = JsonOpt) -> None:
    """Add new and changed files of FOLDER, remove documents whose file was deleted."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    with _open(kb, ocr=ocr) as base:
        report = base.sync(folder, password=password, progress=not as_json)
    _finish(report, as_json)


@ingest_app.command("list")
@friendly
def list_(kb: Path = KbOpt, as_json: bool = JsonOpt) -> None:
    """List the documents of the knowledge base."""
    from dataclasses import asdict

    from index.store import Store

    if not (kb / "kb.sqlite").exists():
        raise FileNotFoundError(f"no knowledge base at {kb}; create one with `ingest add FILES --kb {kb}`")
    store = Store(kb / "kb.sqlite")
    docs = store.documents()
    store.close()
    if as_json:
        _print_json([asdict(d) | {"ocr_pages": list(d.ocr_pages)} for d in docs])
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{kb}: {len(docs)} documents")
    for col in ("sha256", "title", "pages", "OCR'd", "chunks", "path"):
        table.add_column(col, overflow="fold")
    for d in docs:
        table.add_row(d.sha256[:12], d.title, str(d.n_pages), str(len(d.ocr_pages) or ""),
                      str(d.n_chunks), d.path)
    Console().print(table)


@ingest_app.command("rm")
@friendly
def rm(doc: str = typer.Argument(..., help="sha256 (prefix), path, file name or title"),
       kb: Path = KbOpt, as_json: bool = JsonOpt) -> None:
    """Remove a document and its chunks."""
    with _open(kb) as base:
        info = base.remove(doc)
    if as_json:
        _print_json({"removed": info.sha256, "path": info.path, "chunks": info.n_chunks})
    else:
        typer.echo(f"removed {info.path} ({info.n_chunks} chunks)")


@index_app.command("search")
@friendly
def search(query: str = typer.Argument(...), kb: Path = KbOpt, k: int = typer.Option(5, "--k"),
           mode: str = typer.Option("hybrid", help=" | ".join(MODES)),
           reranker: Optional[str] = typer.Option(None, help="cross-encoder id or path"),
           as_json: bool = JsonOpt) -> None:
    """Print the best chunks for QUERY: rank, score, document, page, snippet."""
    if not (kb / "kb.sqlite").exists():
        raise FileNotFoundError(f"no knowledge base at {kb}; create one with `ingest add FILES --kb {kb}`")
    with _open(kb, mode=mode, k=k, reranker=reranker) as base:
        hits = base.search(query, k=k, mode=mode)
    if as_json:
        from dataclasses import asdict

        _print_json([asdict(h) | {"rank": r} for r, h in enumerate(hits, 1)])
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{query}")
    for col in ("#", "score", "document", "page", "snippet"):
        table.add_column(col, overflow="fold")
    for r, h in enumerate(hits, 1):
        pages = str(h.page_start) if h.page_start == h.page_end else f"{h.page_start}-{h.page_end}"
        table.add_row(str(r), f"{h.score:.3f}", h.title, pages, _snippet(h.text))
    Console().print(table)


def _snippet(text: str, n: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n] + "…"


@index_app.command("reindex")
@friendly
def reindex(kb: Path = KbOpt, embedder: Optional[str] = EmbedderOpt,
            max_tokens: Optional[int] = typer.Option(None), overlap: Optional[int] = typer.Option(None)) -> None:
    """Re-chunk and re-embed every document (after changing the embedder or chunk settings)."""
    from index.kb import KnowledgeBase

    fields = {k: v for k, v in {"max_tokens": max_tokens, "overlap": overlap}.items() if v is not None}
    base = KnowledgeBase.open(kb, config=IndexConfig(kb=kb))
    new = base.reindex(embedder, progress=True, **fields)
    typer.echo(f"reindexed {len(new.documents())} documents with {new.embedder.name} "
               f"(max_tokens={new.config.max_tokens}, overlap={new.config.overlap})")
    new.close()


@index_app.command("eval")
@friendly
def eval_(beir: Path = typer.Option(..., "--beir", help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/"),
          split: Optional[str] = typer.Option(None, help="qrels split (default: the only one present)"),
          mode: str = typer.Option("hybrid", help=" | ".join(MODES)), k: int = typer.Option(10, "--k"),
          kb: Optional[Path] = typer.Option(None, "--kb", help="where to build the index (default: a cache)"),
          embedder: Optional[str] = EmbedderOpt, as_json: bool = JsonOpt) -> None:
    """Build (or reuse) an index of a BEIR folder and print nDCG@10, Recall@10/100, MRR@10."""
    from index.evaluate import evaluate_beir

    figures = evaluate_beir(beir, split=split, mode=mode, k=k, kb=kb, embedder=embedder,
                            progress=not as_json)
    if as_json:
        _print_json(figures)
    else:
        typer.echo("  ".join(f"{name} {value:.4f}" if isinstance(value, float) else f"{name} {value}"
                             for name, value in figures.items()))
