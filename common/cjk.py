"""The CJK character ranges, named once, and the text tests built on them.

Ranges are regex character-class bodies (``f"[{HAN}]"``), so sets combine by concatenation:

* :data:`HAN`: every Han ideograph: Extension A and the unified block (U+3400-4DBF, U+4E00-9FFF),
  the compatibility ideographs (U+F900-FAFF) and the supplementary and tertiary ideographic
  planes (U+20000-3FFFF: Extensions B-H and the compatibility supplement).
* :data:`KANA`: hiragana and katakana (U+3040-30FF).
* :data:`HANGUL`: hangul syllables (U+AC00-D7AF).
* :data:`SPACELESS` = Han + kana: scripts written without spaces between words (text clean-up,
  chunking and OCR never put a space between two of them).
* :data:`PER_CHAR` = Han + kana + hangul: one token per character in the hash embedder.
* :data:`PUNCT`: CJK and full-width punctuation (joins like a CJK character; NFKC must not fold it).

Which set a rule uses: Han alone where Chinese is meant (jieba segmentation, "is this Chinese",
eval normalising); Han + kana where spacing is meant; Han + kana + hangul for per-character tokens.

>>> is_cjk("の"), is_cjk("한"), is_han("\\U00020000"), is_han("\\uf900"), is_han("a")
(True, False, True, True, False)
>>> count_han("红茶 green tea 𠀀"), is_chinese("什么是 RAG？"), is_chinese("What is 红茶?")
(3, True, False)
"""
from __future__ import annotations

import re

HAN_BMP = "\u3400-\u4dbf\u4e00-\u9fff"  # Extension A, then the CJK Unified Ideographs block
HAN_COMPAT = "\uf900-\ufaff"  # CJK Compatibility Ideographs
HAN_SUPPLEMENTARY = "\U00020000-\U0003ffff"  # planes 2 and 3: Extensions B-H, compatibility supplement
HAN = HAN_BMP + HAN_COMPAT + HAN_SUPPLEMENTARY
KANA = "\u3040-\u30ff"  # hiragana, katakana
HANGUL = "\uac00-\ud7af"  # hangul syllables
SPACELESS = HAN + KANA
PER_CHAR = HAN + KANA + HANGUL
PUNCT = ("\u3001-\u303f\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65"
         "\u2026\u2025\u201c\u201d\u2018\u2019")  # CJK symbols, full-width forms, … ‥ and curly quotes

HAN_RE = re.compile(f"[{HAN}]")
SPACELESS_RE = re.compile(f"[{SPACELESS}]")


def is_han(ch: str) -> bool:
    """True when ``ch`` (one character) is a Han ideograph (:data:`HAN`)."""
    return bool(HAN_RE.match(ch))


def is_cjk(ch: str) -> bool:
    """True when ``ch`` (one character) is Han or kana (:data:`SPACELESS`: written without spaces)."""
    return bool(SPACELESS_RE.match(ch))


def has_han(text: str) -> bool:
    """True when ``text`` holds at least one Han ideograph."""
    return HAN_RE.search(text) is not None


def count_han(text: str) -> int:
    """Number of Han ideographs in ``text``."""
    return len(HAN_RE.findall(text))


def latin_words(text: str) -> int:
    """Number of whitespace-separated words holding an ASCII letter.

    >>> latin_words("What is 红茶? 42")
    2
    """
    return sum(1 for w in text.split() if any(c.isascii() and c.isalpha() for c in w))


def is_chinese(text: str) -> bool:
    """True when Han ideographs outnumber Latin words (a Chinese character carries about a word)."""
    return count_han(text) > latin_words(text)
