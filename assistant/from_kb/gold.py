"""Where a gold answer is: which retrieved source holds it, which chunk of the knowledge base does,
and the cited target answer (used by ``finetune data from-kb``, :mod:`assistant.from_kb.build`).

Which source *holds the answer* (first rule that applies):

* the gold chunk id is known (question generated from a chunk): that chunk;
* a gold document is given: a source of that document (title, file name, path or sha256 prefix
  of >= 6 characters: :mod:`index.naming`) whose page range includes the gold page (any page
  when none is given); of several, the first that also contains a reference answer, else the first;
* no gold document: the first source whose text contains a reference answer, compared after
  NFKC normalisation, case folding and removal of all whitespace ("30 天" matches "30天").

Text matching only finds short, extractive references (RGB-style "12人", "6.4%"); a free-form
answer rarely appears verbatim in a chunk, so give its ``doc`` (and ``page``) in the Q&A file.

Which sources a *distractor* prompt must leave out (:func:`holds_answer`) is a looser test on purpose:
a prompt that still holds the answer in another form teaches the model to decline an answerable
question (the closed loop's "2月4日" source for the reference "2022年2月4日"), while dropping one
source too many only costs a distractor. Besides the rules above, a source holds the answer when
:func:`mentions_answer` finds it in another form (numbers in any script, dates without their year,
most of a free-form answer's words).

>>> from assistant.qa import QAItem
>>> from index.records import Hit
>>> hits = [Hit(f"c{i}", t, 1.0, f"sha{i}", f"doc{i}", f"/d/doc{i}.pdf", i, i, 0, len(t))
...         for i, t in ((1, "Office hours are 9 to 5."), (2, "Returns within 30 days."))]
>>> locate(hits, Gold(QAItem("How long?", ("30 DAYS",), "qa.jsonl:1")))
(1, 'text')
>>> locate(hits, Gold(QAItem("How long?", ("thirty days",), "qa.jsonl:1", doc="doc2.pdf", page=2)))
(1, 'doc/page')
>>> cite("Returns are accepted within 30 days [3].", 2), cite("购买后三十天内可以退货。", 1)
('Returns are accepted within 30 days [2].', '购买后三十天内可以退货 [1]。')
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Sequence

from assistant.citations import strip_citations
from assistant.evaluation.metrics import contains_answer  # the same gold test as `assistant eval`
from assistant.qa import QAItem
from index.naming import doc_matches  # "names the document": the rule of `ingest rm` and `assistant eval`
from index.tokenize import tokenize  # BM25's words: jieba (search mode) for Chinese, stemmed English

if TYPE_CHECKING:
    from index.records import Hit

CHUNK, DOC_PAGE, TEXT = "chunk", "doc/page", "text"  # how the source holding the answer was recognised
SEARCH_DEPTH = 100  # chunks searched (by question, then by answer) for the gold chunk without a gold doc
_FINAL_PUNCT = re.compile(r"[.。!！?？…]+$")


@dataclass(frozen=True)
class Gold:
    """A gold question and, for a generated one, the chunk it was generated from."""

    item: QAItem
    chunk_id: str | None = None

    @property
    def question(self) -> str:
        return self.item.question


def on_gold_page(hit: "Hit", item: QAItem) -> bool:
    """The source is in the gold document and its pages include the gold page (any page if none given)."""
    if not item.doc or not doc_matches(item.doc, title=hit.title, path=hit.path, sha256=hit.doc_sha256):
        return False
    return item.page is None or hit.page_start <= item.page <= hit.page_end


def locate(sources: Sequence["Hit"], gold: Gold) -> tuple[int | None, str | None]:
    """(0-based index of the source that holds the answer, how it was recognised) or (None, None)."""
    if gold.chunk_id:
        found = next((i for i, h in enumerate(sources) if h.chunk_id == gold.chunk_id), None)
        if found is not None:
            return found, CHUNK
    item = gold.item
    if item.doc:
        pages = [i for i, h in enumerate(sources) if on_gold_page(h, item)]
        best = next((i for i in pages if contains_answer(sources[i].text, item.answers)), None)
        best = best if best is not None else (pages[0] if pages else None)
        return (best, DOC_PAGE) if best is not None else (None, None)
    found = next((i for i, h in enumerate(sources) if contains_answer(h.text, item.answers)), None)
    return (found, TEXT) if found is not None else (None, None)


def holds_answer(hit: "Hit", gold: Gold) -> bool:
    """Any sign that ``hit`` holds the answer (gold chunk, gold doc/page, a reference in its text, or
    one in another form: :func:`mentions_answer`): what a distractor-only prompt must not contain."""
    return (hit.chunk_id == gold.chunk_id or on_gold_page(hit, gold.item)
            or contains_answer(hit.text, gold.item.answers) or mentions_answer(hit.text, gold.item.answers))


def cite(answer: str, number: int) -> str:
    """The answer with `` [number]`` before its final sentence punctuation (or at the end);
    [n] marks it already had are removed first (they point at other sources)."""
    text = strip_citations(answer).strip()
    end = _FINAL_PUNCT.search(text)
    if end is None or end.start() == 0:
        return f"{text} [{number}]"
    return f"{text[:end.start()].rstrip()} [{number}]{end.group()}"


def gold_chunk(kb: Any, gold: Gold, *, mode: str) -> "Hit | None":
    """The chunk of the knowledge base that holds the answer, or None.

    By chunk id; else by gold document and page (preferring a chunk that contains a reference);
    else the best-ranked chunk containing a reference among the ``SEARCH_DEPTH`` best for the
    question, then for the main reference itself.
    """
    if gold.chunk_id:
        found = kb.store.find_chunks(chunk_id=gold.chunk_id)
        if found:
            return found[0]
    item = gold.item
    if item.doc:
        shas = [d.sha256 for d in kb.documents() if doc_matches(item.doc, title=d.title, path=d.path, sha256=d.sha256,
                                                       paths=d.all_paths)]
        found = kb.store.find_chunks(doc_shas=shas, page=item.page)
        return next((h for h in found if contains_answer(h.text, item.answers)), found[0] if found else None)
    for query in (item.question, item.answer):
        hits = kb.search(query, k=SEARCH_DEPTH, mode=mode)
        found = next((h for h in hits if contains_answer(h.text, item.answers)), None)
        if found is not None:
            return found
    return None


# -- the answer in another form (distractor sources only; `assistant eval` keeps contains_answer) --------
QUANTITY_WORDS = 2  # a reference with numbers or a date and at most this many other words is a quantity
_ZH_DIGIT = dict(zip("零〇一二两三四五六七八九", (0, 0, 1, 2, 2, 3, 4, 5, 6, 7, 8, 9)))
_ZH_UNIT = {"十": 10, "百": 100, "千": 1000}
_ZH_NUMBER = re.compile("(第)?([零〇一二两三四五六七八九十][零〇一二两三四五六七八九十百千万亿]*)"
                        "(?:点([零〇一二三四五六七八九]+))?")  # 第 (ordinal), the integer, the decimals
_MEASURE = set("个人名位次天日月年号岁届件条项只家元种本座所支队场期周倍时点分秒")  # 一 is a number before these
_EN_SMALL = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
             "sixteen seventeen eighteen nineteen").split()
_EN_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_EN_NUMBER = re.compile(rf"(?<![a-z])(?:({'|'.join(_EN_TENS)})(?:[- ]({'|'.join(_EN_SMALL[1:10])}))?"
                        rf"|({'|'.join(_EN_SMALL)}))(?![a-z])")
_SEPARATED = re.compile(r"(?<![\d.])\d{1,3}(?:,\d{3})+(?![\d])")  # 1,210,207
_SCALE = {"万亿": 10 ** 12, "千亿": 10 ** 11, "百亿": 10 ** 10, "亿": 10 ** 8, "千万": 10 ** 7, "百万": 10 ** 6,
          "十万": 10 ** 5, "万": 10 ** 4, "千": 10 ** 3, "hundred": 100, "thousand": 10 ** 3, "million": 10 ** 6,
          "billion": 10 ** 9, "bn": 10 ** 9, "trillion": 10 ** 12}
_NUMBER = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)(?:\s*(" + "|".join(sorted(_SCALE, key=len, reverse=True))
                     + r")s?(?![a-z米克]))?")  # 5千米 is 5 km, not 5000 米
_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december")
_MONTH = "|".join(sorted({*_MONTHS, *(m[:3] for m in _MONTHS), "sept"}, key=len, reverse=True))
_DATES = ((re.compile(r"(?<!\d)(\d{1,2})月(\d{1,2})[日号]"), ("md",)),  # 2月4日
          (re.compile(rf"(?<![a-z])({_MONTH})\.?\s*(\d{{1,2}})(?:st|nd|rd|th)?(?!\d)"), ("md",)),  # Feb. 4th
          (re.compile(rf"(?<!\d)(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?({_MONTH})(?![a-z])"), ("dm",)),  # 4 February
          (re.compile(r"(?<!\d)\d{4}[-/.](\d{1,2})[-/.](\d{1,2})(?!\d)"), ("md",)),  # 2022-02-04
          (re.compile(r"(?<![\d.])(\d{1,2})[/.](\d{1,2})[/.]\d{2,4}(?!\d)"), ("md", "dm")))  # 2/4/2022 either way
_UNITS = {"day": "天|日|days?", "week": "周|星期|礼拜|weeks?", "month": "月|months?", "year": "年|years?",
          "hour": "小时|钟头|hours?", "minute": "分钟|minutes?", "percent": "%|percent|per cent",
          "people": "人|名|people|persons?", "yuan": "元|块|yuan|rmb", "dollar": "美元|dollars?|usd",
          "km": "公里|千米|km|kilomet(?:er|re)s?", "kg": "公斤|千克|kg|kilograms?"}
_UNIT_AFTER = {unit: re.compile(rf"\s*(?:个|工作|自然|[a-z]+\s+){{0,2}}(?:{alt})(?![a-z])")  # 5个工作日
               for unit, alt in _UNITS.items()}


def as_digits(text: str) -> str:
    """``text`` NFKC-normalised and lower-cased, numbers written with digits: thousand separators (1,210)
    dropped, Chinese numerals (二〇二二, 三十, 一千八百万, 六点四, 第一) and English number words up to
    ninety-nine converted, 百分之N as N%, $N as N dollars, ¥N as N元.

    >>> as_digits("三十天、二〇二二年二月四日、百分之六点四、１,２１０,２０７亿元、Twenty-five $3 统一")
    '30天、2022年2月4日、6.4%、1210207亿元、25 3 dollars 统一'
    """
    text = unicodedata.normalize("NFKC", text.replace("，", "、")).lower()  # a full-width comma never groups digits
    text = _SEPARATED.sub(lambda m: m.group().replace(",", ""), text)
    text = _ZH_NUMBER.sub(_zh_number, text)
    text = _EN_NUMBER.sub(lambda m: str(_EN_TENS.index(m[1]) * 10 + 20 + (_EN_SMALL.index(m[2]) if m[2] else 0))
                          if m[1] else str(_EN_SMALL.index(m[3])), text)
    text = re.sub(r"百分之\s*(\d+(?:\.\d+)?)", r"\1%", text)
    text = re.sub(r"\$\s*(\d+(?:\.\d+)?)", r"\1 dollars", text)
    return re.sub(r"¥\s*(\d+(?:\.\d+)?)", r"\1元", text)


def _zh_number(m: re.Match) -> str:
    """A Chinese numeral as digits; a lone digit character only as an ordinal (第一) or before a measure
    word (一个, 三天), so the 一 of 统一 stays a word."""
    ordinal, run, fraction = m.groups()
    after = m.string[m.end():m.end() + 1]
    if len(run) == 1 and not ordinal and not fraction and (not after or after not in _MEASURE):
        return m.group()
    if all(c in _ZH_DIGIT for c in run):  # read digit by digit: 二〇二二
        whole = int("".join(str(_ZH_DIGIT[c]) for c in run))
    else:
        whole = _zh_int(run)
    decimals = "." + "".join(str(_ZH_DIGIT[c]) for c in fraction) if fraction else ""
    return f"{ordinal or ''}{whole}{decimals}"


def _zh_int(run: str) -> int:
    """一千八百万 -> 18000000, 十二 -> 12, 一百零五 -> 105, 两万亿 -> 2000000000000."""
    total = section = digit = 0
    for c in run:
        if c in _ZH_DIGIT:
            digit = _ZH_DIGIT[c]
        elif c in _ZH_UNIT:
            section, digit = section + (digit or 1) * _ZH_UNIT[c], 0
        elif c == "万":
            section, digit = (section + digit) * 10 ** 4, 0
        else:  # 亿
            total, section, digit = (total + section + digit) * 10 ** 8, 0, 0
    return total + section + digit


@dataclass(frozen=True)
class _Facts:
    """What a text says, comparable across scripts and languages (see :func:`mentions_answer`)."""

    numbers: frozenset[Decimal]  # every number as written and scaled (3万: 3 and 30000)
    scaled: frozenset[Decimal]  # every number with its scale word applied (3万: 30000)
    dates: frozenset[tuple[int, int]]  # (month, day) of every date, whatever its year
    quantities: frozenset[tuple[Decimal, str]]  # (number, unit) where a known unit follows: (30, "day")
    tokens: frozenset[str]  # BM25's words of the text (numbers as digits)
    words: int  # words besides numbers, scale words and dates


def _dates(text: str) -> tuple[set[tuple[int, int]], str]:
    """(the (month, day) of every date in ``text``, ``text`` without them); ``text`` is :func:`as_digits`'."""
    dates, rest = set(), text
    for pattern, orders in _DATES:
        for m in pattern.finditer(text):
            for order in orders:
                month, day = (m[1], m[2]) if order == "md" else (m[2], m[1])
                number = int(month) if month.isdigit() else next(i for i, name in enumerate(_MONTHS, 1)
                                                                 if name.startswith(month[:3]))
                if 1 <= number <= 12 and 1 <= int(day) <= 31:
                    dates.add((number, int(day)))
        rest = pattern.sub(" ", rest)
    return dates, rest


