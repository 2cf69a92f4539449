"""The ``ingest`` command: add documents (PDF, .txt, .md) to a knowledge base, list, remove, sync them.

    ingest add docs/*.pdf notes/ --kb kb
    ingest list --json
    ingest rm handbook.pdf
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ui.cli.errors import friendly
from ui.cli.kb_common import EmbedderOpt, JsonOpt, KbOpt, finish, open_kb, print_json

app = typer.Typer(help="Add documents (PDF, .txt, .md) to a knowledge base, list and remove them.",
                  no_args_is_help=True, add_completion=False)


@app.command("add")
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
    with open_kb(kb, embedder=embedder, max_tokens=max_tokens, overlap=overlap, ocr=ocr,
               lock_timeout_s=lock_timeout_s) as base:
        report = base.add(paths, password=password, progress=not as_json)
    finish(report, as_json)


@app.command("sync")
@friendly
def sync(folder: Path = typer.Argument(..., help="folder to mirror"), kb: Path = KbOpt,
         password: Optional[str] = typer.Option(None, help="password of encrypted PDFs"),
         ocr: bool = typer.Option(True, help="OCR pages that have no usable text layer"),
         as_json: bool = JsonOpt) -> None:
    """Add new and changed files of FOLDER, remove documents whose file was deleted."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    with open_kb(kb, ocr=ocr) as base:
        report = base.sync(folder, password=password, progress=not as_json)
    finish(report, as_json)


@app.command("list")
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
        print_json([asdict(d) | {"ocr_pages": list(d.ocr_pages)} for d in docs])
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


@app.command("rm")
@friendly
def rm(doc: str = typer.Argument(..., help="sha256 (prefix), path, file name or title"),
       kb: Path = KbOpt, as_json: bool = JsonOpt) -> None:
    """Remove a document and its chunks."""
    with open_kb(kb) as base:
        info = base.remove(doc)
    if as_json:
        print_json({"removed": info.sha256, "path": info.path, "chunks": info.n_chunks})
    else:
        typer.echo(f"removed {info.path} ({info.n_chunks} chunks)")


if __name__ == "__main__":
    app()
