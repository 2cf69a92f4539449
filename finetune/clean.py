"""Cleaning of valid conversations: PII masking, exact-duplicate removal, length filters, split.

Example:
    >>> scrub_text("call 13812345678 or mail a.b@example.com")
    ('call <PHONE> or mail <EMAIL>', {'phone': 1, 'email': 1})
"""
from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

from finetune.records import Conversation, Message, Problem
from finetune.validate import DUPLICATE, TOO_LONG, TOO_SHORT, problem

PLACEHOLDERS = {"email": "<EMAIL>", "phone": "<PHONE>"}
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# Digits-only boundaries ((?<!\d), (?!\d)) so numbers inside longer digit runs (ids, amounts) stay.
_PHONES = (
    # international: +CC then 6-14 more digits in groups separated by space, dot, dash or (area)
    r"\+\d{1,3}(?:[ .\-]?\(?\d{1,4}\)?){2,5}",
    # Chinese mobile, optionally +86 / 86 prefixed, optionally grouped 3-4-4
    r"(?:(?<!\d)86[ \-]?)?(?<!\d)1[3-9]\d(?:[ \-]?\d{4}){2}",
    # Chinese landline: area code 0xx / 0xxx (optionally in parentheses) + 7-8 digit number
    r"(?<!\d)(?:\(0\d{2,3}\)|0\d{2,3})[ \-]?\d{7,8}(?:-\d{1,5})?",
    # 400/800 service numbers
    r"(?<!\d)[48]00[ \-]?\d{3}[ \-]?\d{4}",
    # North American with separators: (555) 123-4567, 555-123-4567, 555.123.4567
    r"(?<!\d)(?:\(\d{3}\) ?|\d{3}[.\-])\d{3}[.\-]\d{4}",
)
_PHONE = re.compile("(?:" + "|".join(_PHONES) + r")(?!\d)")


def scrub_text(text: str) -> tuple[str, dict[str, int]]:
    """Mask e-mail addresses and phone numbers with ``<EMAIL>`` / ``<PHONE>``; return text and counts."""
    counts = {"phone": 0, "email": 0}

    def sub(kind: str):
        def repl(match: re.Match[str]) -> str:
            if kind == "phone" and not 7 <= sum(c.isdigit() for c in match.group()) <= 15:
                return match.group()  # ITU-T E.164: at most 15 digits; fewer than 7 is no phone number
            counts[kind] += 1
            return PLACEHOLDERS[kind]
        return repl

    text = _EMAIL.sub(sub("email"), text)  # e-mails first: their digits must not become <PHONE>
    text = _PHONE.sub(sub("phone"), text)
    return text, counts


def scrub_conversation(conv: Conversation) -> tuple[Conversation, Counter[str]]:
    """Conversation with PII masked in every message, and the number of masks by kind."""
    total: Counter[str] = Counter()
    messages = []
    for msg in conv.messages:
        content, counts = scrub_text(msg.content)
        total.update(counts)
        messages.append(Message(msg.role, content))
    return replace(conv, messages=tuple(messages)), total


def normalise(text: str) -> str:
    """NFKC, whitespace runs collapsed to one space, stripped: the text that duplicates are compared on."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


def fingerprint(conv: Conversation) -> str:
    """sha256 hex of the normalised (role, content) sequence; the source is not part of it."""
    payload = json.dumps([[m.role, normalise(m.content)] for m in conv.messages], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def dedup(convs: Sequence[Conversation]) -> tuple[list[Conversation], list[Problem]]:
    """Keep the first of each group of exact duplicates (after normalisation); report the others."""
    first: dict[str, str] = {}
    kept: list[Conversation] = []
    dropped: list[Problem] = []
    for conv in convs:
        key = fingerprint(conv)
        if key in first:
            dropped.append(problem(conv.source, DUPLICATE, f"duplicate of the record at {first[key]}",
                                   "nothing to do (kept the first copy); pass dedup=False / --no-dedup to keep all"))
            continue
        first[key] = conv.source
        kept.append(conv)
    return kept, dropped


def assistant_chars(conv: Conversation) -> int:
    """Length filter unit: characters of all assistant turns, summed (after PII masking)."""
    return sum(len(m.content) for m in conv.messages if m.role == "assistant")


def length_filter(convs: Sequence[Conversation], min_chars: int,
                  max_chars: int | None) -> tuple[list[Conversation], list[Problem]]:
    """Keep records whose assistant text has min_chars..max_chars characters; report the others."""
    kept: list[Conversation] = []
    dropped: list[Problem] = []
    for conv in convs:
        n = assistant_chars(conv)
        if n < min_chars:
            dropped.append(problem(conv.source, TOO_SHORT, f"assistant text has {n} characters < min_chars={min_chars}",
                                   "lower min_chars / --min-chars to keep it"))
        elif max_chars is not None and n > max_chars:
            dropped.append(problem(conv.source, TOO_LONG, f"assistant text has {n} characters > max_chars={max_chars}",
                                   "raise max_chars / --max-chars to keep it"))
        else:
            kept.append(conv)
    return kept, dropped


def split(convs: Sequence[Conversation], val_ratio: float,
          seed: int) -> tuple[list[Conversation], list[Conversation]]:
    """Seeded train/validation split, exact size round(n * val_ratio) (at least 1 when n >= 2 and ratio > 0).

    A record goes to validation when its sha256(seed, fingerprint, position) ranks among the
    smallest, so the split is the same on every Python version and machine. Both parts keep file order.
    """
    n = len(convs)
    n_val = round(n * val_ratio)
    if val_ratio > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    ranks = sorted(range(n), key=lambda i: hashlib.sha256(f"{seed}:{i}:{fingerprint(convs[i])}".encode()).digest())
    chosen = set(ranks[:n_val])
    train = [c for i, c in enumerate(convs) if i not in chosen]
    return train, [c for i, c in enumerate(convs) if i in chosen]
