"""Generation with the trained chat template: the prompt token ids training used, stop at end of turn.

Example:
    >>> model, tok = load_adapted("outputs/qwen3-lora")  # doctest: +SKIP
    >>> generate_reply(model, tok, [{"role": "user", "content": "你好"}], enable_thinking=False)  # doctest: +SKIP
    '你好！有什么可以帮你？'
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from threading import Thread
from typing import Any

from finetune.template import prompt_ids

END_OF_TURN = ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|endoftext|>")


def stop_kwargs(tokenizer: Any) -> dict[str, Any]:
    """generate() kwargs that stop at the end of the assistant turn (token ids, or text for plain-text markers)."""
    vocab = tokenizer.get_vocab()
    ids = [vocab[t] for t in END_OF_TURN if t in vocab]
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    kwargs: dict[str, Any] = {"eos_token_id": ids, "pad_token_id": tokenizer.pad_token_id}
    if "<|im_end|>" not in vocab and "<|im_end|>" in (tokenizer.chat_template or ""):
        kwargs.update(stop_strings=["<|im_end|>"], tokenizer=tokenizer)  # ChatML fallback: marker is plain text
    return kwargs


def _sampling(temperature: float) -> dict[str, Any]:
    if temperature <= 0:
        return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    return {"do_sample": True, "temperature": temperature, "top_p": 0.9}


def _inputs(model: Any, tokenizer: Any, messages: Sequence[dict[str, str]], enable_thinking: bool) -> Any:
    import torch

    ids = prompt_ids(tokenizer, messages, enable_thinking=enable_thinking)
    return torch.tensor([ids], device=next(model.parameters()).device)


def clean_reply(text: str) -> str:
    """Generated text without a trailing plain-text end-of-turn marker and surrounding whitespace."""
    for marker in END_OF_TURN:
        text = text.split(marker)[0]
    return text.strip()


def generate_reply(model: Any, tokenizer: Any, messages: Sequence[dict[str, str]], *, enable_thinking: bool,
                   max_new_tokens: int = 256, temperature: float = 0.0) -> str:
    """The model's reply to ``messages`` (greedy when temperature is 0)."""
    import torch

    input_ids = _inputs(model, tokenizer, messages, enable_thinking)
    with torch.no_grad():
        out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                             max_new_tokens=max_new_tokens, **_sampling(temperature), **stop_kwargs(tokenizer))
    return clean_reply(tokenizer.decode(out[0, input_ids.size(1):], skip_special_tokens=True))


def stream_reply(model: Any, tokenizer: Any, messages: Sequence[dict[str, str]], *, enable_thinking: bool,
                 max_new_tokens: int = 512, temperature: float = 0.7) -> Iterator[str]:
    """Yield the reply in pieces as they are generated (TextIteratorStreamer, generation in a thread)."""
    import torch
    from transformers import TextIteratorStreamer

    input_ids = _inputs(model, tokenizer, messages, enable_thinking)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    kwargs = dict(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=max_new_tokens,
                  streamer=streamer, **_sampling(temperature), **stop_kwargs(tokenizer))
    thread = Thread(target=model.generate, kwargs=kwargs, daemon=True)
    thread.start()
    try:
        yield from streamer
    finally:
        thread.join()
