"""The ``ingest`` command: add documents (PDF, Word, PowerPoint, Excel/CSV, HTML, EPUB, images,
.txt/.md) to a knowledge base, list, remove, sync them.

    ingest add docs/*.pdf notes/ --kb kb
    ingest list --json
    ingest rm handbook.pdf
    ingest sync docs/

A document is its bytes: byte-identical files are one document stored under each of their paths
(``list`` shows them all). ``rm`` by a path or file name removes that path (the document goes with
its last one); by title or sha256 prefix, the whole document.
"""
from __future__ import annotations

from pathlib import Path

import typer

from index.config import IndexConfig
from ui.cli.kb_common import JsonOpt, finish, open_kb, print_json
from ui.cli.options import KB_FLAG, config_options
from ui.errors import friendly

app = typer.Typer(help="Add documents (PDF, Word, PowerPoint, Excel/CSV, HTML, EPUB, images, text) "
                       "to a knowledge base, list and remove them.",
                  no_args_is_help=True, add_completion=False)


@app.command("add")
@friendly
@config_options(IndexConfig, include=("kb", "password", "ocr", "embedder", "embedder_backend", "max_tokens", "overlap",
                                      "lock_timeout_s"),
                flags={"kb": KB_FLAG})
def add(paths: list[str] = typer.Argument(..., help="files, globs or folders"), *, config: IndexConfig,
        as_json: bool = JsonOpt) -> None:
    """Add (or update) documents; unchanged files are skipped without re-embedding."""
    with open_kb(config) as base:
        report = base.add(paths, password=config.password, progress=not as_json)
    finish(report, as_json)


@app.command("sync")
@friendly
@config_options(IndexConfig, include=("kb", "password", "ocr"), flags={"kb": KB_FLAG})
def sync(folder: Path = typer.Argument(..., help="folder to mirror"), *, config: IndexConfig,
         as_json: bool = JsonOpt) -> None:
    """Mirror FOLDER: add new and changed files, link copies and renames, forget paths no longer there."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    with open_kb(config) as base:
        report = base.sync(folder, password=config.password, progress=not as_json)
    finish(report, as_json)


@app.command("list")
@friendly
@config_options(IndexConfig, include=("kb",), flags={"kb": KB_FLAG})
def list_(*, config: IndexConfig, as_json: bool = JsonOpt) -> None:
    """List the documents of the knowledge base."""
    from dataclasses import asdict

    from index.kb import KnowledgeBase
    from index.store import require_store

    kb = config.kb
    require_store(kb)  # nothing there: say so, create nothing
    with KnowledgeBase.open(kb) as base:  # a folder or Milvus; opened as built, no embedder loaded
        docs = base.documents()
    if as_json:
        print_json([asdict(d) | {"ocr_pages": list(d.ocr_pages), "paths": list(d.all_paths)} for d in docs])
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{kb}: {len(docs)} documents")
    for col in ("sha256", "title", "pages", "OCR'd", "chunks", "path"):
        table.add_column(col, overflow="fold")
    for d in docs:  # every path the document is stored under, the display path first
        table.add_row(d.sha256[:12], d.title, str(d.n_pages), str(len(d.ocr_pages) or ""),
                      str(d.n_chunks), "\n".join(d.all_paths))
    Console().print(table)


@app.command("rm")
@friendly
@config_options(IndexConfig, include=("kb",), flags={"kb": KB_FLAG})
def rm(doc: str = typer.Argument(..., help="path or file name (that path), title or sha256 prefix (the document)"),
       *, config: IndexConfig, as_json: bool = JsonOpt) -> None:
    """Remove a path of a document (the document goes with its last path), or a whole document."""
    with open_kb(config) as base:
        gone = base.remove(doc)
    if as_json:
        print_json({"removed": gone.sha256, "path": gone.path, "chunks": gone.n_chunks,
                    "paths": list(gone.paths), "document_removed": gone.document_removed,
                    "paths_left": list(gone.paths_left)})
    elif gone.document_removed:
        typer.echo(f"removed {'; '.join(gone.paths)} ({gone.n_chunks} chunks)")
    else:
        typer.echo(f"removed the path {'; '.join(gone.paths)}; the document stays under "
                   f"{'; '.join(gone.paths_left)} (its chunks are kept)")


if __name__ == "__main__":
    app()
