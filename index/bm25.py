"""BM25 over pre-tokenized chunks: a term -> postings matrix (scipy CSC) of precomputed weights.

Weights follow Lucene's BM25: ``idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5))`` times
``tf / (tf + k1 * (1 - b + b * len / avglen))``, with k1 = 0.9, b = 0.75 (best or level on
the three dev sets among k1 0.9/1.2/1.5 x b 0.4/0.75/0.9; see bench/fusion_sweep.py). A query
scores the sum of its terms' weights (a repeated query term counts again). Building is vectorised (100k chunks of
~150 tokens in a few seconds) and a search touches only its terms' postings (a few ms).

The index keeps the raw term frequencies and document lengths next to the weights, so
``update`` can drop and append documents without re-tokenising the corpus; N, avglen and
df change with every document, so it recomputes all weights from the kept frequencies with
the same function as ``build`` (``_weights``): an updated index scores exactly like one
built from scratch over the same documents in the same order.

>>> idx = BM25Index.build(["a", "b", "c"], [tokenize("green tea"), tokenize("black tea"), tokenize("coffee")])
>>> [doc for doc, _ in idx.search(tokenize("green tea"), k=2)]
['a', 'b']
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Collection, Sequence

import numpy as np

from common.files import atomic_open, atomic_write_text
from index.tokenize import make_tokenizer, tokenize

__all__ = ["BM25Index", "tokenize", "make_tokenizer"]

K1 = 0.9
B = 0.75
_FORMAT = 2  # 2: term frequencies and document lengths saved too (for ``update``)


def _factorize(token_lists: Sequence[Sequence[str]], n_tokens: int) -> tuple[np.ndarray, list[str]]:
    """Term id of every token (in order) and the terms; pandas' C hash table is ~2x a dict loop."""
    from itertools import chain

    flat = np.fromiter(chain.from_iterable(token_lists), dtype=object, count=n_tokens)
    if n_tokens == 0:
        return np.zeros(0, np.int64), []
    import pandas as pd

    codes, uniques = pd.factorize(flat)
    return codes.astype(np.int64, copy=False), list(uniques)


def _weights(tf: object, lengths: np.ndarray, k1: float, b: float) -> np.ndarray:
    """BM25 weight of every entry of ``tf`` (scipy CSC, docs x terms, float32 frequencies)."""
    n_docs = tf.shape[0]
    df = np.diff(tf.indptr).astype(np.float64)
    idf = np.log1p((n_docs - df + 0.5) / (df + 0.5)).astype(np.float32)
    avg = float(lengths.mean()) if n_docs else 1.0
    norm = (k1 * (1.0 - b + b * lengths / max(avg, 1e-9))).astype(np.float32)
    return tf.data / (tf.data + norm[tf.indices]) * np.repeat(idf, np.diff(tf.indptr))


