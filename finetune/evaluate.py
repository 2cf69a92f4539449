"""``finetune eval``: base vs adapted model on a data file: loss, perplexity, BLEU-4, ROUGE-L.

Loss and perplexity are teacher-forced over the same tokenized examples training uses (answer
tokens only). BLEU-4 / ROUGE-L (:mod:`finetune.metrics`) score greedy answers to each record's last
user turn against its reference answer. Base and adapted share one loaded model: the base is the
PEFT model with its adapter disabled.

Example:
    >>> report = evaluate_adapter("outputs/qwen3-lora", ["val.jsonl"], samples=3)  # doctest: +SKIP
    >>> report.adapted["rouge_l"] > report.base["rouge_l"]  # doctest: +SKIP
    True
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune.generation import generate_reply
from finetune.metrics import corpus_scores
from finetune.runcard import read_run_card
from finetune.template import Example, encode_all, split_thinking
from finetune.train_errors import NoTrainingData

_BATCH = 8  # examples per teacher-forced forward pass


@dataclass(frozen=True)
class Sample:
    question: str
    reference: str
    base: str
    adapted: str


@dataclass(frozen=True)
class EvalReport:
    """Metrics of the base and the adapted model on the same examples, and a few generated samples."""

    examples: int  # records scored
    base: dict[str, float]  # loss, perplexity, bleu4, rouge_l
    adapted: dict[str, float]
    samples: tuple[Sample, ...]

    def rows(self) -> list[tuple[str, str, str]]:
        names = {"loss": "eval loss", "perplexity": "perplexity", "bleu4": "BLEU-4", "rouge_l": "ROUGE-L"}
        return [(label, f"{self.base[k]:.4f}", f"{self.adapted[k]:.4f}") for k, label in names.items()]

    def render(self) -> str:
        """Plain-text table (the CLI prints a rich table of the same rows)."""
        lines = [f"{'metric':<12} {'base':>12} {'adapted':>12}"]
        lines += [f"{m:<12} {b:>12} {a:>12}" for m, b, a in self.rows()]
        return "\n".join(lines)


def _select(items: Sequence[Any], limit: int) -> list[Any]:
    """At most ``limit`` items spread evenly over the sequence (deterministic)."""
    if limit <= 0 or len(items) <= limit:
        return list(items)
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


def token_loss(model: Any, examples: Sequence[Example]) -> float:
    """Mean cross-entropy (nats per answer token) of the model on the examples' labelled tokens."""
    import torch
    import torch.nn.functional as F

    from finetune.trainer import label_positions

    total, count = 0.0, 0
    device = next(model.parameters()).device
    for start in range(0, len(examples), _BATCH):
        batch = examples[start:start + _BATCH]
        width = max(len(e.input_ids) for e in batch)
        ids = torch.zeros(len(batch), width, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        mask = torch.zeros(len(batch), width, dtype=torch.long)
        for row, e in enumerate(batch):
            n = len(e.input_ids)
            ids[row, :n], labels[row, :n], mask[row, :n] = torch.tensor(e.input_ids), torch.tensor(e.labels), 1
        keep, targets = label_positions(labels)
        with torch.no_grad():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                           logits_to_keep=keep.to(device)).logits
        total += F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.to(device),
                                 reduction="sum").item()
        count += targets.numel()
    return total / max(count, 1)


def _answers(model: Any, tok: Any, convs: Sequence[Any], enable_thinking: bool, max_new_tokens: int,
             done: Callable[[int], object] = lambda n: None) -> list[str]:
    """Greedy answers to each record's last user turn; ``done(1)`` after each record."""
    out = []
    for conv in convs:
        reply = generate_reply(model, tok, conv.as_dicts()[:-1], enable_thinking=enable_thinking,
                               max_new_tokens=max_new_tokens)
        out.append(split_thinking(reply)[1].strip())
        done(1)
    return out


def _score(model: Any, tok: Any, convs: Sequence[Any], examples: Sequence[Example], enable_thinking: bool,
           max_new_tokens: int, *, desc: str = "", progress: bool = False) -> tuple[dict[str, float], list[str]]:
    """Metrics and answers of one pass; with ``progress``, a bar on stderr named ``desc`` counts the
    records answered (its note says "loss" while the teacher-forced loss runs first)."""
    from tqdm.auto import tqdm

    with tqdm(total=len(convs), desc=desc, unit="record", disable=not progress) as bar:
        bar.set_postfix_str("loss")
        loss = token_loss(model, examples)
        bar.set_postfix_str("answers")
        answers = _answers(model, tok, convs, enable_thinking, max_new_tokens, bar.update)
    refs = [split_thinking(c.messages[-1].content)[1].strip() for c in convs]
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), **corpus_scores(answers, refs)}, answers


def evaluate_adapter(adapter_dir: str | Path, data_files: Sequence[str | Path], *, base: str | None = None,
                     max_examples: int = 50, samples: int = 0, max_new_tokens: int = 128, device: str = "auto",
                     say: Callable[[str], None] = print, progress: bool = False) -> EvalReport:
    """Score the base model and the adapter side by side on up to ``max_examples`` records of ``data_files``.

    ``progress``: a bar per pass ("base", then "adapter") on stderr, one step per record answered.
    """
    from finetune.data import prepare
    from finetune.loading import resolve_device
    from finetune.merge import load_adapted

    card = read_run_card(adapter_dir)
    config = card.get("config", {})
    thinking = card.get("thinking", "off")
    report = prepare([Path(f) for f in data_files], system=card.get("system"),
                     system_override=bool(config.get("system_override")), dedup=False, val_ratio=0.0,
                     thinking=thinking)
    convs = _select([*report.train, *report.validation], max_examples)
    if not convs:
        raise NoTrainingData(f"no usable record in {', '.join(map(str, data_files))}:\n{report.render()}")
    model, tok = load_adapted(adapter_dir, base=base, device=resolve_device(device))
    encoded = encode_all(tok, convs, thinking=thinking, max_length=int(config.get("max_length", 1024)))
    enable = bool(card.get("enable_thinking", False))
    say(f"scoring {len(convs)} records ({len(encoded.examples)} answers) with the base model ...")
    with model.disable_adapter():
        base_scores, base_answers = _score(model, tok, convs, encoded.examples, enable, max_new_tokens,
                                           desc="base", progress=progress)
    say("... and with the adapter")
    adapted_scores, answers = _score(model, tok, convs, encoded.examples, enable, max_new_tokens,
                                     desc="adapter", progress=progress)
    shown = tuple(Sample(c.messages[-2].content, c.messages[-1].content, b, a)
                  for c, b, a in list(zip(convs, base_answers, answers))[:samples])
    return EvalReport(len(convs), base_scores, adapted_scores, shown)
