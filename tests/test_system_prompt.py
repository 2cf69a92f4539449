"""An adapter's system prompt: a persona is put before the grounding instructions, never in their place;
an adapter trained on the assistant's own RAG prompts (``finetune data from-kb``) gets that prompt exactly.

The run cards are made the way ``finetune train`` makes them (``finetune.runcard.system_prompt`` over the
data ``finetune train`` reads); no model weights are trained. Token parity uses the tiny Qwen3's real
tokenizer and chat template.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant.adapter_prompt import rag_trained_prompt, served_system_prompt
from assistant.answer import Assistant
from assistant.backends.local import LocalBackend
from assistant.config import AskOptions
from assistant.from_kb.build import FromKBConfig, build_from_kb
from assistant.prompt import DEFAULT_SYSTEM_PROMPT, SOURCES_HEADING, compose_system
from finetune.template import prompt_ids

from fixtures_assistant import SpyBackend

PERSONA = "现在你要扮演皇帝身边的女人--甄嬛"  # the README's recipe (huanhuan.json)
QA = ({"question": "How long is the warranty on company laptops?", "answer": "Two years.", "doc": "handbook",
       "page": 2},
      {"question": "What does green tea contain?", "answer": "Green tea contains caffeine and catechins."},
      {"question": "退货政策是什么？", "answer": "购买后三十天内可以退货。", "answers": ["三十天内可以退货"]})
K = 3


def train_card(data: Path, **train: object) -> dict:
    """The system-prompt part of the run card ``finetune train --data DATA [--system ...]`` writes."""
    from finetune.config import TrainConfig
    from finetune.runcard import file_digest, system_prompt
    from finetune.train import _prepare_data

    config = TrainConfig(data=(str(data),), val_ratio=0, **train)
    system, source = system_prompt(config, _prepare_data(config).train)
    return {"system": system, "system_source": source, "enable_thinking": False,
            "data": {"train_files": [file_digest(data)]}}


def adapter_with(folder: Path, card: dict) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text("{}", encoding="utf-8")
    (folder / "run_card.json").write_text(json.dumps(card, ensure_ascii=False), encoding="utf-8")
    return str(folder)


@pytest.fixture()
def persona_adapter(tmp_path: Path) -> str:
    data = tmp_path / "huanhuan.jsonl"
    data.write_text(json.dumps({"instruction": "你是谁？", "input": "", "output": "臣妾是甄嬛。"},
                               ensure_ascii=False) + "\n", encoding="utf-8")
    card = train_card(data, system=PERSONA)
    assert (card["system"], card["system_source"]) == (PERSONA, "--system")
    return adapter_with(tmp_path / "huanhuan-lora", card)


def test_a_persona_adapter_gets_its_persona_then_the_grounding_instructions(assistant_kb: Path,  # noqa: F811
                                                                           persona_adapter: str) -> None:
    spy = SpyBackend("臣妾以为，保修期为两年 [1]。")
    bot = Assistant(kb=assistant_kb, model="spy", backend=spy, adapter=persona_adapter, k=2)
    assert bot.system_prompt() == f"{PERSONA}\n\n{DEFAULT_SYSTEM_PROMPT}"
    bot.ask(QA[0]["question"])
    system = spy.calls[-1][0][0]["content"]
    assert system.index(PERSONA) == 0 < system.index(DEFAULT_SYSTEM_PROMPT) < system.index(f"\n{SOURCES_HEADING}\n")
    assert "[1] handbook (p. 2)" in system  # the numbered sources still follow
    base, _ = bot.prompt(QA[0]["question"], options=AskOptions(use_adapter=False))  # the adapter off: no persona
    assert base[0]["content"].startswith(DEFAULT_SYSTEM_PROMPT)
    whole, _ = bot.prompt(QA[0]["question"], options=AskOptions(system_prompt="Only the handbook."))
    assert whole[0]["content"].startswith(f"Only the handbook.\n\n{SOURCES_HEADING}")  # explicit: the whole prompt


def test_a_persona_adapter_trained_with_system_override_is_composed_too(tmp_path: Path) -> None:
    data = tmp_path / "qa.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "system", "content": "old"}, {"role": "user", "content": "q"},
                                             {"role": "assistant", "content": "a"}]}) + "\n", encoding="utf-8")
    card = train_card(data, system=PERSONA, system_override=True)
    assert rag_trained_prompt(card) is None
    assert served_system_prompt(card) == compose_system(PERSONA) == f"{PERSONA}\n\n{DEFAULT_SYSTEM_PROMPT}"


@pytest.fixture(scope="module")
def counter(tiny_qwen3: Path) -> LocalBackend:  # noqa: F811
    return LocalBackend(str(tiny_qwen3))


def from_kb_records(tmp_path: Path, kb: Path, model: Path, counter: LocalBackend, system_prompt: str | None) -> Path:
    qa = tmp_path / "qa.jsonl"
    qa.write_text("\n".join(json.dumps(row, ensure_ascii=False) for row in QA) + "\n", encoding="utf-8")
    config = FromKBConfig(qa=(qa,), out=tmp_path / "kb_train.jsonl", kb=kb, model=str(model), k=K,
                          distractor_ratio=0.0, system_prompt=system_prompt)
    return build_from_kb(config, backend=counter).out


@pytest.mark.parametrize("system_prompt, train", [
    (None, {}),  # the README's recipe: from-kb and finetune train without --system
    ("Answer from the sources only, citing them as [n].", {}),  # from-kb --system-prompt
    # finetune train --system without --system-override: the from-kb records keep their own system message
    ("Answer from the sources only, citing them as [n].", {"system": "你是导诊助手。"}),
])
def test_a_from_kb_adapter_is_served_the_prompt_it_was_trained_on(tmp_path: Path, assistant_kb: Path,  # noqa: F811
                                                                  tiny_qwen3: Path, counter: LocalBackend,  # noqa: F811
                                                                  system_prompt: str | None, train: dict) -> None:
    records = from_kb_records(tmp_path, assistant_kb, tiny_qwen3, counter, system_prompt)
    card = train_card(records, **train)
    expected = system_prompt or DEFAULT_SYSTEM_PROMPT
    assert rag_trained_prompt(card) == expected
    bot = Assistant(kb=assistant_kb, model=str(tiny_qwen3), adapter=adapter_with(tmp_path / "lora", card), k=K)
    assert bot.system_prompt() == expected and bot.thinking() is False
    tokenizer = bot.backend.tokenizer()
    lines = records.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(QA)
    for line in lines:
        trained = json.loads(line)["messages"][:2]  # system (prompt + sources) and question
        served, _ = bot.prompt(trained[1]["content"])
        assert prompt_ids(tokenizer, served, enable_thinking=False) == prompt_ids(tokenizer, trained,
                                                                                  enable_thinking=False)


def test_rag_prompt_recognition_from_the_run_card_alone() -> None:
    sources = f"\n\n{SOURCES_HEADING}\n\n[1] tea (p. 1)\nGreen tea."
    assert rag_trained_prompt({"system": f"Cite [n].{sources}"}) == "Cite [n]."
    assert rag_trained_prompt({"system_prompt": DEFAULT_SYSTEM_PROMPT}) == DEFAULT_SYSTEM_PROMPT
    assert rag_trained_prompt({"system": PERSONA}) is None and rag_trained_prompt({}) is None
    # --system given, but the training file is gone: nothing says from-kb, so the persona is composed
    gone = {"system": PERSONA, "system_source": "--system", "data": {"train_files": [{"path": "/no/such.jsonl"}]}}
    assert served_system_prompt(gone) == compose_system(PERSONA)
    assert served_system_prompt({"system": "  "}) == DEFAULT_SYSTEM_PROMPT
