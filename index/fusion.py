"""Fuse a dense and a sparse (BM25) ranking into one.

Two methods:

* ``"weighted"`` (default): each list's scores are normalised (``norm``: ``"minmax"`` to
  [0, 1], ``"zscore"``, or ``"max"``: divided by the list's best score), then
  ``weight * dense + (1 - weight) * sparse``. A document missing from one list gets that
  list's lowest normalised score (it ranked below everything returned).
* ``"rrf"``: reciprocal rank fusion, ``sum 1 / (k + rank)`` with rank 1-based, k = 60.

A fused score ranks the hits of one query and says nothing across queries: with min-max
normalisation the best hit of any query scores 1.0 when it leads both lists, however poorly it
matches. What is comparable across queries is each hit's dense cosine similarity to the query,
``index.records.Hit.similarity`` (set by ``KnowledgeBase.search``), shown by the CLI, the server
and the UI.

Defaults were chosen on the dev sets (SciFact train, zh_rgb dev, cmrc2018 dev); the sweep
and the figures are in the README, "Retrieval quality" (``bench/fusion_sweep.py``).

>>> fuse([("a", 0.9), ("b", 0.5)], [("b", 12.0), ("c", 3.0)], method="rrf")[0][0]
'b'
>>> [d for d, _ in fuse([("a", 0.9), ("b", 0.8)], [("b", 9.0), ("c", 1.0)], weight=0.4, norm="minmax")]
['b', 'a', 'c']
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

METHODS = ("weighted", "rrf")
NORMS = ("minmax", "zscore", "max")
DEFAULT_METHOD = "weighted"
DEFAULT_NORM = "minmax"
DEFAULT_WEIGHT = 0.5  # share of the dense score (min-max normalised); chosen on the dev sets
RRF_K = 60

Ranking = Sequence[tuple[str, float]]


def normalize(scores: np.ndarray, norm: str) -> np.ndarray:
    """Scores of one list mapped to a comparable scale.

    >>> normalize(np.array([3.0, 2.0, 1.0]), "minmax").tolist()
    [1.0, 0.5, 0.0]
    """
    if len(scores) == 0:
        return scores.astype(np.float64)
    s = scores.astype(np.float64)
    if norm == "minmax":
        span = s.max() - s.min()
        return (s - s.min()) / span if span > 0 else np.ones_like(s)
    if norm == "zscore":
        std = s.std()
        return (s - s.mean()) / std if std > 0 else np.zeros_like(s)
    if norm == "max":
        top = np.abs(s).max()
        return s / top if top > 0 else np.zeros_like(s)
    raise ValueError(f"norm={norm!r} is not one of {', '.join(NORMS)}")


def _order(fused: dict[str, float], first_seen: dict[str, int]) -> list[tuple[str, float]]:
    """Best fused score first; ties go to the document seen earlier (dense list first)."""
    return sorted(fused.items(), key=lambda kv: (-kv[1], first_seen[kv[0]]))


def _first_seen(dense: Ranking, sparse: Ranking) -> dict[str, int]:
    seen: dict[str, int] = {}
    for i, (doc, _) in enumerate(dense):
        seen.setdefault(doc, i)
    for i, (doc, _) in enumerate(sparse):
        seen.setdefault(doc, len(dense) + i)
    return seen


def rrf(dense: Ranking, sparse: Ranking, *, k: int = RRF_K, weight: float = 0.5) -> list[tuple[str, float]]:
    """Reciprocal rank fusion; ``weight`` scales the dense list (0.5: both count the same).

    >>> rrf([("a", 1.0)], [("a", 5.0)], k=60)
    [('a', 0.03278688524590164)]
    """
    fused: dict[str, float] = {}
    for ranking, w in ((dense, 2 * weight), (sparse, 2 * (1 - weight))):
        for rank, (doc, _) in enumerate(ranking, 1):
            if doc not in fused:
                fused[doc] = 0.0
            fused[doc] += w / (k + rank)
    return _order(fused, _first_seen(dense, sparse))


def weighted(dense: Ranking, sparse: Ranking, *, weight: float = DEFAULT_WEIGHT,
             norm: str = DEFAULT_NORM) -> list[tuple[str, float]]:
    """``weight * norm(dense) + (1 - weight) * norm(sparse)``; a missing doc gets the list's minimum.

    >>> weighted([("a", 0.9), ("b", 0.7)], [("b", 5.0)], weight=0.5)
    [('a', 1.0), ('b', 0.5)]
    """
    fused: dict[str, float] = {}
    parts = []
    for ranking, w in ((dense, weight), (sparse, 1.0 - weight)):
        values = normalize(np.array([s for _, s in ranking], dtype=np.float64), norm)
        parts.append(({doc: float(v) for (doc, _), v in zip(ranking, values)},
                      float(values.min()) if len(values) else 0.0, w))
    for doc in _first_seen(dense, sparse):
        fused[doc] = sum(w * scores.get(doc, floor) for scores, floor, w in parts)
    return _order(fused, _first_seen(dense, sparse))


def fuse(dense: Ranking, sparse: Ranking, *, method: str = DEFAULT_METHOD, weight: float | None = None,
         norm: str = DEFAULT_NORM, k: int = RRF_K) -> list[tuple[str, float]]:
    """Fuse two rankings of (id, score), best first; returns (id, fused score), best first.

    ``weight`` is the dense share (default ``DEFAULT_WEIGHT`` for "weighted", 0.5 for "rrf").
    """
    if weight is not None and not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight={weight} must be within [0, 1]")
    if method == "weighted":
        return weighted(dense, sparse, weight=DEFAULT_WEIGHT if weight is None else weight, norm=norm)
    if method == "rrf":
        if k < 1:
            raise ValueError(f"k={k} must be >= 1")
        return rrf(dense, sparse, k=k, weight=0.5 if weight is None else weight)
    raise ValueError(f"method={method!r} is not one of {', '.join(METHODS)}")
