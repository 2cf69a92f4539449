"""Fine-tune a sentence-transformers embedder on (question, gold chunk, hard negatives) pairs.

The retriever half of the closed loop (``finetune embedder``): the pairs are built from the user's
knowledge base by :mod:`assistant.from_kb.embedder_pairs`; this module only trains, with
sentence-transformers' own trainer and loss, and writes an ordinary SentenceTransformer folder
plus a run card (``embedder_run.json``). It imports nothing of ``index`` or ``assistant``.

* Loss: ``MultipleNegativesRankingLoss`` (InfoNCE over in-batch and hard negatives; its cached variant, GradCache,
  in slices of ``mini_batch_size`` texts to bound memory), scale 100,
  i.e. temperature 0.01, the temperature multilingual-e5 was trained with (Wang et al. 2022,
  "Text Embeddings by Weakly-Supervised Contrastive Pre-training", section 4.1), so the adapted
  model's cosines stay on the scale the base model's had. Batches never hold the same text twice
  (``BatchSamplers.NO_DUPLICATES``): a question asked for two gold chunks would otherwise be its
  own false in-batch negative.
* Prefixes: the base model's own (``query: `` / ``passage: `` for e5) are given to the trainer as
  column prompts and saved in the output's ``config_sentence_transformers.json``, so every loader
  of the folder (``index``, plain sentence-transformers) adds them as the base model had them.
* The token embedding matrix is frozen unless ``train_embeddings`` (multilingual-e5-small: 96 M of
  its 118 M weights): a few hundred questions touch few of its 250 k rows, and moving those alone
  would shift just the words the training questions happen to use.
* Early stopping: the held-out questions are scored after every epoch (nDCG@10 of their gold
  chunks in the validation corpus, sentence-transformers' ``InformationRetrievalEvaluator``); the
  best epoch is kept and training stops after ``patience`` epochs without gain.

>>> TrainPair("what is x?", "x is y", ("z is w",), "q1", "c7").columns(2)
{'anchor': 'what is x?', 'positive': 'x is y', 'negative_1': 'z is w', 'negative_2': 'z is w'}
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from common.files import atomic_write_text
from finetune.errors import FinetuneError

RUN_CARD = "embedder_run.json"
E5_SCALE = 100.0  # 1 / temperature 0.01 (E5 paper, section 4.1)
PRIMARY = "cosine_ndcg@10"  # the evaluator's metric that early stopping and "worse" look at


@dataclass(frozen=True)
class TrainPair:
    """One training example: a question, its gold chunk's text, hard negative chunk texts."""

    query: str
    positive: str
    negatives: tuple[str, ...]
    query_id: str  # the same question asked for two gold chunks shares it
    positive_id: str  # chunk id of the gold chunk

    def columns(self, n_negatives: int) -> dict[str, str]:
        """The trainer's row: anchor, positive, negative_1..n (the last negative repeated when short)."""
        row = {"anchor": self.query, "positive": self.positive}
        negs = list(self.negatives) or [self.positive]
        for i in range(n_negatives):
            row[f"negative_{i + 1}"] = negs[min(i, len(negs) - 1)]
        return row


@dataclass(frozen=True)
class ValidationSet:
    """Held-out questions and the corpus they are scored in (ids -> texts, question id -> gold chunk ids)."""

    queries: Mapping[str, str]
    corpus: Mapping[str, str]
    relevant: Mapping[str, frozenset[str]]


@dataclass(frozen=True)
class EmbedderTrainSettings:
    """How to train (defaults live in the CLI's config, :class:`assistant.from_kb.embedder_pairs.EmbedderConfig`)."""

    epochs: int
    batch_size: int
    learning_rate: float
    hard_negatives: int
    seed: int
    patience: int
    max_seq_length: int
    warmup_ratio: float = 0.1
    mini_batch_size: int = 0  # 0: the whole batch at once; else GradCache in slices of this many texts
    train_embeddings: bool = False
    device: str = "auto"


