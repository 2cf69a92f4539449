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
times k chunks retrieved (then the ``SEARCH_DEPTH`` best, when fewer than k are left), every chunk
that holds the answer in any form removed (:func:`assistant.from_kb.gold.holds_answer`) and the best
k kept; questions marked ``"answerable": false`` become distractor records too. A picked question
whose every retrieved chunk holds the answer gets no distractor: it is counted in the report's
``found`` ("distractor without sources") and listed as a problem; "distractor searched deeper"
counts those that needed the deeper search.

A distractor is the contrast to an answer record of the same question: a picked question whose
answer record was not written (skipped, not in the knowledge base, ``--on-miss abstain``) gets none,
so distractor records stay a ``distractor_ratio`` share of the answer records (at most 1/6 of all
records by default), on top of the declines the Q&A file asks for (``"answerable": false``), which
are the user's data and never dropped. No tighter cap, decided on the closed loop
(``bench/closed_loop.py``, 84 zh_rgb training questions; README "Closed loop"): trained on 12
distractor records of 96 (12.5 %), the adapter declined 8 of 50 answerable held-out questions
(16 %) but only 1 of 15 off-topic ones: its declines did not follow the sources, which fewer
distractors cannot fix. What the records taught wrongly was their content: a distractor prompt
still holding the answer ("2月4日" for "2022年2月4日"), 3 of 12 distractor prompts with 1-2 sources
instead of k, and 5 of the 17 picked questions left without a distractor. With the strict rule and
the deeper search all 17 are built, each with k sources (17 of 101 records).

>>> cfg = FromKBConfig(qa=("qa.jsonl",), out="train.jsonl", kb="kb", k=3)     # validated here
>>> report = build_from_kb(cfg, progress=True)                               # doctest: +SKIP
>>> print(report.render())                                                   # doctest: +SKIP
wrote 120 records to train.jsonl: 100 answer, 20 distractor
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from assistant.answer import Assistant, abstain_message
from assistant.errors import PromptTooLong, TrainingDataError
from assistant.from_kb.config import FromKBConfig
from assistant.from_kb.gold import SEARCH_DEPTH, Gold, cite, gold_chunk, holds_answer, locate
from assistant.qa import read_qa
from common.files import atomic_write_jsonl
from finetune.records import Problem

ANSWER, DISTRACTOR = "answer", "distractor"  # record kinds
INJECTED, ABSTAIN, SKIPPED = "injected", "abstain", "skipped"  # what happened to a miss
NOT_IN_KB, NO_FIT, NO_SOURCES = "gold not in kb", "gold does not fit", "distractor without sources"
DEEPER = "distractor searched deeper"  # fewer than k sources without the answer in the first distractor_depth x k


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
            if distractor and out[0] is not None and out[0]["meta"]["kind"] == ANSWER:  # the contrast to an answer
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
        kept, searched = self._distractor_sources(gold)
        if not kept:
            self.found[NO_SOURCES] += 1
            self._problem(gold, NO_SOURCES, f"each of the {searched} chunks retrieved for the question holds the "
                          "answer in some form (assistant.from_kb.gold.holds_answer); no distractor record for it")
            return None
        messages, sources = self.bot.prompt_from_hits(gold.question, kept)
        return _record(gold, messages, sources, abstain_message(gold.question), DISTRACTOR, DISTRACTOR, None)

    def _distractor_sources(self, gold: Gold) -> tuple[list, int]:
        """(the best k retrieved chunks that do not hold the answer, how many chunks were searched).

        Searched first among ``distractor_depth`` x k chunks, then, when fewer than k are left,
        among the ``SEARCH_DEPTH`` best (a topic the knowledge base covers in many chunks that all
        hold the answer): a distractor prompt has k sources like an answer prompt, so the number
        of sources never tells the model to decline.
        """
        k, first = self.cfg.k, self.cfg.k * self.cfg.distractor_depth
        kept: list = []
        searched = 0
        for again, depth in enumerate(sorted({first, max(first, SEARCH_DEPTH)})):
            if again:
                self.found[DEEPER] += 1
            hits = self.bot.kb.search(gold.question, k=depth, mode=self.cfg.mode)
            searched, have = len(hits), {h.chunk_id for h in kept}
            kept += [h for h in hits if h.chunk_id not in have and not holds_answer(h, gold)][:k - len(kept)]
            if len(kept) == k or len(hits) < depth:  # enough, or the whole knowledge base was searched
                break
        return kept, searched

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
        written = atomic_write_jsonl(config.out, rows, keep_empty=False)
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

