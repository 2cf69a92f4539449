"""BM25 over pre-tokenized chunks: a term -> postings matrix (scipy CSC) of precomputed weights.

Weights follow Lucene's BM25: ``idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5))`` times
``tf / (tf + k1 * (1 - b + b * len / avglen))``, with k1 = 1.2, b = 0.75 (measured on the
dev sets, see /work/notes/README_retrieval.md). A query scores the sum of its terms'
weights (a repeated query term counts again). Building is vectorised (100k chunks of
~150 tokens in a few seconds) and a search touches only its terms' postings (a few ms).

>>> idx = BM25Index.build(["a", "b", "c"], [tokenize("green tea"), tokenize("black tea"), tokenize("coffee")])
>>> [doc for doc, _ in idx.search(tokenize("green tea"), k=2)]
['a', 'b']
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from index.tokenize import make_tokenizer, tokenize

__all__ = ["BM25Index", "tokenize", "make_tokenizer"]

K1 = 1.2
B = 0.75
_FORMAT = 1


def _factorize(token_lists: Sequence[Sequence[str]], n_tokens: int) -> tuple[np.ndarray, list[str]]:
    """Term id of every token (in order) and the terms; pandas' C hash table is ~2x a dict loop."""
    from itertools import chain

    flat = np.fromiter(chain.from_iterable(token_lists), dtype=object, count=n_tokens)
    if n_tokens == 0:
        return np.zeros(0, np.int64), []
    import pandas as pd

    codes, uniques = pd.factorize(flat)
    return codes.astype(np.int64, copy=False), list(uniques)


class BM25Index:
    """Immutable BM25 index; rebuild it (``build``) when the chunk set changes."""

    def __init__(self, ids: Sequence[str], vocab: dict[str, int], postings: object,
                 *, k1: float = K1, b: float = B) -> None:
        self.ids = np.asarray(list(ids), dtype=object)
        self.vocab = vocab
        self.postings = postings  # scipy.sparse.csc_matrix (n_docs x n_terms), BM25 weights
        self.k1, self.b = k1, b

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"BM25Index(docs={len(self)}, terms={len(self.vocab)}, k1={self.k1}, b={self.b})"

    @classmethod
    def build(cls, ids: Sequence[str], token_lists: Sequence[Sequence[str]], *,
              k1: float = K1, b: float = B) -> "BM25Index":
        """Index ``token_lists[i]`` under ``ids[i]``.

        >>> len(BM25Index.build(["x"], [["tea"]]))
        1
        """
        import scipy.sparse as sp

        if len(ids) != len(token_lists):
            raise ValueError(f"BM25Index.build: {len(ids)} ids but {len(token_lists)} token lists")
        if len(set(ids)) != len(ids):
            raise ValueError("BM25Index.build: ids must be unique")
        lengths = np.fromiter((len(t) for t in token_lists), dtype=np.int64, count=len(token_lists))
        term_ids, terms = _factorize(token_lists, int(lengths.sum()))
        n_docs, n_terms = len(token_lists), len(terms)
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        # One row per doc with repeated term ids; summing duplicates gives term frequencies.
        tf = sp.csr_matrix((np.ones(len(term_ids), np.float32), term_ids, indptr), shape=(n_docs, n_terms))
        tf.sum_duplicates()
        tf = tf.tocsc()
        df = np.diff(tf.indptr).astype(np.float64)
        idf = np.log1p((n_docs - df + 0.5) / (df + 0.5)).astype(np.float32)
        avg = float(lengths.mean()) if n_docs else 1.0
        norm = (k1 * (1.0 - b + b * lengths / max(avg, 1e-9))).astype(np.float32)
        rows = tf.indices
        tf.data = tf.data / (tf.data + norm[rows]) * np.repeat(idf, np.diff(tf.indptr))
        return cls(ids, {t: i for i, t in enumerate(terms)}, tf, k1=k1, b=b)

    def scores(self, query_tokens: Sequence[str]) -> np.ndarray:
        """Dense BM25 score of every document (0 where no query term occurs)."""
        out = np.zeros(len(self.ids), dtype=np.float32)
        p = self.postings
        for tok in query_tokens:
            col = self.vocab.get(tok)
            if col is not None:
                lo, hi = p.indptr[col], p.indptr[col + 1]
                out[p.indices[lo:hi]] += p.data[lo:hi]
        return out

    def search(self, query_tokens: Sequence[str], k: int) -> list[tuple[str, float]]:
        """The ``k`` best documents with a positive score, best first (ties: index order)."""
        if k < 1 or len(self.ids) == 0:
            return []
        scores = self.scores(query_tokens)
        hit = np.flatnonzero(scores > 0)
        if len(hit) > k:
            hit = hit[np.argpartition(-scores[hit], k - 1)[:k]]
        hit = hit[np.lexsort((hit, -scores[hit]))]
        return [(self.ids[i], float(scores[i])) for i in hit]

    def save(self, folder: Path) -> None:
        """Write ``folder/bm25.npz`` and ``folder/bm25.json`` (each via a temp file + os.replace)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        terms = np.array(sorted(self.vocab, key=self.vocab.__getitem__), dtype=str)
        arrays = dict(indptr=self.postings.indptr, indices=self.postings.indices,
                      data=self.postings.data, terms=terms, ids=np.array(self.ids.tolist(), dtype=str))
        tmp = folder / "bm25.tmp.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, folder / "bm25.npz")
        meta = {"format": _FORMAT, "k1": self.k1, "b": self.b, "docs": len(self.ids), "terms": len(terms)}
        (folder / "bm25.json.tmp").write_text(json.dumps(meta))
        os.replace(folder / "bm25.json.tmp", folder / "bm25.json")

    @classmethod
    def load(cls, folder: Path) -> "BM25Index":
        """Read what ``save`` wrote; ``ValueError`` if it is missing pieces or another format."""
        import scipy.sparse as sp

        folder = Path(folder)
        meta = json.loads((folder / "bm25.json").read_text())
        if meta.get("format") != _FORMAT:
            raise ValueError(f"{folder}/bm25.json: format {meta.get('format')!r}, expected {_FORMAT}")
        with np.load(folder / "bm25.npz", allow_pickle=False) as z:
            terms, ids = z["terms"].tolist(), z["ids"].tolist()
            postings = sp.csc_matrix((z["data"], z["indices"], z["indptr"]), shape=(len(ids), len(terms)))
        if len(ids) != meta["docs"] or len(terms) != meta["terms"]:
            raise ValueError(f"{folder}: bm25.npz does not match bm25.json (a torn write?)")
        return cls(ids, {t: i for i, t in enumerate(terms)}, postings, k1=meta["k1"], b=meta["b"])
