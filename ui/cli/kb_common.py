"""What the ``ingest`` and ``index`` commands share: opening a knowledge base, printing JSON and batch
reports. Their options come from :class:`index.config.IndexConfig` (:mod:`ui.cli.options`); the
"is there a knowledge base" check is :func:`index.store.require_store`.
"""
from __future__ import annotations

import json
import sys
from typing import Any

import typer

from index.config import IndexConfig

JsonOpt = typer.Option(False, "--json", help="print machine-readable JSON")


def open_kb(config: IndexConfig) -> Any:
    """Open (creating if needed) the knowledge base at ``config.kb`` with ``config``'s settings."""
    import logging

    from index.kb import KnowledgeBase

    # pypdf reports recoverable damage through logging; the summary table says what matters.
    logging.getLogger("pypdf").propagate = False
    return KnowledgeBase.open(config.kb, config=config)


def print_json(obj: Any) -> None:
    """``obj`` as indented JSON on stdout (non-ASCII text kept as is)."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def finish(report: Any, as_json: bool) -> None:
    """Print a batch report (table or JSON); exit status 1 when a file of the batch failed."""
    if as_json:
        print_json(report.to_json())
    else:
        from rich.console import Console

        Console().print(report.render())
    if not report.ok:
        raise typer.Exit(1)
