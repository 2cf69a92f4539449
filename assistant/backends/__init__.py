"""Generation backends: :mod:`.base` (the interface and what both share), :mod:`.local` (transformers
+ PEFT, loaded through :mod:`finetune.loading`) and :mod:`.openai_compat` (any OpenAI-compatible server).

>>> from assistant.config import AssistantConfig
>>> type(make_backend(AssistantConfig(endpoint="http://localhost:8000/v1", model="m"))).__name__
'OpenAIBackend'
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from assistant.backends.base import Backend
    from assistant.config import AssistantConfig


def make_backend(config: "AssistantConfig") -> "Backend":
    """The OpenAI-compatible backend when ``config.endpoint`` is set, else the local transformers one.

    Nothing is loaded or contacted here; models load on first use.
    """
    if config.endpoint:
        from assistant.backends.openai_compat import OpenAIBackend

        return OpenAIBackend(config.endpoint, config.model, api_key=config.api_key,
                             context_tokens=config.context_tokens, timeout_s=config.timeout_s)
    from assistant.backends.local import LocalBackend

    return LocalBackend(config.model, config.adapter, device=config.device, context_tokens=config.context_tokens)