@dataclass(frozen=True)
class EmbedderRun:
    """What a run did: figures before/after on the held-out questions, where the model went."""

    out: Path
    before: dict[str, float]
    after: dict[str, float]
    epochs_run: float
    train_seconds: float
    card: dict[str, Any] = field(repr=False)

    @property
    def worse(self) -> bool:
        """The adapted model scores below the base on the held-out questions (nDCG@10)."""
        return self.after.get(PRIMARY, 0.0) < self.before.get(PRIMARY, 0.0)


def text_sha(texts: Sequence[str]) -> str:
    """sha256 over the texts in order (a data hash for the run card)."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8") + b"\x00")
    return digest.hexdigest()


def _device(wanted: str) -> str:
    if wanted != "auto":
        return wanted
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _load(base: str | Path, device: str, max_seq_length: int, prompts: Mapping[str, str]) -> Any:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(base), device=device, local_files_only=Path(str(base)).is_dir())
    model.max_seq_length = min(max_seq_length, model.max_seq_length or max_seq_length)
    model.prompts = {**(model.prompts or {}), **{k: v for k, v in prompts.items() if v}}
    return model


def _freeze_token_embeddings(model: Any) -> None:
    """Stop gradients into the word-embedding matrix (see the module docstring)."""
    auto = model[0].auto_model
    auto.get_input_embeddings().weight.requires_grad_(False)


def _evaluator(val: ValidationSet, query_prompt: str, passage_prompt: str, batch_size: int) -> Any:
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    return InformationRetrievalEvaluator(
        dict(val.queries), dict(val.corpus), {q: set(c) for q, c in val.relevant.items()},
        name="heldout", accuracy_at_k=[1, 5, 10], precision_recall_at_k=[10], map_at_k=[10],
        mrr_at_k=[10], ndcg_at_k=[10], batch_size=batch_size, write_csv=False,
        query_prompt=query_prompt or None, corpus_prompt=passage_prompt or None)


def _figures(evaluator: Any, model: Any) -> dict[str, float]:
    raw = evaluator(model)
    return {k.removeprefix("heldout_"): round(float(v), 4) for k, v in raw.items()
            if k.startswith("heldout_cosine_")}


def _arguments(settings: EmbedderTrainSettings, work: Path, device: str, prompts: dict[str, str]) -> Any:
    from sentence_transformers import SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers

    return SentenceTransformerTrainingArguments(
        output_dir=str(work), num_train_epochs=settings.epochs, per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size, learning_rate=settings.learning_rate,
        warmup_steps=settings.warmup_ratio, seed=settings.seed, data_seed=settings.seed,
        batch_sampler=BatchSamplers.NO_DUPLICATES, prompts=prompts,
        eval_strategy="epoch", save_strategy="epoch", save_total_limit=2, load_best_model_at_end=True,
        metric_for_best_model=f"eval_heldout_{PRIMARY}", greater_is_better=True,
        use_cpu=device == "cpu", bf16=False, fp16=device.startswith("cuda"),
        report_to="none", logging_strategy="epoch", disable_tqdm=False, save_only_model=True)


def train_embedder(base: str | Path, pairs: Sequence[TrainPair], val: ValidationSet, out: str | Path,
                   settings: EmbedderTrainSettings, *, prompts: tuple[str, str] = ("", ""),
                   info: Mapping[str, Any] | None = None) -> EmbedderRun:
    """Train ``base`` (a SentenceTransformer folder or id) on ``pairs``, keep the best epoch on ``val``,
    save it to ``out`` with :data:`RUN_CARD`; ``prompts`` = (query prefix, passage prefix).

    Raises FinetuneError for no pairs, no held-out question, or an ``out`` that is a file or a
    non-empty folder other than an earlier run's output.
    """
    out = _check_out(Path(out))
    if not pairs:
        raise FinetuneError("no training pairs: no question's gold chunk was found in the knowledge base")
    if not val.queries:
        raise FinetuneError("no held-out question to stop early on: raise --val-ratio or give more questions")
    device = _device(settings.device)
    query_prompt, passage_prompt = prompts
    model = _load(base, device, settings.max_seq_length, {"query": query_prompt, "document": passage_prompt})
    if not settings.train_embeddings:
        _freeze_token_embeddings(model)
    evaluator = _evaluator(val, query_prompt, passage_prompt, settings.batch_size)
    before = _figures(evaluator, model)
    started = time.monotonic()
    epochs_run = _fit(model, pairs, evaluator, settings, out, device, prompts)
    seconds = round(time.monotonic() - started, 1)
    after = _figures(evaluator, model)
    model.save(str(out))
    card = _card(base, pairs, val, settings, device, before, after, epochs_run, seconds, info or {})
    atomic_write_text(out / RUN_CARD, json.dumps(card, ensure_ascii=False, indent=2) + "\n")
    return EmbedderRun(out, before, after, epochs_run, seconds, card)


def _check_out(out: Path) -> Path:
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / RUN_CARD).exists())):
        raise FinetuneError(f"{out}: exists and is not an earlier `finetune embedder` output; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _loss(model: Any, settings: EmbedderTrainSettings) -> Any:
    """InfoNCE at e5's scale; in slices of ``mini_batch_size`` texts (GradCache: Gao et al. 2021, "Scaling Deep
    Contrastive Learning Batch Size under Memory Limited Setup") when that is smaller than a step's batch: the same
    loss and gradients with the activations of one slice held at a time, for one more forward pass. Plain
    ``MultipleNegativesRankingLoss`` held 14.7 GB resident on SciFact passages (batch 32, 256 tokens) here."""
    from sentence_transformers.sentence_transformer import losses

    if 0 < settings.mini_batch_size < settings.batch_size:
        return losses.CachedMultipleNegativesRankingLoss(model, scale=E5_SCALE,
                                                         mini_batch_size=settings.mini_batch_size)
    return losses.MultipleNegativesRankingLoss(model, scale=E5_SCALE)


def _fit(model: Any, pairs: Sequence[TrainPair], evaluator: Any, settings: EmbedderTrainSettings, out: Path,
         device: str, prompts: tuple[str, str]) -> float:
    """Run the trainer (checkpoints in a folder beside ``out``, removed after); epochs actually run."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer
    from transformers import EarlyStoppingCallback

    n_neg = settings.hard_negatives
    rows = [p.columns(n_neg) for p in pairs]
    data = Dataset.from_list(rows)
    query_prompt, passage_prompt = prompts
    column_prompts = {c: (query_prompt if c == "anchor" else passage_prompt) for c in rows[0]}
    work = out.parent / f".{out.name}.checkpoints"
    args = _arguments(settings, work, device, {c: p for c, p in column_prompts.items() if p})
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=data, loss=_loss(model, settings),
        evaluator=evaluator, callbacks=[EarlyStoppingCallback(early_stopping_patience=settings.patience)])
    try:
        trainer.train()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return round(float(trainer.state.epoch or 0.0), 2)


