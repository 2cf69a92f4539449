"""DeepSpeed ZeRO configs for multi-GPU ``finetune train`` (values marked "auto" are filled in by transformers).

* ``zero2.json``: optimizer states and gradients sharded, full bf16 weights on every GPU. For models
  whose weights fit one GPU with room for activations (Qwen3-0.6B ... 14B on 80 GB).
* ``zero3.json``: weights sharded too. Qwen3-30B-A3B (61 GB of bf16 weights) on 4-8 x 80 GB GPUs:
  about 61 GB / N of weights per GPU, plus activations.
* ``zero3_offload.json``: ZeRO-3 with weights and optimizer states in CPU RAM (needs ~80 GB of
  host memory for 30B-A3B); slow, for 2 x 24-48 GB GPUs.

Use one with ``--trl deepspeed=<path>`` under ``accelerate launch`` or ``torchrun``, e.g.::

    torchrun --nproc-per-node 8 -m ui.cli.finetune train --model ./Qwen3-30B-A3B --data qa.jsonl \\
        --lora-dropout 0 \\
        --trl deepspeed="$(python -c 'from finetune.deepspeed import config_path; print(config_path(3))')"

Example:
    >>> config_path(3).name
    'zero3.json'
"""
from __future__ import annotations

from pathlib import Path

_FILES = {2: "zero2.json", 3: "zero3.json", "3-offload": "zero3_offload.json"}


def config_path(stage: int | str) -> Path:
    """Path of the shipped ZeRO config: 2, 3 or "3-offload"."""
    if stage not in _FILES:
        raise ValueError(f"no ZeRO config for stage {stage!r}; choose one of {list(_FILES)}")
    return Path(__file__).with_name(_FILES[stage])
