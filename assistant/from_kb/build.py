"""Fine-tuning records built from the knowledge base (``finetune data from-kb``).

For each gold question (a Q&A file in any fine-tuning format, read by :func:`assistant.qa.read_qa`,
and/or pairs generated from chunks by :mod:`assistant.from_kb.questions`) the record's prompt is
exactly what :meth:`assistant.answer.Assistant.ask` sends for that question: the same retrieval
(kb, k, mode, embedder), the same system prompt and the same token budget (counted with the
``model``'s tokenizer and context length; no model weights are loaded). One prompt builder,
:func:`assistant.prompt.build_messages`, serves training and use, so an adapter trained on these
records sees at training time the very token ids it gets when asked (tested).

A record is one JSON line::

    {"messages": [{"role": "system", "content": "<system prompt>\\n\\nSources:\\n\\n[1] title (p. 2)\\n..."},
                  {"role": "user", "content": "<question>"},
                  {"role": "assistant", "content": "<gold answer> [2]."}],
     "meta": {"source": "qa.jsonl:7", "kind": "answer", "found": "doc/page", "gold": 2,
              "retrieved": ["<chunk id>", ...], "gold_chunk": null}}

``finetune data check`` / ``finetune train`` read it as an OpenAI-messages record (``meta`` is
ignored). Which source holds the answer, and how the citation is placed: :mod:`assistant.from_kb.gold`.
A Q&A record's own system prompt is not used: the records carry the assistant's.
When no retrieved source holds it, ``on_miss`` decides: ``inject`` (default) fetches the gold
chunk from the knowledge base and puts it in place of the lowest-ranked source at a seeded
position, so the model learns to find and cite it; ``abstain`` makes the target the abstention
answer (the honest reply to sources without the answer); ``skip`` drops the question.

Distractor records (target: the exact abstention text of ``Assistant``) are added on top: a seeded
``distractor_ratio`` share of the answerable questions is asked again with ``distractor_depth``
times k chunks retrieved, every chunk that holds the answer removed and the best k kept; questions
marked ``"answerable": false`` become distractor records too.

>>> cfg = FromKBConfig(qa=("qa.jsonl",), out="train.jsonl", kb="kb", k=3)     # validated here
>>> report = build_from_kb(cfg, progress=True)                               # doctest: +SKIP
>>> print(report.render())                                                   # doctest: +SKIP
wrote 120 records to train.jsonl: 100 answer, 20 distractor
"""
from __future__ import annotations

import json
import os
import random
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from assistant.config import DEFAULT_MODEL, AssistantConfig
from assistant.answer import Assistant, abstain_message
from assistant.errors import ConfigError, PromptTooLong, TrainingDataError
from assistant.from_kb.gold import Gold, cite, gold_chunk, holds_answer, locate
from assistant.qa import read_qa
from finetune.records import Problem
from index.config import default_kb

ON_MISS = ("inject", "abstain", "skip")
ANSWER, DISTRACTOR = "answer", "distractor"  # record kinds
INJECTED, ABSTAIN, SKIPPED = "injected", "abstain", "skipped"  # what happened to a miss
NOT_IN_KB, NO_FIT, NO_SOURCES = "gold not in kb", "gold does not fit", "distractor without sources"


@dataclass(frozen=True)
class FromKBConfig:
    """Settings of ``finetune data from-kb`` (one CLI flag per field; see the module docstring).

    Retrieval and prompt fields (kb, model, k, mode, embedder, system_prompt, max_new_tokens,
    context_tokens) must be the ones the assistant will be used with.

    >>> FromKBConfig(qa=("qa.jsonl",), distractor_ratio=1.5, on_miss="guess")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    assistant.errors.ConfigError: distractor_ratio=1.5 must be in [0, 1]; on_miss='guess' is not one of ...
    """

    qa: tuple[Path, ...] = ()  # gold Q&A files (any fine-tuning format, or {question, answer(s)})
    out: Path = Path("kb_train.jsonl")  # JSONL written (atomically)
    kb: Path | str = field(default_factory=default_kb)
    model: str = DEFAULT_MODEL  # base model: its tokenizer/chat template/context length count the prompt
    k: int = 5
    mode: str = "hybrid"
    embedder: str | None = None  # None: the one the knowledge base was built with
    system_prompt: str | None = None  # None: the assistant's default system prompt
    max_new_tokens: int = 512  # answer room the assistant reserves; shapes the prompt budget
    context_tokens: int | None = None  # None: the model's context length
    distractor_ratio: float = 0.2  # distractor records per answerable question, added on top
    distractor_depth: int = 3  # distractor retrieval depth, in multiples of k
    on_miss: str = "inject"  # no retrieved source holds the answer: inject | abstain | skip
    seed: int = 0
    generate_questions: int = 0  # > 0: also generate Q&A from that many sampled chunks
    generator_model: str | None = None  # None: ``model`` (or the --endpoint's model of that name)
    endpoint: str | None = None  # OpenAI-compatible server that generates the questions
    qa_out: Path | None = None  # also write the generated Q&A pairs here (JSONL) for review
    device: str = "auto"  # where a local generator model runs

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


