"""Training pairs for the embedder, built from the knowledge base (``finetune embedder``).

For each gold question (a Q&A file read by :func:`assistant.qa.read_qa`, and/or questions generated
from chunks by :mod:`assistant.from_kb.questions`):

* **Gold chunk** — located as ``finetune data from-kb`` locates it (:mod:`assistant.from_kb.gold`,
  one implementation): the ``negative_depth`` best hybrid hits for the question are searched with
  :func:`~assistant.from_kb.gold.locate` (chunk id, doc + page, or answer text), else the knowledge
  base is asked with :func:`~assistant.from_kb.gold.gold_chunk`. A question with no gold chunk is
  reported and skipped. A question asked for several gold documents gives one pair per gold chunk.
* **Hard negatives** — the best-ranked chunks of the same hybrid search (dense FAISS ranks fused
  with BM25 ranks) that are not gold. False negatives (chunks that answer the question too) are kept
  out three ways: (1) no chunk that is gold for any record of the same question, or that
  :func:`~assistant.from_kb.gold.holds_answer` says holds its answer (gold chunk, gold doc/page, a
  reference in its text, also in another form: a date without its year, a number in other
  digits); (2) no chunk as close to the question as 95 % of the gold chunk is ("TopK-PercPos" of
  Moreira et al. 2024, *NV-Retriever: Improving text embedding models with effective hard-negative
  mining*, which removed most false negatives at that margin), closeness measured above the
  question's *chance cosine* (its mean cosine to a seeded sample of the knowledge base's chunks):
  e5-style models give unrelated text a cosine of ~0.8, so 95 % of a raw cosine of 0.88 would
  reject every chunk above 0.84, i.e. all of the topical chunks that make a negative hard (on
  zh_rgb's training questions it left 22 of 99 with no mined negative at all); (3) with too few
  candidates left, a seeded random chunk fills in (never the gold itself).
* **Held-out split** — by question, seeded (``val_ratio``): no question is in both parts.

>>> split_questions(["q1", "q2", "q3", "q4", "q5"], 0.2, seed=0)
(['q1', 'q2', 'q4', 'q5'], ['q3'])
"""
from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

from assistant.from_kb.gold import Gold, gold_chunk, holds_answer, locate
from finetune.embedder import TrainPair, ValidationSet
from finetune.records import Problem

if TYPE_CHECKING:
    from index.records import Hit

MARGIN = 0.95  # a negative stays below 95 % of the gold chunk's cosine above chance (NV-Retriever, TopK-PercPos)
CHANCE_SAMPLE = 64  # chunks whose mean cosine to a question is its chance level
MODE = "hybrid"  # the retrieval the assistant uses by default; hybrid hits carry the dense cosine too
NOT_FOUND = "gold chunk not found"


@dataclass(frozen=True)
class Located:
    """A gold question, its gold chunk and the ranked candidates of its search."""

    gold: Gold
    chunk: "Hit"
    candidates: tuple["Hit", ...]
    found: str  # chunk | doc/page | text | knowledge base


@dataclass(frozen=True)
class PairSet:
    """Pairs and held-out set built from a knowledge base, with what was found and every problem."""

    train: tuple[TrainPair, ...]
    val: ValidationSet
    found: dict[str, int]
    problems: tuple[Problem, ...]
    questions: int
    train_questions: int = 0
    negatives_filled: int = 0  # hard negatives that had to be random chunks
    generated: dict[str, int] = field(default_factory=dict)

    def render(self) -> str:
        found = ", ".join(f"{n} by {how}" for how, n in self.found.items()) or "none"
        return (f"{self.questions} questions: gold chunks found {found}; {len(self.problems)} skipped. "
                f"{len(self.train)} training pairs from {self.train_questions} questions, "
                f"{len(self.val.queries)} held out (ranked among {len(self.val.corpus)} chunks); "
                f"{self.negatives_filled} negatives filled at random")


def split_questions(keys: Sequence[str], val_ratio: float, *, seed: int) -> tuple[list[str], list[str]]:
    """(train, held-out) question keys: a seeded shuffle, ``ceil(val_ratio * n)`` held out (>= 1 of 2+)."""
    order = sorted(set(keys))
    random.Random(seed).shuffle(order)
    n_val = min(len(order) - 1, max(1, math.ceil(val_ratio * len(order)))) if len(order) > 1 else 0
    held = set(order[:n_val])
    return [k for k in sorted(set(keys)) if k not in held], [k for k in sorted(set(keys)) if k in held]


def locate_gold(kb: Any, gold: Gold, depth: int) -> Located | None:
    """The gold chunk of ``gold`` and the question's ``depth`` best hybrid hits (None: no gold chunk)."""
    hits = kb.search(gold.question, k=depth, mode=MODE)
    index, how = locate(hits, gold)
    if index is not None:
        return Located(gold, hits[index], tuple(hits), how)
    chunk = gold_chunk(kb, gold, mode=MODE)
    return Located(gold, chunk, tuple(hits), "knowledge base") if chunk is not None else None


def gold_cosine(kb: Any, located: Located) -> float:
    """Cosine of the question and its gold chunk (from the search, else embedded now)."""
    if located.chunk.similarity is not None:
        return float(located.chunk.similarity)
    emb = kb.embedder
    return float(emb.encode_queries([located.gold.question])[0] @ emb.encode_passages([located.chunk.text])[0])


