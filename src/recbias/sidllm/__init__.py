"""LLM recommenders over semantic-ID tokens."""
