"""Metrics of ``assistant eval``: pure functions over texts, hits and gold items (no model, no I/O).

* **Exact match**: the normalised answer equals a normalised reference (any of them).
  Normalising: Unicode NFKC, lower case, citation marks (``[n]``, ``【n】``:
  :data:`assistant.citations.CITATION_MARK`) removed, punctuation and symbols removed, whitespace
  collapsed; text with Han characters (:data:`common.cjk.HAN`) loses its spaces too.
* **Token F1**: SQuAD's bag-of-words F1 of the normalised answer against each reference (best
  one), words from :func:`finetune.metrics.tokenize` (jieba for Chinese, words for English).
* **Contains**: a normalised reference occurs in the normalised answer (RGB's accuracy; fair
  to long, chatty answers that exact match calls wrong).
* **Gold rank** (hit@k, MRR): the 1-based rank of the first gold hit, by the most precise rule
  the item allows: ``page`` (doc and page given: a hit of that document whose page range holds
  the page), ``doc`` (doc only: any hit of it) or ``answer`` (no doc: a hit whose text contains
  a reference answer). Which document ``doc`` names is :mod:`index.naming`'s rule (``ingest rm``'s).
* **Citation precision**: of the sources an answer cites, the share that support it (their text
  contains a reference answer, or they are the gold page when doc and page are given).
* **Abstention**: the answer declines: the assistant abstained before generation, or the text
  is/starts with one of its abstention texts, or plainly says the documents (or the model) do
  not have the answer.

>>> exact_match("Thirty days [1].", ["thirty days"]), round(token_f1("within thirty days", ["thirty days"]), 3)
(True, 0.8)
>>> exact_match("三十 天。", ["三十天"]), is_abstention("文档中没有包含这方面的信息。")
(True, True)
"""
from __future__ import annotations

import re
import unicodedata
from collections import Counter
from typing import TYPE_CHECKING, Sequence

from assistant.citations import CITATION_MARK
from common.cjk import has_han
from finetune.metrics import tokenize
from index.naming import doc_matches  # "names the document": index's rule, as `ingest rm`

if TYPE_CHECKING:
    from assistant.qa import QAItem
    from index.records import Hit

__all__ = ["normalise", "exact_match", "token_f1", "contains_answer", "gold_rule", "is_gold",
           "gold_rank", "reciprocal_rank", "supports", "citation_precision", "is_abstention", "RULES"]

RULES = ("page", "doc", "answer")  # gold rules, most precise first
_ABSTAIN_EN = re.compile(
    r"\b(?:documents?|sources?|context|passages?|provided (?:text|information))\b[^.]{0,40}?"
    r"\b(?:do(?:es)?\s*n[o']t|not|never)\b[^.]{0,20}?\b(?:contain|mention|include|provide|say|cover|have)"
    r"|\bi (?:do not|don't|cannot|can't) (?:know|find|answer|tell)\b|\bno (?:relevant )?information\b"
    r"|\bnot (?:found|mentioned|stated) in the (?:documents?|sources?|context)\b")
_ABSTAIN_ZH = re.compile(
    r"(?:文档|资料|来源|上下文|所给|提供的)[^。]{0,15}?(?:没有|未|不|并未|无)(?:包含|提及|提到|涉及|提供|说明|记载|相关)"
    r"|(?:无法|不能)(?:回答|确定|找到|得知)|我不(?:知道|清楚)|没有(?:相关|这方面的)(?:信息|内容|资料)")


def normalise(text: str) -> str:
    """NFKC, lower case, no citation marks, punctuation or symbols, single spaces (none in Chinese).

    >>> normalise("  The Answer: 30 Days [1][2]! "), normalise("退货期限是 三十天 【1】。")
    ('the answer 30 days', '退货期限是三十天')
    """
    text = CITATION_MARK.sub(" ", unicodedata.normalize("NFKC", text)).lower()
    text = "".join(" " if unicodedata.category(ch)[0] in "PS" else ch for ch in text)
    if has_han(text):
        return "".join(text.split())
    return " ".join(text.split())


def _compact(text: str) -> str:
    """NFKC, lower case, no citation marks, no whitespace; punctuation kept ("4.8%" stays "4.8%")."""
    return "".join(CITATION_MARK.sub(" ", unicodedata.normalize("NFKC", text)).lower().split())


def exact_match(prediction: str, references: Sequence[str]) -> bool:
    """The normalised prediction equals a normalised reference (False without references)."""
    pred = normalise(prediction)
    return any(pred == normalise(ref) for ref in references)


