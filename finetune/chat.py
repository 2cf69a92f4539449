"""``finetune chat``: talk to an adapter in the terminal, replies streamed as they are generated.

Uses the run card's system prompt and thinking setting unless overridden. Commands: ``/reset``
clears the history, ``/exit`` (or Ctrl-D) leaves. Ctrl-C during a reply stops its generation and
returns to the prompt (the part shown stays in the history); Ctrl-C at the prompt leaves.

Example:
    >>> chat("outputs/qwen3-lora")  # doctest: +SKIP
    you> 你好
    assistant> 臣妾参见皇上。
"""
from __future__ import annotations

from collections.abc import Callable, Generator
from pathlib import Path

from finetune.generation import clean_reply, stream_reply
from finetune.runcard import read_run_card

STOPPED = " [stopped]"  # shown after a reply cut short with Ctrl-C


def chat(adapter_dir: str | Path, *, base: str | None = None, system: str | None = None,
         max_new_tokens: int = 512, temperature: float = 0.7, device: str = "auto",
         read: Callable[[str], str] = input, write: Callable[[str], None] | None = None) -> list[dict[str, str]]:
    """Run the chat loop until /exit or end of input; return the conversation (for tests and transcripts).

    The model runs in fp32 on CPU and bf16 on GPUs that have it (:func:`finetune.loading.resolve_precision`).
    """
    from finetune.loading import resolve_device, resolve_precision
    from finetune.merge import load_adapted

    out = write or (lambda text: print(text, end="", flush=True))
    card = read_run_card(adapter_dir)
    system = system if system is not None else card.get("system")
    enable_thinking = bool(card.get("enable_thinking", False))
    where = resolve_device(device)
    model, tok = load_adapted(adapter_dir, base=base, device=where, precision=resolve_precision("auto", where))
    start = [{"role": "system", "content": system}] if system else []
    history = list(start)
    out("type /reset to start over, /exit to leave\n")
    while True:
        try:
            line = read("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            break
        if line == "/exit":
            break
        if not line:
            continue
        if line == "/reset":
            history = list(start)
            out("(conversation cleared)\n")
            continue
        history.append({"role": "user", "content": line})
        out("assistant> ")
        reply = _reply(stream_reply(model, tok, history, enable_thinking=enable_thinking,
                                    max_new_tokens=max_new_tokens, temperature=temperature), out)
        out("\n")
        if reply is None:  # stopped before a word was shown: as if the question was not asked
            history.pop()
        else:
            history.append({"role": "assistant", "content": reply})
    return history


def _reply(stream: Generator[str, None, None], out: Callable[[str], None]) -> str | None:
    """Show the streamed reply; Ctrl-C stops its generation. The cleaned text shown; None if stopped before any."""
    shown: list[str] = []
    try:
        for piece in stream:
            out(piece)
            shown.append(piece)
    except KeyboardInterrupt:
        stream.close()  # stops the generation thread (a no-op when Ctrl-C came while waiting for a piece)
        out(STOPPED)
        if not shown:
            return None
    return clean_reply("".join(shown))
