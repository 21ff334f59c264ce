"""How items are spelled to the LLM: titles, semantic IDs, or semantic IDs followed by titles.

    [items]
    representation = "sid"          # "title" (default) | "sid" | "sid+title"
    [items.sid]
    quantizer = "rkmeans"           # the genrec quantisers: rkmeans or rqvae
    levels = 3
    codebook_size = 32

``items.sid`` holds the quantiser settings of :class:`recbias.genrec.config.GenRecConfig` that
semantic IDs need, plus how the new token embeddings start (``init``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal

from recbias.config import Config, invalid, spec
from recbias.genrec.config import GenRecConfig, SemanticIdConfig
from recbias.sidllm.prefixmem import PrefixMemConfig

Representation = Literal["title", "sid", "sid+title"]
Init = Literal["title_mean", "vocab_mean"]


@dataclass
class SidConfig(SemanticIdConfig):
    """Semantic IDs of the items and the initialisation of their new token embeddings."""

    seed: int = field(default=0, metadata=spec("seed of the quantiser and of the init noise"))
    init: Init = field(
        default="title_mean",
        metadata=spec(
            "new token rows: title_mean = mean embedding of the title tokens of the items under "
            "that code (unused codes: vocab_mean); vocab_mean = mean of the existing rows"
        ),
    )
    init_noise: float = field(
        default=0.0,
        metadata=spec(
            "Gaussian noise added to every new row, in units of the per-dimension std of the "
            "existing rows (0 = none)",
            ge=0,
        ),
    )

    def quantiser(self) -> GenRecConfig:
        """The genrec config that builds these semantic IDs (its model fields are unused)."""
        shared = {f.name: getattr(self, f.name) for f in fields(SemanticIdConfig)}
        return GenRecConfig(**shared, seed=self.seed)


@dataclass
class ItemsConfig(Config):
    representation: Representation = field(
        default="title",
        metadata=spec(
            "how items appear in prompts and targets: title; sid = semantic-ID tokens "
            "(<a_12><b_5><c_30><d_0>) added to the vocabulary; sid+title = history items as "
            "SID then title, targets as SID"
        ),
    )
    sid: SidConfig = field(
        default_factory=SidConfig,
        metadata={"help": "semantic IDs (representation = sid or sid+title)"},
    )
    encoder: Literal["none", "prefixmem"] = field(
        default="none",
        metadata=spec(
            "SID encoder added to the input embeddings at SID positions: none, or prefixmem "
            "(prefix n-gram memory tables, arXiv 2606.00324; settings in items.prefixmem)"
        ),
    )
    prefixmem: PrefixMemConfig = field(
        default_factory=PrefixMemConfig,
        metadata={"help": "the PrefixMem encoder (encoder = prefixmem)"},
    )

    @property
    def uses_sid(self) -> bool:
        return self.representation != "title"

    def check(self) -> None:
        if self.encoder != "none" and not self.uses_sid:
            raise invalid("encoder", f"'{self.encoder}' encodes semantic IDs: set representation "
                          "to sid or sid+title")  # fmt: skip
