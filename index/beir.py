"""BEIR-format retrieval sets: loading, subsets, metrics (pytrec_eval definitions) and evaluation.

A BEIR folder holds ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl``
(``_id``, ``text``) and ``qrels/<split>.tsv`` (header ``query-id corpus-id score``).

>>> ndcg_at_k(["d2", "d1"], {"d1": 1}, 10)      # one relevant doc at rank 2
0.6309297535714575
>>> recall_at_k(["d2", "d1"], {"d1": 1, "d3": 1}, 1), mrr_at_k(["d2", "d1"], {"d1": 1}, 10)
(0.0, 0.5)
"""
from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from index.records import Hit
from ingest.records import Document, Page

_SPLIT_ORDER = ("test", "dev", "train")  # preferred when no split is named


@dataclass(frozen=True)
class BeirSet:
    """A corpus (id -> (title, text)), the queries of one split and their graded qrels."""

    name: str
    split: str
    corpus: Mapping[str, tuple[str, str]]
    queries: Mapping[str, str]
    qrels: Mapping[str, Mapping[str, int]]  # query id -> {doc id: relevance}


class BeirFormatError(ValueError):
    """A BEIR file is missing or has a malformed line (the message names file and line)."""


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise BeirFormatError(f"{path}: file not found (a BEIR folder needs corpus.jsonl and queries.jsonl)")
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                row["_id"] = str(row["_id"])
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise BeirFormatError(f"{path}:{lineno}: not a JSON object with an _id ({exc})") from exc
            rows.append(row)
    return rows


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.rstrip("\n").split("\t")
            if lineno == 1 and parts[0] == "query-id" or not line.strip():
                continue
            try:
                qid, did, score = parts[0], parts[1], int(float(parts[2]))
            except (IndexError, ValueError) as exc:
                raise BeirFormatError(f"{path}:{lineno}: expected 'query-id<TAB>corpus-id<TAB>score'") from exc
            qrels.setdefault(qid, {})[did] = score
    return qrels


def pick_split(folder: Path, split: str | None) -> str:
    """The named split, else the only/preferred one present under ``qrels/``."""
    present = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
    if split is not None:
        if split not in present:
            raise BeirFormatError(f"{folder}/qrels/{split}.tsv not found; splits present: {present or 'none'}")
        return split
    for name in _SPLIT_ORDER:
        if name in present:
            return name
    if not present:
        raise BeirFormatError(f"{folder}/qrels/ holds no <split>.tsv file")
    return present[0]


def load_beir(folder: Path, split: str | None = None) -> BeirSet:
    """Load a BEIR folder; only queries with qrels in ``split`` are kept.

    >>> s = load_beir(Path("../shared/data/retrieval/zh_rgb"), "dev")   # doctest: +SKIP
    >>> len(s.corpus), len(s.queries)                                   # doctest: +SKIP
    (7337, 150)
    """
    folder = Path(folder)
    split = pick_split(folder, split)
    corpus = {r["_id"]: (str(r.get("title") or ""), str(r.get("text") or ""))
              for r in _read_jsonl(folder / "corpus.jsonl")}
    qrels = _read_qrels(folder / "qrels" / f"{split}.tsv")
    texts = {r["_id"]: str(r.get("text") or "") for r in _read_jsonl(folder / "queries.jsonl")}
    missing = sorted(q for q in qrels if q not in texts)
    if missing:
        raise BeirFormatError(f"{folder}/qrels/{split}.tsv names queries absent from queries.jsonl: {missing[:5]}")
    queries = {q: texts[q] for q in qrels}
    return BeirSet(name=folder.name, split=split, corpus=corpus, queries=queries, qrels=qrels)


