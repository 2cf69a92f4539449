"""Text clean-up shared by the PDF, OCR and plain-text loaders, plus text-layer quality checks.

``normalize_text`` folds compatibility characters (ligatures, full-width letters and digits, Kangxi
radicals) with NFKC while keeping Chinese full-width punctuation, drops control/format/private-use
characters, collapses blanks and keeps paragraph breaks. It never inserts spaces between CJK
characters; it removes them where a line is letter-spaced ("目 录" -> "目录"). A hyphen at an English
line end is either a word break ("exam-\\nple" -> "example") or part of a compound ("long-\\nterm" ->
"long-term"); ``wordfreq``'s English frequency list (shipped in its wheel, so offline) tells which.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from common import cjk

# Full-width punctuation (cjk.PUNCT) is kept as is: NFKC would turn "，" into "," inside Chinese text.
_KEEP = re.compile(f"[{cjk.PUNCT}]")
_CJK_OR_PUNCT = re.compile(f"[{cjk.SPACELESS}{cjk.PUNCT}]")
_NEEDS_FOLD = re.compile(r"[^\x20-\x7e\n]")
_SOFT_BREAK = re.compile("[\u00ad\x02][ \t]*\n")  # soft hyphen (pdfium writes \x02) at a line end
_CID = re.compile(r"\(cid:\d+\)")
_ASCII_LETTERS = re.compile(r"[A-Za-z]")
_GLYPH_ID_CODES = re.compile(r"[\x03-\x08\x0b\x0c\x0e-\x1f]")  # space..'/' as glyph ids 3..18
_SENTENCE_END = set("。！？；：.!?;:")
_CONTROL_MAP = {"\t": " ", "\n": "\n", "\f": "\n\n", "\v": "\n", "\x85": "\n", "\u2028": "\n", "\u2029": "\n\n"}
_SYMBOL_BULLETS = {"\uf0b7": "•", "\uf0a7": "▪", "\uf06c": "●", "\uf0d8": "➢"}  # Symbol/Wingdings in private use
_KEEP_FORMAT = {"\u200c", "\u200d"}  # zero-width (non-)joiners shape emoji and Indic scripts


@lru_cache(maxsize=16384)
def _fold(ch: str) -> str:
    if ch in _CONTROL_MAP:
        return _CONTROL_MAP[ch]
    if _KEEP.match(ch):
        return ch
    if ch in _SYMBOL_BULLETS:
        return _SYMBOL_BULLETS[ch]
    cat = unicodedata.category(ch)
    if cat in ("Cc", "Co", "Cs", "Cn") or ch == "\ufffd":
        return ""
    if cat == "Cf":  # soft hyphen, zero-width space, BOM, bidi marks
        return ch if ch in _KEEP_FORMAT else ""
    return unicodedata.normalize("NFKC", ch)


def _display_width(line: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in line)


def _join_wrapped_cjk(text: str) -> str:
    """Remove line breaks that only wrap a CJK paragraph at the page margin.

    A break is a wrap when the line is nearly as wide as the page's typical full line (80% of the
    90th-percentile width, in display columns), ends in a CJK character or non-final CJK
    punctuation, and the next line starts with one. Short lines (headings, table cells) keep it.
    """
    lines = text.split("\n")
    widths = [_display_width(line) for line in lines]
    filled = sorted(w for w in widths if w)
    if len(filled) < 2:
        return text
    full = max(16.0, 0.8 * filled[int(0.9 * (len(filled) - 1))])
    out = [lines[0]]
    for i in range(1, len(lines)):
        prev, line = lines[i - 1], lines[i]
        wrap = prev and line and widths[i - 1] >= full and prev[-1] not in _SENTENCE_END
        # a line ending in a digit or "%" is a table row more often than a wrapped sentence
        if wrap and _CJK_OR_PUNCT.match(prev[-1]) and _CJK_OR_PUNCT.match(line[0]):
            out[-1] += line
        else:
            out.append(line)
    return "\n".join(out)


# A line-end hyphen after an ASCII word or hyphenated compound, before a lowercase word.
_LINE_END_HYPHEN = re.compile(r"(?<![A-Za-z0-9-])([A-Za-z0-9]+(?:-[A-Za-z0-9]+)*)-\n([a-z]{2,})")
WORD_ZIPF = 3.0  # wordfreq Zipf frequency (log10 per billion words) from which a string counts as a word:
# "months" 5.4, "nonsense" 4.2, "runtime" 3.1 are words; "longterm" 2.8, "antistatic" 1.7 are not
# (and "self-cleaning" is the spelling), fragments such as "ple" 2.7 or "ths" 2.7 are not either.
# Prefixes written with a hyphen before a word ("self-cleaning", "anti-static", "well-known").
_PREFIXES = frozenset("self anti non co pre post multi well semi ex pseudo quasi ultra cross counter "
                      "mid sub inter intra extra over under micro macro mini bi tri all half low high".split())
# Word-forming suffixes: "hot-\\nness" is a word break even though "hot" and "ness" are both words.
_SUFFIXES = frozenset("ness less ful ment ments able ible tion tions sion sions ity ism ist ists ize ized "
                      "ise ised ous ive ly ally ance ence ship hood ing ings ed er ers est".split())


@lru_cache(maxsize=65536)
def _zipf(word: str) -> float:
    from wordfreq import zipf_frequency  # ~0.3 s to load the English list; only where a hyphen is

    return float(zipf_frequency(word, "en"))


def _keeps_hyphen(left: str, right: str) -> bool:
    """True when "left-\\nright" is a hyphenated compound, False when it is one word broken.

    ``left`` is the whole token before the line-end hyphen ("state-of-the"), ``right`` the lowercase
    word after it. A compound already hyphenated, a part with digits or an acronym ("GPU-") keeps it;
    otherwise a common joined form ("infor-mation", "non-sense") joins, and a known prefix or two
    common words (3+ letters on the left, "in-lined" is a break) keep it. Anything else joins: most
    line-end hyphens in typeset text are word breaks ("tra-jectory").
    """
    last = left.rsplit("-", 1)[-1]
    if "-" in left or not last.isalpha() or len(last) < 2 or last.isupper():
        return True
    word = last.lower()
    if right in _SUFFIXES or _zipf(word + right) >= WORD_ZIPF or _zipf(right) < WORD_ZIPF:
        return False
    return word in _PREFIXES or (len(word) >= 3 and _zipf(word) >= WORD_ZIPF)


def _undo_line_end_hyphens(text: str) -> str:
    """Join words and compounds broken at a line-end hyphen (see ``_keeps_hyphen``).

    >>> _undo_line_end_hyphens("long-\\nterm care, exam-\\nple, state-of-the-\\nart, x-\\nray, 中文-\\n文字")
    'long-term care, example, state-of-the-art, x-ray, 中文-\\n文字'
    """
    def fix(match: re.Match[str]) -> str:
        left, right = match.groups()
        return left + ("-" if _keeps_hyphen(left, right) else "") + right

    return _LINE_END_HYPHEN.sub(fix, text)


_SPACED = re.compile(f"(?<=[{cjk.SPACELESS}{cjk.PUNCT}]) (?=[{cjk.SPACELESS}{cjk.PUNCT}])")
_ISOLATED = re.compile(f"(?:^|(?<= ))[{cjk.SPACELESS}](?= |$)", re.M)


def _unspace_cjk(text: str) -> str:
    """Remove the spaces of letter-spaced CJK text ("关 于 红 军" -> "关于红军").

    Applied only when most CJK characters stand alone between spaces, so the spaces separating
    table cells or words in ordinary Chinese text stay.
    """
    n_cjk = len(cjk.SPACELESS_RE.findall(text))
    if n_cjk < 4 or len(_ISOLATED.findall(text)) < 0.5 * n_cjk:
        return text
    return _SPACED.sub("", text)


def normalize_text(text: str, *, layout: bool = False) -> str:
    """Clean extracted text; ``layout=True`` for text from a page layout (PDF text layer, OCR).

    With ``layout`` English words broken at a line-end hyphen are joined ("exam-\\nple" -> "example",
    "long-\\nterm" -> "long-term") and CJK lines wrapped at the margin are joined without a space.
    Blank runs become one space, three or more newlines a paragraph break ("\\n\\n"); single
    newlines stay (table rows, list items).

    >>> normalize_text("The ﬁrst exam-\\nple\\u00ad  is\\x07 here.\\n\\n\\n\\nＡ１，ok", layout=True)
    'The first example is here.\\n\\nA1，ok'
    >>> normalize_text("a self-\\ncleaning, long-\\nterm filter for mon-\\nths", layout=True)
    'a self-cleaning, long-term filter for months'
    >>> normalize_text("目 \\u3000 录\\n关 于 红 军 作 战")
    '目录\\n关于红军作战'
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _SOFT_BREAK.sub("", _CID.sub("", text))
    text = _NEEDS_FOLD.sub(lambda m: _fold(m.group()), text)
    if not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r" ?\n ?", "\n", text)
    if layout:
        text = _undo_line_end_hyphens(text)
        text = _join_wrapped_cjk(text)
    text = _unspace_cjk(text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _bad_char(ch: str) -> bool:
    if ch in "\t\n\r\f":
        return False
    return ch == "\ufffd" or unicodedata.category(ch) in ("Cc", "Co", "Cs", "Cn")


def _repair_glyph_ids(line: str) -> str:
    """Undo glyph ids read as character codes (a subset TrueType font without a Unicode map).

    The standard TrueType glyph order puts ASCII 32..126 at glyphs 3..97 (code - 29), so
    "$FW\\x03\\x14" is "Act 1". Only lines holding such control codes are shifted back, and only
    kept when the result is clean text with mostly lowercase letters; otherwise the line is
    returned unchanged.

    >>> _repair_glyph_ids("$FW\\x03\\x14\\x1d\\x03*R\\x03WR\\x03FDELQHW"), _repair_glyph_ids("Act 1")
    ('Act 1: Go to cabinet', 'Act 1')
    """
    if not _GLYPH_ID_CODES.search(line):
        return line
    fixed = "".join(chr(ord(c) + 29) if 3 <= ord(c) <= 97 else c for c in line)
    letters = _ASCII_LETTERS.findall(fixed)
    if any(map(_bad_char, fixed)) or sum(c.islower() for c in letters) <= 0.5 * len(letters):
        return line
    return fixed


def _shifted_token(token: str) -> bool:
    """8+ ASCII letters, 80%+ capitals, under 20% vowels: glyph ids read as character codes
    ("QHHGWRILQG" for "need to find"); English words run near 38% vowels."""
    letters = _ASCII_LETTERS.findall(token)
    if len(letters) < 8:
        return False
    upper = sum(c.isupper() for c in letters)
    vowels = sum(c in "AEIOUaeiou" for c in letters)
    return upper >= 0.8 * len(letters) and vowels < 0.2 * len(letters)


def _garbled_line(line: str) -> bool:
    """A line is garbled when 10% of it (at least 2 characters: 1 may be a Symbol-font bullet) is
    control/private-use/unassigned characters, when it reads as mojibake (half of a 4+ character
    line in U+0080..U+00FF, as GBK bytes read as Latin-1: "¹Ø ÓÚ" for "关于"), or when most of it
    is shifted-glyph tokens (see ``_shifted_token``)."""
    tokens = line.split()
    visible = "".join(tokens)
    if not visible:
        return False
    bad = sum(map(_bad_char, visible))
    latin1 = sum(1 for c in visible if "\x80" <= c <= "\xff")
    if bad >= max(2, 0.1 * len(visible)) or (len(visible) >= 4 and latin1 >= 0.5 * len(visible)):
        return True
    return sum(len(t) for t in tokens if _shifted_token(t)) >= 0.5 * len(visible)


@dataclass(frozen=True)
class TextLayer:
    """A page's raw text split into usable lines and garbled ones (counts are non-space chars)."""

    text: str  # the usable lines only, not normalised yet
    chars: int
    garbled_chars: int
    garbled_lines: int

    @property
    def garbled(self) -> bool:
        """Mostly garbage: at least as many garbled characters as usable ones."""
        return self.garbled_chars > 0 and self.garbled_chars >= self.chars


def assess_text_layer(raw: str) -> TextLayer:
    """Split raw extracted text into usable and garbled lines (glyph-id lines are repaired).

    >>> layer = assess_text_layer("Good line of text\\n(cid:3)(cid:4)(cid:5)\\n$FW\\x03\\x14")
    >>> (layer.text, layer.chars, layer.garbled_lines)
    ('Good line of text\\nAct 1', 18, 1)
    """
    raw = _CID.sub("\ufffd", raw.replace("\r\n", "\n").replace("\r", "\n"))
    kept: list[str] = []
    chars = garbled_chars = garbled_lines = 0
    for line in raw.split("\n"):
        line = _repair_glyph_ids(line)
        visible = "".join(line.split())
        if _garbled_line(line):
            garbled_chars += len(visible)
            garbled_lines += 1
            continue
        chars += len(visible)
        kept.append(line)
    return TextLayer("\n".join(kept), chars, garbled_chars, garbled_lines)