@dataclass(frozen=True)
class FromKBReport:
    """What ``build_from_kb`` wrote: records by kind, how each gold was found, every problem."""

    out: Path
    questions: int  # gold questions read or generated
    records: dict[str, int]  # kind (answer, distractor) -> records written
    found: dict[str, int]  # chunk, doc/page, text, injected, abstain, skipped, ... -> questions
    problems: tuple[Problem, ...]
    generated: dict[str, int] = field(default_factory=dict)  # chunks asked, pairs kept, unparsable

    @property
    def written(self) -> int:
        return sum(self.records.values())

    def as_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "questions": self.questions, "written": self.written,
                "records": self.records, "found": self.found, "generated": self.generated,
                "problems": [{"source": p.source, "reason": p.reason, "detail": p.detail} for p in self.problems]}

    def render(self) -> str:
        kinds = ", ".join(f"{n} {kind}" for kind, n in self.records.items()) or "none"
        lines = [f"wrote {self.written} records to {self.out}: {kinds}",
                 f"{self.questions} questions; gold: " + (", ".join(f"{k} {v}" for k, v in self.found.items())
                                                          or "none")]
        if self.generated:
            lines.append("generated Q&A: " + ", ".join(f"{k} {v}" for k, v in self.generated.items()))
        if self.problems:
            lines.append(f"{len(self.problems)} problem(s):")
            lines += [f"  {p.detail}" for p in self.problems]
        return "\n".join(lines)


class _Builder:
    """Builds the records of each gold question through one :class:`Assistant` (counts as it goes)."""

    def __init__(self, bot: Assistant, config: FromKBConfig) -> None:
        self.bot, self.cfg = bot, config
        self.kinds: Counter[str] = Counter()
        self.found: Counter[str] = Counter()
        self.problems: list[Problem] = []

    def records(self, gold: Gold, distractor: bool) -> list[dict]:
        """The answer (or unanswerable) record of ``gold``, and a distractor record when asked for."""
        out = []
        try:
            out.append(self._answer(gold) if gold.item.answerable else self._unanswerable(gold))
            if distractor:
                out.append(self._distractor(gold))
        except PromptTooLong as err:
            self._problem(gold, "prompt too long", f"{err}; the question is skipped")
        kept = [r for r in out if r is not None]
        self.kinds.update(r["meta"]["kind"] for r in kept)
        return kept

    def _answer(self, gold: Gold) -> dict | None:
        messages, sources = self.bot.prompt(gold.question)
        index, how = locate(sources, gold)
        if index is None and self.cfg.on_miss == "skip":
            self.found[SKIPPED] += 1
            return None
        if index is None and self.cfg.on_miss == "abstain":
            self.found[ABSTAIN] += 1
            return _record(gold, messages, sources, abstain_message(gold.question), DISTRACTOR, ABSTAIN, None)
        if index is None:
            messages, sources, index = self._inject(gold, sources)
            if index is None:
                return None
            how = INJECTED
        self.found[how] += 1
        return _record(gold, messages, sources, cite(gold.item.answer, index + 1), ANSWER, how, index + 1)

    def _inject(self, gold: Gold, sources: list) -> tuple[list[dict], list, int | None]:
        chunk = gold_chunk(self.bot.kb, gold, mode=self.cfg.mode)
        if chunk is None:
            self.found[NOT_IN_KB] += 1
            where = f"document {gold.item.doc!r}" + (f" page {gold.item.page}" if gold.item.page else "") \
                if gold.item.doc else "a chunk containing a reference answer"
            self._problem(gold, NOT_IN_KB, f"no retrieved source holds the answer and the knowledge base has no "
                          f"{where}; the question is skipped. Fix the record's doc/page or add the document")
            return [], [], None
        rest = [h for h in sources if h.chunk_id != chunk.chunk_id][:max(len(sources) - 1, 0)]
        at = random.Random(f"{self.cfg.seed}:{gold.item.source}:{gold.question}").randint(0, len(rest))
        for hits in (rest[:at] + [chunk] + rest[at:], [chunk] + rest):  # then first, if it was dropped
            messages, used = self.bot.prompt_from_hits(gold.question, hits)
            index = next((i for i, h in enumerate(used) if h.chunk_id == chunk.chunk_id), None)
            if index is not None:
                return messages, used, index
        self.found[NO_FIT] += 1
        self._problem(gold, NO_FIT, "the gold chunk does not fit in the prompt's token budget; the question is "
                      "skipped. Fix: lower --max-new-tokens or raise --context-tokens")
        return [], [], None

    def _unanswerable(self, gold: Gold) -> dict:
        messages, sources = self.bot.prompt(gold.question)
        return _record(gold, messages, sources, abstain_message(gold.question), DISTRACTOR, "unanswerable", None)

    def _distractor(self, gold: Gold) -> dict | None:
        hits = self.bot.kb.search(gold.question, k=self.cfg.k * self.cfg.distractor_depth, mode=self.cfg.mode)
        kept = [h for h in hits if not holds_answer(h, gold)][:self.cfg.k]
        if not kept:
            self.found[NO_SOURCES] += 1
            return None
        messages, sources = self.bot.prompt_from_hits(gold.question, kept)
        return _record(gold, messages, sources, abstain_message(gold.question), DISTRACTOR, DISTRACTOR, None)

    def _problem(self, gold: Gold, reason: str, message: str) -> None:
        self.problems.append(Problem(gold.item.source, reason, f"{gold.item.source}: {message}"))


