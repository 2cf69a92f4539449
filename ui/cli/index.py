"""The ``index`` command: search a knowledge base, evaluate retrieval on BEIR sets, re-embed.

    index search "年假没休完怎么办？" --k 5
    index eval --beir ../shared/data/retrieval/scifact
    index eval --beir DIR --embedder multilingual-e5-small --compare-embedder out/e5-adapted
    index reindex --embedder BAAI/bge-small-zh-v1.5
    index migrate --from kb --to milvus://localhost:19530/kb
    index collect-orphans --kb milvus://localhost:19530/kb
"""
from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Optional, Sequence

import typer

from index.config import KB_ENV, IndexConfig, MigrateConfig
from index.records import Hit
from index.store import require_store
from ui.cli.kb_common import JsonOpt, open_kb, print_json
from ui.cli.options import K_FLAG, KB_FLAG, Flag, config_options
from ui.errors import friendly

app = typer.Typer(help="Search a knowledge base, evaluate retrieval on BEIR sets, re-embed.",
                  no_args_is_help=True, add_completion=False)


@app.command("search")
@friendly
@config_options(IndexConfig, include=("kb", "k", "mode", "reranker"), flags={"kb": KB_FLAG, "k": K_FLAG})
def search(query: str = typer.Argument(..., help="what to look for (any language)"), *, config: IndexConfig,
           as_json: bool = JsonOpt) -> None:
    """Print the best chunks for QUERY: rank, cosine similarity to the query, document, page, snippet.

    The cosine (-1..1, comparable across queries) is not the ranking score: hybrid mode ranks by the
    fused score, which is 1.0 for every query's best chunk. --json gives both ("score", "similarity").
    bm25 mode embeds no query and shows the BM25 score instead."""
    require_store(config.kb)
    with open_kb(config) as base:
        hits = base.search(query, k=config.k, mode=config.mode)
    if as_json:
        from dataclasses import asdict

        print_json([asdict(h) | {"rank": r} for r, h in enumerate(hits, 1)])
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{query}")
    header, scores = score_column(hits)
    for col in ("#", header, "document", "page", "snippet"):
        table.add_column(col, overflow="fold")
    for r, (h, score) in enumerate(zip(hits, scores), 1):
        pages = str(h.page_start) if h.page_start == h.page_end else f"{h.page_start}-{h.page_end}"
        table.add_row(str(r), score, h.title, pages, _snippet(h.text))
    Console().print(table)


def score_column(hits: Sequence[Hit]) -> tuple[str, list[str]]:
    """(header, one cell per hit) of the score column of a table of hits: the cosine similarity to the
    query ("cosine", the same scale for every query), or the ranking score ("score") when the search
    embedded no query (bm25 mode).

    >>> hit = Hit("c", "text", 1.0, "sha", "doc", "doc.txt", 1, 1, 0, 4, similarity=0.4213)
    >>> score_column([hit]), score_column([replace(hit, similarity=None)])
    (('cosine', ['0.421']), ('score', ['1.000']))
    """
    if any(h.similarity is not None for h in hits):
        return "cosine", ["–" if h.similarity is None else f"{h.similarity:.3f}" for h in hits]
    return "score", [f"{h.score:.3f}" for h in hits]


def _snippet(text: str, n: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n] + "…"


@app.command("reindex")
@friendly
@config_options(IndexConfig, include=("kb", "embedder", "embedder_backend", "max_tokens", "overlap"),
                flags={"kb": KB_FLAG})
def reindex(*, config: IndexConfig) -> None:
    """Re-chunk and re-embed every document (after changing the embedder or chunk settings)."""
    require_store(config.kb)
    # Opened as built; the new embedder and chunk settings (None: keep) go to reindex.
    base = open_kb(replace(config, embedder=None, embedder_backend="auto", max_tokens=None, overlap=None))
    chunking = {k: v for k, v in {"max_tokens": config.max_tokens, "overlap": config.overlap}.items() if v is not None}
    new = base.reindex(config.embedder, progress=True, embedder_backend=config.embedder_backend, **chunking)
    typer.echo(f"reindexed {len(new.documents())} documents with {new.embedder.name} "
               f"(max_tokens={new.config.max_tokens}, overlap={new.config.overlap})")
    new.close()


@app.command("migrate")
@friendly
@config_options(MigrateConfig, flags={"source": Flag(names=("--from",), envvar=KB_ENV),
                                      "target": Flag(names=("--to",), required=True)})
