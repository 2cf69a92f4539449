"""The PEFT LoRA / DoRA config for a base model, with Mixture-of-Experts expert weights found automatically.

In transformers 5, MoE models such as Qwen3-30B-A3B keep each layer's experts as 3-D parameters
(``mlp.experts.gate_up_proj``: experts x 2*inter x hidden, ``mlp.experts.down_proj``), not as
``nn.Linear`` modules, so name-matched ``target_modules`` cannot reach them. They are adapted
through PEFT's ``target_parameters``; the router (``mlp.gate``) is never adapted, since changing
the routing of a frozen expert set destabilises the experts' load balance.

Example:
    >>> cfg = lora_config(TrainConfig(data=("a.jsonl",)), model)  # doctest: +SKIP
    >>> cfg.target_modules, cfg.target_parameters  # doctest: +SKIP
    ({'q_proj', ...}, ['experts.down_proj', 'experts.gate_up_proj'])
"""
from __future__ import annotations

from typing import Any

from finetune.config import TrainConfig
from finetune.errors import ConfigError

ROUTER_NAMES = ("gate", "router")  # MoE router modules: left alone


def expert_parameters(model: Any) -> list[str]:
    """Suffixes (``experts.gate_up_proj``) of the 3-D expert weight parameters of an MoE model; [] if dense."""
    found = set()
    for name, module in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if "expert" not in leaf.lower():
            continue
        for pname, param in module.named_parameters(recurse=False):
            if param.ndim == 3:
                found.add(f"{leaf}.{pname}")
    return sorted(found)


def linear_module_names(model: Any) -> set[str]:
    """Leaf names of every nn.Linear (or quantized linear) module of the model."""
    import torch

    names = set()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) or type(module).__name__ in {"Linear4bit", "Linear8bitLt"}:
            names.add(name.rsplit(".", 1)[-1])
    return names


def _target_problems(config: TrainConfig, model: Any, experts: list[str]) -> list[str]:
    linear = linear_module_names(model)
    out = []
    missing = [t for t in config.target_modules if t not in linear]
    if len(missing) == len(config.target_modules):
        out.append(f"target_modules {list(config.target_modules)}: none is a linear module of this model; "
                   f"its linear modules are {sorted(linear)}")
    if "lm_head" in config.target_modules:
        out.append("lm_head cannot be a LoRA target (TRL scores with lm_head.weight directly); "
                   "train it in full with --modules-to-save lm_head")
    routers = [t for t in config.target_modules if t in ROUTER_NAMES]
    if experts and routers:
        out.append(f"target_modules {routers}: the MoE router is left alone; remove it")
    if experts and config.lora_dropout:
        out.append(f"lora_dropout {config.lora_dropout}: LoRA on MoE expert weights ({', '.join(experts)}) "
                   "cannot use dropout (PEFT ParamWrapper); pass --lora-dropout 0")
    if experts and config.use_dora:
        out.append("use_dora: DoRA is not available for MoE expert weights (PEFT ParamWrapper); drop --use-dora")
    return out


def lora_config(config: TrainConfig, model: Any) -> Any:
    """peft.LoraConfig for ``model``: configured linear targets present in it, plus MoE expert weights."""
    from peft import LoraConfig

    experts = expert_parameters(model)
    problems = _target_problems(config, model, experts)
    if problems:
        raise ConfigError("\n".join(problems))
    present = sorted(set(config.target_modules) & linear_module_names(model))
    # Tied input/output embeddings (Qwen3-0.6B, Gemma 3) trained via modules_to_save stay tied: one trained matrix.
    tied = bool(getattr(model.config.get_text_config(), "tie_word_embeddings", False))
    tie = tied and bool({"lm_head", "embed_tokens"} & set(config.modules_to_save))
    return LoraConfig(
        task_type="CAUSAL_LM", r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules=present, target_parameters=experts or None, use_dora=config.use_dora,
        modules_to_save=list(config.modules_to_save) or None, ensure_weight_tying=tie,
    )
