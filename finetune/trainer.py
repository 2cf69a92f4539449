"""The SFTTrainer used by ``finetune train``: label-position-only LM head on CPU, perplexity, progress bar.

Why a subclass: TRL's fused LM head scores only the label positions where Triton runs (CUDA, XPU);
elsewhere it projects every position through the LM head (vocab 151k for Qwen3, 262k for Gemma 3),
which is most of a CPU step. :meth:`AssistantSFTTrainer.compute_loss` passes a boolean
``logits_to_keep`` mask so the model projects only positions whose next token is labelled, then
takes the same token-summed cross-entropy / ``num_items_in_batch`` as TRL (equal losses and
gradients are tested). Everything else (data preparation, collator, padding-free batching,
PEFT, checkpoints, DeepSpeed) is TRL's and transformers' own.

Several processes (``torchrun``, ``accelerate launch``): :class:`ReplicaSeed` gives each its own
dropout stream, and :func:`replica_digests` fingerprints the adapter each one ends with, so a run
can show that data-parallel training kept them identical.

Example:
    >>> trainer = AssistantSFTTrainer(model=m, args=sft_config, train_dataset=ds)  # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from transformers.trainer_callback import ProgressCallback, TrainerCallback
from trl import SFTTrainer
from trl.kernels.chunked_logprob import _use_triton


def label_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(keep, targets): boolean mask of positions whose next token is labelled, and those next tokens.

    >>> keep, tgt = label_positions(torch.tensor([[-100, -100, 5, 6, -100]]))
    >>> keep.tolist(), tgt.tolist()
    ([[False, True, True, False, False]], [5, 6])
    """
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != -100
    return keep, labels[:, 1:][keep[:, :-1]]


class AssistantSFTTrainer(SFTTrainer):
    """SFTTrainer scoring only labelled positions where TRL's Triton kernel does not run; logs perplexity."""

    label_only_head = True  # False: always use TRL's own loss (kept for the equality test and benchmarks)

    def _use_label_only(self, model: Any) -> bool:
        device = next(model.parameters()).device
        return self.label_only_head and not _use_triton(device)

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        if return_outputs or not self._use_label_only(model):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        mode = "train" if self.model.training else "eval"
        labels = inputs["labels"]
        keep, targets = label_positions(labels)
        model_inputs = {k: v for k, v in inputs.items() if k != "labels"}
        model_inputs["use_cache"] = False  # no cache in training; padding-free relies on position_ids alone
        if self.aux_loss_enabled:
            model_inputs["output_router_logits"] = True
        outputs = model(**model_inputs, logits_to_keep=keep)
        logits = outputs.logits.reshape(-1, outputs.logits.size(-1))  # (labelled positions, vocab)
        total = F.cross_entropy(logits.float(), targets, reduction="sum")
        count = keep.sum() if num_items_in_batch is None else num_items_in_batch
        loss = total / torch.as_tensor(count, device=total.device).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        if self.aux_loss_enabled and getattr(outputs, "aux_loss", None) is not None:
            steps = self.current_gradient_accumulation_steps if num_items_in_batch is not None else 1
            loss = loss + self.router_aux_loss_coef * outputs.aux_loss / steps
        self._record_metrics(mode, inputs, logits, targets)
        return loss

    def _record_metrics(self, mode: str, inputs: dict[str, Any], logits: torch.Tensor,
                        targets: torch.Tensor) -> None:
        """Same metrics as TRL's compute_loss (token accuracy, tokens seen) from the labelled logits only."""
        gather = self.accelerator.gather_for_metrics
        valid = gather(torch.tensor(targets.numel(), device=logits.device)).sum()
        correct = gather((logits.detach().argmax(-1) == targets).sum()).sum()
        self._metrics[mode]["mean_token_accuracy"].append((correct / valid).item() if valid > 0 else 0.0)
        if mode == "train":
            if "attention_mask" in inputs:
                local = inputs["attention_mask"].sum()
            else:  # padding-free: one row of real tokens
                local = torch.tensor(inputs["position_ids"].size(1), device=logits.device)
            self._total_train_tokens += gather(local).sum().item() // self._tp_size
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "eval_loss" in logs:  # perplexity = exp(mean token cross-entropy); capped to stay finite
            logs["eval_perplexity"] = math.exp(min(logs["eval_loss"], 50.0))
        super().log(logs, start_time)