@lru_cache(maxsize=4096)
def _facts(text: str) -> _Facts:
    text = as_digits(text)
    dates, rest = _dates(text)
    numbers, scaled, quantities = set(), set(), set()
    for m in _NUMBER.finditer(text):
        value = Decimal(m[1]) * _SCALE.get(m[2] or "", 1)
        numbers.update((Decimal(m[1]), value))
        scaled.add(value)
        quantities.update((value, unit) for unit, after in _UNIT_AFTER.items() if after.match(text, m.end()))
    return _Facts(frozenset(numbers), frozenset(scaled), frozenset(dates), frozenset(quantities),
                  frozenset(tokenize(text)), len(tokenize(_NUMBER.sub(" ", rest))))


def mentions_answer(text: str, references: Sequence[str]) -> bool:
    """``text`` holds a reference in another form (looser than :func:`contains_answer`, on purpose).

    Both sides are compared with their numbers as digits (:func:`as_digits`); a reference (its [n]
    marks removed) is

    * a date (a day and month, at most ``QUANTITY_WORDS`` other words): found when ``text`` has that
      day of that month, in any year and any form (2月4日, Feb. 4, 4 February, 2022-02-04);
    * a number or quantity (at most ``QUANTITY_WORDS`` words besides its numbers, e.g. a unit):
      found when ``text`` has each of its numbers, in any unit or script (三十天, 30 days, 3万 = 30,000);
    * else free-form: found when ``text`` has the quantities it states with their units (三十天内可以退货:
      30 days), one of its dates, or most (more than half) of its distinct words, which are BM25's:
      jieba words for Chinese, stemmed English words (:func:`index.tokenize.tokenize`).

    >>> mentions_answer("开幕式于北京当地时间2月4日举行", ["2022年2月4日"]), contains_answer("2月4日", ["2022年2月4日"])
    (True, False)
    >>> mentions_answer("Returns within thirty days.", ["30天"]), mentions_answer("共派出176名运动员", ["44"])
    (True, False)
    """
    facts = _facts(text)
    return any(_found(facts, _facts(strip_citations(ref))) for ref in references if ref.strip())


def _found(text: _Facts, ref: _Facts) -> bool:
    if ref.dates and ref.words <= QUANTITY_WORDS:
        return bool(ref.dates & text.dates)
    if ref.scaled and ref.words <= QUANTITY_WORDS:
        return ref.scaled <= text.numbers
    if ref.dates & text.dates or (ref.quantities and ref.quantities <= text.quantities):
        return True
    return bool(ref.tokens) and 2 * len(ref.tokens & text.tokens) > len(ref.tokens)
