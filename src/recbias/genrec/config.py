"""Typed configs of the generative (semantic-ID) recommender and of its run.

    cfg = GenRecConfig(position="alibi", alibi_m=0.5, levels=3, codebook_size=32)
    run_cfg = load_config(GenRecRunConfig, Path("configs/genrec_ml100k.toml"), ["genrec.epochs=5"])

Every error names the full key, e.g. ``config key 'genrec.codebook_size': must be >= 2, got 1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from recbias.config import Config, invalid, spec
from recbias.data.config import DataConfig
from recbias.runs import FinishConfig

Encoder = Literal["auto", "minilm", "tfidf"]
Quantizer = Literal["rkmeans", "rqvae"]
Position = Literal["none", "absolute", "alibi", "rope"]
Architecture = Literal["encoder_decoder", "decoder_only"]


@dataclass
class SemanticIdConfig(Config):
    """How items get semantic IDs: their text embeddings and the quantiser (shared by
    ``recbias genrec`` and the SID-LLM's ``[items.sid]``)."""

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
        default=3, metadata=spec("semantic-ID levels L (before the suffix level)", ge=1)
    )
    codebook_size: int = field(default=32, metadata=spec("codes per level C", ge=2))
    max_suffix: int = field(
        default=15,
        metadata=spec(
            "largest allowed collision suffix (items sharing an L-level prefix - 1)", ge=0
        ),
    )
    rqvae_epochs: int = field(default=300, metadata=spec("full-batch RQ-VAE training steps", ge=1))
    rqvae_latent: int = field(default=32, metadata=spec("RQ-VAE latent width", ge=1))
    rqvae_beta: float = field(default=0.25, metadata=spec("RQ-VAE commitment-loss weight", ge=0))

    def check(self) -> None:
        if self.embeddings_path is not None and not self.embeddings_path.endswith(".npy"):
            raise invalid("embeddings_path", "must be a .npy file", self.embeddings_path)


@dataclass
class GenRecConfig(SemanticIdConfig):
    """Semantic IDs, transformer, training and decoding settings of ``GenerativeRecommender``."""

    # transformer
    architecture: Architecture = field(
        default="encoder_decoder",
        metadata=spec("encoder_decoder (as in the paper) or decoder_only"),
    )
    position: Position = field(
        default="alibi", metadata=spec("position signal: none, absolute (learned), alibi or rope")
    )
    alibi_m: float = field(
        default=0.5,
        metadata=spec("ALiBi strength m: attention logit bias -m * distance in items", ge=0),
    )
    rope_base: float = field(
        default=10000.0, metadata=spec("RoPE base (positions are item indices)", gt=0)
    )
    d_model: int = field(default=64, metadata=spec("model width", ge=1))
    heads: int = field(default=4, metadata=spec("attention heads", ge=1))
    encoder_layers: int = field(
        default=2, metadata=spec("encoder blocks (decoder_only: unused)", ge=0)
    )
    decoder_layers: int = field(default=2, metadata=spec("decoder blocks", ge=1))
    ff_dim: int = field(default=128, metadata=spec("feed-forward hidden width", ge=1))
    dropout: float = field(default=0.1, metadata=spec("dropout rate", ge=0, lt=1))
    max_len: int = field(default=10, metadata=spec("history items kept (most recent)", ge=1))
    # training
    epochs: int = field(default=20, metadata=spec("passes over the training samples", ge=1))
    lr: float = field(default=2e-3, metadata=spec("AdamW learning rate", gt=0))
    weight_decay: float = field(default=0.01, metadata=spec("AdamW weight decay", ge=0))
    batch_size: int = field(default=128, metadata=spec("samples per step", ge=1))
    augment_prefixes: bool = field(
        default=True, metadata=spec("also train on every history prefix -> next history item")
    )
    patience: int = field(
        default=3, metadata=spec("epochs without validation improvement before stopping", ge=1)
    )
    dtype: Literal["auto", "bf16", "fp32"] = field(
        default="auto",
        metadata=spec("bf16 autocast for training and inference, fp32, or auto (bf16 where fast)"),
    )
    # decoding
    beam_size: int = field(default=20, metadata=spec("beam width (at least k is used)", ge=1))
    score_batch: int = field(
        default=16, metadata=spec("samples per batch in exact catalog scoring", ge=1)
    )
    seed: int = field(default=0, metadata=spec("seed of quantisation, init, shuffling and dropout"))
    device: str = field(default="cpu", metadata=spec("torch device (cpu, cuda, cuda:1, ...)"))

    def check(self) -> None:
        super().check()
        if self.d_model % self.heads:
            raise invalid("heads", f"must be a divisor of d_model ({self.d_model})", self.heads)
        if self.position == "rope" and (self.d_model // self.heads) % 2:
            raise invalid("heads", "must make d_model / heads even for rope", self.heads)
        if self.architecture == "encoder_decoder" and self.encoder_layers < 1:
            raise invalid("encoder_layers", "must be >= 1 for encoder_decoder", self.encoder_layers)


@dataclass
class GenRecEvalConfig(Config):
    ks: list[int] = field(
        default_factory=lambda: [1, 5, 10, 20], metadata=spec("cut-offs K", ge=1, min_len=1)
    )
    bootstrap: int = field(default=1000, metadata=spec("bootstrap resamples for the CIs", ge=1))
    split: Literal["valid", "test"] = field(default="test", metadata=spec("split to evaluate"))


@dataclass
class GenRecRunConfig(Config):
    """``recbias genrec CONFIG.toml``: prepare data, build semantic IDs, train, evaluate."""

    name: str = field(default="genrec", metadata=spec("run name (prefix of the run dir)"))
    output_dir: str = field(default="runs", metadata=spec("where run directories are created"))
    threads: int | None = field(
        default=None, metadata=spec("torch CPU threads (unset = all cores)")
    )
    data: DataConfig = field(
        default_factory=DataConfig, metadata={"help": "dataset: source and preparation"}
    )
    genrec: GenRecConfig = field(
        default_factory=GenRecConfig,
        metadata={"help": "semantic IDs, transformer, training and decoding"},
    )
    eval: GenRecEvalConfig = field(
        default_factory=GenRecEvalConfig, metadata={"help": "metrics and the evaluated split"}
    )
    finish: FinishConfig = field(
        default_factory=lambda: FinishConfig(report=False),
        metadata={
            "help": "after testing: the bias audit (concentration, positional attention, history "
            "sensitivity) into RUN/audit/, and the report"
        },
    )
