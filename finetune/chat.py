"""``finetune chat``: talk to an adapter in the terminal, replies streamed as they are generated.

Uses the run card's system prompt and thinking setting unless overridden. Commands: ``/reset``
clears the history, ``/exit`` (or Ctrl-D) leaves.

Example:
    >>> chat("outputs/qwen3-lora")  # doctest: +SKIP
    you> 你好
    assistant> 臣妾参见皇上。
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from finetune.generation import clean_reply, stream_reply
from finetune.runcard import read_run_card


def chat(adapter_dir: str | Path, *, base: str | None = None, system: str | None = None,
         max_new_tokens: int = 512, temperature: float = 0.7, device: str = "auto",
         read: Callable[[str], str] = input, write: Callable[[str], None] | None = None) -> list[dict[str, str]]:
    """Run the chat loop until /exit or end of input; return the conversation (for tests and transcripts)."""
    from finetune.loading import resolve_device
    from finetune.merge import load_adapted

    out = write or (lambda text: print(text, end="", flush=True))
    card = read_run_card(adapter_dir)
    system = system if system is not None else card.get("system")
    enable_thinking = bool(card.get("enable_thinking", False))
    model, tok = load_adapted(adapter_dir, base=base, device=resolve_device(device))
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
        if line == "/reset" or not line:
            history = list(start) if line else history
            continue
        history.append({"role": "user", "content": line})
        out("assistant> ")
        pieces = []
        for piece in stream_reply(model, tok, history, enable_thinking=enable_thinking,
                                  max_new_tokens=max_new_tokens, temperature=temperature):
            pieces.append(piece)
            out(piece)
        out("\n")
        history.append({"role": "assistant", "content": clean_reply("".join(pieces))})
    return history
