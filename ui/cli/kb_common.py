"""What the ``ingest`` and ``index`` commands share: the knowledge-base options, opening it, printing."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from index.config import DEFAULT_KB, KB_ENV, IndexConfig

KbOpt = typer.Option(Path(DEFAULT_KB), "--kb", envvar=KB_ENV, help="knowledge-base folder")
JsonOpt = typer.Option(False, "--json", help="print machine-readable JSON")
EmbedderOpt = typer.Option(None, "--embedder", help="sentence-transformers id or path "
                           "(default: what the KB was built with; new KBs: multilingual-e5-small)")


def open_kb(kb: Path, **fields: Any) -> Any:
    import logging

    from index.kb import KnowledgeBase

    # pypdf reports recoverable damage through logging; the summary table says what matters.
    logging.getLogger("pypdf").propagate = False

    config = IndexConfig(kb=kb, **{k: v for k, v in fields.items() if v is not None})
    return KnowledgeBase.open(kb, config=config)


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def finish(report: Any, as_json: bool) -> None:
    if as_json:
        print_json(report.to_json())
    else:
        from rich.console import Console

        Console().print(report.render())
    if not report.ok:
        raise typer.Exit(1)


