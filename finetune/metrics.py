"""BLEU-4 and ROUGE-L of generated answers, with jieba word segmentation for Chinese.

Both are sentence-level and averaged over examples, reported in percent, as the Qwen / LLaMA-Factory
tutorials report them: BLEU-4 with uniform 1-4-gram weights, brevity penalty and NIST geometric
smoothing of empty n-gram matches (NLTK's ``method3``); ROUGE-L as the F1 of the longest common
subsequence. Text with Han characters (:data:`common.cjk.HAN`) is segmented by jieba, other text
split into lower-cased words and punctuation marks.

Example:
    >>> tokenize("我爱北京天安门")
    ['我', '爱', '北京', '天安门']
    >>> round(bleu4(tokenize("the cat sat on the mat"), tokenize("the cat sat on the mat")), 1)
    100.0
    >>> round(rouge_l(tokenize("a b c d"), tokenize("a c d e")), 1)
    75.0
"""
from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Sequence

from common.cjk import has_han

_WORDS = re.compile(r"\w+|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """Words of ``text``: jieba segmentation when it contains Han characters, else words and punctuation."""
    if has_han(text):
        import jieba

        jieba.setLogLevel(logging.WARNING)  # no "Building prefix dict" chatter on first use
        return [w for w in jieba.lcut(text) if w.strip()]
    return _WORDS.findall(text.lower())


def _ngrams(words: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def bleu4(candidate: Sequence[str], reference: Sequence[str]) -> float:
    """Sentence BLEU-4 (percent) of one candidate against one reference, NIST-smoothed."""
    if not candidate or not reference:
        return 0.0
    log_sum, smooth = 0.0, 1
    for n in range(1, 5):
        cand, ref = _ngrams(candidate, n), _ngrams(reference, n)
        total = max(sum(cand.values()), 1)
        matches = sum(min(c, ref[g]) for g, c in cand.items())
        if matches == 0 and n == 1:  # no word in common: 0, as NLTK
            return 0.0
        if matches == 0:  # method3: 1 / (2^k * total) for the k-th empty order
            smooth *= 2
            precision = 1.0 / (smooth * total)
        else:
            precision = matches / total
        log_sum += math.log(precision) / 4
    c, r = len(candidate), len(reference)
    brevity = 1.0 if c > r else math.exp(1 - r / c)
    return 100.0 * brevity * math.exp(log_sum)


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, start=1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l(candidate: Sequence[str], reference: Sequence[str]) -> float:
    """ROUGE-L F1 (percent): longest common subsequence against candidate and reference lengths."""
    if not candidate or not reference:
        return 0.0
    lcs = _lcs(candidate, reference)
    if lcs == 0:
        return 0.0
    p, r = lcs / len(candidate), lcs / len(reference)
    return 100.0 * 2 * p * r / (p + r)


def corpus_scores(candidates: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean BLEU-4 and ROUGE-L (percent) over pairs of generated and reference texts."""
    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} candidates for {len(references)} references")
    if not candidates:
        return {"bleu4": 0.0, "rouge_l": 0.0}
    pairs = [(tokenize(c), tokenize(r)) for c, r in zip(candidates, references)]
    return {"bleu4": sum(bleu4(c, r) for c, r in pairs) / len(pairs),
            "rouge_l": sum(rouge_l(c, r) for c, r in pairs) / len(pairs)}
