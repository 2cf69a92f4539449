"""The assistant with a real (tiny, random) Qwen3 and the real Qwen3 tokenizer and chat template."""
from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from assistant.answer import Assistant
from assistant.backends.base import GenParams
from assistant.backends.local import LocalBackend
from assistant.config import AskOptions
from assistant.errors import ConfigError
from assistant.prompt import compose_system
from finetune.generation import Decoding, stream_ids
from finetune.template import CHATML_TEMPLATE, prompt_ids
from finetune.train_errors import ModelLoadError

QUESTION = "How long is the warranty on company laptops?"
MEMORISED = "Two years [1]."


@pytest.fixture(scope="module")
def bot(assistant_kb: Path, tiny_qwen3: Path) -> Assistant:  # noqa: F811
    return Assistant(kb=assistant_kb, model=str(tiny_qwen3), k=3, max_new_tokens=12, condense="off")


def test_prompt_tokens_are_the_chat_template_ones(bot: Assistant) -> None:
    backend = bot.backend
    messages, _ = bot.prompt(QUESTION)
    text = backend.render(messages)
    assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    ids = backend.tokenizer().apply_chat_template(messages, tokenize=True, add_generation_prompt=True,
                                                  enable_thinking=False, return_dict=True)["input_ids"]
    assert backend.count_tokens(messages) == len(ids)
    assert backend.context_tokens() == 4096
    assert backend.render(messages, thinking=True).endswith("<|im_start|>assistant\n")


def test_stream_yields_the_same_text_as_non_streaming(bot: Assistant) -> None:
    whole = bot.ask(QUESTION)
    stream = bot.stream(QUESTION)
    pieces = list(stream)
    final = stream.answer
    assert all(isinstance(p, str) for p in pieces) and len(pieces) > 1
    assert "".join(pieces) == final.text == whole.text != ""
    assert final.sources == whole.sources and final.timings.first_token_s > 0
    assert 0 < whole.timings.first_token_s <= whole.timings.total_s
    abandoned = bot.stream(QUESTION, options=AskOptions(max_new_tokens=200))
    assert isinstance(next(iter(abandoned)), str)
    abandoned.close()  # stops that generation and frees the model for the next ask
    with pytest.raises(RuntimeError, match="not complete"):
        _ = abandoned.answer
    assert bot.ask(QUESTION).text == whole.text


