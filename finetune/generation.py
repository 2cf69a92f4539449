"""Generation with the trained chat template: the prompt ids training used, stop at end of turn, streaming.

The one generation stack of the project: ``finetune chat`` / ``finetune eval`` and the assistant's
local backend (:mod:`assistant.backends.local`) all decode through :func:`generate_ids` and
:func:`stream_ids`, so serving sees the prompt and the stopping rule that training assumed.

Streaming runs ``generate`` in a thread feeding a ``TextIteratorStreamer``; closing the stream
(or breaking off the loop over it, or Ctrl-C while waiting for a piece) stops the generation at
the next token and waits for its thread; an error in that thread is raised in the consumer.

Example:
    >>> model, tok = load_adapted("outputs/qwen3-lora")  # doctest: +SKIP
    >>> generate_reply(model, tok, [{"role": "user", "content": "你好"}], enable_thinking=False)  # doctest: +SKIP
    '你好！有什么可以帮你？'
    >>> Decoding(temperature=0.7).sampling
    True
"""
from __future__ import annotations

import contextlib
import copy
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from finetune.template import prompt_ids

END_OF_TURN = ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|endoftext|>")
CHATML_END = "<|im_end|>"  # ends a turn of finetune.template.CHATML_TEMPLATE

Guard = Callable[[], AbstractContextManager[Any]]  # entered around model.generate, in the thread that runs it


@dataclass(frozen=True)
class Decoding:
    """Decoding settings of one reply."""

    max_new_tokens: int = 512
    temperature: float = 0.0  # 0: greedy
    top_p: float = 0.9  # nucleus sampling share, used when temperature > 0; top_k stays the model's own

    @property
    def sampling(self) -> bool:
        return self.temperature > 0


def plain_stop(tokenizer: Any) -> str | None:
    """``<|im_end|>`` when the chat template writes it but the vocabulary has no such token, else None.

    That is the ChatML fallback on a foreign vocabulary (e.g. Gemma's): the model learnt the marker
    as plain text, so generation stops at that text and the text is cut there.
    """
    template = tokenizer.chat_template or ""
    return CHATML_END if CHATML_END in str(template) and CHATML_END not in tokenizer.get_vocab() else None


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """Token ids that end a reply: the model's EOS ids, the tokenizer's, and every end-of-turn token it has."""
    eos = model.generation_config.eos_token_id
    ids = list(eos) if isinstance(eos, (list, tuple)) else [eos]
    vocab = tokenizer.get_vocab()
    ids += [tokenizer.eos_token_id] + [vocab[t] for t in END_OF_TURN if t in vocab]
    return sorted({i for i in ids if isinstance(i, int)})


def generate_kwargs(model: Any, tokenizer: Any, prompt: Sequence[int], decoding: Decoding) -> dict[str, Any]:
    """``model.generate`` kwargs: the prompt (batch of one, on the model's device) and a generation config."""
    import torch

    gc = copy.deepcopy(model.generation_config)
    gc.max_new_tokens, gc.do_sample = decoding.max_new_tokens, decoding.sampling
    if decoding.sampling:
        gc.temperature, gc.top_p = decoding.temperature, decoding.top_p
    else:
        gc.temperature, gc.top_p, gc.top_k = 1.0, 1.0, 50  # neutral values: greedy without warnings
    gc.eos_token_id, gc.pad_token_id = stop_token_ids(model, tokenizer), tokenizer.pad_token_id
    input_ids = torch.tensor([list(prompt)], device=next(model.parameters()).device)
    kwargs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "generation_config": gc}
    if plain_stop(tokenizer):
        gc.stop_strings = [plain_stop(tokenizer)]
        kwargs["tokenizer"] = tokenizer  # generate needs it to match stop strings
    return kwargs


class _FirstToken:
    """A streamer that only notices the first generated token (the first ``put`` is the prompt)."""

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback, self.calls = callback, 0

    def put(self, value: Any) -> None:
        self.calls += 1
        if self.calls == 2:
            self.callback()

    def end(self) -> None:
        pass


def generate_ids(model: Any, tokenizer: Any, prompt: Sequence[int], decoding: Decoding = Decoding(), *,
                 guard: Guard | None = None, on_first_token: Callable[[], None] | None = None) -> str:
    """The text generated after the prompt token ids ``prompt``, cut at a plain-text end of turn.

    ``guard`` is entered around generation (a lock, ``disable_adapter``); ``on_first_token`` is called
    once the first new token exists.
    """
    import torch

    kwargs = generate_kwargs(model, tokenizer, prompt, decoding)
    with (guard or contextlib.nullcontext)(), torch.inference_mode():
        out = model.generate(**kwargs, streamer=_FirstToken(on_first_token) if on_first_token else None)
    text = tokenizer.decode(out[0, len(prompt):], skip_special_tokens=True)
    stop = plain_stop(tokenizer)
    return text.split(stop)[0] if stop else text


