"""When the assistant declines: a per-language decision on more evidence than the top cosine.

One cosine threshold cannot serve Chinese and English alike (multilingual-e5-small puts an
off-topic Chinese question at 0.84-0.86 against Chinese documents, an off-topic English one at
0.78). The decision here looks at three numbers per question (:class:`Features`):

* ``cosine``: the dense cosine of the best chunk (:func:`top_cosine`);
* ``margin``: ``cosine`` minus what this knowledge base gives a question of the same language
  that it cannot answer: the mean top-1 cosine of a fixed set of generic off-topic probe
  questions (:data:`PROBES`), computed once per knowledge base and kept in memory;
* ``coverage``: the share of the question's content terms (BM25 tokens, stop-words dropped)
  that occur in the best three retrieved chunks (whatever the retrieval mode).

The hit's own score is left out on purpose: it is a fused, BM25 or reranker score depending on
the mode and the knowledge base, so a model over it would hold for one configuration only.

A logistic model per language (``zh`` when :func:`common.cjk.is_chinese`, else ``en``) maps
them to the probability that the documents answer the question; below the language's
threshold the assistant declines. Models are fitted by ``bench/abstain_calibration.py`` and
stored as ``abstain_<embedder>.json`` in the user's calibration folder (:func:`user_calibration_dir`,
looked in first) or, for the shipped default embedder's, beside this module; an embedder without such a file keeps
the plain cosine rule of :meth:`assistant.config.AssistantConfig.threshold_for` (never abstain
unless ``--abstain-threshold``), which also overrides the calibrated decision when given.

>>> model = LanguageModel(weights=(0.0, 10.0, 4.0), bias=-2.0, threshold=0.5)
>>> decide(Features("en", cosine=0.86, margin=0.08, coverage=0.75), {"en": model})
''
>>> decide(Features("en", cosine=0.80, margin=0.0, coverage=0.0), {"en": model})
'off-topic for these documents (en: p=0.12 < 0.50; cosine 0.800, +0.000 over off-topic questions, 0% of its terms)'
"""
from __future__ import annotations

import hashlib
import json
import math
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

from common.cjk import is_chinese
from index.records import Hit

LANGUAGES = ("zh", "en")
COVERAGE_HITS = 3  # chunks whose terms count as covering the question
# Generic questions no domain knowledge base answers (kept apart from the bench's off-topic set).
PROBES: dict[str, tuple[str, ...]] = {
    "zh": ("明天会下雨吗？", "怎么做西红柿炒鸡蛋？", "周末去哪里玩比较好？", "猫为什么喜欢晒太阳？",
           "推荐几首好听的流行歌曲。", "如何提高睡眠质量？", "世界上最高的山是哪座？", "怎样才能学好英语口语？",
           "火锅底料怎么炒？", "长城有多长？", "宇宙中有外星人吗？", "第一次养狗要准备什么？"),
    "en": ("Will it rain tomorrow?", "How do I make scrambled eggs?", "Where should I go this weekend?",
           "Why do cats like sitting in the sun?", "Recommend some good pop songs.", "How can I sleep better?",
           "What is the highest mountain in the world?", "How can I improve my spoken Spanish?",
           "How do you make a good curry?", "How long is the Great Wall of China?",
           "Is there life on other planets?", "What do I need for my first dog?"),
}
CALIBRATION_DIR = Path(__file__).resolve().parent  # calibrations shipped with the package


