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

from dataclasses import dataclass, field
from typing import Literal

from recbias.config import Config, invalid, spec
from recbias.genrec.config import Encoder, GenRecConfig, Quantizer
from recbias.sidllm.prefixmem import PrefixMemConfig

Representation = Literal["title", "sid", "sid+title"]
Init = Literal["title_mean", "vocab_mean"]


@dataclass
class SidConfig(Config):
    """Semantic IDs of the items and the initialisation of their new token embeddings."""

    encoder: Encoder = field(
        default="auto",
        metadata=spec("item text encoder: minilm, tfidf, or auto (minilm if available)"),
    )
    embeddings_path: str | None = field(
        default=None,
        metadata=spec(".npy file [n_items, dim] of item embeddings; overrides encoder", path=True),
    )
    tfidf_dim: int = field(
        default=64, metadata=spec("TruncatedSVD dimensions of the TF-IDF fallback", ge=1)
    )
    quantizer: Quantizer = field(
        default="rkmeans",
        metadata=spec("rkmeans (residual k-means) or rqvae (residual-quantised VAE)"),
    )
    levels: int = field(
        default=3, metadata=spec("semantic-ID levels L (before the collision-suffix level)", ge=1)
    )
    codebook_size: int = field(default=32, metadata=spec("codes per level C", ge=2))
    max_suffix: int = field(
        default=15,
        metadata=spec("largest allowed collision suffix (items sharing a prefix - 1)", ge=0),
    )
    rqvae_epochs: int = field(default=300, metadata=spec("full-batch RQ-VAE training steps", ge=1))
    rqvae_latent: int = field(default=32, metadata=spec("RQ-VAE latent width", ge=1))
    rqvae_beta: float = field(default=0.25, metadata=spec("RQ-VAE commitment-loss weight", ge=0))
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

    def check(self) -> None:
        if self.embeddings_path is not None and not self.embeddings_path.endswith(".npy"):
            raise invalid("embeddings_path", "must be a .npy file", self.embeddings_path)

    def quantiser(self) -> GenRecConfig:
        """The genrec config that builds these semantic IDs (its model fields are unused)."""
        return GenRecConfig(
            encoder=self.encoder,
            embeddings_path=self.embeddings_path,
            tfidf_dim=self.tfidf_dim,
            quantizer=self.quantizer,
            levels=self.levels,
            codebook_size=self.codebook_size,
            max_suffix=self.max_suffix,
            rqvae_epochs=self.rqvae_epochs,
            rqvae_latent=self.rqvae_latent,
            rqvae_beta=self.rqvae_beta,
            seed=self.seed,
        )


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
