"""Semantic IDs in an LLM run: the tokens, the resized model, the prompt spelling, the encoder slot.

    setup = sid_setup(cfg.items, ds, tokenizer, weights)   # codes + tokens added to the tokenizer
    setup.fit_model(model, tokenizer, ds.titles, init=True) # rows resized and initialised
    model = add_lora(model, lora, lora_token_indices(model, setup.vocab))   # rows trainable
    model = attach_sid_encoder(model, setup, cfg.items, weights)             # the encoder slot
    PromptBuilder(tokenizer, cfg.prompt, ds.domain, setup.text)

:func:`recbias.llmrec.assemble.load_lm` runs these steps when ``items.representation`` is ``sid``
or ``sid+title``. A trained run's checkpoint (``model/`` or ``adapter/``) holds
``semantic_ids.json``, which is read back instead of quantising again, so a reloaded model sees
exactly the codes it was trained with.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from recbias.data.dataset import PreparedDataset
from recbias.errors import ModelError
from recbias.sidllm.config import ItemsConfig, SidConfig
from recbias.sidllm.embeddings import init_sid_rows, is_tied, resize_for_sid
from recbias.sidllm.items import (
    SidItems,
    SidText,
    build_sid_items,
    load_sid_items,
    report_line,
)
from recbias.sidllm.prefixmem_attach import WEIGHTS_FILE as PREFIXMEM_FILE
from recbias.sidllm.prefixmem_attach import attach_prefixmem, load_prefixmem
from recbias.sidllm.prefixmem_pretrain import pretrain_prefixmem
from recbias.sidllm.vocab import SidVocab, add_sid_tokens

log = logging.getLogger(__name__)

SID_FILE = "semantic_ids.json"


@dataclass
class SidSetup:
    """The items' semantic IDs, their tokens, how prompts spell them, and the settings."""

    items: SidItems
    vocab: SidVocab
    text: SidText
    cfg: SidConfig

    def fit_model(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        titles: list[str],
        init: bool,
    ) -> None:
        """Resize ``model`` for the SID tokens; ``init``: set their rows (a fresh model)."""
        rows = resize_for_sid(model, self.vocab)
        self.vocab = self.vocab.with_rows(rows)
        if init:
            init_sid_rows(model, tokenizer, self.vocab, self.items.codes, titles, self.cfg)


def sid_items_for(cfg: ItemsConfig, ds: PreparedDataset, weights: Path | None) -> SidItems:
    """The codes a checkpoint was trained with, else freshly quantised ones."""
    saved = weights / SID_FILE if weights is not None else None
    if saved is not None and saved.is_file():
        return load_sid_items(saved, len(ds.titles))
    return build_sid_items(cfg.sid, ds)


def sid_setup(
    cfg: ItemsConfig,
    ds: PreparedDataset,
    tokenizer: PreTrainedTokenizerBase,
    weights: Path | None = None,
) -> SidSetup:
    """Semantic IDs of ``ds``'s items, their tokens added to ``tokenizer`` (in place)."""
    items = sid_items_for(cfg, ds, weights)
    log.info(report_line(items.report, items.sizes, items.source))
    vocab = add_sid_tokens(tokenizer, items.sizes)
    sids = [vocab.text(row) for row in items.codes]
    text = SidText(ds.titles, sids, with_title=cfg.representation == "sid+title")
    return SidSetup(items, vocab, text, cfg.sid)


def lora_token_indices(model: PreTrainedModel, vocab: SidVocab) -> list[int] | dict[str, list[int]]:
    """PEFT ``trainable_token_indices`` that train the SID rows under LoRA: the input embedding
    (tied output rows follow it); an untied ``lm_head`` is named as well."""
    if is_tied(model):
        return list(vocab.ids)
    names = {id(m): n.rsplit(".", 1)[-1] for n, m in model.named_modules()}
    emb = names[id(model.get_input_embeddings())]
    head = names[id(model.get_output_embeddings())]
    return {emb: list(vocab.ids), head: list(vocab.ids)}


# ---------------------------------------------------------------------------------------------
# The SID encoder slot: after the SID tokens are added and the embeddings resized
# (``setup.vocab.level_of`` / ``code_of`` cover every row) and after LoRA wraps the model (the
# encoder's parameters, created here, stay trainable; PEFT froze the others before).
# ---------------------------------------------------------------------------------------------
def attach_sid_encoder(
    model: torch.nn.Module, setup: SidSetup, cfg: ItemsConfig, weights: Path | None
) -> torch.nn.Module:
    """``model`` with its SID encoder (``items.encoder``): read back from ``weights`` (a trained
    checkpoint), or new (pre-trained first when ``items.prefixmem.pretrain.epochs`` > 0)."""
    if cfg.encoder == "none":
        return model
    if weights is not None:
        if load_prefixmem(model, weights) is None:
            raise ModelError(f"'{weights}' has no '{PREFIXMEM_FILE}' but the run config sets "
                             "items.encoder = 'prefixmem'")  # fmt: skip
        return model
    vocab, pretrained = setup.vocab, None
    if cfg.prefixmem.pretrain.epochs:
        codes = torch.as_tensor(setup.items.codes, dtype=torch.long)
        pretrained, losses = pretrain_prefixmem(cfg.prefixmem, vocab.level_of, vocab.code_of, codes)
        log.info("PrefixMem pre-training loss per epoch: %s", [round(x, 4) for x in losses])
    attach_prefixmem(model, vocab.level_of, vocab.code_of, cfg.prefixmem, pretrained)
    return model


def check_checkpoint_tokens(weights: Path, vocab: SidVocab) -> None:
    """A checkpoint's saved tokenizer must give the SID tokens the ids this run gave them."""
    from transformers import AutoTokenizer

    if not (weights / "tokenizer_config.json").is_file():
        return
    saved = AutoTokenizer.from_pretrained(weights, local_files_only=True)
    for level, ids in zip(vocab.tokens, vocab.token_ids, strict=True):
        if saved.convert_tokens_to_ids(level) != ids:
            raise ModelError(
                f"'{weights}': its tokenizer gives the SID tokens other ids than the base "
                "tokenizer plus the run's semantic IDs (was it trained with other items.sid?)"
            )


__all__ = [
    "SID_FILE",
    "SidSetup",
    "attach_sid_encoder",
    "check_checkpoint_tokens",
    "lora_token_indices",
    "sid_setup",
]