def _card(base: str | Path, pairs: Sequence[TrainPair], val: ValidationSet, settings: EmbedderTrainSettings,
          device: str, before: dict, after: dict, epochs_run: float, seconds: float,
          info: Mapping[str, Any]) -> dict[str, Any]:
    import sentence_transformers
    import torch

    return {
        "kind": "embedder", "base": str(base), "device": device, "train_seconds": seconds,
        "epochs_run": epochs_run, "settings": asdict(settings),
        "data": {"pairs": len(pairs), "questions": len({p.query_id for p in pairs}),
                 "pairs_sha256": text_sha([json.dumps(p.columns(settings.hard_negatives), ensure_ascii=False)
                                           for p in pairs]),
                 "heldout_questions": len(val.queries), "heldout_corpus_chunks": len(val.corpus),
                 "heldout_sha256": text_sha([*sorted(val.queries.values()), *sorted(val.corpus)])},
        "heldout_before": before, "heldout_after": after, "primary_metric": PRIMARY,
        "versions": {"sentence_transformers": sentence_transformers.__version__, "torch": torch.__version__},
        **dict(info)}


def read_run_card(folder: str | Path) -> dict[str, Any] | None:
    """The run card of a ``finetune embedder`` output folder, or None (not one, or unreadable)."""
    try:
        return json.loads((Path(folder) / RUN_CARD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