@contextlib.contextmanager
def _generating(model: Any, tokenizer: Any, kwargs: dict[str, Any], guard: Guard | None,
                cancel: threading.Event) -> Iterator[Iterator[str]]:
    """Run ``model.generate`` in a thread; yield its text pieces. On exit: cancel, join, re-raise its error."""
    import torch
    from transformers import StoppingCriteria, TextIteratorStreamer

    class Cancelled(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kw: Any) -> Any:
            return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool, device=input_ids.device)

    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    failure: list[BaseException] = []

    def run() -> None:  # enters the guard itself: releasing a lock never waits on the consumer
        try:
            with (guard or contextlib.nullcontext)(), torch.inference_mode():
                model.generate(**kwargs, streamer=streamer, stopping_criteria=[Cancelled()])
        except BaseException as exc:  # raised again in the consumer's thread
            failure.append(exc)
            streamer.end()

    thread = threading.Thread(target=run, name="finetune-generate", daemon=True)
    thread.start()
    try:
        yield streamer
    finally:
        cancel.set()  # the consumer stopped (early or not): stop generating too
        thread.join()
    if failure:
        raise failure[0]


def stream_ids(model: Any, tokenizer: Any, prompt: Sequence[int], decoding: Decoding = Decoding(), *,
               guard: Guard | None = None, on_first_token: Callable[[], None] | None = None,
               cancel: threading.Event | None = None) -> Generator[str, None, None]:
    """The text generated after ``prompt`` in pieces as they come, cut at a plain-text end of turn.

    Cancellable: closing the iterator, or setting ``cancel`` (from any thread), stops the generation
    at its next token; the generation thread has ended when ``close()`` returns. ``guard`` and
    ``on_first_token`` as in :func:`generate_ids`.
    """
    kwargs = generate_kwargs(model, tokenizer, prompt, decoding)
    stop = plain_stop(tokenizer)
    with _generating(model, tokenizer, kwargs, guard, cancel or threading.Event()) as pieces:
        held, first = "", True
        for piece in pieces:
            if first and on_first_token:
                on_first_token()
            first = False
            held += piece
            if stop and stop in held:
                head = held[:held.index(stop)]
                if head:
                    yield head
                return
            keep = _stop_prefix(held, stop) if stop else 0  # may be the start of the stop text: wait
            if held[:len(held) - keep]:
                yield held[:len(held) - keep]
            held = held[len(held) - keep:]
        if held:
            yield held


def _stop_prefix(text: str, stop: str) -> int:
    """Length of the longest end of ``text`` that begins ``stop`` (shorter than ``stop``).

    >>> _stop_prefix("Yes [1].<|im", "<|im_end|>"), _stop_prefix("Yes.", "<|im_end|>")
    (4, 0)
    """
    return next((n for n in range(min(len(stop) - 1, len(text)), 0, -1) if stop.startswith(text[-n:])), 0)


def clean_reply(text: str) -> str:
    """Generated text without a trailing plain-text end-of-turn marker and surrounding whitespace.

    >>> clean_reply(" Paris.<end_of_turn>\\n")
    'Paris.'
    """
    for marker in END_OF_TURN:
        text = text.split(marker)[0]
    return text.strip()


def generate_reply(model: Any, tokenizer: Any, messages: Sequence[dict[str, str]], *, enable_thinking: bool,
                   max_new_tokens: int = 256, temperature: float = 0.0) -> str:
    """The model's reply to ``messages`` (greedy when temperature is 0), cleaned by :func:`clean_reply`."""
    prompt = prompt_ids(tokenizer, messages, enable_thinking=enable_thinking)
    return clean_reply(generate_ids(model, tokenizer, prompt, Decoding(max_new_tokens, temperature)))


def stream_reply(model: Any, tokenizer: Any, messages: Sequence[dict[str, str]], *, enable_thinking: bool,
                 max_new_tokens: int = 512, temperature: float = 0.7) -> Generator[str, None, None]:
    """The reply to ``messages`` in pieces as they are generated; cancellable as :func:`stream_ids`."""
    prompt = prompt_ids(tokenizer, messages, enable_thinking=enable_thinking)
    return stream_ids(model, tokenizer, prompt, Decoding(max_new_tokens, temperature))
