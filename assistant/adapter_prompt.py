"""The system prompt an adapter is served with, read from its run card (``finetune train``'s ``run_card.json``).

Two kinds of adapter, told apart by what they were trained on:

* **trained on the assistant's own RAG prompts** (records of ``finetune data from-kb``, whose
  system message IS the assistant's prompt followed by numbered sources): its prompt is used
  exactly, so the prompt token ids at serving equal those it was trained on. Recognised when the
  run card's ``system`` holds the sources heading (``finetune train`` without ``--system`` stores
  the data's most common system message: prompt + one record's sources), when ``--system`` was
  given without ``--system-override`` but the first training record carries such a message (the
  records kept their own), or when the prompt already starts with the grounding instructions;
* **any other** (a persona or domain prompt, e.g. ``--system "现在你要扮演皇帝身边的女人--甄嬛"``,
  or none): the persona first, then the grounding instructions (:func:`assistant.prompt.compose_system`);
  the sources follow as always.

>>> print(served_system_prompt({"system": "你是某某医院的导诊助手。"})[:49])
你是某某医院的导诊助手。
<BLANKLINE>
You are a careful assistant. Answer
>>> served_system_prompt({"system": "Answer from the sources.\\n\\nSources:\\n\\n[1] tea (p. 1)\\nGreen tea."})
'Answer from the sources.'
>>> served_system_prompt({}) == DEFAULT_SYSTEM_PROMPT
True
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from assistant.prompt import DEFAULT_SYSTEM_PROMPT, SOURCES_HEADING, compose_system
from finetune.runcard import read_run_card

SOURCES_BREAK = f"\n\n{SOURCES_HEADING}\n\n"  # where the prompt ends and the numbered sources begin


def run_card(adapter: str | Path | None) -> dict:
    """The adapter's ``run_card.json`` (written by ``finetune train`` in the adapter folder, or
    beside it); {} when there is none or it is unreadable (an adapter trained elsewhere).

    Read by :func:`finetune.runcard.read_run_card` in its lenient mode.
    """
    return read_run_card(adapter, lenient=True) if adapter else {}


def card_prompt(card: Mapping[str, Any]) -> str | None:
    """The run card's system prompt (key ``system``, or ``system_prompt``), cut before any sources; None if blank.

    >>> card_prompt({"system": "P\\n\\nSources:\\n\\n[1] t (p. 1)\\nx"}), card_prompt({"system": " "})
    ('P', None)
    """
    value = card.get("system") or card.get("system_prompt")
    if not isinstance(value, str):
        return None
    value = value.split(SOURCES_BREAK, 1)[0]
    return value if value.strip() else None


def adapter_system_prompt(adapter: str | Path | None) -> str | None:
    """The system prompt the adapter was trained with (the run card's, before any sources), if any."""
    return card_prompt(run_card(adapter))


def first_record_prompt(card: Mapping[str, Any]) -> str | None:
    """The prompt before the sources of the first training record's system message, when ``finetune train``
    got ``--system`` without ``--system-override`` (records with a system message kept theirs) and the
    first training file (JSONL) is still readable; else None."""
    source = str(card.get("system_source") or "")
    data = card.get("data")
    files = data.get("train_files") if isinstance(data, Mapping) else None
    if not source.startswith("--system") or "override" in source or not isinstance(files, list) or not files:
        return None
    try:
        with open(Path(files[0]["path"]), encoding="utf-8") as f:
            line = next((ln for ln in f if ln.strip()), "")
        messages = json.loads(line)["messages"]
        system = messages[0]["content"] if messages[0]["role"] == "system" else ""
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None
    return system.split(SOURCES_BREAK, 1)[0] if isinstance(system, str) and SOURCES_BREAK in system else None


def rag_trained_prompt(card: Mapping[str, Any]) -> str | None:
    """The assistant prompt the adapter was trained on, when it was trained on the assistant's own RAG
    prompts (see the module docstring); None for a persona adapter or none.

    >>> rag_trained_prompt({"system": "现在你要扮演皇帝身边的女人--甄嬛"}) is None
    True
    >>> rag_trained_prompt({"system": DEFAULT_SYSTEM_PROMPT}) == DEFAULT_SYSTEM_PROMPT
    True
    """
    system = card.get("system") or card.get("system_prompt")
    if isinstance(system, str) and SOURCES_BREAK in system:
        return card_prompt(card)
    prompt = first_record_prompt(card)
    if prompt is not None:
        return prompt
    if isinstance(system, str) and system.strip().startswith(DEFAULT_SYSTEM_PROMPT.strip()):
        return system
    return None


def served_system_prompt(card: Mapping[str, Any], grounding: str = DEFAULT_SYSTEM_PROMPT) -> str:
    """The system prompt (before the sources) for an adapter with run card ``card``: its RAG prompt
    exactly, else its persona then ``grounding``, else ``grounding``."""
    exact = rag_trained_prompt(card)
    return exact if exact is not None else compose_system(card_prompt(card), grounding)
