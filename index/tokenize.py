"""Lexical tokens for BM25: Chinese words via jieba, English words lowercased, de-stopped, stemmed.

Text is NFKC-normalised (full-width letters and digits become ASCII) and lowercased.
Runs of Han characters (:data:`common.cjk.HAN`) are cut with jieba in search mode (a long word
also yields its dictionary sub-words: 中华人民共和国 -> 中华, 华人, 人民, 共和, 共和国, 中华人民共和国),
measured best on zh_rgb (``bench/fusion_sweep.py``; README, "Retrieval quality"). Other runs are split into
letter/digit words; English stop-words (NLTK's list) are dropped and words are Snowball-
stemmed. Tokens never contain whitespace, so a token list survives ``" ".join`` / ``split``.

>>> tokenize("The proteins are binding")
['protein', 'bind']
>>> tokenize("RCEP具体包括哪些国家")
['rcep', '具体', '包括', '哪些', '国家']
"""
from __future__ import annotations

import logging
import re
import threading
import unicodedata
from functools import lru_cache
from typing import Callable

from common import cjk

# Lucene's English stop-word set (also bm25s's "en") ...
LUCENE_STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their "
    "then there these they this to was will with".split()
)
# ... plus the rest of NLTK's list: +0.005 nDCG@10 on SciFact, no change on the Chinese sets.
EN_STOPWORDS = LUCENE_STOPWORDS | frozenset("""about above after again against all am any because been
before being below between both can could did do does doing down during each few from further had has
have having he her here hers him his how i its itself just me more most my myself nor now off once
only other our ours out over own same she should so some than them themselves those through too under
until up very we were what when where which while who whom why would you your yours""".split())
# Chinese function words and particles so frequent that they only slow BM25 down.
ZH_STOPWORDS = frozenset(
    "的 了 和 是 在 也 就 都 而 及 与 着 或 等 之 其 被 把 从 对 于 为 以 由 所 这 那 个 吗 呢 吧 啊 "
    "一个 我们 你们 他们 她们 它们 这个 那个 这些 那些 以及 并且 而且 或者 因为 所以".split()
)
# Han runs (common.cjk.HAN: all Han ideographs), or letter/digit runs
_RUNS = re.compile(rf"[{cjk.HAN}]+|[^\W_{cjk.HAN}]+", re.UNICODE)
_IS_CJK = cjk.HAN_RE
_jieba_lock = threading.Lock()


@lru_cache(maxsize=1)
def _jieba() -> object:
    """jieba with its dictionary loaded (~1 s, once) and its chatty logger silenced."""
    import jieba

    jieba.setLogLevel(logging.WARNING)
    with _jieba_lock:
        jieba.initialize()
    return jieba


@lru_cache(maxsize=1)
def _stemmer() -> Callable[[list[str]], list[str]]:
    import Stemmer  # PyStemmer: Snowball stemmers in C

    return Stemmer.Stemmer("english").stemWords


def _cut_cjk(run: str, mode: str) -> list[str]:
    if mode == "bigram":  # overlapping character bigrams (a single char stays a unigram)
        return [run] if len(run) == 1 else [run[i: i + 2] for i in range(len(run) - 1)]
    jieba = _jieba()
    words = jieba.cut_for_search(run) if mode == "search" else jieba.cut(run, HMM=True)
    return [w for w in words if w.strip()]


def make_tokenizer(*, zh_mode: str = "search", en_stopwords: frozenset[str] = EN_STOPWORDS,
                   zh_stopwords: frozenset[str] = ZH_STOPWORDS, stem: bool = True) -> Callable[[str], list[str]]:
    """A tokenizer with other settings (``zh_mode``: "search", "precise" or "bigram").

    >>> make_tokenizer(zh_mode="bigram")("红茶饮料")
    ['红茶', '茶饮', '饮料']
    """
    if zh_mode not in ("search", "precise", "bigram"):
        raise ValueError(f"zh_mode={zh_mode!r} is not one of search, precise, bigram")

    def tokenize_with(text: str) -> list[str]:
        out: list[str] = []
        words: list[str] = []
        for run in _RUNS.findall(unicodedata.normalize("NFKC", text).lower()):
            if _IS_CJK.match(run):
                out.extend(w for w in _cut_cjk(run, zh_mode) if w not in zh_stopwords)
            elif run not in en_stopwords:
                words.append(run)
                out.append(run)
        if stem and words:  # stem all words in one C call, then put them back in order
            stems = iter(_stemmer()(words))
            out = [next(stems) if not _IS_CJK.match(t) else t for t in out]
        return out

    return tokenize_with


tokenize = make_tokenizer()