class BM25Index:
    """Immutable BM25 index; ``build`` it, or derive a changed copy with ``update``."""

    def __init__(self, ids: Sequence[str], vocab: dict[str, int], postings: object,
                 *, k1: float = K1, b: float = B, tf: np.ndarray | None = None,
                 lengths: np.ndarray | None = None) -> None:
        self.ids = np.asarray(list(ids), dtype=object)
        self.vocab = vocab
        self.postings = postings  # scipy.sparse.csc_matrix (n_docs x n_terms), BM25 weights
        self.k1, self.b = k1, b
        self.tf = tf  # float32 term frequency of each entry of postings.data (same order)
        self.lengths = lengths  # int64 tokens per document

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
        counts = tf.data
        tf.data = _weights(tf, lengths, k1, b)
        return cls(ids, {t: i for i, t in enumerate(terms)}, tf, k1=k1, b=b, tf=counts, lengths=lengths)

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

    def update(self, remove: Collection[str], add_ids: Sequence[str],
               add_tokens: Sequence[Sequence[str]]) -> "BM25Index":
        """A new index without the documents ``remove``, with ``add_ids`` appended (in order).

        Only the added documents are counted; all weights are then recomputed from the kept
        term frequencies, so the result scores exactly like ``build`` over the same documents
        in the same order (terms no document has any more are dropped).

        >>> idx = BM25Index.build(["a", "b"], [["green", "tea"], ["black", "tea"]])
        >>> new = idx.update({"a"}, ["c"], [["green", "coffee"]])
        >>> new.search(["green", "tea"], 3) == BM25Index.build(
        ...     ["b", "c"], [["black", "tea"], ["green", "coffee"]]).search(["green", "tea"], 3)
        True
        """
        import scipy.sparse as sp

        if self.tf is None or self.lengths is None:
            raise ValueError("BM25Index.update: this index has no term frequencies; build it again")
        if len(add_ids) != len(add_tokens):
            raise ValueError(f"BM25Index.update: {len(add_ids)} ids but {len(add_tokens)} token lists")
        gone = set(remove)
        keep = np.fromiter((i not in gone for i in self.ids), dtype=bool, count=len(self.ids))
        ids = self.ids[keep].tolist() + list(add_ids)
        if len(set(ids)) != len(ids):
            raise ValueError("BM25Index.update: ids must be unique")
        kept = _drop_rows(self.postings.indptr, self.postings.indices, self.tf, keep)
        vocab = dict(self.vocab)  # new terms take the next columns
        new, lengths, new_terms = _count(add_tokens, vocab, int(keep.sum()))
        indptr, indices, tf = _append_rows(*kept, *new, len(vocab))
        if not (live := np.diff(indptr) > 0).all():  # drop terms whose last document went
            terms = [""] * len(self.vocab) + new_terms
            for term, col in self.vocab.items():
                terms[col] = term
            indptr = np.concatenate([[0], np.cumsum(np.diff(indptr)[live])])
            vocab = {t: i for i, t in enumerate(t for t, alive in zip(terms, live) if alive)}
        lengths = np.concatenate([self.lengths[keep], lengths])
        m = sp.csc_matrix((tf, indices, indptr), shape=(len(ids), len(vocab)))
        m.data = _weights(m, lengths, self.k1, self.b)
        return BM25Index(ids, vocab, m, k1=self.k1, b=self.b, tf=tf, lengths=lengths)

    def save(self, folder: Path) -> None:
        """Write ``folder/bm25.npz`` and ``folder/bm25.json``, each atomically (:mod:`common.files`)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        terms = np.array(sorted(self.vocab, key=self.vocab.__getitem__), dtype=str)
        arrays = dict(indptr=self.postings.indptr, indices=self.postings.indices,
                      data=self.postings.data, terms=terms, ids=np.array(self.ids.tolist(), dtype=str))
        if self.tf is not None and self.lengths is not None:  # smallest exact dtype: ~4x less disk
            arrays["tf"] = self.tf.astype(np.min_scalar_type(int(self.tf.max(initial=0))))
            arrays["lengths"] = self.lengths.astype(np.min_scalar_type(int(self.lengths.max(initial=0))))
        with atomic_open(folder / "bm25.npz", "wb") as f:
            np.savez(f, **arrays)
        meta = {"format": _FORMAT, "k1": self.k1, "b": self.b, "docs": len(self.ids), "terms": len(terms)}
        atomic_write_text(folder / "bm25.json", json.dumps(meta))

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
            tf = z["tf"].astype(np.float32) if "tf" in z.files else None
            lengths = z["lengths"].astype(np.int64) if "lengths" in z.files else None
        if len(ids) != meta["docs"] or len(terms) != meta["terms"]:
            raise ValueError(f"{folder}: bm25.npz does not match bm25.json (a torn write?)")
        return cls(ids, {t: i for i, t in enumerate(terms)}, postings, k1=meta["k1"], b=meta["b"],
                   tf=tf, lengths=lengths)


Columns = tuple  # (indptr, row indices, values) of a CSC matrix, or (columns, rows, values)


def _drop_rows(indptr: np.ndarray, indices: np.ndarray, values: np.ndarray, keep: np.ndarray) -> Columns:
    """The CSC arrays without the rows not in ``keep``; the other rows renumbered in order."""
    indptr = indptr.astype(np.int64)
    if keep.all():
        return indptr, indices, values
    kept = keep[indices]
    before = np.concatenate([[0], np.cumsum(kept)])  # kept entries before each entry
    renumber = (np.cumsum(keep) - 1).astype(indices.dtype)
    return before[indptr], renumber[indices[kept]], values[kept]


def _append_rows(indptr: np.ndarray, indices: np.ndarray, values: np.ndarray, new_cols: np.ndarray,
                 new_rows: np.ndarray, new_values: np.ndarray, n_cols: int) -> Columns:
    """Merge new entries, sorted by (column, row) and in rows after all old ones, into CSC
    arrays of ``n_cols`` columns: each column's new entries go after its old ones, so the
    row indices stay sorted. O(entries) numpy, no sort of the old entries."""
    old = np.zeros(n_cols, np.int64)
    old[:len(indptr) - 1] = np.diff(indptr)
    add = np.bincount(new_cols, minlength=n_cols)
    out_ptr = np.concatenate([[0], np.cumsum(old + add)])
    first_new = np.concatenate([[0], np.cumsum(add)])[:-1]
    dest = out_ptr[new_cols] + old[new_cols] + np.arange(len(new_cols)) - first_new[new_cols]
    is_new = np.zeros(int(out_ptr[-1]), dtype=bool)
    is_new[dest] = True
    out_idx = np.empty(len(is_new), dtype=np.int64 if len(is_new) >= 2**31 else indices.dtype)
    out_val = np.empty(len(is_new), dtype=values.dtype)
    out_idx[~is_new], out_idx[dest] = indices, new_rows
    out_val[~is_new], out_val[dest] = values, new_values
    return out_ptr, out_idx, out_val


def _count(token_lists: Sequence[Sequence[str]], vocab: dict[str, int],
           first_row: int) -> tuple[Columns, np.ndarray, list[str]]:
    """Entries (columns, rows, float32 term frequencies; sorted by column, then row) of new
    documents numbered from ``first_row``; their lengths; and the terms new to ``vocab``
    (added to it, taking the next columns, in order)."""
    lengths = np.fromiter((len(t) for t in token_lists), dtype=np.int64, count=len(token_lists))
    codes, uniques = _factorize(token_lists, int(lengths.sum()))
    before = len(vocab)
    cols = np.fromiter((vocab.setdefault(t, len(vocab)) for t in uniques), dtype=np.int64,
                       count=len(uniques))
    new_terms = [t for t, c in zip(uniques, cols) if c >= before]  # uniques: first-seen order
    n = max(len(token_lists), 1)
    rows = np.repeat(np.arange(len(token_lists), dtype=np.int64), lengths)
    keys, tf = np.unique(cols[codes] * n + rows, return_counts=True)  # sorted: column, then row
    return (keys // n, first_row + keys % n, tf.astype(np.float32)), lengths, new_terms
