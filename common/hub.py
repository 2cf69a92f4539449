"""The Hugging Face hub rules every model loader shares: is the hub off or out of reach, and what to do then.

On a networked machine a hub id downloads; offline (``HF_HUB_OFFLINE``) or where the hub does not
answer, a loader must fail within seconds with the fix, not retry for a minute. One metadata
request without retries decides (:func:`hub_unreachable`); the model loader (``finetune.loading``),
the embedder and the reranker (``index``) all ask it.

>>> print(get_elsewhere("BAAI/bge-reranker-base", option="--reranker").replace(", ", ",\\n"))
on a machine with internet run `hf download BAAI/bge-reranker-base --local-dir ./bge-reranker-base`,
copy that folder here and pass --reranker ./bge-reranker-base
"""
from __future__ import annotations

import os

_TRUE = ("1", "true", "yes", "on")  # how huggingface_hub spells a set boolean variable
HUB_TIMEOUT_S = 10.0  # seconds for the one reachability request to the hub


def offline_mode() -> bool:
    """True when HF_HUB_OFFLINE is set, read now (huggingface_hub reads it once, when first imported)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def hub_unreachable(repo_id: str) -> bool:
    """True when the Hugging Face hub cannot be asked about ``repo_id``: offline mode, or no connection.

    One metadata request without retries (it fails in well under a second where names do not resolve);
    an answer of any kind, "not found" included, counts as reachable (the loader then says what).
    """
    if offline_mode():
        return True
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    try:
        HfApi().model_info(repo_id, timeout=HUB_TIMEOUT_S)
    except HfHubHTTPError:  # the hub answered: unknown, gated or private repo
        return False
    except Exception:  # noqa: BLE001 - the connection error types follow the hub's HTTP client
        return True
    return False


def get_elsewhere(repo_id: str, *, option: str = "--model") -> str:
    """The fix for a hub model that cannot be had here: fetch it on another machine, pass its folder."""
    name = repo_id.split("/")[-1]
    return (f"on a machine with internet run `hf download {repo_id} --local-dir ./{name}`, copy that folder here "
            f"and pass {option} ./{name}")


def unreachable_why() -> str:
    """Why the hub could not be used, for messages: offline mode or no connection."""
    return "HF_HUB_OFFLINE is set" if offline_mode() else "the Hugging Face hub cannot be reached"
