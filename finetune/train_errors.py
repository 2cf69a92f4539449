"""Typed errors of the training side (train, merge, eval, chat) and of model loading, which the assistant
shares (:class:`ModelLoadError`); the CLI prints their message and exits 1.

Every message names the bad thing (file, option, model) and the fix.

Example:
    >>> raise MissingDependency("swanlab", "--report-to swanlab")
    Traceback (most recent call last):
    ...
    finetune.train_errors.MissingDependency: --report-to swanlab needs the package swanlab: pip install swanlab
"""
from __future__ import annotations

from finetune.errors import FinetuneError


class ModelLoadError(FinetuneError):
    """The model, its tokenizer or an adapter cannot be loaded (offline, missing folder, bad file).

    The one such error of the project: :mod:`finetune.loading` raises it for training and serving alike.
    """


class ModelNotFound(ModelLoadError):
    """A local model or adapter path names nothing loadable: no such folder or .gguf file, or a folder
    that is not a model (no config.json) or adapter (no adapter_config.json) folder. Bad input, where
    a plain :class:`ModelLoadError` is a model that exists but cannot be loaded here and now."""


class MissingDependency(FinetuneError):
    """An optional package that the chosen option needs is not installed."""

    def __init__(self, package: str, needed_by: str, install: str | None = None) -> None:
        self.package = package
        super().__init__(f"{needed_by} needs the package {package}: pip install {install or package}")


class DeviceError(FinetuneError):
    """The chosen device or precision is not available on this machine."""


class RunError(FinetuneError):
    """The output folder or checkpoint state does not allow the run (would overwrite, nothing to resume)."""


class NoTrainingData(FinetuneError):
    """No example is left to train on after validation, cleaning and tokenization."""


class ModelDownloadError(ModelLoadError):
    """A model could not be fetched from the Hugging Face hub: offline mode is set, the hub cannot be
    reached, the hub has no such (public) model, or the transfer failed. The message says which and how
    to get the model another way (``hf download`` elsewhere, then ``--model ./folder``)."""
