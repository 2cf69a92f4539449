"""Fine-tuning: data -> LoRA adapter of Qwen3 -> merged model (the `finetune` CLI)."""
