"""Chat template handling: render conversations with the base model's own template, and label them.

Decisions (tested in tests/test_finetune_template.py):

* The template is the tokenizer's own (Qwen3's for Qwen3). A tokenizer without one (a base model)
  gets :data:`CHATML_TEMPLATE` and :func:`ensure_chat_template` returns a notice saying so.
* One training example per assistant turn. Example *i* is exactly the inference prompt of turn *i*
  (``apply_chat_template(messages[:k], add_generation_prompt=True, enable_thinking=...)``) followed
  by answer *i*; only answer *i* and its end-of-turn token carry labels. So every assistant turn of a
  multi-turn conversation is trained, each after the very token ids the model sees at inference:
  Qwen3 re-renders earlier assistant turns *without* their ``<think>`` block when it continues a
  conversation, and a single-sequence rendering would train the earlier turns after a prompt that
  inference never produces. The cost is that history tokens are repeated (O(turns^2) tokens).
* The prompt of every turn is the inference prompt of the policy the run is trained with
  (``enable_thinking=`` :func:`thinking_for_inference`), over a history whose assistant turns are the
  answers without their reasoning (what a chat keeps, and what Qwen3's template renders anyway).
* Thinking ``off``: the prompt ends with the empty ``<think>\\n\\n</think>\\n\\n`` block (as inference
  with ``enable_thinking=False``) which is not trained; reasoning found in an answer is dropped.
* Thinking ``keep``: every prompt ends with ``<|im_start|>assistant\\n`` (inference with
  ``enable_thinking=True``) and the think block is trained with the answer: the record's own, or for an
  answer without one the empty block Qwen3's template writes (``<think>\\n\\n</think>\\n\\n``), which
  teaches the model to answer without reasoning when thinking is on.
* Records whose think blocks are malformed (unclosed, stray ``</think>``, misplaced, reasoning only)
  are dropped before this, by :func:`finetune.validate.check_thinking` in the data stage.

Example:
    >>> from finetune.stats import load_qwen3_tokenizer
    >>> from finetune.records import Conversation, Message
    >>> tok = load_qwen3_tokenizer()
    >>> conv = Conversation((Message("user", "hi"), Message("assistant", "hello")), "a.jsonl:1")
    >>> ex = encode_conversation(tok, conv, thinking="off", max_length=64)[0][0]
    >>> tok.decode([t for t in ex.labels if t != -100])
    'hello<|im_end|>'
    >>> ex = encode_conversation(tok, conv, thinking="keep", max_length=64)[0][0]
    >>> tok.decode(ex.input_ids[: ex.prompt_len]).endswith("<|im_start|>assistant\\n")
    True
    >>> tok.decode([t for t in ex.labels if t != -100])
    '<think>\\n\\n</think>\\n\\nhello<|im_end|>'
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from finetune.records import Conversation, Problem

IGNORE = -100  # label of a token that is not trained (PyTorch cross-entropy ignore_index)
TEMPLATE_PARITY = "template parity"
TOO_LONG = "prompt too long"

# ChatML as Qwen2.5/Qwen3 render it, without tools or thinking: the fallback for template-less tokenizers.
# A tokenizer with a BOS token (Gemma, Llama) gets it first, as its own templates do; Qwen has none.
CHATML_TEMPLATE = (
    "{%- if bos_token %}{{- bos_token }}{%- endif %}"
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
_THINK = re.compile(r"^\s*<think>(.*?)</think>\s*(.*)$", re.DOTALL)


@dataclass(frozen=True)
class Example:
    """One tokenized training example: the prompt of one assistant turn plus that turn's answer."""

    input_ids: tuple[int, ...]
    labels: tuple[int, ...]  # IGNORE except on the answer and its end-of-turn token
    prompt_len: int  # tokens before the answer (== inference prompt length unless truncated)
    source: str  # "file:line" of the record
    turn: int  # 1-based index of the assistant turn this example trains
    truncated: bool  # cut to max_length


@dataclass(frozen=True)
class Encoded:
    """Result of :func:`encode_all`: examples, records that could not be used, and counts."""

    examples: tuple[Example, ...]
    problems: tuple[Problem, ...]
    truncated: int

    @property
    def tokens(self) -> int:
        return sum(len(e.input_ids) for e in self.examples)

    @property
    def trained_tokens(self) -> int:
        return sum(sum(t != IGNORE for t in e.labels) for e in self.examples)


def ensure_chat_template(tokenizer: Any) -> str | None:
    """Give ``tokenizer`` the ChatML fallback when it has no chat template; return a notice then, else None."""
    if getattr(tokenizer, "chat_template", None):
        return None
    tokenizer.chat_template = CHATML_TEMPLATE
    vocab = tokenizer.get_vocab()
    plain = [t for t in ("<|im_start|>", "<|im_end|>") if t not in vocab]
    note = ("the tokenizer has no chat template (a base model?): using a ChatML template "
            "(<|im_start|>role ... <|im_end|>)")
    if plain:
        note += f"; {', '.join(plain)} are not single tokens here, so they are learnt as plain text"
    return note