class TrainProgress(ProgressCallback):
    """tqdm bar of optimizer steps showing loss, learning rate and tokens/s; eval results on their own line."""

    def __init__(self) -> None:
        super().__init__()
        self._last: tuple[float, float] | None = None  # (time, tokens seen) at the previous log
        self.tokens_per_second: float | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        super().on_train_begin(args, state, control, **kwargs)
        if self.training_bar is not None and state.global_step:  # resumed: start the bar at the saved step
            self.training_bar.update(state.global_step)
        self.current_step = state.global_step
        self._last = (time.perf_counter(), 0.0)  # TRL counts tokens from 0 in every session

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None,
               **kwargs: Any) -> None:
        if not state.is_world_process_zero or self.training_bar is None or not logs:
            return
        now, seen = time.perf_counter(), logs.get("num_tokens")
        if "loss" in logs and seen is not None:
            if self._last is not None and now > self._last[0]:
                self.tokens_per_second = (seen - self._last[1]) / (now - self._last[0])
            self._last = (now, seen)
            post = {"loss": f"{logs['loss']:.4f}", "lr": f"{logs.get('learning_rate', 0):.2e}"}
            if self.tokens_per_second is not None:
                post["tok/s"] = f"{self.tokens_per_second:.0f}"
            self.training_bar.set_postfix(post, refresh=True)
        elif "eval_loss" in logs:
            self.training_bar.write(f"step {state.global_step}: eval loss {logs['eval_loss']:.4f}, "
                                    f"perplexity {logs.get('eval_perplexity', float('nan')):.2f}")


class ReplicaSeed(TrainerCallback):
    """Reseed each process with ``seed + rank`` as training starts, so replicas draw different dropout masks.

    The Trainer seeds every process alike: right for the LoRA initialisation (identical on all ranks),
    wrong for dropout, where identical streams make the masks of the global batch correlated. By
    train-begin the sampler has its seed (``data_seed``, the same on every rank, so the shards stay
    disjoint) and DDP has copied rank 0's weights everywhere; a resumed run then restores each rank's
    saved RNG state (``rng_state_<rank>.pth``) over this seed. A single process is left alone.
    """

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if args.world_size > 1:
            from transformers import set_seed

            set_seed(args.seed + args.process_index)


def weights_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of ``tensors``, in name order.

    >>> a = {"w": torch.ones(2), "b": torch.zeros(1)}
    >>> weights_digest(a) == weights_digest(dict(reversed(a.items())))
    True
    >>> weights_digest(a) == weights_digest({"w": torch.tensor([1.0, 1.0000001]), "b": torch.zeros(1)})
    False
    """
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensors[name].shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy())
    return digest.hexdigest()


def replica_digests(trainer: Any) -> list[str] | None:
    """:func:`weights_digest` of the adapter each training process holds, by rank (one entry per process).

    The adapter is what ``save_pretrained`` writes (PEFT's adapter state dict), so rank 0's entry is
    also the digest of the saved ``adapter_model.safetensors``. None under FSDP or DeepSpeed ZeRO-3,
    where each process holds a shard of the weights rather than a replica. Every process must call it
    (it gathers across them).
    """
    from accelerate.utils import gather_object
    from peft import get_peft_model_state_dict

    model = trainer.model
    if trainer.is_fsdp_enabled or any(hasattr(p, "ds_numel") for p in model.parameters()):
        return None
    return list(gather_object([weights_digest(get_peft_model_state_dict(model))]))
