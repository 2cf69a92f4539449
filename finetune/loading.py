"""Load models, tokenizers and adapters from a hub id, a local folder or a .gguf file; pick device and dtype.

The one model loader of the project: training, merge, eval and chat, and the assistant's local
backend, all load through it (same sources, same ChatML fallback, same :class:`ModelLoadError`).

Example:
    >>> resolve_device("cpu"), resolve_precision("auto", "cpu")
    ('cpu', 'fp32')
    >>> model, tok = load_base("path/to/Qwen3-0.6B", device="cpu", precision="fp32")  # doctest: +SKIP
"""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

from common.hub import get_elsewhere, hub_unreachable, unreachable_why
from finetune.template import ensure_chat_template
from finetune.train_errors import DeviceError, MissingDependency, ModelLoadError, ModelNotFound

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
    """(path or hub id for from_pretrained, extra kwargs) of a model spec; raises for missing local paths.

    A hub id gets ``local_files_only=True`` when the hub cannot be reached (see :func:`hub_unreachable`),
    so loading it from the cache, or failing, takes seconds instead of transformers' ~45 s of retries.

    >>> model_source("./no-such-model")
    Traceback (most recent call last):
    ...
    finetune.train_errors.ModelNotFound: --model ./no-such-model: no such folder
    """
    problem = local_model_problem(spec)
    if problem:
        raise ModelNotFound(problem)
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if importlib.util.find_spec("gguf") is None:
            raise MissingDependency("gguf", f"--model {spec} (a .gguf file)")
        return str(path.parent), {"gguf_file": path.name}
    if path.exists():
        return str(path), {}
    return spec, ({"local_files_only": True} if hub_unreachable(spec) else {})


def local_model_problem(spec: str) -> str | None:
    """What is wrong with ``spec`` as a local model path (None: a usable path, or a hub id).

    Checks the path alone (nothing is loaded, the hub is not asked), so a command can refuse a
    mistyped ``--model`` before it does any other work.

    >>> local_model_problem("Qwen/Qwen3-0.6B") is None, local_model_problem("./missing.gguf")
    (True, '--model ./missing.gguf: no such .gguf file')
    """
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        return None if path.is_file() else f"--model {spec}: no such .gguf file"
    if path.is_dir():
        if not (path / "config.json").is_file():
            return (f"--model {spec}: the folder has no config.json, so it is not a Hugging Face model folder; "
                    "point --model at the folder holding config.json and the weights")
        return None
    if path.exists():
        return f"--model {spec}: a file, not a model folder; point --model at the folder holding config.json"
    if spec.startswith((".", "/", "~")) or os.sep in spec.strip("/").replace("/", "", 1):
        return f"--model {spec}: no such folder"
    return None


def _load_error(spec: str, what: str, err: Exception, extra: dict[str, Any]) -> ModelLoadError:
    """The ModelLoadError of ``spec``'s ``what`` (tokenizer, config, weights) failing with ``err``."""
    if extra.get("local_files_only") and isinstance(err, OSError):
        return ModelLoadError(f"cannot load the model {spec!r}: it is not in the local Hugging Face cache and "
                              f"{unreachable_why()}; "
                              f"{get_elsewhere(spec)} (a local folder with config.json, weights and tokenizer files)")
    return ModelLoadError(f"--model {spec}: cannot load its {what} ({type(err).__name__}: {err})")


def load_config(spec: str) -> Any:
    """The transformers config of a model spec (config.json, or the .gguf file's metadata); no weights."""
    from transformers import AutoConfig

    where, extra = model_source(spec)
    try:
        return AutoConfig.from_pretrained(where, **extra)
    except Exception as err:  # noqa: BLE001 - any failure means the same to the user: this model does not load
        raise _load_error(spec, "config", err, extra) from err


def load_tokenizer(spec: str) -> Any:
    """The tokenizer of a model spec (hub id, folder, .gguf file) or adapter folder, with a pad token set."""
    from transformers import AutoTokenizer

    folder = Path(spec).expanduser()
    where, extra = (str(folder), {}) if (folder / "tokenizer_config.json").is_file() else model_source(spec)
    try:
        tok = AutoTokenizer.from_pretrained(where, **extra)
    except Exception as err:  # noqa: BLE001 - as in load_config
        raise _load_error(spec, "tokenizer", err, extra) from err
    if tok.pad_token is None:  # the EOS token pads; padded positions never carry labels
        tok.pad_token = tok.eos_token
    return tok


