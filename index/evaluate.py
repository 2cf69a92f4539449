"""``index eval``: build (or reuse) a knowledge base of a BEIR folder and score retrieval on it."""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

CACHE_ENV = "QDA_CACHE"


def cache_root() -> Path:
    """Where built artefacts are cached: ``$QDA_CACHE`` or ``~/.cache/qwen-domain-assistant``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "qwen-domain-assistant")


def default_eval_kb(beir_dir: Path, embedder: str) -> Path:
    """A cache folder per (BEIR folder, embedder), so a second ``index eval`` re-embeds nothing."""
    key = hashlib.sha256(str(beir_dir.resolve()).encode()).hexdigest()[:10]
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", embedder)[-60:]
    return cache_root() / "beir" / f"{beir_dir.name}-{key}-{safe}"


def evaluate_beir(beir_dir: Path, *, split: str | None = None, mode: str = "hybrid", k: int = 10,
                  kb: Path | None = None, embedder: str | None = None, progress: bool = False) -> dict:
    """nDCG@k, Recall@k, Recall@100 and MRR@k of ``mode`` retrieval on a BEIR folder.

    Documents longer than one chunk are chunked like any other document; a document's score
    is its best chunk's, so the figures are document-level like BEIR's.

    >>> evaluate_beir(Path("../shared/data/retrieval/zh_cmrc2018_dev"))  # doctest: +SKIP
    {'ndcg@10': 0.97, 'recall@10': 0.99, 'recall@100': 1.0, 'mrr@10': 0.96, ...}
    """
    from index.beir import evaluate, load_beir, to_documents
    from index.config import DEFAULT_EMBEDDER
    from index.kb import KnowledgeBase

    beir_dir = Path(beir_dir)
    if not (beir_dir / "corpus.jsonl").exists():
        raise FileNotFoundError(f"{beir_dir} is not a BEIR folder (no corpus.jsonl)")
    data = load_beir(beir_dir, split)
    name = embedder or DEFAULT_EMBEDDER
    with KnowledgeBase.open(kb or default_eval_kb(beir_dir, name), embedder=embedder) as base:
        base.add_documents(to_documents(data), progress=progress)
        figures = evaluate(lambda q, n: base.search(q, k=n, mode=mode), data,
                           lambda hit: Path(hit.path).name, k=k)
    return figures | {"mode": mode, "queries": len(data.queries), "docs": len(data.corpus)}
