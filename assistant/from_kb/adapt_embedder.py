"""``finetune embedder``: adapt the knowledge base's embedder to its own documents and questions.

Gold questions (Q&A files and/or questions generated from chunks) -> pairs and a held-out set
(:mod:`assistant.from_kb.embedder_pairs`) -> training (:func:`finetune.embedder.train_embedder`)
-> an ordinary SentenceTransformer folder with ``embedder_run.json``, usable as
``index reindex --embedder OUT`` or ``KnowledgeBase.open(..., embedder=OUT)``.

>>> cfg = EmbedderConfig(qa=("qa.jsonl",), kb="kb", out="adapted")
>>> report = adapt_embedder(cfg, progress=True)                    # doctest: +SKIP
>>> print(report.render())                                          # doctest: +SKIP
held-out nDCG@10 0.612 -> 0.688 ...
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assistant.errors import TrainingDataError
from assistant.from_kb.embedder_config import EmbedderConfig
from assistant.from_kb.embedder_pairs import PairSet, build_pairs
from assistant.from_kb.gold import Gold
from assistant.qa import read_qa
from common.files import file_sha256
from finetune.embedder import PRIMARY, EmbedderRun, train_embedder
from finetune.records import Problem

SHOWN = (("ndcg@10", "nDCG@10"), ("mrr@10", "MRR@10"), ("accuracy@1", "hit@1"), ("accuracy@5", "hit@5"),
         ("accuracy@10", "hit@10"))


@dataclass(frozen=True)
class AdaptReport:
    """The pairs built and the training run."""

    pairs: PairSet
    run: EmbedderRun
    problems: tuple[Problem, ...]  # unreadable Q&A records, unparsable generations, questions without gold

    def render(self) -> str:
        lines = [self.pairs.render(), f"trained {self.run.epochs_run} epochs in {self.run.train_seconds:.0f} s; "
                 f"held-out questions (ranked among {len(self.pairs.val.corpus)} chunks), base -> adapted:"]
        for key, label in SHOWN:
            before, after = self.run.before.get(f"cosine_{key}"), self.run.after.get(f"cosine_{key}")
            if before is not None and after is not None:
                lines.append(f"  {label:8} {before:.3f} -> {after:.3f} ({after - before:+.3f})")
        lines += [f"problem: {p.detail}" for p in self.problems[:20]]
        if len(self.problems) > 20:
            lines.append(f"... and {len(self.problems) - 20} more problems")
        lines.append(f"wrote {self.run.out}: index reindex --embedder {self.run.out}")
        if self.run.worse:
            lines.append(f"warning: the adapted embedder ranks the held-out questions WORSE than the base "
                         f"({PRIMARY} {self.run.before[PRIMARY]:.3f} -> {self.run.after[PRIMARY]:.3f}); keep the base "
                         "embedder (do not reindex), or add questions / lower --learning-rate / --epochs")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {"out": str(self.run.out), "before": self.run.before, "after": self.run.after,
                "worse": self.run.worse, "epochs_run": self.run.epochs_run, "train_seconds": self.run.train_seconds,
                "pairs": len(self.pairs.train), "train_questions": self.pairs.train_questions,
                "heldout_questions": len(self.pairs.val.queries), "heldout_corpus": len(self.pairs.val.corpus),
                "found": self.pairs.found, "negatives_filled": self.pairs.negatives_filled,
                "generated": self.pairs.generated,
                "problems": [{"source": p.source, "reason": p.reason, "detail": p.detail} for p in self.problems]}


def adapt_embedder(config: EmbedderConfig, *, progress: bool = False, generator: Any = None) -> AdaptReport:
    """Build the pairs from ``config.kb`` and train ``config.base`` (default: the KB's embedder) on them.

    ``generator``: a backend that generates questions (default: ``--generator-model`` / ``--endpoint``
    / ``--model``). Raises TrainingDataError when no question is usable, FinetuneError (training),
    the knowledge base's errors (missing, locked), EmbedderNotFound for an unknown ``base``.
    """
    kb, bot = _open(config)
    try:
        golds, problems, generated = _golds(config, kb, bot, generator, progress)
        if not golds:
            raise TrainingDataError("no usable question: " + "; ".join(p.detail for p in problems[:5]))
        pairs = build_pairs(kb, golds, hard_negatives=config.hard_negatives, depth=config.negative_depth,
                            val_ratio=config.val_ratio, val_corpus=config.val_corpus, seed=config.seed,
                            progress=progress)
        pairs = PairSet(**{**pairs.__dict__, "generated": generated})
        folder, prompts, base_name = _base(config, kb)
        info = {"base_name": base_name, "kb": str(kb.path), "kb_embedder": getattr(kb.embedder, "name", ""),
                "qa_files": [{"path": str(p), "sha256": file_sha256(p)} for p in config.qa],
                "generated_questions": generated, "found": pairs.found, "skipped": len(pairs.problems)}
        run = train_embedder(folder, pairs.train, pairs.val, config.out, config.train_settings(),
                             prompts=prompts, info=info)
    finally:
        (bot or kb).close()
    return AdaptReport(pairs, run, tuple(problems) + pairs.problems)


def _open(config: EmbedderConfig) -> tuple[Any, Any]:
    """(knowledge base, assistant or None): the assistant (whose knowledge base it is) only to generate."""
    if config.generate_questions:
        from assistant.answer import Assistant

        bot = Assistant(config=config.generation_config().assistant_config())
        return bot.kb, bot
    from index.kb import KnowledgeBase

    return KnowledgeBase.open(config.kb), None


def _golds(config: EmbedderConfig, kb: Any, bot: Any, generator: Any,
           progress: bool) -> tuple[list[Gold], list[Problem], dict[str, int]]:
    items, problems = read_qa(config.qa) if config.qa else ([], [])
    golds = [Gold(item) for item in items if item.answerable]
    problems += [Problem(i.source, "not answerable", f"{i.source}: marked not answerable, no gold chunk; skipped")
                 for i in items if not i.answerable]
    generated: dict[str, int] = {}
    if config.generate_questions:
        from assistant.from_kb.questions import generate_golds

        more, gen_problems, generated = generate_golds(config.generation_config(), bot, generator,
                                                      progress=progress)
        golds += more
        problems += gen_problems
    return golds, problems, generated


def _base(config: EmbedderConfig, kb: Any) -> tuple[Path, tuple[str, str], str]:
    """(model folder, (query prefix, passage prefix), name) of the embedder to adapt."""
    from index.embedder import load_embedder

    emb = kb.embedder if config.base is None else load_embedder(config.base, backend="torch")
    emb = getattr(emb, "inner", emb)  # the assistant's query memo wraps the knowledge base's embedder
    folder = getattr(emb, "folder", None)
    if folder is None:
        raise TrainingDataError(f"the knowledge base's embedder {getattr(emb, 'name', emb)!r} is not a "
                                "sentence-transformers model; give one with --base")
    return Path(folder), (emb.query_prefix, emb.passage_prefix), str(getattr(emb, "name", folder))

