"""Tiny, download-free language models and tokenizers for unit tests.

Two tokenizers with different pre-tokenisation (GPT-2-style byte-level BPE and a Llama-style
Metaspace BPE) so that span and trie tests cannot pass by accident of one tokenizer's merges.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]

CORPUS = [
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.",
    "### Instruction:\nGiven a list of movies the user has watched before, please recommend a new "
    "movie that the user likes to the user.",
    '### Input:\nThe user has watched the following movies before: "Toy Story", "Heat"',
    '### Response:\n"Star Wars"',
    "Toy Story, Toy Story 2, Star Wars, Star Trek, Heat, Heat Wave, Casino, Casablanca, Alien, Aliens",
    "Apollo 13, Babe, Fargo, Jumanji, Sabrina, GoldenEye, Balto, Nixon, Othello, Clueless (1995)",
    "N/A user assistant system <|im_start|> <|im_end|> 0123456789 ,.;:!?'\"()[]{}-_/&",
]


def _train(pre: pre_tokenizers.PreTokenizer, dec: decoders.Decoder, vocab: int) -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre
    tok.decoder = dec
    alphabet = (
        pre_tokenizers.ByteLevel.alphabet() if isinstance(pre, pre_tokenizers.ByteLevel) else []
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=SPECIALS, initial_alphabet=alphabet, show_progress=False
    )
    tok.train_from_iterator(CORPUS * 3, trainer=trainer)
    return tok


def _wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    fast.model_max_length = 512
    return fast


def byte_level_tokenizer() -> PreTrainedTokenizerFast:
    """GPT-2-style byte-level BPE: spaces are part of the following token."""
    pre = pre_tokenizers.ByteLevel(add_prefix_space=False)
    return _wrap(_train(pre, decoders.ByteLevel(), vocab=400))


def metaspace_tokenizer() -> PreTrainedTokenizerFast:
    """Llama-style Metaspace BPE: spaces become '▁' and a prefix space is added."""
    pre = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    return _wrap(_train(pre, decoders.Metaspace(replacement="▁", prepend_scheme="always"), 300))


def tiny_llama(
    vocab_size: int, seed: int = 0, hidden: int = 32, layers: int = 2
) -> LlamaForCausalLM:
    """A randomly initialised 2-layer Llama small enough to train in milliseconds."""
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    model = LlamaForCausalLM(cfg)
    model.eval()
    return model