def subset(beir: BeirSet, n_queries: int, n_distractors: int, seed: int = 0, *,
           hard_negatives: int = 0) -> BeirSet:
    """``n_queries`` seeded queries, every doc their qrels name, plus ``n_distractors`` seeded others.

    ``hard_negatives`` > 0 also adds, per chosen query, that many of the best BM25 matches
    over the whole corpus that are not relevant (the kind of document that makes retrieval
    hard; random distractors alone make a subset far easier than the full set).

    >>> s = BeirSet("t", "dev", {"a": ("", "x"), "b": ("", "y"), "c": ("", "z")}, {"q": "x"}, {"q": {"a": 1}})
    >>> sorted(subset(s, 1, 1, seed=0).corpus)
    ['a', 'c']
    """
    rng = random.Random(seed)
    qids = sorted(beir.queries)
    chosen = sorted(rng.sample(qids, min(n_queries, len(qids))))
    needed = {d for q in chosen for d in beir.qrels[q] if d in beir.corpus}
    if hard_negatives > 0:
        needed |= _bm25_negatives(beir, chosen, hard_negatives)
    others = sorted(d for d in beir.corpus if d not in needed)
    picked = needed | set(rng.sample(others, min(n_distractors, len(others))))
    return BeirSet(
        name=beir.name, split=beir.split,
        corpus={d: beir.corpus[d] for d in sorted(picked)},
        queries={q: beir.queries[q] for q in chosen},
        qrels={q: dict(beir.qrels[q]) for q in chosen},
    )


def limit(beir: BeirSet, max_queries: int | None = None, max_docs: int | None = None, seed: int = 0) -> BeirSet:
    """At most ``max_queries`` seeded queries (None: all) and a corpus of ``max_docs`` documents
    (None: all): every document the kept queries' qrels name, then seeded others up to
    ``max_docs`` in all (more when the named ones alone exceed it). The same seed gives the same
    subset; the corpus keeps its file order. Raises ValueError for a limit below 1.

    >>> s = BeirSet("t", "dev", {d: ("", d) for d in "abcde"}, {"q": "a", "r": "b"},
    ...             {"q": {"a": 1}, "r": {"b": 1, "c": 0}})
    >>> small = limit(s, max_queries=1, max_docs=2)
    >>> list(small.queries), list(small.corpus)
    (['r'], ['b', 'c'])
    >>> len(limit(s, max_docs=4).corpus), limit(s) is s
    (4, True)
    """
    for name, value in (("max_queries", max_queries), ("max_docs", max_docs)):
        if value is not None and value < 1:
            raise ValueError(f"{name}={value} must be >= 1")
    if max_queries is None and max_docs is None:
        return beir
    rng = random.Random(seed)
    qids = sorted(beir.queries)
    chosen = qids if max_queries is None or max_queries >= len(qids) else sorted(rng.sample(qids, max_queries))
    picked = {d for q in chosen for d in beir.qrels[q] if d in beir.corpus}
    if max_docs is None:
        picked = set(beir.corpus)
    else:
        others = sorted(d for d in beir.corpus if d not in picked)
        picked |= set(rng.sample(others, min(max(max_docs - len(picked), 0), len(others))))
    return BeirSet(name=beir.name, split=beir.split,
                   corpus={d: entry for d, entry in beir.corpus.items() if d in picked},
                   queries={q: beir.queries[q] for q in chosen}, qrels={q: dict(beir.qrels[q]) for q in chosen})


def _bm25_negatives(beir: BeirSet, qids: Sequence[str], n: int) -> set[str]:
    from index.bm25 import BM25Index, tokenize

    ids = list(beir.corpus)
    index = BM25Index.build(ids, [tokenize(doc_text(*beir.corpus[d])) for d in ids])
    out: set[str] = set()
    for q in qids:
        ranked = [d for d, _ in index.search(tokenize(beir.queries[q]), n + len(beir.qrels[q]))]
        out.update([d for d in ranked if beir.qrels[q].get(d, 0) <= 0][:n])
    return out


def doc_text(title: str, text: str) -> str:
    """Page text of a corpus entry: ``title + "\\n" + text`` (just ``text`` when untitled)."""
    return f"{title}\n{text}" if title else text