def user_calibration_dir() -> Path:
    """Where calibrations a user fits are written and looked for first: ``$QDA_CALIBRATION_DIR``, else
    ``$XDG_CACHE_HOME`` (``~/.cache``) ``/qwen-domain-assistant/abstain`` (never the installed package)."""
    import os

    if os.environ.get("QDA_CALIBRATION_DIR"):
        return Path(os.environ["QDA_CALIBRATION_DIR"]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "qwen-domain-assistant" / "abstain"


def language(question: str) -> str:
    """``"zh"`` for a Chinese question, else ``"en"``.

    >>> language("退货政策是什么？"), language("What is the return policy?")
    ('zh', 'en')
    """
    return "zh" if is_chinese(question) else "en"


def probes_sha() -> str:
    """A short hash of :data:`PROBES` (a calibration is only valid for the probes it was fitted with)."""
    return hashlib.sha256(json.dumps(PROBES, ensure_ascii=False, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Features:
    """What the decision looks at for one question (cosines in [-1, 1], coverage in [0, 1])."""

    language: str  # "zh" | "en"
    cosine: float  # dense cosine of the best chunk
    margin: float  # cosine minus the knowledge base's mean top-1 cosine for off-topic probes of this language
    coverage: float  # share of the question's content terms found in the best COVERAGE_HITS chunks

    def vector(self) -> tuple[float, float, float]:
        return (self.cosine, self.margin, self.coverage)


@dataclass(frozen=True)
class LanguageModel:
    """``p = sigmoid(weights . features.vector() + bias)``; the question is answered when ``p >= threshold``."""

    weights: tuple[float, ...]
    bias: float
    threshold: float

    def probability(self, f: Features) -> float:
        z = self.bias + sum(w * x for w, x in zip(self.weights, f.vector()))
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))


def calibration_path(embedder_name: str, folder: Path | None = None) -> Path:
    """The calibration file of ``embedder_name`` (a name or model path: its last part counts) in ``folder``
    (default: the shipped one, :data:`CALIBRATION_DIR`)."""
    return (CALIBRATION_DIR if folder is None else folder) / f"abstain_{Path(str(embedder_name)).name}.json"


def find_calibration(embedder_name: str) -> Path | None:
    """The calibration in force for ``embedder_name``: the user's own (:func:`user_calibration_dir`), else
    the shipped one, else None."""
    for folder in (user_calibration_dir(), CALIBRATION_DIR):
        path = calibration_path(embedder_name, folder)
        if path.is_file():
            return path
    return None


def save_calibration(path: Path, embedder_name: str, models: Mapping[str, LanguageModel], **info: Any) -> None:
    """Write the per-language models (and ``info``: how they were fitted) as JSON."""
    from common.files import atomic_write_text

    body = {"embedder": Path(str(embedder_name)).name, "probes_sha": probes_sha(),
            "features": ["cosine", "margin", "coverage"],
            "languages": {lang: asdict(m) for lang, m in models.items()}, **info}
    atomic_write_text(path, json.dumps(body, ensure_ascii=False, indent=1) + "\n")


@lru_cache(maxsize=8)
def load_calibration(embedder_name: str) -> dict[str, LanguageModel] | None:
    """The per-language models fitted for ``embedder_name``; None without a (valid) calibration file."""
    path = find_calibration(embedder_name) if embedder_name else None
    return None if path is None else read_calibration(path)


def read_calibration(path: Path) -> dict[str, LanguageModel] | None:
    """The per-language models in the calibration file ``path``; None when it was fitted with other probes."""
    body = json.loads(path.read_text(encoding="utf-8"))
    if body.get("probes_sha") != probes_sha():  # probes changed since the fit: the margins mean something else
        return None
    return {lang: LanguageModel(tuple(m["weights"]), float(m["bias"]), float(m["threshold"]))
            for lang, m in body["languages"].items()}


def decide(f: Features, models: Mapping[str, LanguageModel]) -> str:
    """Why the question is declined, or "" to answer it (a language without a model: answered)."""
    model = models.get(f.language)
    if model is None:
        return ""
    p = model.probability(f)
    if p >= model.threshold:
        return ""
    return (f"off-topic for these documents ({f.language}: p={p:.2f} < {model.threshold:.2f}; cosine {f.cosine:.3f}, "
            f"{f.margin:+.3f} over off-topic questions, {f.coverage:.0%} of its terms)")


def cosine_rule(cosine: float, threshold: float) -> str:
    """The plain rule (``--abstain-threshold``): declined when the best chunk's cosine is below ``threshold``.

    >>> cosine_rule(0.79, 0.82), cosine_rule(0.9, 0.82)
    ('best chunk cosine 0.790 < threshold 0.820', '')
    """
    return f"best chunk cosine {cosine:.3f} < threshold {threshold:.3f}" if cosine < threshold else ""


def coverage(question: str, hits: Sequence[Hit]) -> float:
    """Share of ``question``'s content terms (BM25 tokens) that occur in the best chunks (0 when it has none).

    >>> from index.records import Hit
    >>> hit = Hit("c", "The warranty lasts two years.", 1.0, "", "t", "p", 1, 1, 0, 1)
    >>> coverage("How long is the warranty?", [hit])
    0.5
    """
    from index.bm25 import tokenize

    terms = set(tokenize(question))
    if not terms:
        return 0.0
    seen = set(tokenize("\n".join(h.text for h in hits[:COVERAGE_HITS])))
    return len(terms & seen) / len(terms)


class Gate:
    """The decline decision for one knowledge base (thread-safe; probe cosines computed once per language)."""

    def __init__(self, kb: Any) -> None:
        self.kb = kb
        self._probe_means: dict[tuple[str, Any], float] = {}
        self._lock = threading.Lock()

    def reason(self, question: str, hits: Sequence[Hit], mode: str, override: float | None,
               plain_threshold: float) -> str:
        """Why ``question`` is declined given its ``hits``, or "" to answer it.

        ``override``: ``--abstain-threshold`` (the plain cosine rule, whatever the calibration);
        ``plain_threshold``: the rule for an embedder without calibration (``<= -1``: never).
        """
        if not hits:
            return "no passage was retrieved"
        models = None if override is not None else load_calibration(self.embedder_name())
        if models is not None:
            return decide(self.features(question, hits, mode), models)
        threshold = override if override is not None else plain_threshold
        if threshold <= -1.0:
            return ""
        return cosine_rule(top_cosine(self.kb, question, mode, hits), threshold)

    def embedder_name(self) -> str:
        return str(getattr(self.kb.embedder, "name", ""))

    def features(self, question: str, hits: Sequence[Hit], mode: str) -> Features:
        """The :class:`Features` of ``question`` over this knowledge base (``hits``: its retrieval, best first)."""
        lang = language(question)
        cosine = top_cosine(self.kb, question, mode, hits)
        return Features(lang, cosine, cosine - self.probe_mean(lang), coverage(question, hits))

    def probe_mean(self, lang: str) -> float:
        """Mean top-1 cosine of the ``lang`` probes over this knowledge base (recomputed when it changes)."""
        store = getattr(self.kb, "store", None)
        key = (lang, store.generation() if store is not None and hasattr(store, "generation") else None)
        with self._lock:
            if key not in self._probe_means:
                scores = []
                for probe in PROBES[lang]:
                    hits = self.kb.search(probe, k=1, mode="dense")
                    scores.append(top_cosine(self.kb, probe, "dense", hits) if hits else 0.0)
                self._probe_means[key] = sum(scores) / len(scores)
            return self._probe_means[key]


def top_cosine(kb: Any, query: str, mode: str, hits: Sequence[Hit]) -> float:
    """The dense cosine of the best chunk for ``query`` (what the cosine rule compares to)."""
    if getattr(getattr(kb, "config", None), "reranker", None):  # scores are the reranker's: recompute
        import numpy as np

        q = kb.embedder.encode_queries([query])[0]
        return float(np.max(kb.embedder.encode_passages([h.text for h in hits[:3]]) @ q))
    if mode == "dense":
        return hits[0].score
    best = kb.search(query, k=1, mode="dense")
    return best[0].score if best else -1.0


class QueryMemo:
    """An embedder that remembers its last query vectors (everything else passes through).

    In hybrid mode the decision runs a second, dense search for the same query; without this
    the query is embedded twice (e5 on CPU: ~15 ms idle, seconds on a busy machine).
    """

    SIZE = 64  # queries remembered

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self._memo: OrderedDict[str, Any] = OrderedDict()
        self._memo_lock = threading.Lock()

    def encode_queries(self, texts: Sequence[str]) -> Any:
        if len(texts) != 1:
            return self.inner.encode_queries(texts)
        with self._memo_lock:
            vec = self._memo.get(texts[0])
            if vec is not None:
                self._memo.move_to_end(texts[0])
                return vec
        vec = self.inner.encode_queries(texts)
        vec.setflags(write=False)  # shared between calls
        with self._memo_lock:
            self._memo[texts[0]] = vec
            while len(self._memo) > self.SIZE:
                self._memo.popitem(last=False)
        return vec

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"QueryMemo({self.inner!r})"
