"""Typed configs of the generative (semantic-ID) recommender and of its run.

    cfg = GenRecConfig(position="alibi", alibi_m=0.5, levels=3, codebook_size=32)
    run_cfg = load_config(GenRecRunConfig, Path("configs/genrec_ml100k.toml"), ["genrec.epochs=5"])

Every error names the dotted key, e.g. ``config key 'genrec.codebook_size': must be >= 2, got 1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from recbias.data.config import DataConfig
from recbias.errors import ConfigError

KEY = "genrec"

Encoder = Literal["auto", "minilm", "tfidf"]
Quantizer = Literal["rkmeans", "rqvae"]
Position = Literal["none", "absolute", "alibi", "rope"]
Architecture = Literal["encoder_decoder", "decoder_only"]


def _h(text: str) -> dict[str, str]:
    return {"help": text}


def _fail(key: str, rule: str, value: object) -> ConfigError:
    return ConfigError(f"config key '{KEY}.{key}': must be {rule}, got {value!r}")


@dataclass
class GenRecConfig:
    """Semantic IDs, transformer, training and decoding settings of ``GenerativeRecommender``."""

    # semantic IDs
    encoder: Encoder = field(
        default="auto",
        metadata=_h("item text encoder: minilm, tfidf, or auto (minilm if available)"),
    )
    embeddings_path: str | None = field(
        default=None, metadata=_h(".npy file [n_items, dim] of item embeddings; overrides encoder")
    )
    tfidf_dim: int = field(
        default=64, metadata=_h("TruncatedSVD dimensions of the TF-IDF fallback")
    )
    quantizer: Quantizer = field(
        default="rkmeans",
        metadata=_h("rkmeans (residual k-means) or rqvae (residual-quantised VAE)"),
    )
    levels: int = field(default=3, metadata=_h("semantic-ID levels L (before the suffix level)"))
    codebook_size: int = field(default=32, metadata=_h("codes per level C"))
    max_suffix: int = field(
        default=15,
        metadata=_h("largest allowed collision suffix (items sharing an L-level prefix - 1)"),
    )
    rqvae_epochs: int = field(default=300, metadata=_h("full-batch RQ-VAE training steps"))
    rqvae_latent: int = field(default=32, metadata=_h("RQ-VAE latent width"))
    rqvae_beta: float = field(default=0.25, metadata=_h("RQ-VAE commitment-loss weight"))
    # transformer
    architecture: Architecture = field(
        default="encoder_decoder", metadata=_h("encoder_decoder (as in the paper) or decoder_only")
    )
    position: Position = field(
        default="alibi", metadata=_h("position signal: none, absolute (learned), alibi or rope")
    )
    alibi_m: float = field(
        default=0.5, metadata=_h("ALiBi strength m: attention logit bias -m * distance in items")
    )
    rope_base: float = field(default=10000.0, metadata=_h("RoPE base (positions are item indices)"))
    d_model: int = field(default=64, metadata=_h("model width"))
    heads: int = field(default=4, metadata=_h("attention heads"))
    encoder_layers: int = field(default=2, metadata=_h("encoder blocks (decoder_only: unused)"))
    decoder_layers: int = field(default=2, metadata=_h("decoder blocks"))
    ff_dim: int = field(default=128, metadata=_h("feed-forward hidden width"))
    dropout: float = field(default=0.1, metadata=_h("dropout rate"))
    max_len: int = field(default=10, metadata=_h("history items kept (most recent)"))
    # training
    epochs: int = field(default=20, metadata=_h("passes over the training samples"))
    lr: float = field(default=2e-3, metadata=_h("AdamW learning rate"))
    weight_decay: float = field(default=0.01, metadata=_h("AdamW weight decay"))
    batch_size: int = field(default=128, metadata=_h("samples per step"))
    augment_prefixes: bool = field(
        default=True, metadata=_h("also train on every history prefix -> next history item")
    )
    patience: int = field(
        default=3, metadata=_h("epochs without validation improvement before stopping")
    )
    dtype: Literal["auto", "bf16", "fp32"] = field(
        default="auto",
        metadata=_h("bf16 autocast for training and inference, fp32, or auto (bf16 where fast)"),
    )
    # decoding
    beam_size: int = field(default=20, metadata=_h("beam width (at least k is used)"))
    score_batch: int = field(default=16, metadata=_h("samples per batch in exact catalog scoring"))
    seed: int = field(default=0, metadata=_h("seed of quantisation, init, shuffling and dropout"))
    device: str = field(default="cpu", metadata=_h("torch device (cpu, cuda, cuda:1, ...)"))

    def validate(self) -> None:
        for key in (
            "tfidf_dim", "levels", "rqvae_epochs", "rqvae_latent", "d_model", "heads",
            "decoder_layers", "ff_dim", "max_len", "epochs", "batch_size", "beam_size",
            "score_batch", "patience",
        ):  # fmt: skip
            if getattr(self, key) < 1:
                raise _fail(key, ">= 1", getattr(self, key))
        if self.codebook_size < 2:
            raise _fail("codebook_size", ">= 2", self.codebook_size)
        for key in ("max_suffix", "encoder_layers", "alibi_m", "rqvae_beta", "weight_decay"):
            if getattr(self, key) < 0:
                raise _fail(key, ">= 0", getattr(self, key))
        if self.d_model % self.heads:
            raise _fail("heads", f"a divisor of d_model ({self.d_model})", self.heads)
        if self.position == "rope" and (self.d_model // self.heads) % 2:
            raise _fail("heads", "such that d_model / heads is even for rope", self.heads)
        if self.architecture == "encoder_decoder" and self.encoder_layers < 1:
            raise _fail("encoder_layers", ">= 1 for encoder_decoder", self.encoder_layers)
        if not 0.0 <= self.dropout < 1.0:
            raise _fail("dropout", "in [0, 1)", self.dropout)
        if self.lr <= 0 or self.rope_base <= 0:
            raise _fail("lr" if self.lr <= 0 else "rope_base", "> 0", min(self.lr, self.rope_base))
        if self.embeddings_path is not None and not self.embeddings_path.endswith(".npy"):
            raise _fail("embeddings_path", "a .npy file", self.embeddings_path)


@dataclass
class GenRecEvalConfig:
    ks: list[int] = field(default_factory=lambda: [1, 5, 10, 20], metadata=_h("cut-offs K"))
    bootstrap: int = field(default=1000, metadata=_h("bootstrap resamples for the CIs"))
    split: Literal["valid", "test"] = field(default="test", metadata=_h("split to evaluate"))

    def validate(self) -> None:
        if not self.ks or min(self.ks) < 1:
            raise ConfigError(f"config key 'eval.ks': must be non-empty and >= 1, got {self.ks}")
        if self.bootstrap < 1:
            raise ConfigError(f"config key 'eval.bootstrap': must be >= 1, got {self.bootstrap}")


@dataclass
class GenRecRunConfig:
    """``recbias genrec CONFIG.toml``: prepare data, build semantic IDs, train, evaluate."""

    name: str = field(default="genrec", metadata=_h("run name (prefix of the run dir)"))
    output_dir: str = field(default="runs", metadata=_h("where run directories are created"))
    threads: int | None = field(default=None, metadata=_h("torch CPU threads (unset = all cores)"))
    data: DataConfig = field(default_factory=DataConfig)
    genrec: GenRecConfig = field(default_factory=GenRecConfig)
    eval: GenRecEvalConfig = field(default_factory=GenRecEvalConfig)
