"""Tiny random Qwen3 / Qwen3-MoE model folders with the real Qwen3 tokenizer, for tests and CI-speed benchmarks.

The vocabulary is the real one (151,936 rows, as Qwen3-0.6B) so token ids, the chat template and
the label masks are exactly those of a real Qwen3; only the transformer is shrunk (hidden 64,
2 layers), which keeps a training step at tens of milliseconds on CPU.

Example:
    >>> import tempfile
    >>> folder = build_tiny_qwen3(tempfile.mkdtemp())  # doctest: +SKIP
    >>> sorted(p.name for p in folder.iterdir())[:2]  # doctest: +SKIP
    ['chat_template.jinja', 'config.json']
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

QWEN3_VOCAB = 151936  # embedding rows of every Qwen3 checkpoint (tokenizer: 151,669 ids, padded)


def tiny_qwen3_config(*, moe: bool = False, hidden: int = 64, layers: int = 2, tie: bool = True) -> Any:
    """Qwen3Config (or Qwen3MoeConfig: 4 experts, 2 per token) of a tiny model with the Qwen3 vocabulary."""
    from transformers import Qwen3Config, Qwen3MoeConfig

    common = dict(vocab_size=QWEN3_VOCAB, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=hidden // 4, max_position_embeddings=2048,
                  tie_word_embeddings=tie, bos_token_id=151643, eos_token_id=151645, pad_token_id=151643)
    if moe:
        return Qwen3MoeConfig(**common, intermediate_size=2 * hidden, moe_intermediate_size=hidden,
                              num_experts=4, num_experts_per_tok=2, decoder_sparse_step=1)
    return Qwen3Config(**common, intermediate_size=2 * hidden)


def build_tiny_qwen3(out_dir: str | Path, *, moe: bool = False, hidden: int = 64, layers: int = 2,
                     tie: bool = True, seed: int = 0) -> Path:
    """Save a random tiny Qwen3 (fp32) with the real Qwen3 tokenizer into ``out_dir``; return the folder."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    from finetune.stats import load_qwen3_tokenizer

    torch.manual_seed(seed)
    config = tiny_qwen3_config(moe=moe, hidden=hidden, layers=layers, tie=tie)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config = GenerationConfig(bos_token_id=151643, eos_token_id=[151645, 151643],
                                               pad_token_id=151643, do_sample=False)
    out = Path(out_dir)
    model.save_pretrained(out)
    load_qwen3_tokenizer().save_pretrained(out)
    return out
