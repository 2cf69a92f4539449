"""``index eval``: score retrieval on a BEIR folder (or a seeded subset of it).

Dense and hybrid modes build (or reuse) a knowledge base of the corpus, cached per BEIR folder,
embedder and subset. BM25 mode embeds nothing and builds no knowledge base: it chunks the corpus
as a new knowledge base would (the embedder's tokenizer counts the tokens; its model is never
loaded) and searches a BM25 index of those chunks in memory, so its figures are those of the
knowledge base's BM25 side.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Callable

from index.beir import BeirSet
from index.records import Hit

CACHE_ENV = "QDA_CACHE"


def cache_root() -> Path:
    """Where built artefacts are cached: ``$QDA_CACHE`` or ``~/.cache/qwen-domain-assistant``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "qwen-domain-assistant")


def embedder_version(embedder: str, backend: str = "auto") -> str:
    """A short tag that changes when ``embedder``'s vectors would: its backend (:func:`index.embedder.resolve_backend`:
    the default e5 is onnx int8 on CPU, torch with CUDA) and its weight files (path, size, mtime), so a
    cache built on one backend, or before a local folder's weights changed, is never reused. The hash
    fakes: their fingerprint. Raises :class:`index.embedder.EmbedderNotFound` for an unknown embedder.

    >>> embedder_version("hash-64")
    'hash-v1-64'
    """
    from index.embedder import _WEIGHT_SUFFIXES, load_embedder, resolve_backend, resolve_model_folder

    if re.fullmatch(r"hash-\d+", embedder):
        return str(load_embedder(embedder).fingerprint)
    folder = resolve_model_folder(embedder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in _WEIGHT_SUFFIXES)
    digest = hashlib.sha256(str(folder).encode())
    for path in files:
        stat = path.stat()
        digest.update(f"\0{path.relative_to(folder).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return f"{resolve_backend(embedder, backend)}-{digest.hexdigest()[:12]}"


def default_eval_kb(beir_dir: Path, embedder: str, subset: str = "", version: str = "") -> Path:
    """A cache folder per (BEIR folder, embedder, ``subset`` tag, ``version``: :func:`embedder_version`),
    so a second ``index eval`` re-embeds nothing and a changed embedder or backend gets a fresh one.

    >>> name = default_eval_kb(Path("/data/scifact"), "BAAI/bge-small", "d500-q50-s0", "torch-0123abcd").name
    >>> name.startswith("scifact-d500-q50-s0-"), name.endswith("-BAAI_bge-small-torch-0123abcd")
    (True, True)
    """
    key = hashlib.sha256(str(beir_dir.resolve()).encode()).hexdigest()[:10]
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", embedder)[-60:]
    return cache_root() / "beir" / "-".join(p for p in (beir_dir.name, subset, key, safe, version) if p)


def evaluate_beir(beir_dir: Path, *, split: str | None = None, mode: str = "hybrid", k: int = 10,
                  kb: Path | None = None, embedder: str | None = None, progress: bool = False,
                  max_queries: int | None = None, max_docs: int | None = None, seed: int = 0) -> dict:
    """nDCG@k, Recall@k, Recall@100 and MRR@k of ``mode`` retrieval on a BEIR folder, with
    ``mode``, ``embedder`` (its name), ``queries`` and ``docs`` (the counts scored, after ``index.beir.limit``).

    Documents longer than one chunk are chunked like any other document; a document's score
    is its best chunk's, so the figures are document-level like BEIR's. ``max_queries`` /
    ``max_docs`` / ``seed``: a seeded subset (:func:`index.beir.limit`). ``kb`` (default: a
    cache folder, :func:`default_eval_kb`) is where dense and hybrid modes build the index; bm25
    mode builds none. Raises FileNotFoundError when ``beir_dir`` has no corpus.jsonl, ValueError
    for a limit below 1.

    >>> evaluate_beir(Path("../shared/data/retrieval/zh_cmrc2018_dev"))  # doctest: +SKIP
    {'ndcg@10': 0.97, 'recall@10': 0.99, 'recall@100': 1.0, 'mrr@10': 0.96, ...}
    """
    from index.beir import evaluate, limit, load_beir
    from index.config import DEFAULT_EMBEDDER
    from index.embedder import resolve_backend

    beir_dir = Path(beir_dir)
    if not (beir_dir / "corpus.jsonl").exists():
        raise FileNotFoundError(f"{beir_dir} is not a BEIR folder (no corpus.jsonl)")
    data = limit(load_beir(beir_dir, split), max_queries, max_docs, seed)
    name = embedder or DEFAULT_EMBEDDER
    doc_id = lambda hit: Path(hit.path).name  # noqa: E731 - to_documents ends every path with the corpus id
    if mode == "bm25":
        figures = evaluate(bm25_search(data, name, progress=progress), data, doc_id, k=k, progress=progress)
    elif kb is not None:  # the user's folder: opened with what it was built with unless --embedder says
        figures, name = _evaluate_kb(data, kb, embedder, "auto", mode, k, progress)
    else:
        tag = "" if max_docs is None else f"d{max_docs}-q{max_queries or 'all'}-s{seed}"
        cache = default_eval_kb(beir_dir, name, tag, embedder_version(name))
        figures, name = _evaluate_kb(data, cache, name, resolve_backend(name), mode, k, progress)
    return figures | {"mode": mode, "embedder": name, "queries": len(data.queries), "docs": len(data.corpus)}


def _evaluate_kb(data: BeirSet, kb: Path, embedder: str | None, backend: str, mode: str, k: int,
                 progress: bool) -> tuple[dict, str]:
    """Figures of ``mode`` search over the knowledge base at ``kb``, after adding ``data``'s corpus to it,
    and the name of the embedder it was built with. ``embedder`` None: the one ``kb`` records; ``backend``
    (the cache: the one :func:`embedder_version` keyed it by; a mismatch with ``kb`` raises ``EmbedderMismatch``)."""
    from index.beir import evaluate, to_documents
    from index.kb import KnowledgeBase

    with KnowledgeBase.open(kb, embedder=embedder, embedder_backend=backend) as base:
        base.add_documents(to_documents(data), progress=progress)
        figures = evaluate(lambda q, n: base.search(q, k=n, mode=mode), data, lambda hit: Path(hit.path).name,
                           k=k, progress=progress)
        return figures, base.store.meta().get("embedder_name") or str(embedder)


def compare_beir(beir_dir: Path, embedders: tuple[str | None, str], **options: object) -> dict:
    """:func:`evaluate_beir` with each of two embedders (None: the default), each on its own cached index:
    ``{"runs": [figures of the first, of the second], "difference": {metric: second - first}}``
    (every float figure: nDCG@k, Recall@k, Recall@100, MRR@k). ``options``: :func:`evaluate_beir`'s
    other keywords, but not ``kb`` (one folder cannot hold both); raises ValueError for it.
    """
    if options.get("kb") is not None:
        raise ValueError("--kb names one index folder and two embedders need two: leave --kb out with "
                         "--compare-embedder (each embedder gets its own cached index)")
    runs = [evaluate_beir(beir_dir, embedder=name, **options) for name in embedders]  # type: ignore[arg-type]
    return {"runs": runs, "difference": difference(runs[0], runs[1])}


def difference(first: dict, second: dict) -> dict[str, float]:
    """``second - first`` for every float figure both have.

    >>> difference({"ndcg@10": 0.5, "mode": "dense"}, {"ndcg@10": 0.75, "mode": "dense"})
    {'ndcg@10': 0.25}
    """
    return {key: second[key] - value for key, value in first.items()
            if isinstance(value, float) and isinstance(second.get(key), float)}


def comparison_table(result: dict) -> str:
    """A Markdown table of :func:`compare_beir`'s result: one row per embedder (by name), then the difference.

    >>> runs = [{"ndcg@10": 0.5, "embedder": "a", "mode": "dense"}, {"ndcg@10": 0.75, "embedder": "b", "mode": "dense"}]
    >>> print(comparison_table({"runs": runs, "difference": difference(*runs)}))
    | embedder | ndcg@10 |
    |---|---|
    | a | 0.5000 |
    | b | 0.7500 |
    | difference (b - a) | +0.2500 |
    """
    runs, diff = result["runs"], result["difference"]
    head = ["embedder", *diff]
    rows = [[str(r["embedder"]), *(f"{r[key]:.4f}" for key in diff)] for r in runs]
    rows.append([f"difference ({runs[1]['embedder']} - {runs[0]['embedder']})", *(f"{v:+.4f}" for v in diff.values())])
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def bm25_search(data: BeirSet, embedder: str, *, progress: bool = False) -> Callable[[str, int], list[Hit]]:
    """``search(query, n)`` -> the ``n`` best chunks by BM25 (hits without ``similarity``), over the
    chunks of ``data``'s corpus a new knowledge base built with ``embedder`` would hold: its chunk
    settings (:func:`index.kb.new_kb_chunking`), its token counter, ``index.bm25`` tokens and
    weights. Nothing is embedded (``embedder``'s model never loads; its tokenizer does).

    >>> data = BeirSet("t", "dev", {"a": ("", "green tea"), "b": ("", "black coffee")}, {"q": "tea"}, {"q": {"a": 1}})
    >>> [(h.path, round(h.score, 3)) for h in bm25_search(data, "hash-64")("green tea", 5)]
    [('beir/t/a', 0.73)]
    """
    from tqdm import tqdm

    from index.beir import to_documents
    from index.bm25 import BM25Index, tokenize
    from index.embedder import load_embedder
    from index.kb import new_kb_chunking
    from ingest.chunk import chunk_pages

    emb = load_embedder(embedder)  # name, settings and tokenizer only: the model loads on the first encode
    max_tokens, overlap = new_kb_chunking(emb)
    chunks: list[Hit] = []
    for doc in tqdm(to_documents(data), desc="chunking", unit="doc", disable=not progress):
        chunks += [Hit(c.chunk_id, c.text, 0.0, doc.sha256, doc.title, str(doc.path), c.page_start, c.page_end,
                       c.char_start, c.char_end)
                   for c in chunk_pages(doc.pages, doc_sha256=doc.sha256, max_tokens=max_tokens, overlap=overlap,
                                        count_tokens=emb.count_tokens)]
    index = BM25Index.build([str(i) for i in range(len(chunks))], [tokenize(c.text) for c in chunks])

    def search(query: str, n: int) -> list[Hit]:
        return [replace(chunks[int(i)], score=s) for i, s in index.search(tokenize(query), n)]

    return search