def migrate(*, config: MigrateConfig, as_json: bool = JsonOpt) -> None:
    """Copy a knowledge base (documents, chunks, vectors) to Milvus or another folder: nothing is embedded again.

    index migrate --from kb --to milvus://localhost:19530/kb"""
    from index.milvus_migrate import migrate as run

    done = run(config.source, config.target, progress=not as_json)
    if as_json:
        print_json(asdict(done) | {"to": str(config.target)})
        return
    typer.echo(f"copied {done.documents} document(s) ({done.chunks} chunks) to {config.target}; "
               f"{done.skipped} were there already; {done.replaced} replaced there")
    if done.only_in_target:
        shown = ", ".join(done.only_in_target[:5]) + (", ..." if len(done.only_in_target) > 5 else "")
        typer.echo(f"note: {len(done.only_in_target)} document(s) there are not in {config.source} (removed since "
                   f"an earlier copy, or added there): {shown}; `ingest rm PATH --kb {config.target}` removes one",
                   err=True)


@app.command("collect-orphans")
@friendly
@config_options(IndexConfig, include=("kb",), flags={"kb": KB_FLAG})
def collect_orphans(*, config: IndexConfig, as_json: bool = JsonOpt) -> None:
    """Delete the chunks and pages that ingest runs killed before their commit left in a Milvus knowledge base.

    Searches never show them; this frees their space. Run it while no ingest writes to the knowledge base:
    a document being added would lose its chunks. A folder knowledge base has none: nothing to collect."""
    from index.milvus_uri import parse_kb_location

    require_store(config.kb)  # nothing there: say so, create nothing
    where = str(parse_kb_location(config.kb) or config.kb)
    with open_kb(config) as base:  # opened as built: no embedder loaded
        n, backend = base.collect_orphans(), "milvus" if base.remote else "folder"
    if as_json:
        print_json({"kb": where, "backend": backend, "orphans": n})
    elif n is None:
        typer.echo(f"nothing to collect in {where}: a folder knowledge base writes each document in one "
                   "transaction, so it has no orphaned chunks")
    else:
        typer.echo(f"removed the orphaned chunks and pages of {n} document{'' if n == 1 else 's'} from {where}")


@app.command("eval")
@friendly
@config_options(IndexConfig, include=("mode", "embedder"))
def eval_(beir: Path = typer.Option(..., "--beir", help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/"),
          split: Optional[str] = typer.Option(None, help="qrels split (default: the only one present)"),
          k: int = typer.Option(10, "--k", help="cut-off k of nDCG@k, Recall@k and MRR@k"),
          kb: Optional[Path] = typer.Option(None, "--kb", help="where dense and hybrid modes build the index "
                                            "(default: a cache); --mode bm25 builds none"),
          max_queries: Optional[int] = typer.Option(None, "--max-queries", min=1, help=(
              "score N queries, chosen at random with --seed (default: all)")),
          max_docs: Optional[int] = typer.Option(None, "--max-docs", min=1, help=(
              "index N documents: every document the scored queries' qrels name is kept, then others "
              "chosen at random with --seed up to N in all (more when those alone exceed N; default: all)")),
          seed: int = typer.Option(0, "--seed", help="seed of the --max-queries / --max-docs subset"),
          compare_embedder: Optional[str] = typer.Option(None, "--compare-embedder", help=(
              "a second embedder (id or folder, e.g. `finetune embedder`'s --out): score both, each on its own "
              "cached index, in one table with the difference (second - first); not with --kb")),
          *, config: IndexConfig, as_json: bool = JsonOpt) -> None:
    """Build (or reuse) an index of a BEIR folder and print nDCG@10, Recall@10/100, MRR@10.

    --mode bm25 loads no embedding model: it chunks the corpus as a knowledge base would and searches BM25 in memory.
    The cached index is keyed by the BEIR folder, the subset and the embedder (its backend and weight files).
    """
    from index.evaluate import compare_beir, comparison_table, evaluate_beir

    options = dict(split=split, mode=config.mode, k=k, kb=kb, progress=not as_json, max_queries=max_queries,
                   max_docs=max_docs, seed=seed)
    if compare_embedder is not None:
        result = compare_beir(beir, (config.embedder, compare_embedder), **options)
        if as_json:
            print_json(result)
        else:
            first = result["runs"][0]
            typer.echo(f"{first['mode']} retrieval, {first['queries']} queries, {first['docs']} documents")
            typer.echo(comparison_table(result))
        return
    figures = evaluate_beir(beir, embedder=config.embedder, **options)
    if as_json:
        print_json(figures)
    else:
        typer.echo("  ".join(f"{name} {value:.4f}" if isinstance(value, float) else f"{name} {value}"
                             for name, value in figures.items()))


if __name__ == "__main__":
    app()
