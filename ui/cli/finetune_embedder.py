"""``finetune embedder``: adapt the knowledge base's embedder to its documents and questions.

Options come from :class:`assistant.from_kb.embedder_config.EmbedderConfig` (:mod:`ui.cli.options`);
the work is :func:`assistant.from_kb.adapt_embedder.adapt_embedder`. Exit status: :mod:`ui.errors`.
"""
from __future__ import annotations

import contextlib
import json
import sys

import typer

from assistant.from_kb.embedder_config import EmbedderConfig
from ui.cli.options import KB_FLAG, Flag, config_options
from ui.errors import friendly


@friendly
@config_options(EmbedderConfig, flags={"out": Flag(required=True), "kb": KB_FLAG})
def embedder_command(*, config: EmbedderConfig,
                     as_json: bool = typer.Option(False, "--json", help="print the report as JSON")) -> None:
    """Fine-tune the retriever on (question, gold chunk) pairs of the knowledge base, with mined hard negatives.

    Prints the held-out questions' nDCG@10 / MRR@10 / hit@k with the base and the adapted
    embedder, and warns when the adapted one is worse. Then: index reindex --embedder OUT.
    """
    from assistant.from_kb.adapt_embedder import adapt_embedder

    with contextlib.redirect_stdout(sys.stderr):  # the trainer prints its logs to stdout: keep stdout the report's
        report = adapt_embedder(config, progress=not as_json)
    typer.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2) if as_json else report.render())
