"""Tiny, download-free language models, tokenizers, catalogs and datasets for unit tests.

Two tokenizers with different pre-tokenisation (GPT-2-style byte-level BPE and a Llama-style
Metaspace BPE) so that span and trie tests cannot pass by accident of one tokenizer's merges.

    builder = movie_builder(byte_tok)                       # the alpaca prompt over MOVIES
    seqs = title_sequences(byte_tok, MOVIES)                # trie input: title + '"\n' + EOS
    ckpt = save_checkpoint(tmp / "ckpt")                    # a local model dir for `recbias run`
    data = write_table(tmp / "data", MOVIES_16, users=30, per_user=9)   # inter.csv + items.csv
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from recbias.domain import Domain
from recbias.prompts import PromptBuilder, PromptConfig

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
EOS = 2

# Three pairs where one title is a token prefix of the other (Heat / Heat Wave, ...).
MOVIES = ["Toy Story", "Toy Story 2", "Heat", "Heat Wave", "Alien", "Aliens", "Casino", "Fargo"]
MOVIES_16 = [*MOVIES, "Babe", "Balto", "Nixon", "Othello", "Sabrina", "Jumanji", "GoldenEye",
             "Clueless"]  # fmt: skip
# No title is a prefix of another.
DISTINCT_MOVIES = ["Toy Story", "Heat", "Casino", "Star Wars", "Alien", "Babe", "Fargo", "Balto"]

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
    vocab_size: int, seed: int = 0, hidden: int = 32, layers: int = 2, tied: bool = True
) -> LlamaForCausalLM:
    """A randomly initialised 2-layer Llama small enough to train in milliseconds (``tied``:
    input and output embeddings share one matrix, as in SmolLM2)."""
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=tied,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    model = LlamaForCausalLM(cfg)
    model.eval()
    return model


def movie_builder(tok: PreTrainedTokenizerFast, **prompt: object) -> PromptBuilder:
    """A prompt builder for movies; ``prompt`` overrides :class:`PromptConfig` fields."""
    return PromptBuilder(tok, PromptConfig(**prompt), Domain("movie", "movies"))  # type: ignore[arg-type]


def title_tokens(tok: PreTrainedTokenizerFast, title: str, eos: int = EOS) -> list[int]:
    """A title's token sequence in a response: ``title"\n`` then the EOS id."""
    return [*tok(title + '"\n', add_special_tokens=False).input_ids, eos]


def title_sequences(tok: PreTrainedTokenizerFast, titles: Sequence[str]) -> list[list[int]]:
    """:func:`title_tokens` of every title: the input of ``ItemTrie.build``."""
    return [title_tokens(tok, t) for t in titles]


def save_checkpoint(path: Path, seed: int = 3) -> Path:
    """A tiny Llama and its byte-level tokenizer saved as a local model directory."""
    tok = byte_level_tokenizer()
    tiny_llama(len(tok), seed=seed).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def write_table(
    path: Path,
    titles: Sequence[str],
    users: int,
    per_user: int,
    genres: Sequence[str] | None = None,
) -> Path:
    """``inter.csv`` (``per_user`` distinct items per user, rising timestamps) and ``items.csv``.

    With ``genres`` every item gets two of them (``genres`` column, ``|``-separated).
    """
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows, t = ["user_id,item_id,timestamp"], 1_000_000
    for user in range(users):
        for item in rng.choice(len(titles), size=per_user, replace=False):
            t += int(rng.integers(1, 100))
            rows.append(f"u{user},i{item},{t}")
    (path / "inter.csv").write_text("\n".join(rows) + "\n")
    if genres is None:
        items = ["item_id,title"] + [f'i{i},"{title}"' for i, title in enumerate(titles)]
    else:
        g = len(genres)
        items = ["item_id,title,genres"] + [
            f'i{i},"{title}",{genres[i % g]}|{genres[(i * 3 + 1) % g]}'
            for i, title in enumerate(titles)
        ]
    (path / "items.csv").write_text("\n".join(items) + "\n")
    return path
