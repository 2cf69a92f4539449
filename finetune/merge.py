"""``finetune merge``: fold a LoRA adapter into its base model and save a plain transformers model folder.

The merged folder loads with ``AutoModelForCausalLM.from_pretrained`` and vLLM (config, safetensors
weights, generation config), and carries the tokenizer and chat template the adapter was trained
with, plus the adapter's run_card.json. A QLoRA adapter is merged into the full-precision base
(merging into 4-bit weights would round the update away).

Example:
    >>> merge_adapter("outputs/qwen3-lora", "outputs/qwen3-merged")  # doctest: +SKIP
    PosixPath('outputs/qwen3-merged')
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from finetune.loading import adapter_config, apply_adapter, load_chat_tokenizer, load_config, load_model, torch_dtype
from finetune.runcard import RUN_CARD, read_run_card, run_card_path
from finetune.train_errors import ModelLoadError, RunError

_PRECISIONS = {"auto", "fp32", "bf16", "fp16"}


def base_model_of(adapter_dir: str | Path, base: str | None = None) -> str:
    """The base model spec of an adapter: ``base`` if given, else the run card's, else adapter_config's."""
    if base:
        return base
    card = read_run_card(adapter_dir)
    if card.get("base_model"):
        return str(card["base_model"])
    cfg = adapter_config(adapter_dir)
    if not cfg.get("base_model_name_or_path"):
        raise ModelLoadError(f"{adapter_dir}: the adapter does not name its base model; pass --base MODEL")
    return str(cfg["base_model_name_or_path"])


def load_adapted(adapter_dir: str | Path, *, base: str | None = None, device: str = "cpu",
                 precision: str = "fp32") -> tuple[Any, Any]:
    """(PeftModel in eval mode, its tokenizer) for inference, merge and evaluation.

    The tokenizer is the one saved with the adapter (else the base's, with the ChatML fallback):
    :func:`finetune.loading.load_chat_tokenizer`.
    """
    adapter_config(adapter_dir)  # fails first when the folder is not an adapter
    spec = base_model_of(adapter_dir, base)
    tok = load_chat_tokenizer(spec, adapter_dir)
    peft_model = apply_adapter(load_model(spec, device=device, precision=precision), adapter_dir, base=spec)
    peft_model.config.pad_token_id = tok.pad_token_id
    return peft_model, tok


def _untie_if_needed(model: Any) -> None:
    """A trained lm_head copy (modules_to_save) must not be re-tied to the input embeddings on reload."""
    out, inp = model.get_output_embeddings(), model.get_input_embeddings()
    text = model.config.get_text_config()
    if getattr(text, "tie_word_embeddings", False) and out is not None and out.weight is not inp.weight:
        text.tie_word_embeddings = False
        model.config.tie_word_embeddings = False


def merge_adapter(adapter_dir: str | Path, out_dir: str | Path, *, base: str | None = None,
                  precision: str = "auto") -> Path:
    """Merge ``adapter_dir`` into its base and save to ``out_dir`` (which must be new or empty).

    precision auto keeps the base model's own dtype (as in its config.json); fp32/bf16/fp16 force one.
    """
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise RunError(f"--out {out} is not empty; choose a new folder (nothing is overwritten)")
    if precision not in _PRECISIONS:
        raise RunError(f"--precision must be one of {sorted(_PRECISIONS)}, got {precision!r}")
    base_spec = base_model_of(adapter_dir, base)
    dtype = _saved_dtype(base_spec) if precision == "auto" else precision
    model, tok = load_adapted(adapter_dir, base=base_spec, precision="fp32")  # merge in fp32, then cast
    merged = model.merge_and_unload()
    _untie_if_needed(merged)
    merged = merged.to(torch_dtype(dtype))
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out)
    tok.save_pretrained(out)
    card = run_card_path(adapter_dir)
    if card is not None:
        shutil.copy2(card, out / RUN_CARD)
    return out


def _saved_dtype(spec: str) -> str:
    """'fp32' / 'bf16' / 'fp16': the dtype the base model's config.json declares (fp32 when unknown)."""
    try:
        config = load_config(spec)
    except ModelLoadError:
        return "fp32"
    dtype = str(getattr(config, "dtype", None) or "float32").replace("torch.", "")
    return {"bfloat16": "bf16", "float16": "fp16"}.get(dtype, "fp32")