def to_documents(beir: BeirSet) -> list[Document]:
    """One single-page text ``Document`` per corpus entry; ``path`` ends with the corpus id."""
    docs = []
    for did, (title, text) in beir.corpus.items():
        sha = hashlib.sha256(f"{did}\n{title}\n{text}".encode()).hexdigest()
        docs.append(Document(path=Path(f"beir/{beir.name}/{did}"), sha256=sha, title=title or did,
                             kind="text", pages=(Page(number=1, text=doc_text(title, text)),)))
    return docs


# -- metrics: per query, on a ranked list of doc ids (pytrec_eval / BEIR definitions) -------
def ndcg_at_k(ranked: Sequence[str], rels: Mapping[str, int], k: int) -> float:
    """nDCG@k with linear gain (trec_eval ``ndcg_cut``): sum rel/log2(rank+1), over the ideal."""
    ideal = sorted((r for r in rels.values() if r > 0), reverse=True)[:k]
    idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
    if idcg == 0:
        return 0.0
    dcg = sum(max(rels.get(d, 0), 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    return dcg / idcg


def recall_at_k(ranked: Sequence[str], rels: Mapping[str, int], k: int) -> float:
    """Share of the relevant docs (relevance > 0) found in the top ``k``."""
    relevant = {d for d, r in rels.items() if r > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def mrr_at_k(ranked: Sequence[str], rels: Mapping[str, int], k: int) -> float:
    """1 / rank of the first relevant doc within the top ``k`` (0 when none)."""
    for i, d in enumerate(ranked[:k]):
        if rels.get(d, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def dedupe_docs(hits: Sequence[Hit], doc_id_of: Callable[[Hit], str], depth: int) -> list[str]:
    """Doc ids in rank order, each once (a document's rank is its best chunk's)."""
    seen: dict[str, None] = {}
    for hit in hits:
        seen.setdefault(doc_id_of(hit), None)
        if len(seen) >= depth:
            break
    return list(seen)


def score_rankings(rankings: Mapping[str, Sequence[str]], beir: BeirSet, *, k: int = 10,
                   depth: int = 100) -> dict[str, float]:
    """Mean metrics over every query of ``beir`` (a query without a ranking scores 0)."""
    sums = {f"ndcg@{k}": 0.0, f"recall@{k}": 0.0, f"recall@{depth}": 0.0, f"mrr@{k}": 0.0}
    for qid, rels in beir.qrels.items():
        ranked = list(rankings.get(qid, ()))
        sums[f"ndcg@{k}"] += ndcg_at_k(ranked, rels, k)
        sums[f"recall@{k}"] += recall_at_k(ranked, rels, k)
        sums[f"recall@{depth}"] += recall_at_k(ranked, rels, depth)
        sums[f"mrr@{k}"] += mrr_at_k(ranked, rels, k)
    n = max(len(beir.qrels), 1)
    return {name: total / n for name, total in sums.items()}


def evaluate(search: Callable[[str, int], list[Hit]], beir: BeirSet, doc_id_of: Callable[[Hit], str],
             *, k: int = 10, depth: int = 100, progress: bool = False) -> dict[str, float]:
    """Run every query through ``search(text, n_chunks)`` and score document rankings.

    ``search`` is asked for ``2 * depth`` chunks, so documents split into several chunks
    still leave about ``depth`` distinct documents after de-duplication.

    >>> from index.records import Hit
    >>> s = BeirSet("t", "dev", {"a": ("", "x"), "b": ("", "y")}, {"q": "x"}, {"q": {"a": 1}})
    >>> hit = lambda d: Hit(d, "", 1.0, d, "", f"beir/t/{d}", 1, 1, 0, 0)
    >>> evaluate(lambda q, n: [hit("b"), hit("a")], s, lambda h: h.doc_sha256)["mrr@10"]
    0.5
    """
    from tqdm import tqdm

    rankings = {}
    for qid, text in tqdm(beir.queries.items(), desc=f"eval {beir.name}", disable=not progress):
        rankings[qid] = dedupe_docs(search(text, 2 * depth), doc_id_of, depth)
    return score_rankings(rankings, beir, k=k, depth=depth)
