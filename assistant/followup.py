"""Does a question depend on the conversation before it? (the gate in front of every rewrite).

A question is only rewritten from the history when it leans on it; a question that stands on its
own is searched as typed, whatever was asked before. The signals, in either language:

* **reference**: a pronoun or demonstrative (it, its, they, this, that, those, ...; 它, 它们, 这个,
  那个, 这些, 该, 其, 此, ...; not the 该 of 应该 or the 其 of 其他);
* **fragment**: an ellipsis that continues the last question ("what about the HV500?", "and in
  winter?", "那 HV500 呢？", "还有呢", "保修期呢？": 呢 without a question word such as 几/多少/什么);
* **bare**: no content word at all ("Why?", "How much?", "为什么？"); **short**: one content word.

Content words are the words left after stop words (:data:`index.tokenize.EN_STOPWORDS`), question
words and the signals themselves; in Chinese, two content characters count as one word.

The verdict (:func:`dependence`):

* ``standalone``: no signal, or only a weak one (a reference, fragment or short question that
  carries content words of its own) right after a LANGUAGE SWITCH: a question in another
  language than the previous one is strong evidence of a new topic;
* ``follow-up``: a strong signal (bare, or a reference/fragment with at most :data:`FEW` content
  words) in the language of the previous question: searched as rewritten;
* ``unsure``: a strong signal across a language switch, or a weak signal in the same language:
  both the question and its rewrite are searched (:mod:`assistant.condense`).

>>> prev = [{"role": "user", "content": "What restocking fee applies to an opened vacuum?"}]
>>> dependence("What about the HV500?", prev).kind, dependence("How long is the warranty of laptops?", prev).kind
('follow-up', 'standalone')
>>> dependence("Does this fee apply to refurbished vacuums too?", prev).kind
'unsure'
>>> zh = [{"role": "user", "content": "年假有几天？"}]
>>> dependence("那满十年呢？", zh).kind, dependence("差旅费用多久内报销？", zh).kind, dependence("还有呢", zh).signals
('follow-up', 'standalone', ('fragment', 'bare'))
>>> dependence("What restocking fee applies to an opened vacuum?", zh).kind    # language switch, no signal
'standalone'
>>> dependence("它的保修期呢？", prev)                                         # strong signal, language switch
Dependence(kind='unsure', signals=('reference', 'fragment', 'language switch'))
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Sequence

from common.cjk import HAN, HAN_RE, is_chinese
from index.tokenize import EN_STOPWORDS

STANDALONE, FOLLOW_UP, UNSURE = "standalone", "follow-up", "unsure"
FEW = 3  # a reference/fragment with at most this many content words leans on the history

_EN_REFERENCE = re.compile(r"\b(it|its|itself|they|them|their|theirs|this|that|these|those|he|him|his|she|her|"
                           r"hers|former|latter)\b", re.IGNORECASE)
_ZH_REFERENCE = re.compile(r"(?<!其)[它他她]|[这那]|(?<![因从如彼])此|(?<![应活])该|(?<![尤极与])其(?![他它实次])")
_EN_FRAGMENT = re.compile(r"^\W*(and|or|but|also|so|then|plus|what about|how about|what if|same for|else)\b",
                          re.IGNORECASE)
_ZH_FRAGMENT = re.compile(r"^\W*(那|还有|另外|以及|然后|再|和|或者)")
_ZH_ELLIPSIS = re.compile(r"呢\W*$")  # "X 呢？" without a question word: "and X?"
_ZH_QUESTION_WORD = re.compile(r"几|多少|什么|怎|如何|哪|谁|为何|吗|是否|多[久长大高远]")
# Question words, fillers and reference words: never content.
_EN_NOT_CONTENT = EN_STOPWORDS | frozenset(
    "what how why when where which who whom whose much many long often else please tell me about ok okay thanks "
    "yes no also one ones former latter same really exactly mean means meant kind sort way thing things "
    "get got there any anything more less must might may shall need needs s".split())
_ZH_NOT_CONTENT = frozenset("的了吗呢吧啊呀嘛么哦嗯是有在和与或也都还就又很多少几久什怎样哪谁为何要会能可以请问"
                            "我你您他她它们这那该其此个些种款台位次下再而且及把被给对于从向")
_EN_WORD = re.compile(rf"[^\W_{HAN}]+", re.UNICODE)


@dataclass(frozen=True)
class Dependence:
    """How ``question`` leans on the conversation: ``kind`` (standalone, follow-up, unsure) and the
    signals found (reference, fragment, bare, short, language switch)."""

    kind: str
    signals: tuple[str, ...] = ()


def content_words(question: str) -> int:
    """Content words of ``question``: non-stop Latin words plus one per two Chinese content characters.

    >>> content_words("What about its side effects?"), content_words("它的保修期有多长？"), content_words("Why?")
    (2, 2, 0)
    """
    latin = [w for w in _EN_WORD.findall(question.lower()) if w not in _EN_NOT_CONTENT]
    han = [c for c in HAN_RE.findall(question) if c not in _ZH_NOT_CONTENT]
    return len(latin) + (len(han) + 1) // 2


def signals(question: str) -> tuple[str, ...]:
    """The dependence signals of ``question`` alone (no history needed): reference, fragment, bare, short.

    >>> signals("How long must it dry?"), signals("应该什么时候申请？"), signals("What about its side effects?")
    (('reference', 'short'), (), ('reference', 'fragment'))
    >>> signals("保修期呢？"), signals("年假有几天呢？")
    (('fragment',), ())
    """
    found = []
    if _EN_REFERENCE.search(question) or _ZH_REFERENCE.search(question):
        found.append("reference")
    ellipsis = _ZH_ELLIPSIS.search(question) and not _ZH_QUESTION_WORD.search(question)
    if _EN_FRAGMENT.search(question) or _ZH_FRAGMENT.search(question) or ellipsis:
        found.append("fragment")
    n = content_words(question)
    if n <= 1:
        found.append("bare" if n == 0 else "short")
    return tuple(found)


def previous_user_question(history: Sequence[Mapping[str, str]]) -> str | None:
    """The last user message of ``history`` (None when there is none)."""
    return next((m["content"] for m in reversed(history) if m["role"] == "user"), None)


def dependence(question: str, history: Sequence[Mapping[str, str]]) -> Dependence:
    """Whether ``question`` depends on ``history`` (``[{"role", "content"}, ...]``, oldest first); see the
    module docstring for the rules. No history, or no earlier user question: standalone."""
    previous = previous_user_question(history)
    if not previous:
        return Dependence(STANDALONE)
    found = signals(question)
    if not found:
        return Dependence(STANDALONE)
    strong = "bare" in found or (("reference" in found or "fragment" in found) and content_words(question) <= FEW)
    if is_chinese(previous) != is_chinese(question):
        return Dependence(UNSURE if strong else STANDALONE, (*found, "language switch"))
    return Dependence(FOLLOW_UP if strong else UNSURE, found)
