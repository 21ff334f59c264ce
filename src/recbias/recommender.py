"""The LLM recommender: prompts → catalog-constrained beam search → ranked item ids.

Under several processes (torchrun) :meth:`LLMRecommender.recommend` is sharded: the forward batches
of the beam search are dealt round-robin to the ranks, each rank decodes its batches and every
rank receives all results, in the samples' order. A prompt is decoded in the same batch as in one
process, so the results are identical (bit for bit on the same hardware). Every rank must call
``recommend`` with the same samples.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import torch

from recbias.config import Config, invalid
from recbias.decoding import BeamConfig, ItemTrie, constrained_beam_search
from recbias.decoding.beam import batch_plan
from recbias.decoding.config import EdgeScores, ScoreHook
from recbias.decoding.d3 import D3Config
from recbias.decoding.igd_calibration import IGDDecodeConfig
from recbias.evaluation.predictions import Recommendations
from recbias.lm.loading import autocast
from recbias.prompts import PromptBuilder
from recbias.train import distributed


@dataclass
class DecodeConfig(Config):
    beam: BeamConfig = field(
        default_factory=BeamConfig, metadata={"help": "beam width, length penalty, batching"}
    )
    candidates: Literal["catalog", "train_targets"] = field(
        default="catalog",
        metadata={
            "help": "items decoding may produce: the full catalog (D3) or only items that are "
            "training targets (IGD)"
        },
    )
    calibration: list[Literal["igd", "d3"]] = field(
        default_factory=list,
        metadata={
            "help": "score calibrations applied in this order at every beam step: igd (IGD "
            "Eq. 10, settings in decode.igd), d3 (D3's text-free assistant, decode.d3)",
            "unique": True,
        },
    )
    igd: IGDDecodeConfig = field(
        default_factory=IGDDecodeConfig, metadata={"help": "calibration 'igd'"}
    )
    d3: D3Config = field(default_factory=D3Config, metadata={"help": "calibration 'd3'"})

    def check(self) -> None:
        if "d3" in self.calibration and self.d3.assistant == "none":
            raise invalid(
                "d3.assistant", "calibration 'd3' needs an assistant (sasrec or popularity)"
            )


# Builds the score hook for the samples about to be decoded (None = plain beam search).
HookFactory = Callable[[pd.DataFrame], ScoreHook | None]


def chain_hooks(hooks: Sequence[ScoreHook]) -> ScoreHook:
    """Apply score hooks in order, each seeing the previous one's scores as ``logp``."""

    def chained(edges: EdgeScores):
        for hook in hooks:
            edges = dataclasses.replace(edges, logp=hook(edges))
        return edges.logp

    return chained


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
        hooks: HookFactory | None = None,
    ) -> None:
        self.model, self.builder, self.titles, self.trie = model, builder, titles, trie
        self.beam, self.dtype, self.hooks = beam, dtype, hooks

    def prompts(self, samples: pd.DataFrame) -> list[list[int]]:
        out = []
        for hist in samples["history"]:
            items = [int(i) for i in hist]
            out.append(self.builder.encode([self.titles[i] for i in items], items).input_ids)
        return out

    def recommend(self, samples: pd.DataFrame, k: int) -> Recommendations:
        """Top-``k`` items of every sample (this rank's share decoded, all gathered)."""
        device = next(self.model.parameters()).device
        pad = self.builder.tokenizer.pad_token_id
        hook = self.hooks(samples) if self.hooks is not None else None
        prompts = self.prompts(samples)
        plan = batch_plan(prompts, self.beam.batch_size)
        mine = distributed.shard(plan)
        with autocast(self.dtype, device):
            results = constrained_beam_search(
                self.model, prompts, self.trie, self.beam, pad, hook, batches=mine
            )
        found = [[(results[i].items, results[i].scores) for i in chunk] for chunk in mine]
        ranked: list[tuple[list[int], list[float]]] = [([], [])] * len(prompts)
        for chunk, part in zip(plan, distributed.gather_shards(found, len(plan)), strict=True):
            for i, res in zip(chunk, part, strict=True):
                ranked[i] = res
        return Recommendations.from_lists(
            np.asarray(samples["sample_id"]), [r[0] for r in ranked], [r[1] for r in ranked], k
        )
