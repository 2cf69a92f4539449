"""Settings of ``finetune data from-kb``: one frozen dataclass, validated on construction.

Each field's ``help`` metadata is its ``--help`` text and its default the one shown there
(:mod:`ui.cli.options`). The retrieval and prompt fields (kb, model, k, mode, embedder,
system_prompt, max_new_tokens, context_tokens) take their defaults from :class:`AssistantConfig`:
the records must be built with the settings the assistant will be used with.

>>> cfg = FromKBConfig(qa=("qa.jsonl",), out="train.jsonl", kb="kb", k=3)
>>> cfg.assistant_config().k, cfg.mode == AssistantConfig().mode, cfg.generator_config() is None
(3, True, True)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.config import AssistantConfig
from assistant.errors import ConfigError

ON_MISS = ("inject", "abstain", "skip")


def _as_assistant(name: str, text: str | None = None) -> Any:
    """A field with :class:`AssistantConfig`'s default for ``name`` (and its help, unless ``text``)."""
    f = AssistantConfig.__dataclass_fields__[name]
    meta = {"help": text or f.metadata["help"]}
    if f.default_factory is not dataclasses.MISSING:
        return field(default_factory=f.default_factory, metadata=meta)
    return field(default=f.default, metadata=meta)


@dataclass(frozen=True)
class FromKBConfig:
    """Settings of ``finetune data from-kb`` (one CLI flag per field; see :mod:`assistant.from_kb.build`).

    >>> FromKBConfig(qa=("qa.jsonl",), distractor_ratio=1.5, on_miss="guess")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    assistant.errors.ConfigError: distractor_ratio=1.5 must be in [0, 1]; on_miss='guess' is not one of ...
    """

    qa: tuple[Path, ...] = field(default=(), metadata={
        "help": "gold Q&A files: alpaca / ShareGPT / OpenAI messages or {question, answer(s)} records, "
                "optional doc, page, answerable"})
    out: Path = field(default=Path("kb_train.jsonl"), metadata={"help": "JSONL of training records to write "
                                                                         "(atomically)"})
    kb: Path | str = _as_assistant("kb")
    # The base model's tokenizer, chat template and context length count the prompt.
    model: str = _as_assistant("model", "base model whose tokenizer and context length size the prompt "
                                        "(no weights loaded)")
    k: int = _as_assistant("k", "chunks retrieved per question (as the assistant will use)")
    mode: str = _as_assistant("mode")
    embedder: str | None = _as_assistant("embedder")
    system_prompt: str | None = _as_assistant("system_prompt", "system prompt (none: the assistant's built-in one)")
    max_new_tokens: int = _as_assistant("max_new_tokens", "answer room the assistant reserves (tokens); "
                                                          "shapes the prompt budget")
    context_tokens: int | None = _as_assistant("context_tokens", "context length in tokens (none: the model's)")
    distractor_ratio: float = field(default=0.2, metadata={
        "help": "distractor-only records per answerable question, added on top (0-1)"})
    distractor_depth: int = field(default=3, metadata={
        "help": "distractor retrieval depth, in multiples of k (then 100 chunks when fewer than k lack the answer)"})
    on_miss: str = field(default="inject", metadata={
        "help": "no retrieved source holds the answer: inject (the gold chunk replaces the lowest-ranked "
                "source) | abstain | skip"})
    seed: int = field(default=0, metadata={"help": "seed of distractor picks, injection positions, chunk sampling"})
    generate_questions: int = field(default=0, metadata={
        "help": "also generate Q&A from N sampled chunks (all when N >= their count)"})
    # None: ``model`` (or the --endpoint's model of that name)
    generator_model: str | None = field(default=None, metadata={
        "help": "model that generates questions (none: --model)"})
    endpoint: str | None = field(default=None, metadata={
        "help": "OpenAI-compatible server that generates the questions, e.g. http://localhost:8000/v1"})
    qa_out: Path | None = field(default=None, metadata={
        "help": "also write the generated Q&A pairs (JSONL), for review"})
    device: str = _as_assistant("device", "where a local generator model runs: auto | cpu | cuda | cuda:N | mps")

    def __post_init__(self) -> None:
        object.__setattr__(self, "qa", tuple(Path(p) for p in self.qa))
        object.__setattr__(self, "out", Path(self.out))
        if self.qa_out is not None:
            object.__setattr__(self, "qa_out", Path(self.qa_out))
        problems = _problems(self)
        for make in (self.assistant_config, self.generator_config):
            try:
                make()
            except ConfigError as err:
                problems.append(str(err))
        if problems:
            raise ConfigError("; ".join(problems))

    def assistant_config(self) -> AssistantConfig:
        """The assistant settings the records are built with (local tokenizer, no adapter)."""
        return AssistantConfig(kb=self.kb, model=self.model, k=self.k, mode=self.mode, embedder=self.embedder,
                               system_prompt=self.system_prompt, max_new_tokens=self.max_new_tokens,
                               context_tokens=self.context_tokens, device=self.device, thinking="off")

    def generator_config(self) -> AssistantConfig | None:
        """Settings of the question generator (None without ``generate_questions``)."""
        if not self.generate_questions:
            return None
        return AssistantConfig(kb=self.kb, model=self.generator_model or self.model, endpoint=self.endpoint,
                               device=self.device)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _problems(c: FromKBConfig) -> list[str]:
    out = []
    if not c.qa and not (_is_int(c.generate_questions) and c.generate_questions > 0):
        out.append("no questions: give Q&A files, or --generate-questions N to generate them from the chunks")
    if isinstance(c.distractor_ratio, bool) or not isinstance(c.distractor_ratio, (int, float)) \
            or not 0 <= c.distractor_ratio <= 1:
        out.append(f"distractor_ratio={c.distractor_ratio!r} must be in [0, 1]")
    if not _is_int(c.distractor_depth) or not 1 <= c.distractor_depth <= 20:
        out.append(f"distractor_depth={c.distractor_depth!r} must be an integer in [1, 20] (multiples of k)")
    if c.on_miss not in ON_MISS:
        out.append(f"on_miss={c.on_miss!r} is not one of {', '.join(ON_MISS)}")
    if not _is_int(c.seed):
        out.append(f"seed={c.seed!r} must be an integer")
    if not _is_int(c.generate_questions) or c.generate_questions < 0:
        out.append(f"generate_questions={c.generate_questions!r} must be an integer >= 0")
    if c.generator_model is not None and not str(c.generator_model).strip():
        out.append("generator_model is blank: name a model or leave it out")
    if c.endpoint is not None and not c.generate_questions:
        out.append("endpoint only serves --generate-questions: add it, or drop --endpoint")
    if c.qa_out is not None and not c.generate_questions:
        out.append("qa_out writes generated pairs: add --generate-questions N, or drop --qa-out")
    written = [p for p in (c.out, c.qa_out) if p is not None]
    clash = [str(p) for p in c.qa if any(p.resolve() == w.resolve() for w in written)]
    if clash or (c.qa_out is not None and c.qa_out.resolve() == c.out.resolve()):
        out.append(f"an output file would overwrite an input or the other output ({', '.join(clash) or c.out}); "
                   "choose another --out / --qa-out")
    return out
