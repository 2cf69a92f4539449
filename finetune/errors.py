"""Typed errors of the finetune package; the CLI turns them into friendly messages.

Example:
    >>> from finetune.records import Problem
    >>> err = DataError([Problem("a.jsonl:3", "bad json", "a.jsonl:3: bad JSON ...")])
    >>> err.problem.source
    'a.jsonl:3'
"""
from __future__ import annotations

from collections.abc import Sequence

from finetune.records import Problem


class FinetuneError(Exception):
    """Base of every error raised on purpose by the finetune package."""


class ConfigError(FinetuneError, ValueError):
    """A configuration value is invalid; the message names the value and the fix."""


class DataError(FinetuneError):
    """Training data cannot be used as given: missing files, or (with strict=True) the first bad record.

    ``problem`` is the first problem, ``problems`` all of them (several only for up-front checks such as
    missing files, which are reported together).
    """

    def __init__(self, problems: Sequence[Problem]) -> None:
        if not problems:
            raise ValueError("DataError needs at least one Problem")
        self.problems: tuple[Problem, ...] = tuple(problems)
        self.problem: Problem = self.problems[0]
        super().__init__("\n".join(p.detail for p in self.problems))
