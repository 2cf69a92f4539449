"""Fetch a hub model into the local Hugging Face cache, stating its size first (``make demo``'s first run).

Loading stays :mod:`finetune.loading`'s: :func:`download_model` returns a snapshot folder that
loads as ``--model``. Every failure is a :class:`finetune.train_errors.ModelDownloadError` (a
ModelLoadError) that says why and how to get the model another way.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from common.hub import HUB_TIMEOUT_S, get_elsewhere, offline_mode
from finetune.train_errors import ModelDownloadError, ModelNotFound

MODEL_FILES = ("*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.jinja")  # config, weights, tokenizer
APPROX_BYTES = {"Qwen/Qwen3-0.6B": 1_520_000_000}  # stated when the hub's file list cannot be had


@dataclass(frozen=True)
class DownloadPlan:
    """What :func:`download_model` fetches: the repo's files matching :data:`MODEL_FILES` and their size.

    ``files`` is empty and ``approximate`` True when the hub answered but gave no file list
    (``size_bytes`` is then the known size from :data:`APPROX_BYTES`, or None).

    >>> DownloadPlan("Qwen/Qwen3-0.6B", (), 1_520_000_000, approximate=True).size_text
    'about 1.5 GB'
    >>> DownloadPlan("org/tiny", ("config.json", "model.safetensors"), 2_500_000, approximate=False).size_text
    '2.5 MB'
    """

    repo_id: str
    files: tuple[str, ...]
    size_bytes: int | None  # total, in bytes
    approximate: bool

    @property
    def size_text(self) -> str:
        """The size in decimal units ('1.52 GB', '2.5 MB'), 'about ...' when approximate, or 'size unknown'."""
        if self.size_bytes is None:
            return "size unknown"
        gb, digits = self.size_bytes / 1e9, 1 if self.approximate else 2
        text = f"{gb:.{digits}f} GB" if gb >= 1 else f"{self.size_bytes / 1e6:.1f} MB"
        return f"about {text}" if self.approximate else text


def cached_model(repo_id: str) -> Path | None:
    """The snapshot folder of ``repo_id`` in the local Hugging Face cache when it holds config.json and all
    its safetensors weights; None otherwise. Never contacts the hub.

    >>> cached_model("no-such-org/no-such-model") is None
    True
    """
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(repo_id, local_files_only=True, allow_patterns=list(MODEL_FILES)))
    except (OSError, ValueError):  # not cached (LocalEntryNotFoundError), or not a valid repo id
        return None
    index = folder / "model.safetensors.index.json"
    try:
        shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()) if index.is_file() else set()
    except (OSError, ValueError, KeyError, AttributeError):
        return None
    weights = all((folder / s).is_file() for s in shards) if shards else (folder / "model.safetensors").is_file()
    return folder if weights and (folder / "config.json").is_file() else None


def plan_download(repo_id: str, *, timeout_s: float = HUB_TIMEOUT_S) -> DownloadPlan:
    """The files and size :func:`download_model` would fetch, from one metadata request of at most ``timeout_s``.

    Raises ModelDownloadError without contacting the hub when HF_HUB_OFFLINE is set; after the one
    request when the hub cannot be reached (no DNS, refused, timed out: fails in well under a second
    where names do not resolve), has no such public model, or lists no safetensors weights.

    >>> import os
    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"HF_HUB_OFFLINE": "1"}):  # doctest: +ELLIPSIS
    ...     plan_download("Qwen/Qwen3-0.6B")
    Traceback (most recent call last):
    ...
    finetune.train_errors.ModelDownloadError: HF_HUB_OFFLINE is set, so Qwen/Qwen3-0.6B is not downloaded: ...
    """
    if offline_mode():
        raise ModelDownloadError(f"HF_HUB_OFFLINE is set, so {repo_id} is not downloaded: unset it (`unset "
                                 f"HF_HUB_OFFLINE`) to fetch the model, or {get_elsewhere(repo_id)}")
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, RepositoryNotFoundError
    from huggingface_hub.utils import filter_repo_objects

    try:
        info = HfApi().model_info(repo_id, files_metadata=True, timeout=timeout_s)
    except HFValidationError as err:
        raise ModelNotFound(f"--model {repo_id}: neither a local folder nor a hub id (owner/name): {err}") from err
    except RepositoryNotFoundError as err:  # GatedRepoError included
        raise ModelDownloadError(f"the hub has no public model {repo_id!r} (or it needs a login: `hf auth login`); "
                                 f"check the id, or point --model at a local folder ({type(err).__name__})") from err
    except HfHubHTTPError:  # the hub answered, but not with the file list (rate limit, server error)
        return DownloadPlan(repo_id, (), APPROX_BYTES.get(repo_id), approximate=True)
    except Exception as err:  # noqa: BLE001 - connection errors and timeouts follow the hub's HTTP client
        raise ModelDownloadError(f"the Hugging Face hub cannot be reached ({type(err).__name__}: {err}), so {repo_id} "
                                 f"is not downloaded: check the connection (and HTTPS_PROXY or "
                                 f"HF_ENDPOINT if set), or {get_elsewhere(repo_id)}") from err
    files = list(filter_repo_objects(info.siblings or [], allow_patterns=list(MODEL_FILES), key=lambda s: s.rfilename))
    if not any(f.rfilename.endswith(".safetensors") for f in files):
        raise ModelDownloadError(f"{repo_id} has no safetensors weights on the hub, so it is not downloaded here; "
                                 f"{get_elsewhere(repo_id)}")
    sizes = [f.size for f in files]
    total = sum(s for s in sizes if s is not None) if all(s is not None for s in sizes) else None
    return DownloadPlan(repo_id, tuple(f.rfilename for f in files), total or APPROX_BYTES.get(repo_id),
                        approximate=total is None)


def download_model(repo_id: str, *, plan: DownloadPlan | None = None, timeout_s: float = HUB_TIMEOUT_S) -> Path:
    """The local snapshot folder of ``repo_id``: the cached copy when complete, else fetched into the
    Hugging Face cache (config, tokenizer and safetensors weights, :data:`MODEL_FILES`) with
    huggingface_hub's progress bars; an interrupted download resumes on the next call.

    ``plan`` (from :func:`plan_download`, e.g. to state the size first) saves its metadata request.
    Raises ModelDownloadError, fast, as :func:`plan_download` does, and when the transfer fails;
    the folder loads with :func:`load_base` and the assistant as ``--model``.
    """
    cached = cached_model(repo_id)
    if cached is not None:
        return cached
    plan = plan or plan_download(repo_id, timeout_s=timeout_s)
    from huggingface_hub import snapshot_download

    patterns = list(plan.files or MODEL_FILES)
    try:
        snapshot_download(repo_id, allow_patterns=patterns, etag_timeout=timeout_s)
    except Exception as err:  # noqa: BLE001 - network, disk, hub errors: all "the download did not complete"
        raise ModelDownloadError(f"downloading {repo_id} failed ({type(err).__name__}: {err}); run again to resume "
                                 f"it, or {get_elsewhere(repo_id)}") from err
    folder = cached_model(repo_id)
    if folder is None:
        raise ModelDownloadError(f"downloaded {repo_id}, but the cached copy lacks config.json or weights; "
                                 f"{get_elsewhere(repo_id)}")
    return folder
