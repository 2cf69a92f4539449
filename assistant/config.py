"""Configuration of the assistant: one frozen dataclass, validated on construction.

CLI flags of ``assistant ask`` / ``chat`` / ``serve`` map 1:1 to the fields (a field's ``help``
metadata is its ``--help`` text, its default the one shown there: see :mod:`ui.cli.options`).

>>> AssistantConfig(kb="kb", k=3, temperature=0.7).k
3
>>> AssistantConfig(thinking=True).thinking          # booleans are accepted and normalised
'on'
>>> AssistantConfig(k=0, mode="fuzzy")               # doctest: +IGNORE_EXCEPTION_DETAIL
Traceback (most recent call last):
assistant.errors.ConfigError: k=0 must be >= 1; mode='fuzzy' is not one of hybrid, dense, bm25
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from assistant.errors import ConfigError
from finetune.config import DEFAULT_MODEL  # one default model for training and answering
from index.config import KB_HELP, MODES, default_kb

THINKING = ("auto", "off", "on")
CONDENSE = ("llm", "heuristic", "off")
MARGIN_TOKENS = 32  # head-room below the context length for template/tokenizer differences

# The plain cosine rule: decline when the dense cosine of the best chunk is below this. Since
# issue 10 it is the fallback for an embedder that has a cosine scale we trust but no per-language
# calibration (assistant/abstain_<embedder>.json, fitted by bench/abstain_calibration.py; where one
# exists, the calibrated decision of assistant.abstain replaces this rule) and the "old gate" the
# bench compares against: 0.82 lets 0.84-0.86 off-topic Chinese questions through for e5-small.
# Embedders not listed never abstain by default (threshold -1): their cosine scales differ.
CALIBRATED_THRESHOLDS: dict[str, float] = {
    "multilingual-e5-small": 0.82,
}
NEVER_ABSTAIN = -1.0


@dataclass(frozen=True)
class AssistantConfig:
    """Everything an :class:`assistant.Assistant` needs (see ``assistant ask --help``)."""

    kb: Path | str = field(default_factory=default_kb, metadata={"help": KB_HELP})  # $QDA_KB or ./kb
    # None: an --adapter's own base model (as `finetune chat` and `finetune merge` pick it), else DEFAULT_MODEL
    model: str = field(default=None, metadata={  # type: ignore[assignment] - resolved in __post_init__
        "help": f"model folder (base or merged), .gguf file or HF id (none: the --adapter's base model, else "
                f"{DEFAULT_MODEL}); with --endpoint, the served model's name"})
    adapter: str | None = field(default=None, metadata={  # PEFT (LoRA) folder applied on top of ``model``
        "help": "LoRA adapter folder written by `finetune train`"})
    endpoint: str | None = field(default=None, metadata={
        "help": "OpenAI-compatible base URL, e.g. http://localhost:8000/v1 (instead of a local model)"})
    # None: $OPENAI_API_KEY or a placeholder
    api_key: str | None = field(default=None, metadata={"help": "API key of --endpoint"})
    k: int = field(default=5, metadata={"help": "chunks to retrieve per question"})
    mode: str = field(default="hybrid", metadata={"help": f"retrieval: {' | '.join(MODES)}"})
    max_new_tokens: int = field(default=512, metadata={"help": "longest answer in tokens"})
    temperature: float = field(default=0.0, metadata={"help": "sampling temperature (0: greedy)"})
    # Qwen3's advice; used only when temperature > 0
    top_p: float = field(default=0.8, metadata={"help": "nucleus sampling when temperature > 0"})
    # Qwen3 thinking: auto (what the adapter was trained with, per its run card; else off) | off | on.
    # The reasoning is returned separately (Answer.reasoning), never in the answer text.
    thinking: str = field(default="auto", metadata={
        "help": f"Qwen3 thinking: {' | '.join(THINKING)} (auto: as the adapter was trained, else off)"})
    retrieval_only: bool = field(default=False, metadata={"help": "no model: list the retrieved passages"})
    abstain_threshold: float | None = field(default=None, metadata={  # a dense cosine
        "help": "answer 'not in the documents' when the best chunk's cosine is below this "
                "(none: the embedder's per-language calibrated decision, see README)"})
    # Given: the whole prompt before the sources (it replaces the grounding instructions). None: the
    # built-in grounding prompt, after the adapter's persona prompt (assistant.adapter_prompt), or the
    # adapter's own prompt exactly when it was trained on `finetune data from-kb` records.
    system_prompt: str | None = field(default=None, metadata={
        "help": "whole system prompt, replacing the built-in grounding one (none: built-in, after the adapter's "
                "persona; a from-kb adapter's own)"})
    embedder: str | None = field(default=None, metadata={"help": "embedder (none: the one the KB was built with)"})
    context_tokens: int | None = field(default=None, metadata={
        "help": "context length in tokens (none: the model's; with --endpoint 8192)"})
    condense: str = field(default="llm", metadata={"help": f"make follow-ups standalone: {' | '.join(CONDENSE)}"})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda | cuda:N | mps"})
    timeout_s: float = field(default=120.0, metadata={"help": "endpoint request timeout, seconds"})

    def __post_init__(self) -> None:
        if isinstance(self.thinking, bool):
            object.__setattr__(self, "thinking", "on" if self.thinking else "off")
        if self.model is None:
            object.__setattr__(self, "model", _default_model(self))
        problems = _problems(self)
        if problems:
            raise ConfigError("; ".join(problems))

    def threshold_for(self, embedder_name: str) -> float:
        """The plain cosine rule's threshold for ``embedder_name``: ``--abstain-threshold`` when given, else the
        embedder's fallback (used only where no per-language calibration exists: :mod:`assistant.abstain`).

        >>> AssistantConfig().threshold_for("hash-64"), AssistantConfig(abstain_threshold=0.3).threshold_for("x")
        (-1.0, 0.3)
        """
        if self.abstain_threshold is not None:
            return self.abstain_threshold
        return CALIBRATED_THRESHOLDS.get(Path(embedder_name).name, NEVER_ABSTAIN)


def _default_model(c: AssistantConfig) -> str:
    """The base model an ``--adapter`` names (its run card, else ``adapter_config.json``; nothing loads),
    else :data:`DEFAULT_MODEL` (also when the adapter folder is unusable: validation then says why)."""
    if c.adapter is not None and not c.endpoint:
        from finetune.loading import local_adapter_problem
        from finetune.merge import base_model_of
        from finetune.train_errors import ModelLoadError

        if not local_adapter_problem(c.adapter):
            try:
                return base_model_of(c.adapter)
            except ModelLoadError:  # the adapter names no base model
                pass
    return DEFAULT_MODEL


def _problems(c: AssistantConfig) -> list[str]:
    out = []
    if not str(c.kb).strip():
        out.append("kb is empty: give the knowledge-base folder (--kb)")
    if not isinstance(c.model, str) or not c.model.strip():
        out.append(f"model={c.model!r} must name a model (HF id or local folder)")
    if not isinstance(c.k, int) or isinstance(c.k, bool) or not 1 <= c.k <= 200:
        out.append(f"k={c.k!r} must be >= 1" + (" and <= 200" if isinstance(c.k, int) else ""))
    if c.mode not in MODES:
        out.append(f"mode={c.mode!r} is not one of {', '.join(MODES)}")
    if not isinstance(c.max_new_tokens, int) or c.max_new_tokens < 1:
        out.append(f"max_new_tokens={c.max_new_tokens!r} must be an integer >= 1")
    if not isinstance(c.temperature, (int, float)) or not 0 <= c.temperature <= 5:
        out.append(f"temperature={c.temperature!r} must be between 0 (greedy) and 5")
    if not isinstance(c.top_p, (int, float)) or not 0 < c.top_p <= 1:
        out.append(f"top_p={c.top_p!r} must be in (0, 1]")
    if c.thinking not in THINKING:
        out.append(f"thinking={c.thinking!r} is not one of {', '.join(THINKING)}")
    if c.condense not in CONDENSE:
        out.append(f"condense={c.condense!r} is not one of {', '.join(CONDENSE)}")
    if c.abstain_threshold is not None and not -1 <= c.abstain_threshold <= 1:
        out.append(f"abstain_threshold={c.abstain_threshold!r} is a cosine: give a value in [-1, 1]")
    if c.system_prompt is not None and not str(c.system_prompt).strip():
        out.append("system_prompt is blank: give a prompt or leave it out")
    if c.context_tokens is not None and (not isinstance(c.context_tokens, int) or c.context_tokens < 256):
        out.append(f"context_tokens={c.context_tokens!r} must be an integer >= 256")
    if c.context_tokens is not None and isinstance(c.context_tokens, int) and isinstance(c.max_new_tokens, int) \
            and c.max_new_tokens + MARGIN_TOKENS + 64 > c.context_tokens:
        out.append(f"max_new_tokens={c.max_new_tokens} leaves no room for the prompt in "
                   f"context_tokens={c.context_tokens}")
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", str(c.device)):
        out.append(f"device={c.device!r} is not one of auto, cpu, cuda, cuda:N, mps")
    if not c.timeout_s or c.timeout_s <= 0:
        out.append(f"timeout_s={c.timeout_s!r} must be > 0")
    out += _endpoint_problems(c)
    return out


def _endpoint_problems(c: AssistantConfig) -> list[str]:
    out = []
    if c.endpoint is not None and not re.match(r"https?://\S+$", c.endpoint):
        out.append(f"endpoint={c.endpoint!r} must be an http(s) URL such as http://localhost:8000/v1")
    from finetune.loading import local_adapter_problem, local_model_problem  # path checks: nothing loads

    if c.adapter is not None and c.endpoint:
        out.append("adapter only applies to a local model: load the adapter in the server behind "
                   f"--endpoint instead (or drop --endpoint {c.endpoint})")
    elif c.adapter is not None:
        out.append(local_adapter_problem(c.adapter) or "")
    if not c.endpoint and not c.retrieval_only and isinstance(c.model, str) and c.model.strip():
        out.append(local_model_problem(c.model) or "")
    return [problem for problem in out if problem]


@dataclass(frozen=True)
class AskOptions:
    """Per-call settings of :meth:`assistant.Assistant.ask` / ``stream`` / ``prompt``.

    Each field but ``use_adapter`` is the :class:`AssistantConfig` field of the same name; None
    keeps the assistant's own value. ``use_adapter=False`` runs the base model without its adapter
    (same prompt otherwise), e.g. to compare the two. Values are validated by :meth:`apply`.

    >>> base = AssistantConfig(k=5)
    >>> AskOptions(k=3, thinking=True).apply(base).k, AskOptions(thinking=True).apply(base).thinking
    (3, 'on')
    >>> AskOptions().apply(base) is base
    True
    >>> AskOptions(k=0).apply(base)                     # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    assistant.errors.ConfigError: k=0 must be >= 1
    """

    k: int | None = None
    mode: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_new_tokens: int | None = None
    thinking: str | bool | None = None
    retrieval_only: bool | None = None
    abstain_threshold: float | None = None
    system_prompt: str | None = None
    condense: str | None = None
    use_adapter: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.use_adapter, bool):
            raise ConfigError(f"use_adapter={self.use_adapter!r} must be True or False")

    def apply(self, config: AssistantConfig) -> AssistantConfig:
        """``config`` with the fields set here replaced (validated: raises ConfigError naming bad values)."""
        given = {f.name: getattr(self, f.name) for f in fields(self)
                 if f.name != "use_adapter" and getattr(self, f.name) is not None}
        return replace(config, **given) if given else config
