"""Label-only LM head == full loss, padding-free / packed rows isolated, MoE experts adapted, device defaults."""
from __future__ import annotations

import pytest
import torch

from finetune.config import TrainConfig
from finetune.errors import ConfigError
from finetune.records import Conversation, Message
from finetune.tiny import tiny_qwen3_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tok():
    from finetune.stats import load_qwen3_tokenizer

    return load_qwen3_tokenizer()


def tiny(moe: bool = False, seed: int = 0):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(tiny_qwen3_config(moe=moe, tie=False), dtype=torch.float32)


def encoded(tok, n: int = 6):
    from finetune.template import encode_all

    convs = [Conversation((Message("system", "你是助手。"), Message("user", f"问题{i}：{'天' * i}气怎么样？"),
                           Message("assistant", f"回答{i}：今天{'很' * i}好。")), f"t.jsonl:{i}") for i in range(n)]
    return encode_all(tok, convs, thinking="off", max_length=256)


def make_trainer(tok, tmp_path, batching: str):
    from finetune.lora import lora_config
    from finetune.train import _dataset, sft_config
    from finetune.trainer import AssistantSFTTrainer

    config = TrainConfig(data=("t.jsonl",), output_dir=str(tmp_path / batching), batching=batching,
                         lora_dropout=0.0, batch_size=3)
    model = tiny()
    args = sft_config(config, device="cpu", precision="fp32", has_eval=False)
    return AssistantSFTTrainer(model=model, args=args, train_dataset=_dataset(encoded(tok)), processing_class=tok,
                               peft_config=lora_config(config, model))


def loss_and_grads(trainer, batch, label_only: bool):
    model = trainer.model
    model.zero_grad()
    trainer.label_only_head = label_only
    n = (batch["labels"][:, 1:] != -100).sum()
    loss = trainer.compute_loss(model, dict(batch), num_items_in_batch=n)
    loss.backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.requires_grad and p.grad is not None}
    return loss.detach(), grads


@pytest.mark.parametrize("batching", ["padding_free", "packed", "padded"])
def test_label_only_head_loss_and_grads_equal_full_computation(tok, tmp_path, batching):
    trainer = make_trainer(tok, tmp_path, batching)
    trainer.model.train()
    # give LoRA B non-zero values so every adapter weight gets a gradient
    for name, p in trainer.model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)
    rows = [trainer.train_dataset[i] for i in range(min(3, len(trainer.train_dataset)))]
    batch = trainer.data_collator(rows)
    assert ("attention_mask" in batch) == (batching == "padded")
    fast, fast_grads = loss_and_grads(trainer, batch, label_only=True)
    full, full_grads = loss_and_grads(trainer, batch, label_only=False)  # TRL's own fused-head loss
    # and the plain definition: full logits, shifted cross-entropy over the labelled tokens
    with torch.no_grad():
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        logits = trainer.model(**inputs).logits[:, :-1]
        plain = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)),
                                                  batch["labels"][:, 1:].reshape(-1), ignore_index=-100)
    assert fast.item() == pytest.approx(full.item(), abs=1e-5) and fast.item() == pytest.approx(plain.item(), abs=1e-5)
    assert fast_grads.keys() == full_grads.keys() and len(fast_grads) > 0
    for k in fast_grads:
        torch.testing.assert_close(fast_grads[k], full_grads[k], atol=1e-6, rtol=1e-4)


def test_padding_free_and_packed_rows_do_not_attend_across_examples(tok):
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    model = tiny().eval()
    examples = [list(e.input_ids) for e in encoded(tok, 3).examples]
    with torch.no_grad():
        alone = [model(input_ids=torch.tensor([ids])).logits[0] for ids in examples]
        for collator, rows in (
            (DataCollatorForLanguageModeling(tok.pad_token_id, padding_free=True),  # padding-free batch
             [{"input_ids": ids} for ids in examples]),
            (DataCollatorForLanguageModeling(tok.pad_token_id, padding_free=True),  # one packed row
             [{"input_ids": sum(examples, []), "seq_lengths": [len(ids) for ids in examples]}]),
        ):
            batch = collator(rows)
            assert "attention_mask" not in batch
            together = model(**{k: v for k, v in batch.items() if k != "labels"}, use_cache=False).logits[0]
            start = 0
            for ids, ref in zip(examples, alone):
                torch.testing.assert_close(together[start:start + len(ids)], ref, atol=1e-5, rtol=1e-4)
                start += len(ids)
        # control: without the position reset the later examples DO see the earlier ones
        leaky = model(input_ids=torch.tensor([sum(examples, [])])).logits[0]
        assert not torch.allclose(leaky[len(examples[0]):len(examples[0]) + len(examples[1])], alone[1], atol=1e-3)