def load_chat_tokenizer(spec: str, adapter: str | Path | None = None) -> Any:
    """The tokenizer to prompt ``spec`` (plus ``adapter``) with, as training rendered its prompts.

    The adapter folder's own tokenizer when it saved one (``finetune train`` does, with the chat
    template it trained with), else the model's; a tokenizer without a chat template gets
    :data:`finetune.template.CHATML_TEMPLATE`, as in training.
    """
    own = adapter is not None and (Path(adapter) / "tokenizer_config.json").is_file()
    tok = load_tokenizer(str(adapter) if own else spec)
    ensure_chat_template(tok)
    return tok


def load_model(spec: str, *, device: str, precision: str, load_in_4bit: bool = False, place: bool = True) -> Any:
    """The causal LM of a model spec in ``precision`` (or 4-bit NF4 for QLoRA), moved to ``device`` if ``place``.

    Training passes place=False: the Trainer moves the model to each process's own GPU. This is the
    one place the project calls ``AutoModelForCausalLM.from_pretrained``.
    """
    from transformers import AutoModelForCausalLM

    where, extra = model_source(spec)
    kwargs: dict[str, Any] = {"dtype": torch_dtype(precision), **extra}
    if extra.get("local_files_only"):  # transformers looks for a PEFT adapter in the repo without it (and retries)
        kwargs["adapter_kwargs"] = {"local_files_only": True}
    if "gguf_file" in extra:
        from transformers import GgufConfig

        kwargs["quantization_config"] = GgufConfig(gguf_file=extra["gguf_file"], dequantize=True)
    if load_in_4bit:
        kwargs["quantization_config"] = _bnb_config(precision)
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}  # this process's GPU
    try:
        model = AutoModelForCausalLM.from_pretrained(where, **kwargs)
    except ValueError as err:
        raise ModelLoadError(f"--model {spec}: not a causal language model transformers can load ({err})") from err
    except Exception as err:  # noqa: BLE001 - as in load_config
        raise _load_error(spec, "weights", err, extra) from err
    return model.to(device) if place and not load_in_4bit else model


def local_adapter_problem(adapter_dir: str | Path) -> str | None:
    """What is wrong with ``adapter_dir`` as a PEFT adapter folder (None: it holds adapter_config.json).

    >>> local_adapter_problem("./no-such-adapter").split(";")[0]
    '--adapter ./no-such-adapter: not a PEFT adapter folder (no adapter_config.json)'
    """
    if (Path(adapter_dir).expanduser() / "adapter_config.json").is_file():
        return None
    return (f"--adapter {adapter_dir}: not a PEFT adapter folder (no adapter_config.json); point it at the "
            "--output-dir of `finetune train`")


def adapter_config(adapter_dir: str | Path) -> dict[str, Any]:
    """The ``adapter_config.json`` of a PEFT adapter folder; ModelNotFound when it is not one."""
    problem = local_adapter_problem(adapter_dir)
    if problem:
        raise ModelNotFound(problem)
    path = Path(adapter_dir).expanduser() / "adapter_config.json"
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as err:
        raise ModelLoadError(f"{path}: not a readable adapter config ({err})") from err


def apply_adapter(model: Any, adapter_dir: str | Path, *, base: str, base_flag: str = "--base") -> Any:
    """``model`` (loaded from ``base``) wrapped with the PEFT adapter of ``adapter_dir``, in eval mode.

    ModelLoadError when the folder is no adapter, or the adapter does not fit ``base``: the message
    names the base it was trained on and ``base_flag``, the option that chooses the base.
    """
    from peft import PeftModel

    trained_on = adapter_config(adapter_dir).get("base_model_name_or_path")
    try:
        adapted = PeftModel.from_pretrained(model, str(adapter_dir))
    except Exception as err:  # noqa: BLE001 - shape mismatches, missing modules, bad files: all "does not fit"
        raise ModelLoadError(f"--adapter {adapter_dir} does not fit the base model {base!r} ({type(err).__name__}: "
                             f"{err}); it was trained on {trained_on!r}: pass that base model with "
                             f"{base_flag}") from err
    return adapted.eval()


def check_4bit() -> None:
    """Raise unless QLoRA can run here (CUDA GPU and bitsandbytes)."""
    import torch

    if not torch.cuda.is_available():
        raise DeviceError("--load-in-4bit (QLoRA) needs a CUDA GPU and none is visible here; drop --load-in-4bit "
                          "to train LoRA in full precision on this machine")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise MissingDependency("bitsandbytes", "--load-in-4bit (QLoRA)")


def _bnb_config(precision: str) -> Any:
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

