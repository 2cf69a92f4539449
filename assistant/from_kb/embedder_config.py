"""Settings of ``finetune embedder``: one frozen dataclass, validated on construction.

Each field's ``help`` metadata is its ``--help`` text (:mod:`ui.cli.options`). The defaults are
written here once; :class:`finetune.embedder.EmbedderTrainSettings` takes the training ones.

>>> cfg = EmbedderConfig(qa=("qa.jsonl",), out="adapted", kb="kb")
>>> cfg.train_settings().learning_rate, cfg.train_settings().hard_negatives
(2e-05, 1)
>>> EmbedderConfig(out="adapted", val_ratio=0.9, epochs=0)  # doctest: +IGNORE_EXCEPTION_DETAIL
Traceback (most recent call last):
assistant.errors.ConfigError: no questions: ...; epochs=0 must be an integer >= 1; val_ratio=0.9 must be in (0, 0.5]
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from assistant.errors import ConfigError
from assistant.from_kb.config import FromKBConfig, _as_assistant
from finetune.embedder import EmbedderTrainSettings


@dataclass(frozen=True)
class EmbedderConfig:
    """Settings of ``finetune embedder`` (one CLI flag per field; see :mod:`assistant.from_kb.embedder_pairs`)."""

    out: Path = field(default=Path("adapted-embedder"), metadata={
        "help": "folder to write the adapted SentenceTransformer model and its run card to"})
    qa: tuple[Path, ...] = field(default=(), metadata={
        "help": "gold Q&A files (any fine-tuning format; 'doc' / 'page' or an extractive answer locate the "
                "gold chunk)"})
    generate_questions: int = field(default=0, metadata={
        "help": "also generate Q&A from N sampled chunks with --generator-model (all when N >= their count)"})
    kb: Path | str = _as_assistant("kb")
    base: str | None = field(default=None, metadata={
        "help": "embedder to adapt, id or folder (none: the one the knowledge base was built with)"})
    epochs: int = field(default=3, metadata={"help": "training epochs at most (early stopping may end sooner)"})
    batch_size: int = field(default=32, metadata={
        "help": "questions per batch (each one's gold chunk is every other's in-batch negative)"})
    learning_rate: float = field(default=2e-5, metadata={"help": "peak learning rate (linear warm-up and decay)"})
    mini_batch_size: int = field(default=16, metadata={
        "help": "texts embedded at once in a training step: peak memory grows with it, the loss and gradients do "
                "not change (GradCache; 0: the whole batch at once, ~1/4 less compute, several GB more memory)"})
    hard_negatives: int = field(default=1, metadata={
        "help": "mined hard negative chunks per question (each costs one more passage per question per step)"})
    negative_depth: int = field(default=30, metadata={
        "help": "hybrid (dense + BM25) ranks searched for hard negatives per question"})
    val_ratio: float = field(default=0.2, metadata={
        "help": "share of questions held out to stop early and to measure before/after"})
    val_corpus: int = field(default=500, metadata={
        "help": "chunks the held-out questions are ranked in (embedded again after every epoch): the whole "
                "knowledge base up to this size, else their gold chunks, their hard candidates and a seeded sample"})
    patience: int = field(default=1, metadata={"help": "epochs without a held-out gain before stopping"})
    max_seq_length: int = field(default=256, metadata={
        "help": "tokens of a passage seen in training (longer ones truncated; CPU time grows with it)"})
    train_embeddings: bool = field(default=False, metadata={
        "help": "also train the token embedding matrix (frozen by default: few questions touch few rows)"})
    seed: int = field(default=0, metadata={"help": "seed of the held-out split, sampling and training"})
    model: str = _as_assistant("model", "local model that generates questions when --generate-questions is given")
    generator_model: str | None = field(default=None, metadata={
        "help": "model that generates questions (none: --model)"})
    endpoint: str | None = field(default=None, metadata={
        "help": "OpenAI-compatible server that generates the questions, e.g. http://localhost:8000/v1"})
    device: str = _as_assistant("device", "where training (and a local generator) runs: auto | cpu | cuda | cuda:N")

    def __post_init__(self) -> None:
        object.__setattr__(self, "qa", tuple(Path(p) for p in self.qa))
        object.__setattr__(self, "out", Path(self.out))
        problems = _problems(self)
        if problems:
            raise ConfigError("; ".join(problems))

    def train_settings(self) -> EmbedderTrainSettings:
        """The training half of the settings."""
        return EmbedderTrainSettings(
            epochs=self.epochs, batch_size=self.batch_size, learning_rate=self.learning_rate,
            mini_batch_size=self.mini_batch_size, hard_negatives=self.hard_negatives, seed=self.seed,
            patience=self.patience,
            max_seq_length=self.max_seq_length, train_embeddings=self.train_embeddings, device=self.device)

    def generation_config(self) -> FromKBConfig:
        """The ``from-kb`` settings that generate the questions (the one generator: assistant.from_kb.questions);
        its ``out`` is never written (question generation writes only ``qa_out``, not set here)."""
        return FromKBConfig(out=self.out / "generated.jsonl", kb=self.kb, model=self.model,
                            generate_questions=self.generate_questions, generator_model=self.generator_model,
                            endpoint=self.endpoint, seed=self.seed, device=self.device)


def _int_at_least(value: object, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _problems(c: EmbedderConfig) -> list[str]:
    out = []
    if not c.qa and not (_int_at_least(c.generate_questions, 1)):
        out.append("no questions: give Q&A files (--qa), or --generate-questions N to generate them from the chunks")
    for name, low in (("epochs", 1), ("batch_size", 2), ("hard_negatives", 1), ("negative_depth", 2),
                      ("val_corpus", 10), ("patience", 1), ("max_seq_length", 16), ("generate_questions", 0),
                      ("mini_batch_size", 0)):
        if not _int_at_least(getattr(c, name), low):
            out.append(f"{name}={getattr(c, name)!r} must be an integer >= {low}")
    if not isinstance(c.seed, int) or isinstance(c.seed, bool):
        out.append(f"seed={c.seed!r} must be an integer")
    if isinstance(c.learning_rate, bool) or not isinstance(c.learning_rate, (int, float)) \
            or not 0 < c.learning_rate < 1:
        out.append(f"learning_rate={c.learning_rate!r} must be in (0, 1)")
    if isinstance(c.val_ratio, bool) or not isinstance(c.val_ratio, (int, float)) or not 0 < c.val_ratio <= 0.5:
        out.append(f"val_ratio={c.val_ratio!r} must be in (0, 0.5]")
    if c.endpoint is not None and not c.generate_questions:
        out.append("endpoint only serves --generate-questions: add it, or drop --endpoint")
    return out
