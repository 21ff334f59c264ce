"""recbias: train LLM-based generative recommenders, measure their biases and remove them."""

__version__ = "0.1.0"
