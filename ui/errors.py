"""The one table from the packages' typed errors to a message and an exit code, used by every command.

Exit codes (the same for ``ingest``, ``index``, ``finetune`` and ``assistant``):

- **0**: done;
- **1**: the work could not be done here and now: a model, tokenizer or adapter that exists does not
  load (not cached offline, weights that do not fit), the endpoint failed, no GPU or package for the
  option chosen, the knowledge base is locked by another writer, a Milvus server is unreachable or
  failed a call, nothing was left to train on, or a file of a batch failed (the summary table says which);
- **2**: what was asked is wrong: a bad option value or combination, a missing file or folder (a
  ``--model`` or ``--adapter`` path included), bad training or gold data, an unknown document, an
  empty query, a knowledge base built another way;
- **130**: interrupted (Ctrl-C).

Rows are tried in order; the first class that matches wins. The message is the error's own text
(the packages write it to name the bad value and the fix), printed as one red ``error:`` line on
stderr, without a traceback.

>>> exit_code(ValueError("k=0 must be >= 1")), exit_code(KeyboardInterrupt())
(2, 130)
>>> from finetune.train_errors import ModelLoadError, ModelNotFound
>>> exit_code(ModelLoadError("not in the cache, hub unreachable")), exit_code(ModelNotFound("no such folder"))
(1, 2)
"""
from __future__ import annotations

import functools
from typing import Any, Callable

from assistant.errors import AssistantError, BackendError
from finetune.errors import FinetuneError
from finetune.train_errors import (
    DeviceError,
    MissingDependency,
    ModelLoadError,
    ModelNotFound,
    NoTrainingData,
    RunError,
)
from index.errors import IndexError_, KBLocked, MilvusFailed
from ingest.errors import IngestError

INTERRUPTED = 130
FAILED = 1  # could not be done here and now
BAD_INPUT = 2  # what was asked is wrong (click's own usage errors exit 2 too)

EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (KeyboardInterrupt, INTERRUPTED),
    (ModelNotFound, BAD_INPUT),
    (ModelLoadError, FAILED),
    (BackendError, FAILED),
    (DeviceError, FAILED),
    (MissingDependency, FAILED),
    (RunError, FAILED),
    (NoTrainingData, FAILED),
    (KBLocked, FAILED),
    (MilvusFailed, FAILED),
    (FinetuneError, BAD_INPUT),
    (AssistantError, BAD_INPUT),
    (IndexError_, BAD_INPUT),
    (IngestError, BAD_INPUT),
    (ValueError, BAD_INPUT),
    (FileNotFoundError, BAD_INPUT),
    (OSError, FAILED),  # a disk full, a permission denied: the message names the path
)


def exit_code(err: BaseException) -> int | None:
    """The exit code for ``err`` from :data:`EXIT_CODES`; None for errors that are bugs (let them raise)."""
    return next((code for kind, code in EXIT_CODES if isinstance(err, kind)), None)


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run a command; a known error becomes one red line on stderr and its exit code."""
    import typer

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (Exception, KeyboardInterrupt) as err:
            code = exit_code(err)
            if code is None:
                raise
            if code != INTERRUPTED:
                typer.secho(f"error: {err}", fg="red", err=True)
            raise typer.Exit(code) from None

    return wrapper
