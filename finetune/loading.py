"""Load a base model and its tokenizer from a hub id, a local folder or a .gguf file; pick device and dtype.

Example:
    >>> resolve_device("cpu"), resolve_precision("auto", "cpu")
    ('cpu', 'fp32')
    >>> model, tok = load_base("path/to/Qwen3-0.6B", device="cpu", precision="fp32")  # doctest: +SKIP
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from finetune.train_errors import DeviceError, MissingDependency, ModelLoadError

_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def resolve_device(device: str) -> str:
    """'cpu' or 'cuda' for the configured device ('auto' picks CUDA when present)."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda: no CUDA GPU is visible to PyTorch here (torch.cuda.is_available() is "
                          "False); use --device cpu, or install a CUDA build of torch")
    return device


def resolve_precision(precision: str, device: str) -> str:
    """'fp32', 'bf16' or 'fp16': auto is fp32 on CPU, bf16 on GPUs that support it, else fp16."""
    import torch

    if precision == "auto":
        if device == "cpu":
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "fp16" and device == "cpu":
        raise DeviceError("--precision fp16 needs a GPU (PyTorch has no fp16 mixed precision on CPU); use "
                          "--precision fp32 or bf16")
    if precision == "bf16" and device == "cuda" and not torch.cuda.is_bf16_supported():
        raise DeviceError("--precision bf16: this GPU has no bfloat16 support; use --precision fp16")
    return precision


def torch_dtype(precision: str) -> Any:
    import torch

    return getattr(torch, _DTYPES[precision])


def model_source(spec: str) -> tuple[str, dict[str, Any]]:
    """(path or hub id for from_pretrained, extra kwargs) of a model spec; raises for missing local paths."""
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise ModelLoadError(f"--model {spec}: no such .gguf file")
        if importlib.util.find_spec("gguf") is None:
            raise MissingDependency("gguf", f"--model {spec} (a .gguf file)")
        return str(path.parent), {"gguf_file": path.name}
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"--model {spec}: the folder has no config.json, so it is not a Hugging Face "
                                 "model folder; point --model at the folder holding config.json and the weights")
        return str(path), {}
    if spec.startswith((".", "/", "~")) or os.sep in spec.strip("/").replace("/", "", 1):
        raise ModelLoadError(f"--model {spec}: no such folder")
    return spec, {}


def _offline_error(spec: str, err: Exception) -> ModelLoadError:
    return ModelLoadError(
        f"cannot load the base model {spec!r}: it is not in the local Hugging Face cache and the hub cannot be "
        f"reached ({type(err).__name__}). On a machine with internet run "
        f"`huggingface-cli download {spec} --local-dir ./{spec.split('/')[-1]}`, copy that folder here and pass "
        f"--model ./{spec.split('/')[-1]} (a local folder with config.json, weights and tokenizer files)")


def load_tokenizer(spec: str) -> Any:
    """The tokenizer of a model spec (hub id, folder, .gguf file) or adapter folder, with a pad token set."""
    from transformers import AutoTokenizer

    folder = Path(spec).expanduser()
    where, extra = (str(folder), {}) if (folder / "tokenizer_config.json").is_file() else model_source(spec)
    try:
        tok = AutoTokenizer.from_pretrained(where, **extra)
    except OSError as err:
        raise _offline_error(spec, err) from err
    if tok.pad_token is None:  # the EOS token pads; padded positions never carry labels
        tok.pad_token = tok.eos_token
    return tok


def load_model(spec: str, *, device: str, precision: str, load_in_4bit: bool = False, place: bool = True) -> Any:
    """The causal LM of a model spec in ``precision`` (or 4-bit NF4 for QLoRA), moved to ``device`` if ``place``.

    Training passes place=False: the Trainer moves the model to each process's own GPU.
    """
    import torch
    from transformers import AutoModelForCausalLM

    where, extra = model_source(spec)
    kwargs: dict[str, Any] = {"dtype": torch_dtype(precision), **extra}
    if "gguf_file" in extra:
        from transformers import GgufConfig

        kwargs["quantization_config"] = GgufConfig(gguf_file=extra["gguf_file"], dequantize=True)
    if load_in_4bit:
        kwargs["quantization_config"] = _bnb_config(precision)
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}  # this process's GPU
    try:
        model = AutoModelForCausalLM.from_pretrained(where, **kwargs)
    except OSError as err:
        raise _offline_error(spec, err) from err
    except ValueError as err:
        raise ModelLoadError(f"--model {spec}: not a causal language model transformers can load ({err})") from err
    return model.to(device) if place and not load_in_4bit else model


def check_4bit() -> None:
    """Raise unless QLoRA can run here (CUDA GPU and bitsandbytes)."""
    import torch

    if not torch.cuda.is_available():
        raise DeviceError("--load-in-4bit (QLoRA) needs a CUDA GPU and none is visible here; drop --load-in-4bit "
                          "to train LoRA in full precision on this machine")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise MissingDependency("bitsandbytes", "--load-in-4bit (QLoRA)")


def _bnb_config(precision: str) -> Any:
    import torch
    from transformers import BitsAndBytesConfig

    check_4bit()
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch_dtype(precision))


def load_base(spec: str, *, device: str = "cpu", precision: str = "fp32",
              load_in_4bit: bool = False) -> tuple[Any, Any]:
    """(model, tokenizer) of a model spec; the model's pad/eos ids follow the tokenizer."""
    tok = load_tokenizer(spec)
    model = load_model(spec, device=device, precision=precision, load_in_4bit=load_in_4bit)
    model.config.pad_token_id = tok.pad_token_id
    if model.generation_config is not None:
        model.generation_config.pad_token_id = tok.pad_token_id
    return model, tok