def chance_cosines(kb: Any, questions: Sequence[str], rng: random.Random) -> dict[str, float]:
    """Each question's mean cosine to ``CHANCE_SAMPLE`` seeded random chunks: the similarity its embedder
    gives unrelated text, the zero the false-negative margin is measured from (module docstring)."""
    if not questions:
        return {}
    ids = kb.store.chunk_ids().tolist()
    sample = kb.store.hits([(i, 0.0) for i in rng.sample(ids, min(len(ids), CHANCE_SAMPLE))])
    passages = kb.embedder.encode_passages([h.text for h in sample])
    cosines = kb.embedder.encode_queries(list(questions)) @ passages.T  # (questions, sample), unit vectors
    return dict(zip(questions, cosines.mean(axis=1).tolist(), strict=True))


def too_close(similarity: float | None, pos_cosine: float, chance: float) -> bool:
    """Whether a candidate is as close to the question as ``MARGIN`` of the gold chunk, above chance.

    >>> too_close(0.86, 0.88, 0.80), too_close(0.878, 0.88, 0.80), too_close(None, 0.88, 0.80)
    (False, True, False)
    """
    return similarity is not None and similarity - chance > MARGIN * (pos_cosine - chance)


def negatives(group: Sequence[Located], pos_cosine: float, n: int, *, chance: float) -> list["Hit"]:
    """Up to ``n`` hard negatives for the question of ``group`` (its gold records), best-ranked first;
    ``chance``: the question's chance cosine (:func:`chance_cosines`)."""
    gold_ids = {loc.chunk.chunk_id for loc in group}
    out: list["Hit"] = []
    for hit in group[0].candidates:
        if hit.chunk_id in gold_ids or any(holds_answer(hit, loc.gold) for loc in group):
            continue
        if too_close(hit.similarity, pos_cosine, chance):
            continue
        out.append(hit)
        if len(out) == n:
            break
    return out


def _random_chunks(kb: Any, n: int, exclude: set[str], rng: random.Random) -> list["Hit"]:
    ids = kb.store.chunk_ids().tolist()
    picked = kb.store.hits([(i, 0.0) for i in rng.sample(ids, min(len(ids), n + len(exclude) + 2))])
    return [h for h in picked if h.chunk_id not in exclude][:n]


def build_pairs(kb: Any, golds: Sequence[Gold], *, hard_negatives: int, depth: int, val_ratio: float,
                val_corpus: int, seed: int, progress: bool = False) -> PairSet:
    """Training pairs and the held-out set of ``golds`` over ``kb`` (see the module docstring)."""
    from tqdm.auto import tqdm

    groups: dict[str, list[Located]] = {}
    problems: list[Problem] = []
    found: Counter[str] = Counter()
    for gold in tqdm(golds, desc="locate gold", unit="question", disable=not progress):
        loc = locate_gold(kb, gold, depth)
        if loc is None:
            problems.append(Problem(gold.item.source, NOT_FOUND, f"{gold.item.source}: no chunk of the knowledge "
                                    "base holds the answer (check its 'doc' / 'page' / answer); skipped"))
            continue
        found[loc.found] += 1
        groups.setdefault(gold.question, []).append(loc)
    train_keys, val_keys = split_questions(list(groups), val_ratio, seed=seed)
    rng = random.Random(seed)
    chance = chance_cosines(kb, train_keys, random.Random(seed))
    pairs, filled = [], 0
    for qid, key in enumerate(train_keys):
        group = groups[key]
        negs = negatives(group, max(gold_cosine(kb, loc) for loc in group), hard_negatives, chance=chance[key])
        if len(negs) < hard_negatives:
            exclude = {loc.chunk.chunk_id for loc in group} | {h.chunk_id for h in negs}
            extra = _random_chunks(kb, hard_negatives - len(negs), exclude, rng)
            filled += len(extra)
            negs += extra
        pairs += [TrainPair(key, loc.chunk.text, tuple(h.text for h in negs), f"q{qid}", loc.chunk.chunk_id)
                  for loc in group]
    val = validation_set(kb, [groups[k] for k in val_keys], val_corpus, rng)
    return PairSet(tuple(pairs), val, dict(found), tuple(problems), len(golds), len(train_keys), filled)


def validation_set(kb: Any, groups: Sequence[Sequence[Located]], size: int, rng: random.Random) -> ValidationSet:
    """Held-out questions ranked among the whole knowledge base when it has <= ``size`` chunks, else among
    their gold chunks, then their search candidates rank by rank, then a seeded sample, up to ``size`` chunks
    (more only when the gold chunks alone exceed it)."""
    queries = {f"v{i}": group[0].gold.question for i, group in enumerate(groups)}
    relevant = {f"v{i}": frozenset(loc.chunk.chunk_id for loc in group) for i, group in enumerate(groups)}
    ids = kb.store.chunk_ids().tolist()
    if len(ids) <= size:
        corpus = {h.chunk_id: h.text for h in kb.store.hits([(i, 0.0) for i in ids])}
    else:
        corpus = {loc.chunk.chunk_id: loc.chunk.text for group in groups for loc in group}
        by_rank = (g[0].candidates[r] for r in range(max(len(g[0].candidates) for g in groups)) for g in groups
                   if r < len(g[0].candidates))  # every question's rank 1, then rank 2, ...: the hardest first
        for hit in by_rank:
            if len(corpus) >= size:
                break
            corpus.setdefault(hit.chunk_id, hit.text)
        sample = rng.sample(ids, min(len(ids), size))  # enough: at most len(corpus) of them are in already
        for hit in kb.store.hits([(i, 0.0) for i in sample]):
            if len(corpus) >= size:
                break
            corpus.setdefault(hit.chunk_id, hit.text)
    return ValidationSet(queries, corpus, relevant)
