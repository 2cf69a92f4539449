"""The ``index`` command: search a knowledge base, evaluate retrieval on BEIR sets, re-embed.

    index search "年假没休完怎么办？" --k 5
    index eval --beir ../shared/data/retrieval/scifact
    index reindex --embedder BAAI/bge-small-zh-v1.5
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from index.config import MODES, IndexConfig
from ui.cli.errors import friendly
from ui.cli.kb_common import EmbedderOpt, JsonOpt, KbOpt, open_kb, print_json

app = typer.Typer(help="Search a knowledge base, evaluate retrieval on BEIR sets, re-embed.",
                  no_args_is_help=True, add_completion=False)


@app.command("search")
@friendly
def search(query: str = typer.Argument(...), kb: Path = KbOpt, k: int = typer.Option(5, "--k"),
           mode: str = typer.Option("hybrid", help=" | ".join(MODES)),
           reranker: Optional[str] = typer.Option(None, help="cross-encoder id or path"),
           as_json: bool = JsonOpt) -> None:
    """Print the best chunks for QUERY: rank, score, document, page, snippet."""
    if not (kb / "kb.sqlite").exists():
        raise FileNotFoundError(f"no knowledge base at {kb}; create one with `ingest add FILES --kb {kb}`")
    with open_kb(kb, mode=mode, k=k, reranker=reranker) as base:
        hits = base.search(query, k=k, mode=mode)
    if as_json:
        from dataclasses import asdict

        print_json([asdict(h) | {"rank": r} for r, h in enumerate(hits, 1)])
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


@app.command("reindex")
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


@app.command("eval")
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
        print_json(figures)
    else:
        typer.echo("  ".join(f"{name} {value:.4f}" if isinstance(value, float) else f"{name} {value}"
                             for name, value in figures.items()))


if __name__ == "__main__":
    app()