def test_concurrent_asks_share_one_model_safely(bot: Assistant) -> None:
    questions = ["What is the refund policy?", "Where are parking permits issued?", "What does green tea contain?",
                 "退货政策是什么？", "What are the side effects of aspirin?", QUESTION, "When are office hours?",
                 "Why take aspirin daily?"]
    short = AskOptions(max_new_tokens=4)
    expected = {q: bot.ask(q, options=short) for q in questions}
    got: dict[str, object] = {}
    errors: list[BaseException] = []

    def run(q: str, stream: bool) -> None:
        try:
            if stream:
                pieces = bot.stream(q, options=short)
                list(pieces)
                got[q] = pieces.answer
            else:
                got[q] = bot.ask(q, options=short)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(q, i % 2 == 0)) for i, q in enumerate(questions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for q in questions:
        assert got[q].sources == expected[q].sources and got[q].text == expected[q].text


def train_memorising_adapter(model_dir: Path, messages: list[dict], answer: str, out: Path) -> Path:
    """LoRA (q/v) + a trained lm_head copy that make the tiny model answer ``answer`` to exactly this prompt."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer

    from finetune.loading import load_model

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tok(answer + "<|im_end|>", add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids + answer_ids])
    target = torch.tensor(answer_ids)
    model = get_peft_model(load_model(str(model_dir), device="cpu", precision="fp32"),
                           LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                      modules_to_save=["lm_head"]))
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=5e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is ~10x faster than two on a busy 2-core machine
    try:
        for _ in range(25):
            # Logits of the answer positions only (the last prompt token predicts the first answer token):
            # the 151,936-way vocabulary at every prompt position would cost ~50x more.
            logits = model(input_ids=ids, logits_to_keep=len(answer_ids) + 1).logits[0, :-1]
            loss = torch.nn.functional.cross_entropy(logits, target)
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    assert loss.item() < 0.1, f"the adapter did not memorise the answer (loss {loss.item():.3f})"
    model.save_pretrained(out)
    return out


def test_adapter_changes_the_answer(bot: Assistant, assistant_kb: Path, tiny_qwen3: Path,  # noqa: F811
                                    tmp_path: Path) -> None:
    messages, _ = bot.prompt(QUESTION)
    adapter = train_memorising_adapter(tiny_qwen3, messages, MEMORISED, tmp_path / "adapter")
    tuned = Assistant(kb=assistant_kb, model=str(tiny_qwen3), adapter=str(adapter), k=3, max_new_tokens=12,
                      condense="off")
    answer = tuned.ask(QUESTION)
    assert answer.text == MEMORISED
    assert [(c.number, c.title, c.page) for c in answer.citations] == [(1, "handbook", 2)]
    assert tuned.ask(QUESTION, options=AskOptions(use_adapter=False)).text != MEMORISED
    assert bot.ask(QUESTION).text != MEMORISED
    streamed = tuned.stream(QUESTION)
    assert "".join(streamed) == streamed.answer.text == MEMORISED
    (adapter / "run_card.json").write_text(json.dumps({"system": "Only cite the handbook.", "enable_thinking": False}))
    # a persona prompt goes before the grounding instructions, not in their place (tests/test_system_prompt.py)
    assert tuned.system_prompt() == compose_system("Only cite the handbook.") and tuned.thinking() is False
    assert tuned.prompt(QUESTION)[0][0]["content"].startswith("Only cite the handbook.")


def test_model_that_cannot_load_fails_fast_with_a_fix(assistant_kb: Path, tmp_path: Path) -> None:  # noqa: F811
    """A mistyped local path is refused up front (nothing loads); offline (HF_HUB_OFFLINE, set by conftest)
    a hub id fails from the cache lookup, without hub retries."""
    for model in (str(tmp_path / "no-such-model"), str(tmp_path / "m.gguf")):
        with pytest.raises(ConfigError, match="--model") as err:
            Assistant(kb=assistant_kb, model=model)
        assert model in str(err.value)
    model = "Qwen/Qwen3-0.6B-not-cached-here"
    with pytest.raises(ModelLoadError) as err:
        Assistant(kb=assistant_kb, model=model).ask("What is the refund policy?")
    assert "--model" in str(err.value) and "--retrieval-only" in str(err.value) and model in str(err.value)
    assert "HF_HUB_OFFLINE is set" in str(pytest.raises(ModelLoadError, LocalBackend("org/not-cached").tokenizer).value)


def test_the_assistant_loads_through_finetunes_loader(tmp_path: Path, tiny_qwen3: Path) -> None:  # noqa: F811
    """A .gguf path, a template-less tokenizer and an adapter that does not fit: finetune.loading's rules."""
    with pytest.raises(ModelLoadError, match=r"no such \.gguf file.*--retrieval-only"):
        LocalBackend(str(tmp_path / "qwen3.gguf")).count_tokens([{"role": "user", "content": "Hi"}])
    bare = tmp_path / "no-template"  # the tiny Qwen3 without its chat template: gets training's ChatML fallback
    bare.mkdir()
    for f in tiny_qwen3.iterdir():
        if f.name == "tokenizer_config.json":
            config = json.loads(f.read_text(encoding="utf-8"))
            config.pop("chat_template", None)
            (bare / f.name).write_text(json.dumps(config), encoding="utf-8")
        elif f.name != "chat_template.jinja":
            (bare / f.name).symlink_to(f)
    backend = LocalBackend(str(bare))
    assert backend.tokenizer().chat_template == CHATML_TEMPLATE and backend._model is None
    rendered = backend.render([{"role": "user", "content": "Hi"}])
    assert rendered == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    misfit = tmp_path / "misfit"  # trained on another base: its target modules are not in this one
    misfit.mkdir()
    (misfit / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 8, "lora_alpha": 16, "target_modules": ["w_in"],
        "base_model_name_or_path": "other-org/other-base"}), encoding="utf-8")
    with pytest.raises(ModelLoadError, match=r"trained on 'other-org/other-base': pass that base model with --model"):
        LocalBackend(str(tiny_qwen3), adapter=str(misfit)).model()


def forward_calls(model: object) -> tuple[list[int], object]:
    """A list that grows by one per forward pass of ``model`` (one per generated token), and the hook handle."""
    calls: list[int] = []
    return calls, model.register_forward_hook(lambda *args: calls.append(1))


def generation_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "finetune-generate"]


def test_breaking_off_a_stream_stops_the_generation(bot: Assistant) -> None:
    backend = bot.backend
    model, tok = backend.model(), backend.tokenizer()
    prompt = prompt_ids(tok, bot.prompt(QUESTION)[0], enable_thinking=False)
    calls, hook = forward_calls(model)
    cancel, held = threading.Event(), threading.Event()
    pause = model.register_forward_hook(lambda *args: cancel.wait(60) if held.is_set() else None)
    try:
        full = "".join(stream_ids(model, tok, prompt, Decoding(max_new_tokens=48)))
        assert len(calls) == 48 and full  # this prompt never stops early by itself
        calls.clear()
        stream = stream_ids(model, tok, prompt, Decoding(max_new_tokens=48), cancel=cancel)
        assert full.startswith(next(stream))
        held.set()  # from here on, each forward waits for the cancellation
        stream.close()  # sets cancel, waits for the generation thread
        assert len(calls) < 48 and not generation_threads()
        with pytest.raises(StopIteration):
            next(stream)
        held.clear()  # the local backend streams through stream_ids: closing it ends its generation thread
        pieces = backend.generate(bot.prompt(QUESTION)[0], GenParams(max_new_tokens=48), stream=True)
        assert full.startswith(next(pieces))
        pieces.close()
        assert not generation_threads()
    finally:
        hook.remove()
        pause.remove()


def test_an_error_in_the_generation_thread_reaches_the_consumer(bot: Assistant) -> None:
    backend = bot.backend
    model, tok = backend.model(), backend.tokenizer()

    class Broken:
        def __enter__(self) -> None:
            raise RuntimeError("no room on the device")

        def __exit__(self, *exc: object) -> None:
            return None

    stream = stream_ids(model, tok, [151644, 872, 198], Decoding(max_new_tokens=4), guard=Broken)
    with pytest.raises(RuntimeError, match="no room on the device"):
        list(stream)
    assert not generation_threads()
    assert LocalBackend("x").model_name == "x"  # constructing loads nothing