def test_moe_expert_weights_adapted_router_left_alone():
    from peft import get_peft_model

    from finetune.lora import expert_parameters, lora_config

    model = tiny(moe=True)
    assert expert_parameters(model) == ["experts.down_proj", "experts.gate_up_proj"]
    with pytest.raises(ConfigError, match="lora-dropout 0"):
        lora_config(TrainConfig(data=("t.jsonl",), lora_dropout=0.1), model)
    with pytest.raises(ConfigError, match="router"):
        lora_config(TrainConfig(data=("t.jsonl",), lora_dropout=0.0, target_modules=("q_proj", "gate")), model)
    config = TrainConfig(data=("t.jsonl",), lora_dropout=0.0)
    peft_model = get_peft_model(model, lora_config(config, model))
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert any(".mlp.experts." in n and "lora_A" in n for n in trainable)
    assert not any(".mlp.gate." in n for n in trainable)  # the router
    router_before = peft_model.base_model.model.model.layers[0].mlp.gate.weight.detach().clone()
    ids = torch.randint(0, 2000, (1, 24))
    peft_model(input_ids=ids, labels=ids).loss.backward()
    expert_grads = [p.grad for n, p in peft_model.named_parameters() if ".mlp.experts." in n and "lora_B" in n]
    assert expert_grads and all(g is not None and g.abs().sum() > 0 for g in expert_grads)
    torch.testing.assert_close(peft_model.base_model.model.model.layers[0].mlp.gate.weight, router_before)


def test_unknown_targets_and_lm_head_target_rejected():
    from finetune.lora import lora_config

    with pytest.raises(ConfigError, match="none is a linear module"):
        lora_config(TrainConfig(data=("t",), target_modules=("query", "value")), tiny())
    with pytest.raises(ConfigError, match="modules-to-save lm_head"):
        lora_config(TrainConfig(data=("t",), target_modules=("q_proj", "lm_head")), tiny())
    dora = lora_config(TrainConfig(data=("t",), use_dora=True, target_modules=("q_proj", "v_proj", "nope")), tiny())
    assert dora.use_dora and set(dora.target_modules) == {"q_proj", "v_proj"} and not dora.target_parameters


def test_device_defaults():
    from finetune.train import sft_kwargs

    config = TrainConfig(data=("t",), eval_steps=10, save_steps=20, early_stopping_patience=2)
    cpu = sft_kwargs(config, device="cpu", precision="fp32", has_eval=True)
    assert cpu["use_cpu"] and not cpu["bf16"] and not cpu["fp16"] and not cpu["gradient_checkpointing"]
    assert cpu["padding_free"] and not cpu["packing"] and cpu["max_length"] is None
    assert cpu["eval_strategy"] == "steps" and cpu["load_best_model_at_end"]
    assert cpu["metric_for_best_model"] == "eval_loss"
    gpu = sft_kwargs(config, device="cuda", precision="bf16", has_eval=False)
    assert not gpu["use_cpu"] and gpu["bf16"] and gpu["gradient_checkpointing"] and gpu["eval_strategy"] == "no"
    packed = sft_kwargs(TrainConfig(data=("t",), batching="packed", max_length=512), device="cpu",
                        precision="fp32", has_eval=False)
    assert packed["packing"] and packed["max_length"] == 512


def test_progress_bar_shows_loss_learning_rate_and_tokens_per_second():
    from types import SimpleNamespace

    from finetune.trainer import TrainProgress

    bar = TrainProgress()
    state = SimpleNamespace(is_world_process_zero=True, global_step=0, max_steps=10)
    bar.on_train_begin(None, state, None)
    state.global_step = 5
    bar.on_step_end(None, state, None)
    bar.on_log(None, state, None, logs={"loss": 1.25, "learning_rate": 2e-4, "num_tokens": 500.0})
    shown = str(bar.training_bar)
    bar.on_train_end(None, state, None)
    assert "loss=1.2500" in shown and "lr=2.00e-04" in shown and "tok/s=" in shown
    assert bar.tokens_per_second and bar.tokens_per_second > 0
