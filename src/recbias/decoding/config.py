"""Typed decoding settings and the per-step score-hook interface of constrained beam search."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch

from recbias.config import Config, invalid, spec

StopRule = Literal["hf", "exact"]


@dataclass
class BeamConfig(Config):
    """Settings of :func:`recbias.decoding.constrained_beam_search`."""

    num_beams: int = field(
        default=10, metadata=spec("Beam width W (hypotheses kept per step).", ge=1)
    )
    length_penalty: float = field(
        default=0.0,
        metadata={
            "help": "Final score = sum log-prob / len**length_penalty, len = generated tokens "
            "including the terminator (as transformers 5.23). 0 = D3 (no normalisation), "
            "1 = average log-prob (BIGRec)."
        },
    )
    renormalize: bool = field(
        default=False,
        metadata={
            "help": "Renormalise log-probs over the trie-allowed tokens at each step "
            "(HF renormalize_logits=True). False = full-vocabulary log-softmax, the HF default."
        },
    )
    batch_size: int = field(default=16, metadata=spec("Prompts per forward pass.", ge=1))
    num_return: int | None = field(
        default=None,
        metadata=spec("Items returned per prompt, at most num_beams (default: num_beams).", ge=1),
    )
    share_prompt_kv: bool = field(
        default=True,
        metadata={
            "help": "Keep one copy of each prompt's KV cache for all its beams (full-attention "
            "models; others fall back). False = a per-beam cache, as HF."
        },
    )
    stop: StopRule = field(
        default="hf",
        metadata={
            "help": "'hf': transformers' early_stopping=False heuristic (stop a prompt when the best "
            "running beam, normalised at its current length, cannot beat the worst kept "
            "hypothesis). 'exact': stop only when no running beam can beat it at any reachable "
            "length (bounded with the trie's depths); differs from 'hf' only if length_penalty != 0."
        },
    )

    def __post_init__(self) -> None:
        self.validate()  # decoding code builds BeamConfig directly: check at construction

    def check(self) -> None:
        if self.num_return is not None and self.num_return > self.num_beams:
            raise invalid("num_return", f"must be <= num_beams ({self.num_beams})", self.num_return)

    @property
    def n_return(self) -> int:
        return self.num_beams if self.num_return is None else self.num_return


@dataclass(frozen=True)
class EdgeScores:
    """What a score hook sees at one decoding step: every trie edge out of every live beam.

    ``rows`` = live beams in this forward, ``D`` = most children of any of their trie nodes.
    Padding edges (``valid`` False) have token 0, child -1 and log-prob -inf. Every tensor is on
    the model's device; a hook should build its own tensors there (e.g. ``device=logp.device``).
    """

    logp: torch.Tensor  # [rows, D] model log-prob of each edge token (renormalised if configured)
    parent: torch.Tensor  # [rows] trie node of each beam
    token: torch.Tensor  # [rows, D] edge tokens
    child: torch.Tensor  # [rows, D] trie node each edge leads to
    valid: torch.Tensor  # [rows, D] bool
    prompt: torch.Tensor  # [rows] index of the beam's prompt in the caller's prompt list
    step: int  # tokens generated before this step


# Returns adjusted per-edge scores [rows, D] that replace ``logp`` in the beam's running sum.
# Padding edges are re-masked afterwards. For ``stop="exact"`` the scores must stay <= 0.
ScoreHook = Callable[[EdgeScores], torch.Tensor]
