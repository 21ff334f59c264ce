"""Language-model loading, LoRA and sample tokenization."""
