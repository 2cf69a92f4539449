"""Chat template, loss mask and train/inference parity with the real Qwen3 tokenizer."""
from __future__ import annotations

import pytest

from finetune.records import Conversation, Message
from finetune.template import (
    CHATML_TEMPLATE,
    IGNORE,
    encode_all,
    encode_conversation,
    ensure_chat_template,
    split_thinking,
)


@pytest.fixture(scope="module")
def tok():
    from finetune.stats import load_qwen3_tokenizer

    return load_qwen3_tokenizer()


def conv(*turns: tuple[str, str], source: str = "t.jsonl:1") -> Conversation:
    return Conversation(tuple(Message(role, text) for role, text in turns), source)


MULTI = conv(("system", "你是甄嬛。"), ("user", "你是谁？"), ("assistant", "<think>\n想一想\n</think>\n\n臣妾甄嬛。"),
             ("user", "What day is it?"), ("assistant", "It is Monday."),
             ("user", "再说一遍"), ("assistant", "<think>重复</think>臣妾甄嬛。"))


def labelled(ex) -> list[int]:
    return [t for t in ex.labels if t != IGNORE]


def inference_ids(tok, messages, *, enable_thinking: bool) -> list[int]:
    out = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True,
                                  enable_thinking=enable_thinking, return_dict=True)
    return list(out["input_ids"])


def test_loss_mask_is_exactly_each_answer_and_its_im_end(tok):
    examples, problems = encode_conversation(tok, MULTI, thinking="off", max_length=512)
    assert not problems and [e.turn for e in examples] == [1, 2, 3]
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    answers = ["臣妾甄嬛。", "It is Monday.", "臣妾甄嬛。"]
    for ex, answer in zip(examples, answers):
        trained = labelled(ex)
        assert trained == tok.encode(answer, add_special_tokens=False) + [im_end]
        # contiguous, starting right after the prompt: no system / user / earlier-turn token is trained
        assert all(t == IGNORE for t in ex.labels[: ex.prompt_len])
        assert list(ex.labels[ex.prompt_len: ex.prompt_len + len(trained)]) == trained
        assert all(t == IGNORE for t in ex.labels[ex.prompt_len + len(trained):])  # the "\n" after <|im_end|>
        assert ex.input_ids[ex.prompt_len + len(trained) - 1] == im_end


SHAPES = {
    "single": conv(("user", "hi"), ("assistant", "hello")),
    "single, system": conv(("system", "Be brief."), ("user", "hi"), ("assistant", "hello")),
    "single, think": conv(("user", "1+1?"), ("assistant", "<think>\nadd\n</think>\n\n2")),
    "single, system, think": conv(("system", "S"), ("user", "1+1?"), ("assistant", "<think>add</think>2")),
    "single, empty think": conv(("user", "hi"), ("assistant", "<think>\n\n</think>\n\nhello")),
    "multi": conv(("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d")),
    "multi, system, mixed": MULTI,
    "multi, think then none": conv(("user", "a"), ("assistant", "<think>r</think>b"), ("user", "c"),
                                   ("assistant", "d")),
    "multi, none then think": conv(("system", "S"), ("user", "a"), ("assistant", "b"), ("user", "c"),
                                   ("assistant", "<think>\nr\n</think>\n\nd")),
    "multi, empty think": conv(("user", "a"), ("assistant", "<think></think>b"), ("user", "c"),
                               ("assistant", "<think>\n\n</think>\n\nd")),
}


