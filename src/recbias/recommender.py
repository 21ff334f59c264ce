"""The LLM recommender: prompts → catalog-constrained beam search → ranked item ids."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import torch

from recbias.decoding import BeamConfig, ItemTrie, constrained_beam_search
from recbias.decoding.config import ScoreHook
from recbias.evaluation.predictions import Recommendations
from recbias.lm.loading import autocast
from recbias.prompts import PromptBuilder


@dataclass
class DecodeConfig:
    beam: BeamConfig = field(default_factory=BeamConfig)
    candidates: Literal["catalog", "train_targets"] = field(
        default="catalog",
        metadata={
            "help": "items decoding may produce: the full catalog (D3) or only items that are "
            "training targets (IGD)"
        },
    )


def candidate_items(mode: str, n_items: int, train_targets: Sequence[int]) -> list[int]:
    if mode == "catalog":
        return list(range(n_items))
    return sorted({int(t) for t in train_targets})


def build_trie(builder: PromptBuilder, titles: Sequence[str], items: Sequence[int]) -> ItemTrie:
    """The item trie, from exactly the target tokenization used in training."""
    return ItemTrie.build([builder.encode_target(titles[i]) for i in items], items)


class LLMRecommender:
    """Wraps a causal LM, its prompt builder and the item trie behind the Recommender protocol."""

    name = "llm"

    def __init__(
        self,
        model: torch.nn.Module,
        builder: PromptBuilder,
        titles: Sequence[str],
        trie: ItemTrie,
        beam: BeamConfig,
        dtype: str = "bf16",
        score_hook: ScoreHook | None = None,
    ) -> None:
        self.model, self.builder, self.titles, self.trie = model, builder, titles, trie
        self.beam, self.dtype, self.score_hook = beam, dtype, score_hook

    def prompts(self, samples: pd.DataFrame) -> list[list[int]]:
        out = []
        for hist in samples["history"]:
            items = [int(i) for i in hist]
            out.append(self.builder.encode([self.titles[i] for i in items], items).input_ids)
        return out

    def recommend(self, samples: pd.DataFrame, k: int) -> Recommendations:
        device = next(self.model.parameters()).device
        pad = self.builder.tokenizer.pad_token_id
        with autocast(self.dtype, device):
            results = constrained_beam_search(
                self.model, self.prompts(samples), self.trie, self.beam, pad, self.score_hook
            )
        return Recommendations.from_lists(
            np.asarray(samples["sample_id"]),
            [r.items for r in results],
            [r.scores for r in results],
            k,
        )
