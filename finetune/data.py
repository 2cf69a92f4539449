"""The fine-tuning data stage: files -> validated, cleaned, split conversations and a report.

Example:
    >>> import json, tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "qa.jsonl"
    >>> rows = [{"instruction": f"q{i}", "input": "", "output": f"a{i}"} for i in range(10)]
    >>> _ = p.write_text("\\n".join(json.dumps(r) for r in rows))
    >>> report = prepare([p], system="You are a helpful assistant.")
    >>> len(report.train), len(report.validation), report.formats[str(p)]
    (9, 1, 'alpaca')
    >>> report.train[0].as_dicts()[0]
    {'role': 'system', 'content': 'You are a helpful assistant.'}
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from finetune import clean
from finetune.config import THINKING
from finetune.errors import ConfigError, DataError
from finetune.formats import RawRecord, convert, iter_records
from finetune.records import Conversation, Message, Problem
from finetune.stats import TokenStats, token_stats  # re-exported: the data stage's statistics
from finetune.validate import BAD_JSON, check_conversation, check_thinking, problem

__all__ = ["DataConfig", "DataReport", "TokenStats", "apply_system", "prepare", "prepare_config", "token_stats"]
MISSING_FILE = "missing file"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class DataConfig:
    """Options of the data stage (CLI flags of ``finetune data check`` map 1:1 to these fields; a
    field's ``help`` metadata is its ``--help`` text).

    min_chars / max_chars bound the characters of the assistant text (all assistant turns summed,
    after PII masking); token lengths are reported, not filtered, by :func:`finetune.stats.token_stats`.
    ``val_files`` given: they are the validation set and ``val_ratio`` is not used.
    ``thinking`` is the policy the data will be trained with (``finetune train --thinking``): records
    whose reasoning blocks would train the wrong thing under it are dropped (see
    :func:`finetune.validate.check_thinking`).
    """

    system: str | None = field(default=None, metadata={"help": "default system prompt for records without one"})
    system_override: bool = field(default=False, metadata={"help": "replace every record's system prompt by --system"})
    # strict: raise DataError on the first invalid record (filter drops are no errors)
    strict: bool = field(default=False, metadata={
        "help": "stop at the first invalid record (exit status 2) instead of dropping and reporting it"})
    dedup: bool = field(default=True, metadata={"help": "drop exact duplicates (after NFKC and whitespace folding)"})
    min_chars: int = field(default=1, metadata={"help": "minimum characters of assistant text"})
    max_chars: int | None = field(default=None, metadata={
        "help": "maximum characters of assistant text (none: no limit)"})
    scrub_pii: bool = field(default=False, metadata={"help": "mask phone numbers and e-mail addresses"})
    val_ratio: float = field(default=0.1, metadata={
        "help": "validation share, in [0, 1), when no validation file is given"})
    val_files: tuple[Path, ...] = field(default=(), metadata={
        "help": "validation file (repeatable); replaces the split by --val-ratio"})
    seed: int = field(default=42, metadata={"help": "seed of the train/validation split"})
    thinking: str = field(default="off", metadata={
        "help": "thinking policy the data is checked for, as finetune train --thinking: off or keep"})

    def __post_init__(self) -> None:
        object.__setattr__(self, "val_files", tuple(Path(f) for f in self.val_files))
        if self.system is not None and (not isinstance(self.system, str) or not self.system.strip()):
            raise ConfigError(f"system must be a non-empty string or None, got {self.system!r}")
        for name in ("system_override", "strict", "dedup", "scrub_pii"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.system_override and self.system is None:
            raise ConfigError("system_override=True needs a system prompt (system=..., --system)")
        if not _is_int(self.min_chars) or self.min_chars < 0:
            raise ConfigError(f"min_chars must be an integer >= 0, got {self.min_chars!r}")
        if self.max_chars is not None and (not _is_int(self.max_chars) or self.max_chars < max(self.min_chars, 1)):
            raise ConfigError(f"max_chars must be None or an integer >= min_chars ({self.min_chars}) "
                              f"and >= 1, got {self.max_chars!r}")
        if isinstance(self.val_ratio, bool) or not isinstance(self.val_ratio, (int, float)) \
                or not 0 <= self.val_ratio < 1:
            raise ConfigError(f"val_ratio must be a number in [0, 1), got {self.val_ratio!r}")
        if not _is_int(self.seed):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")
        if self.thinking not in THINKING:
            raise ConfigError(f"thinking must be one of {', '.join(THINKING)}; got {self.thinking!r}")


@dataclass(frozen=True)
class DataReport:
    """Result of :func:`prepare`: the kept conversations, every dropped record and why."""

    train: tuple[Conversation, ...]
    validation: tuple[Conversation, ...]
    problems: tuple[Problem, ...]  # every dropped record (invalid, duplicate, length-filtered), file order
    counts_by_reason: dict[str, int]  # dropped records by Problem.reason
    formats: dict[str, str]  # file -> "alpaca" | "sharegpt" | "openai" | "mixed (...)" | "unknown"
    records_by_file: dict[str, int] = field(default_factory=dict)  # records read (kept or not) per file
    pii_masked: dict[str, int] = field(default_factory=dict)  # masks by kind ("phone", "email")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (counts and problems, not the conversations)."""
        return {"formats": self.formats, "records_by_file": self.records_by_file,
                "train": len(self.train), "validation": len(self.validation),
                "dropped": sum(self.counts_by_reason.values()), "counts_by_reason": self.counts_by_reason,
                "pii_masked": self.pii_masked, "problems": [p.__dict__ for p in self.problems]}

    def render(self, max_problems: int = 20) -> str:
        """Plain-text report: files and formats, kept / dropped counts by reason, the first problems."""
        width = max((len(f) for f in self.formats), default=4)
        fmt_width = max((len(f) for f in self.formats.values()), default=6)
        lines = [f"  {'file':<{width}}  {'format':<{fmt_width}}  records"]
        lines += [f"  {f:<{width}}  {fmt:<{fmt_width}}  {self.records_by_file.get(f, 0):>7}"
                  for f, fmt in self.formats.items()]
        lines.append(f"kept {len(self.train) + len(self.validation)}: "
                     f"train {len(self.train)}, validation {len(self.validation)}")
        dropped = sum(self.counts_by_reason.values())
        lines.append(f"dropped {dropped}" + (":" if dropped else ""))
        lines += [f"  {reason:<26} {n:>7}" for reason, n in sorted(self.counts_by_reason.items())]
        if any(self.pii_masked.values()):
            lines.append("PII masked: " + ", ".join(f"{n} {kind}" for kind, n in sorted(self.pii_masked.items())))
        if self.problems:
            shown = self.problems[:max_problems]
            lines.append(f"problems (first {len(shown)} of {len(self.problems)}):")
            lines += [f"  {p.detail}" for p in shown]
        return "\n".join(lines)


def prepare(files: Sequence[Path], *, system: str | None = None, system_override: bool = False,
            strict: bool = False, dedup: bool = True, min_chars: int = 1, max_chars: int | None = None,
            scrub_pii: bool = False, val_ratio: float = 0.1, val_files: Sequence[Path] = (),
            seed: int = 42, thinking: str = "off") -> DataReport:
    """Read, validate, clean and split training files (see :class:`DataConfig` for the options).

    Raises ConfigError for a bad option, DataError when a file is missing (all listed at once) and,
    with strict=True, on the first invalid record. Otherwise every invalid record is reported in
    ``problems`` and dropped; nothing is dropped without a Problem.
    """
    config = DataConfig(system=system, system_override=system_override, strict=strict, dedup=dedup,
                        min_chars=min_chars, max_chars=max_chars, scrub_pii=scrub_pii, val_ratio=val_ratio,
                        val_files=tuple(val_files), seed=seed, thinking=thinking)
    return prepare_config([Path(f) for f in files], config)


def prepare_config(files: Sequence[Path], config: DataConfig) -> DataReport:
    """:func:`prepare` with a ready DataConfig."""
    if not files:
        raise ConfigError("no training files given; pass at least one JSON/JSONL file")
    all_files = [*files, *config.val_files]
    _check_files(all_files)
    formats: dict[str, str] = {}
    read: dict[str, int] = {}
    problems: list[Problem] = []
    train = _load(files, config, formats, read, problems)
    val = _load(config.val_files, config, formats, read, problems)
    masked: Counter[str] = Counter()
    if config.scrub_pii:
        train, val = _scrub(train, masked), _scrub(val, masked)
    if config.dedup:  # over training then validation files: validation copies of training records go
        in_train = {id(c) for c in train}
        kept, dupes = clean.dedup([*train, *val])
        train, val = [c for c in kept if id(c) in in_train], [c for c in kept if id(c) not in in_train]
        problems += dupes
    train, too_short_or_long = clean.length_filter(train, config.min_chars, config.max_chars)
    problems += too_short_or_long
    val, too_short_or_long = clean.length_filter(val, config.min_chars, config.max_chars)
    problems += too_short_or_long
    if not config.val_files:
        train, val = clean.split(train, config.val_ratio, config.seed)
    problems.sort(key=_file_order([str(f) for f in all_files]))
    return DataReport(train=tuple(train), validation=tuple(val), problems=tuple(problems),
                      counts_by_reason=dict(Counter(p.reason for p in problems)), formats=formats,
                      records_by_file=read, pii_masked={k: masked[k] for k in ("phone", "email")})


def apply_system(conv: Conversation, system: str | None, override: bool) -> Conversation:
    """Give ``conv`` the default system prompt when it has none (its own wins), or replace it (override).

    >>> c = Conversation((Message("user", "hi"), Message("assistant", "yo")), "a:1")
    >>> apply_system(c, "S", False).messages[0]
    Message(role='system', content='S')
    """
    msgs = conv.messages
    has_own = bool(msgs) and msgs[0].role == "system"
    if system is None or (has_own and not override):
        return conv
    body = msgs[1:] if has_own else msgs
    return replace(conv, messages=(Message("system", system), *body))


def _check_files(files: Sequence[Path]) -> None:
    missing = [problem(str(f), MISSING_FILE, "no such file" if not f.exists() else "not a file",
                       "check the path (JSON or JSONL training files)")
               for f in files if not f.is_file()]
    if missing:
        raise DataError(missing)


def _load(files: Sequence[Path], config: DataConfig, formats: dict[str, str], read: dict[str, int],
          problems: list[Problem]) -> list[Conversation]:
    """Valid conversations of ``files`` (system prompt applied); invalid records go to ``problems``."""
    convs: list[Conversation] = []
    for path in files:
        seen: Counter[str] = Counter()
        for item in _conversations(path, config, seen):
            if isinstance(item, Problem):
                if config.strict:
                    raise DataError([item])
                problems.append(item)
            else:
                convs.append(item)
        formats[str(path)] = _format_name(seen)
        read[str(path)] = read.get(str(path), 0) + sum(seen.values())
    return convs


def _conversations(path: Path, config: DataConfig, seen: Counter[str]) -> Iterator[Conversation | Problem]:
    """Conversations and problems of one file, in file order; ``seen`` counts records by format."""
    for raw in iter_records(path):
        if not isinstance(raw, RawRecord):  # file-level or JSON syntax problem
            seen["unreadable"] += raw.reason == BAD_JSON  # a broken record; file-level problems are none
            yield raw
            continue
        fmt, conv = convert(raw)
        seen[fmt or "unknown"] += 1
        if isinstance(conv, Problem):
            yield conv
            continue
        conv = apply_system(conv, config.system, config.system_override)
        yield check_conversation(conv) or check_thinking(conv, config.thinking) or conv


def _format_name(seen: Counter[str]) -> str:
    known = {k: n for k, n in seen.items() if k not in ("unknown", "unreadable")}
    if len(known) == 1:
        return next(iter(known))
    if not known:
        return "unknown"
    return "mixed (" + ", ".join(f"{k} {n}" for k, n in sorted(known.items())) + ")"


def _scrub(convs: list[Conversation], masked: Counter[str]) -> list[Conversation]:
    out = []
    for conv in convs:
        conv, counts = clean.scrub_conversation(conv)
        masked.update(counts)
        out.append(conv)
    return out


def _file_order(files: list[str]):
    """Sort key for problems: file position in the arguments, then line."""
    rank = {f: i for i, f in enumerate(files)}

    def key(p: Problem) -> tuple[int, int]:
        name, _, line = p.source.rpartition(":")
        return rank.get(name, len(rank)), int(line) if line.isdigit() else 0
    return key
