"""New embedding rows for the semantic-ID tokens.

    resize_for_sid(model, vocab)                          # rows for every SID token id
    init_sid_rows(model, tokenizer, vocab, codes, titles, cfg)

Initialisation (``items.sid.init``):

- ``title_mean`` (default): the row of code c at level l is the mean, over the items whose level-l
  code is c, of the mean embedding of the item's title tokens, so a code starts near the words of
  the items it groups. Codes no item uses start at the mean of the existing rows.
- ``vocab_mean``: every new row is the mean of the existing rows.

``init_noise`` > 0 adds Gaussian noise of that many per-dimension standard deviations of the
existing rows (seeded by ``items.sid.seed``). Untied output embeddings (``lm_head``) get the same
rule applied to the output matrix; tied ones (SmolLM2) share the input rows and are set once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from recbias.sidllm.config import SidConfig
from recbias.sidllm.vocab import SidVocab


def resize_for_sid(model: PreTrainedModel, vocab: SidVocab) -> int:
    """Grow the embeddings (input and output, re-tied if tied) to hold every SID id; the rows."""
    rows = model.get_input_embeddings().weight.shape[0]
    needed = max(rows, max(vocab.ids) + 1)
    if needed != rows:
        model.resize_token_embeddings(needed, mean_resizing=False)
    return needed


def is_tied(model: PreTrainedModel) -> bool:
    out = model.get_output_embeddings()
    return out is None or out.weight is model.get_input_embeddings().weight


@torch.no_grad()
def init_sid_rows(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    vocab: SidVocab,
    codes: np.ndarray,
    titles: Sequence[str],
    cfg: SidConfig,
) -> None:
    """Set the SID rows of the input (and untied output) embeddings, in place."""
    old = vocab.level_of < 0  # [V] rows of ordinary tokens
    title_ids = [tokenizer(t, add_special_tokens=False).input_ids for t in titles]
    gen = torch.Generator().manual_seed(cfg.seed)
    matrices = [model.get_input_embeddings().weight]
    if not is_tied(model):
        matrices.append(model.get_output_embeddings().weight)
    for weight in matrices:
        rows = sid_rows(weight.float(), old, vocab, codes, title_ids, cfg, gen)
        weight[torch.as_tensor(vocab.ids)] = rows.to(weight.dtype)


def sid_rows(
    weight: torch.Tensor,
    old: torch.Tensor,
    vocab: SidVocab,
    codes: np.ndarray,
    title_ids: list[list[int]],
    cfg: SidConfig,
    gen: torch.Generator,
) -> torch.Tensor:
    """[n_sid_tokens, dim] new rows (level-major) from ``weight``: [V, dim]."""
    existing = weight[old]
    mean = existing.mean(dim=0)
    rows = mean.expand(len(vocab.ids), -1).clone()
    if cfg.init == "title_mean":
        rows = code_means(weight, vocab, codes, title_ids, fallback=mean)
    if cfg.init_noise > 0:
        std = existing.std(dim=0)
        rows += cfg.init_noise * std * torch.randn(rows.shape, generator=gen)
    return rows


def code_means(
    weight: torch.Tensor,
    vocab: SidVocab,
    codes: np.ndarray,
    title_ids: list[list[int]],
    fallback: torch.Tensor,
) -> torch.Tensor:
    """[n_sid_tokens, dim] per (level, code): the mean title embedding of its items."""
    items = torch.stack(
        [weight[ids].mean(dim=0) if ids else fallback for ids in title_ids]
    )  # [n_items, dim]
    out = []
    for level, size in enumerate(vocab.sizes):
        col = torch.as_tensor(codes[:, level])
        sums = torch.zeros(size, items.shape[1]).index_add_(0, col, items)
        counts = torch.bincount(col, minlength=size).float()[:, None]
        out.append(torch.where(counts > 0, sums / counts.clamp(min=1), fallback))
    return torch.cat(out)
