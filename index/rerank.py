"""Optional second stage: re-score retrieved chunks with a cross-encoder (query, chunk) model.

Any sentence-transformers ``CrossEncoder`` folder or cached model id works (e.g. a
bge-reranker or ms-marco MiniLM cross-encoder copied onto the machine). The model loads on
the first ``rerank`` call; hits come back best first with the cross-encoder's score.

>>> reranker = Reranker("path/to/cross-encoder")                 # doctest: +SKIP
>>> best = reranker.rerank("退货政策是什么？", hits, top_k=3)       # doctest: +SKIP
>>> [h.score for h in best] == sorted((h.score for h in best), reverse=True)  # doctest: +SKIP
True
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from index.records import Hit


class RerankerNotFound(FileNotFoundError):
    """The reranker is neither a local model folder nor a model in the Hugging Face cache."""


class Reranker:
    """A cross-encoder reranker, loaded lazily.

    ``max_length`` caps (query + chunk) tokens; longer pairs are truncated by the model's
    tokenizer (chunks are ~500 tokens, so 512 keeps most of each chunk).
    """

    def __init__(self, model: str, *, batch_size: int = 16, max_length: int = 512,
                 device: str = "cpu") -> None:
        if batch_size < 1 or max_length < 8:
            raise ValueError(f"batch_size={batch_size} must be >= 1 and max_length={max_length} >= 8")
        self.model_name = model
        self.batch_size, self.max_length, self.device = batch_size, max_length, device
        self._model: Any = None

    def __repr__(self) -> str:
        return f"Reranker({self.model_name!r})"

    def _load(self) -> Any:
        """The CrossEncoder: a local folder or cached hub id; else downloaded, unless the hub is off or out
        of reach (one request, common.hub): then RerankerNotFound within seconds, not after retries."""
        if self._model is None:
            from common.hub import get_elsewhere, hub_unreachable, unreachable_why

            name = self.model_name
            try:
                self._model = self._cross_encoder(local_files_only=True)
            except OSError as exc:  # transformers raises OSError for a model that is not there
                if Path(name).expanduser().is_dir():
                    raise RerankerNotFound(f"reranker {name!r}: the folder is not a cross-encoder model "
                                           f"({type(exc).__name__}: {exc})") from exc
                if hub_unreachable(name):
                    raise RerankerNotFound(
                        f"reranker {name!r} is not a local cross-encoder folder nor in the Hugging Face cache, "
                        f"and {unreachable_why()}; {get_elsewhere(name, option='--reranker')}") from exc
                try:
                    self._model = self._cross_encoder(local_files_only=False)
                except OSError as err:
                    raise RerankerNotFound(f"reranker {name!r}: cannot download it from the Hugging Face hub "
                                           f"({type(err).__name__}: {err}); pass the path of a model folder") from err
        return self._model

    def _cross_encoder(self, *, local_files_only: bool) -> Any:
        from sentence_transformers import CrossEncoder

        return CrossEncoder(self.model_name, max_length=self.max_length, device=self.device,
                            local_files_only=local_files_only)

    def scores(self, query: str, texts: Sequence[str]) -> list[float]:
        """One relevance score per text (higher is more relevant)."""
        if not texts:
            return []
        model = self._load()
        raw = model.predict([(query, t) for t in texts], batch_size=self.batch_size,
                            show_progress_bar=False, convert_to_numpy=True)
        if raw.ndim == 2:  # several labels: the last one is "relevant" by convention
            raw = raw[:, -1]
        return [float(s) for s in raw]

    def rerank(self, query: str, hits: Sequence[Hit], top_k: int) -> list[Hit]:
        """The ``top_k`` hits by cross-encoder score, best first (scores replaced)."""
        if top_k < 1:
            raise ValueError(f"top_k={top_k} must be >= 1")
        scored = [replace(h, score=s) for h, s in zip(hits, self.scores(query, [h.text for h in hits]))]
        order = sorted(range(len(scored)), key=lambda i: (-scored[i].score, i))
        return [scored[i] for i in order[:top_k]]


def rerank(query: str, hits: Sequence[Hit], top_k: int, *, model: str | Reranker) -> list[Hit]:
    """Function form of :meth:`Reranker.rerank` (loads ``model`` each call unless given a Reranker)."""
    reranker = model if isinstance(model, Reranker) else Reranker(model)
    return reranker.rerank(query, hits, top_k)