def split_thinking(text: str) -> tuple[str | None, str]:
    """(reasoning, answer) of an answer that starts with ``<think>...</think>``; (None, text) otherwise.

    >>> split_thinking("<think>\\nadd 1\\n</think>\\n\\n2")
    ('add 1', '2')
    """
    match = _THINK.match(text)
    if match is None:
        return None, text
    return match.group(1).strip("\n"), match.group(2)


def thinking_for_inference(thinking: str) -> bool:
    """``enable_thinking`` to pass to the chat template at inference for a run trained with ``thinking``."""
    return thinking == "keep"


def prompt_ids(tokenizer: Any, messages: Sequence[dict[str, str]], *, enable_thinking: bool) -> list[int]:
    """Token ids of the inference prompt for ``messages`` (generation prompt appended)."""
    return _ids(tokenizer, messages, add_generation_prompt=True, enable_thinking=enable_thinking)


def _ids(tokenizer: Any, messages: Sequence[dict[str, str]], **kwargs: Any) -> list[int]:
    out = tokenizer.apply_chat_template(list(messages), tokenize=True, return_dict=True, **kwargs)
    return list(out["input_ids"])


def _answer_labels(tokenizer: Any, completion: Sequence[int]) -> list[int]:
    """Labels of the completion: every token but the trailing whitespace after the end-of-turn token."""
    labels = list(completion)
    special = set(tokenizer.all_special_ids)
    end = len(labels)
    while end > 1 and labels[end - 1] not in special and not tokenizer.decode([labels[end - 1]]).strip():
        end -= 1
    return labels[:end] + [IGNORE] * (len(labels) - end)


def _turn_messages(conv: Conversation, k: int, thinking: str) -> list[dict[str, str]]:
    """Messages up to and including the assistant turn at index k, as they are rendered for training.

    Earlier assistant turns are their answers without reasoning (the inference history); the last
    keeps its reasoning with thinking "keep" and loses it with "off".
    """
    msgs = conv.as_dicts()[: k + 1]
    last = len(msgs) - 1
    for i, m in enumerate(msgs):
        if m["role"] == "assistant" and (i < last or thinking == "off"):
            m["content"] = split_thinking(m["content"])[1]
    return msgs


def encode_conversation(tokenizer: Any, conv: Conversation, *, thinking: str,
                        max_length: int) -> tuple[list[Example], list[Problem]]:
    """Examples of every assistant turn of ``conv`` (see the module docstring), and problems."""
    examples: list[Example] = []
    problems: list[Problem] = []
    turns = [k for k, m in enumerate(conv.messages) if m.role == "assistant"]
    enable = thinking_for_inference(thinking)
    for n, k in enumerate(turns, start=1):
        msgs = _turn_messages(conv, k, thinking)
        prompt = prompt_ids(tokenizer, msgs[:-1], enable_thinking=enable)
        full = _ids(tokenizer, msgs, enable_thinking=enable)
        if full[: len(prompt)] != prompt:
            problems.append(Problem(conv.source, TEMPLATE_PARITY, (
                f"{conv.source}: assistant turn {n}: the chat template renders the prompt differently alone "
                "and followed by the answer, so training would not match inference; the turn is skipped. "
                "Fix: check the record's text (leading spaces/newlines in the answer) or the template")))
            continue
        labels = [IGNORE] * len(prompt) + _answer_labels(tokenizer, full[len(prompt):])
        if len(prompt) >= max_length:
            problems.append(Problem(conv.source, TOO_LONG, (
                f"{conv.source}: assistant turn {n}: the prompt alone has {len(prompt)} tokens, at least "
                f"max_length ({max_length}); the turn is skipped. Fix: raise --max-length or shorten it")))
            continue
        examples.append(Example(tuple(full[:max_length]), tuple(labels[:max_length]), len(prompt),
                                conv.source, n, len(full) > max_length))
    return examples, problems


def encode_all(tokenizer: Any, conversations: Sequence[Conversation], *, thinking: str,
               max_length: int) -> Encoded:
    """:func:`encode_conversation` over a data split; a bad record is reported and the rest go on."""
    examples: list[Example] = []
    problems: list[Problem] = []
    for conv in conversations:
        got, bad = encode_conversation(tokenizer, conv, thinking=thinking, max_length=max_length)
        examples += got
        problems += bad
    return Encoded(tuple(examples), tuple(problems), sum(e.truncated for e in examples))
