"""Typed errors of the assistant; the CLI (and the UI/server) turn them into friendly messages.

A model, adapter or tokenizer that does not load raises :class:`finetune.train_errors.ModelLoadError`,
the loader's own error (the local backend loads through :mod:`finetune.loading`).
"""
from __future__ import annotations


class AssistantError(Exception):
    """Base class of assistant errors."""


class ConfigError(AssistantError, ValueError):
    """A setting is invalid (every problem is listed in the message)."""


class PromptTooLong(AssistantError):
    """Even without sources and history, the question does not fit the model's context."""


class BackendError(AssistantError):
    """The generation backend failed (e.g. the OpenAI-compatible endpoint answered an error)."""


class TrainingDataError(AssistantError):
    """``finetune data from-kb`` could not build any training record (every cause is listed)."""