def _record(gold: Gold, messages: list[dict], sources: Sequence[Any], target: str, kind: str, found: str,
            number: int | None) -> dict:
    meta = {"source": gold.item.source, "kind": kind, "found": found, "gold": number,
            "retrieved": [h.chunk_id for h in sources],
            "gold_chunk": sources[number - 1].chunk_id if number else gold.chunk_id}
    return {"messages": [*messages, {"role": "assistant", "content": target}], "meta": meta}


def pick_distractors(golds: Sequence[Gold], ratio: float, seed: int) -> set[int]:
    """Indices of the answerable questions that also get a distractor record (a seeded ``ratio`` share).

    >>> from assistant.qa import QAItem
    >>> golds = [Gold(QAItem(f"q{i}", ("a",), f"f:{i}")) for i in range(10)]
    >>> len(pick_distractors(golds, 0.2, seed=0)), pick_distractors(golds, 0.2, 0) == pick_distractors(golds, 0.2, 0)
    (2, True)
    """
    answerable = [i for i, g in enumerate(golds) if g.item.answerable]
    return set(random.Random(seed).sample(answerable, round(ratio * len(answerable))))


def write_jsonl_atomic(path: Path, rows: Iterable[dict], *, keep_empty: bool = True) -> int:
    """Write ``rows`` as JSONL to a temporary file beside ``path``, then rename it over ``path``.

    An interrupted run (or, with ``keep_empty=False``, one without rows) leaves ``path`` as it
    was. Returns the number of rows written.

    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "x.jsonl"
    >>> write_jsonl_atomic(out, [{"a": 1}, {"b": "二"}]), out.read_text(encoding="utf-8")
    (2, '{"a": 1}\\n{"b": "二"}\\n')
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    n = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                n += 1
        if n or keep_empty:
            os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)  # gone already after the rename
    return n


def build_from_kb(config: FromKBConfig, *, backend: Any = None, generator: Any = None,
                  progress: bool = False) -> FromKBReport:
    """Write the from-kb training records of ``config`` to ``config.out``; the report says what happened.

    ``backend`` counts tokens (default: the local ``config.model``, tokenizer only); ``generator``
    generates questions (default: ``config.generator_model``/``endpoint``, else ``backend``).
    Bad Q&A records and unusable questions are reported with file:line and the rest goes on;
    raises :class:`TrainingDataError` when no record at all could be built (nothing is written).
    """
    bot = Assistant(config=config.assistant_config(), backend=backend)
    try:
        golds, problems, generated = _gold_questions(config, bot, generator, progress)
        builder = _Builder(bot, config)
        rows = _all_records(builder, golds, pick_distractors(golds, config.distractor_ratio, config.seed), progress)
        written = write_jsonl_atomic(config.out, rows, keep_empty=False)
        problems += builder.problems
        if not written:
            details = "; ".join(p.detail for p in problems[:20]) or "no question was given or generated"
            raise TrainingDataError(f"no training record could be built ({len(problems)} problem(s)): {details}")
    finally:
        bot.close()
    return FromKBReport(config.out, len(golds), dict(builder.kinds), dict(builder.found), tuple(problems), generated)


def _all_records(builder: _Builder, golds: Sequence[Gold], distract: set[int], progress: bool) -> Iterator[dict]:
    """The records of every question in order (each distractor right after its question's record)."""
    from tqdm.auto import tqdm

    for i, gold in enumerate(tqdm(golds, desc="from-kb", unit="question", disable=not progress)):
        yield from builder.records(gold, i in distract)


def _gold_questions(config: FromKBConfig, bot: Assistant, generator: Any,
                    progress: bool) -> tuple[list[Gold], list[Problem], dict[str, int]]:
    items, problems = read_qa(config.qa) if config.qa else ([], [])
    golds = [Gold(item) for item in items]
    generated: dict[str, int] = {}
    if config.generate_questions:
        from assistant.from_kb.questions import generate_golds

        made, bad, generated = generate_golds(config, bot, generator, progress=progress)
        golds += made
        problems += bad
    return golds, problems, generated