@pytest.mark.parametrize("thinking", ["off", "keep"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_training_prompt_is_the_inference_prompt_for_every_policy_and_shape(tok, thinking, shape):
    """Before each trained assistant turn, training feeds exactly what inference feeds for that history:
    the visible answers so far (no reasoning) with enable_thinking as the run card will set it."""
    from finetune.template import thinking_for_inference

    record = SHAPES[shape]
    examples, problems = encode_conversation(tok, record, thinking=thinking, max_length=512)
    turns = [k for k, m in enumerate(record.messages) if m.role == "assistant"]
    assert not problems and [e.turn for e in examples] == list(range(1, len(turns) + 1))
    visible = [{"role": m.role, "content": split_thinking(m.content)[1] if m.role == "assistant" else m.content}
               for m in record.messages]
    enable = thinking_for_inference(thinking)
    tail = "<|im_start|>assistant\n" + ("" if enable else "<think>\n\n</think>\n\n")
    for ex, k in zip(examples, turns):
        expected = inference_ids(tok, visible[:k], enable_thinking=enable)
        assert list(ex.input_ids[: ex.prompt_len]) == expected
        assert tok.decode(expected).endswith(tail)
        # what is trained: the answer, and in keep mode its think block (the record's or an empty one)
        reasoning, answer = split_thinking(record.messages[k].content)
        block = "" if thinking == "off" else f"<think>\n{(reasoning or '').strip()}\n</think>\n\n"
        assert tok.decode(labelled(ex)) == f"{block}{answer}<|im_end|>"


def test_parity_thinking_off_every_turn(tok):
    """The prompt trained on is token-for-token the inference prompt (enable_thinking=False), turn by turn."""
    examples, _ = encode_conversation(tok, MULTI, thinking="off", max_length=512)
    turns = [k for k, m in enumerate(MULTI.messages) if m.role == "assistant"]
    history = [{"role": m.role, "content": split_thinking(m.content)[1]} for m in MULTI.messages]
    for ex, k in zip(examples, turns):
        expected = inference_ids(tok, history[:k], enable_thinking=False)
        assert list(ex.input_ids[: ex.prompt_len]) == expected
        assert tok.decode(expected).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    # the empty think block is in the prompt, so it is never trained
    assert all("<think>" not in tok.decode(labelled(ex)) for ex in examples)


def test_parity_thinking_keep_trains_reasoning(tok):
    examples, _ = encode_conversation(tok, MULTI, thinking="keep", max_length=512)
    turns = [k for k, m in enumerate(MULTI.messages) if m.role == "assistant"]
    raw = MULTI.as_dicts()
    for ex, k in zip(examples, turns):
        expected = inference_ids(tok, raw[:k], enable_thinking=True)  # Qwen3 drops history reasoning itself
        assert list(ex.input_ids[: ex.prompt_len]) == expected
        assert tok.decode(expected).endswith("<|im_start|>assistant\n")
    assert tok.decode(labelled(examples[0])) == "<think>\n想一想\n</think>\n\n臣妾甄嬛。<|im_end|>"
    # no reasoning: the prompt stays the thinking-enabled one and the empty think block is trained
    assert tok.decode(labelled(examples[1])) == "<think>\n\n</think>\n\nIt is Monday.<|im_end|>"
    assert tok.decode(labelled(examples[2])) == "<think>\n重复\n</think>\n\n臣妾甄嬛。<|im_end|>"
    # history re-rendered as Qwen3 does at inference: earlier reasoning dropped
    assert "想一想" not in tok.decode(examples[2].input_ids)


def test_thinking_off_drops_reasoning_from_answers(tok):
    examples, _ = encode_conversation(tok, MULTI, thinking="off", max_length=512)
    assert "想一想" not in tok.decode(examples[0].input_ids) and "重复" not in tok.decode(examples[2].input_ids)


def test_too_long_prompt_is_reported_and_batch_goes_on(tok):
    long = conv(("user", "字" * 400), ("assistant", "好"), source="t.jsonl:9")
    short = conv(("user", "hi"), ("assistant", "hello"), source="t.jsonl:10")
    enc = encode_all(tok, [long, short], thinking="off", max_length=64)
    assert [e.source for e in enc.examples] == ["t.jsonl:10"]
    assert enc.problems[0].source == "t.jsonl:9" and "max-length" in enc.problems[0].detail
    cut = encode_all(tok, [conv(("user", "hi"), ("assistant", "很长的回答" * 40))], thinking="off", max_length=40)
    assert cut.truncated == 1 and len(cut.examples[0].input_ids) == 40


def test_chatml_fallback_for_template_less_tokenizer(tok):
    import copy

    bare = copy.deepcopy(tok)
    bare.chat_template = None
    note = ensure_chat_template(bare)
    assert note and "ChatML" in note and bare.chat_template == CHATML_TEMPLATE
    assert ensure_chat_template(tok) is None  # Qwen3 keeps its own
    ex = encode_conversation(bare, conv(("system", "S"), ("user", "hi"), ("assistant", "yo")),
                             thinking="off", max_length=64)[0][0]
    assert bare.decode(ex.input_ids) == ("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
                                         "<|im_start|>assistant\nyo<|im_end|>\n")
    assert bare.decode(labelled(ex)) == "yo<|im_end|>"


def test_chatml_fallback_keep_history_has_no_reasoning(tok):
    """A template that does not drop reasoning itself: the history is still the visible answers."""
    import copy

    bare = copy.deepcopy(tok)
    bare.chat_template = CHATML_TEMPLATE
    record = SHAPES["multi, think then none"]
    examples, problems = encode_conversation(bare, record, thinking="keep", max_length=256)
    assert not problems
    visible = [{"role": m.role, "content": split_thinking(m.content)[1]} for m in record.messages]
    assert list(examples[1].input_ids[: examples[1].prompt_len]) == inference_ids(bare, visible[:3],
                                                                                   enable_thinking=True)
    assert bare.decode(labelled(examples[0])) == "<think>r</think>b<|im_end|>"


@pytest.mark.integration
def test_real_data_every_example_trains_its_answer(tok, shared_data):
    from finetune.data import prepare

    report = prepare([shared_data / "sft" / "medical_sft_1K_zh_sharegpt.jsonl"], val_ratio=0.0)
    enc = encode_all(tok, report.train[:200], thinking="off", max_length=1024)
    assert len(enc.examples) + len(enc.problems) == 200
    for ex, c in zip(enc.examples[:50], report.train):
        text = tok.decode(labelled(ex))
        assert text.endswith("<|im_end|>") and c.messages[-1].content.strip()[:20] in text