def _f1(pred: list[str], ref: list[str]) -> float:
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, references: Sequence[str]) -> float:
    """Best bag-of-words F1 (0..1) of the prediction against the references (0.0 without any).

    >>> round(token_f1("退货期限是三十天", ["三十天"]), 3)
    0.4
    """
    pred = tokenize(normalise(prediction))
    return max((_f1(pred, tokenize(normalise(ref))) for ref in references), default=0.0)


def contains_answer(text: str, references: Sequence[str]) -> bool:
    """A normalised reference occurs in the normalised ``text`` (an empty reference never does).

    English matches whole words only: "30" is not found in "300". In Chinese text, where
    normalising drops every space (and "4.8%" would become "48" there but "4 8" alone), the
    reference is also looked for with its punctuation kept and all whitespace removed.

    >>> contains_answer("增长4.8%", ["4.8%"]), contains_answer("总理Anthony Albanese", ["Anthony Albanese"])
    (True, True)
    """
    body = normalise(text)
    for ref in references:
        needle = normalise(ref)
        if not needle:
            continue
        if has_han(needle) or has_han(body):
            if needle in body or _compact(ref) in _compact(text):
                return True
        elif f" {needle} " in f" {body} ":
            return True
    return False


def gold_rule(item: "QAItem") -> str | None:
    """``page``, ``doc`` or ``answer``: how a gold hit is recognised for ``item`` (None: distractor-only)."""
    if not item.answerable:
        return None
    if item.doc and item.page is not None:
        return "page"
    return "doc" if item.doc else "answer"


def _hit_doc(hit: "Hit", doc: str) -> bool:
    return doc_matches(doc, title=hit.title, path=hit.path, sha256=hit.doc_sha256)


def is_gold(hit: "Hit", item: "QAItem") -> bool:
    """The hit is gold for ``item`` under :func:`gold_rule` (never for a distractor-only item)."""
    rule = gold_rule(item)
    if rule == "page":
        return _hit_doc(hit, item.doc) and hit.page_start <= item.page <= hit.page_end
    if rule == "doc":
        return _hit_doc(hit, item.doc)
    return rule == "answer" and contains_answer(hit.text, item.answers)


def gold_rank(hits: Sequence["Hit"], item: "QAItem") -> int | None:
    """1-based rank of the first gold hit, None when none of ``hits`` is gold.

    >>> from index.records import Hit
    >>> from assistant.qa import QAItem
    >>> hits = [Hit(str(p), f"page {p}", 1.0, "s", "book", "book.pdf", p, p, 0, 6) for p in (3, 1, 2)]
    >>> gold_rank(hits, QAItem("q", ("x",), "f:1", doc="book", page=1)), reciprocal_rank(2)
    (2, 0.5)
    """
    return next((rank for rank, hit in enumerate(hits, 1) if is_gold(hit, item)), None)


def reciprocal_rank(rank: int | None) -> float:
    return 1.0 / rank if rank else 0.0


def supports(hit: "Hit", item: "QAItem") -> bool:
    """A cited source supports the answer: it contains a reference, or it is the gold page."""
    if contains_answer(hit.text, item.answers):
        return True
    return gold_rule(item) == "page" and is_gold(hit, item)


def citation_precision(cited: Sequence[int], sources: Sequence["Hit"], item: "QAItem") -> float | None:
    """Share of the cited source numbers (1-based into ``sources``) that support the answer; None: no citation.

    >>> from index.records import Hit
    >>> from assistant.qa import QAItem
    >>> src = [Hit("a", "Returns within thirty days.", 1, "s", "p", "p.txt", 1, 1, 0, 9),
    ...        Hit("b", "Green tea.", 1, "t", "g", "g.txt", 1, 1, 0, 9)]
    >>> citation_precision([1, 2], src, QAItem("q", ("thirty days",), "f:1")), citation_precision([], src, None)
    (0.5, None)
    """
    valid = [n for n in cited if 1 <= n <= len(sources)]
    if not valid:
        return None
    return sum(supports(sources[n - 1], item) for n in valid) / len(valid)


def is_abstention(text: str, abstained: bool = False, abstain_texts: Sequence[str] = ()) -> bool:
    """The answer declines to answer (see the module docstring).

    >>> is_abstention("The documents do not contain this information."), is_abstention("I don't know.")
    (True, True)
    >>> is_abstention("Returns are accepted within thirty days [1]."), is_abstention("资料中未提及保修期。")
    (False, True)
    """
    if abstained:
        return True
    from assistant.answer import ABSTAIN_EN, ABSTAIN_ZH

    body = normalise(text)
    for fixed in (ABSTAIN_EN, ABSTAIN_ZH, *abstain_texts):
        if body and body.startswith(normalise(fixed)):
            return True
    plain = unicodedata.normalize("NFKC", text).lower().replace("’", "'")
    return bool(_ABSTAIN_EN.search(plain) or _ABSTAIN_ZH.search(plain))
