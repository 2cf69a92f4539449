"""`finetune data from-kb`: training records from the knowledge base (config, gold, questions, build)."""
