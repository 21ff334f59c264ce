"""Typed configs of the four bias-channel probes (one TOML file per probe).

cfg = load_config(PositionalProbeConfig, Path("configs/probe_positional.toml"))
cfg = load_config(CONFIGS["synthetic"], path, ["synthetic.rounds=5"])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from recbias.baselines.sasrec import SASRecConfig
from recbias.config import Config, invalid, spec
from recbias.data.config import DataConfig


@dataclass
class ProbeModelConfig(Config):
    """Which trained model a probe measures (``none`` = isolated-head experiments only)."""

    kind: Literal["none", "genrec", "sasrec", "popularity"] = field(
        default="none", metadata=spec("trained model: none, genrec, sasrec or popularity")
    )
    genrec: dict[str, Any] = field(
        default_factory=dict, metadata=spec("GenRecConfig fields for kind = 'genrec'")
    )
    sasrec: SASRecConfig = field(
        default_factory=SASRecConfig, metadata=spec("SASRec settings for kind = 'sasrec'")
    )
    samples: int = field(
        default=500,
        metadata=spec("test samples (the first N) the trained model is probed on", ge=1),
    )


@dataclass
class ProbeBase(Config):
    name: str = field(default="probe", metadata=spec("run name (prefix of the run dir)"))
    seed: int = field(default=0, metadata=spec("seed of every random draw of the probe"))
    output_dir: str = field(default="runs", metadata=spec("where run directories are created"))
    data: DataConfig = field(default_factory=DataConfig, metadata=spec("dataset (trained models)"))
    model: ProbeModelConfig = field(default_factory=ProbeModelConfig, metadata=spec("model"))


@dataclass
class PositionalSection(Config):
    m_grid: list[float] = field(
        default_factory=lambda: [0.0, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0],
        metadata=spec("positional strengths m (ALiBi slope) to sweep", ge=0, min_len=1),
    )
    window: int = field(default=2, metadata=spec("near window: the most recent w items", ge=1))
    history_len: int = field(default=10, metadata=spec("isolated head: items in the history", ge=1))
    tokens_per_item: int = field(default=3, metadata=spec("isolated head: tokens per item", ge=1))
    head_dim: int = field(default=16, metadata=spec("isolated head: query/key width", ge=1))
    key_draws: int = field(
        default=256, metadata=spec("isolated head: sampled query/key sets", ge=1)
    )
    k: int = field(default=10, metadata=spec("list length of NDCG@k, coverage and Gini", ge=1))

    def check(self) -> None:
        if self.window > self.history_len:
            raise invalid("window", f"must be <= history_len ({self.history_len})", self.window)


@dataclass
class PositionalProbeConfig(ProbeBase):
    positional: PositionalSection = field(
        default_factory=PositionalSection, metadata={"help": "the positional probe"}
    )

    def check(self) -> None:
        if self.model.kind not in ("none", "genrec"):
            need = "the positional probe needs history_attention (kind 'genrec') or 'none'"
            raise invalid("model.kind", need + " for the isolated head only", self.model.kind)


@dataclass
class SGDSection(Config):
    counts: list[int] = field(
        default_factory=lambda: [32, 16, 8, 4, 2, 1],
        metadata=spec(
            "history counts of the tokens; training frequencies are proportional", ge=1, min_len=2
        ),
    )
    steps: int = field(default=200, metadata=spec("SGD steps (the early-training window)", ge=1))
    lr: float = field(default=0.05, metadata=spec("SGD learning rate", gt=0))
    dim: int = field(default=16, metadata=spec("query/key width (>= number of tokens)", ge=1))
    query_noise: float = field(default=0.3, metadata=spec("std of the query around its mean", ge=0))
    seeds: int = field(default=20, metadata=spec("independent training runs averaged", ge=1))
    checkpoints: int = field(default=10, metadata=spec("steps at which exposure is measured", ge=1))

    def check(self) -> None:
        if self.dim < len(self.counts):
            need = f"must be >= {len(self.counts)} (one orthogonal query direction per token)"
            raise invalid("dim", need, self.dim)


@dataclass
class PopularitySection(Config):
    exposure: Literal["softmax", "topk"] = field(
        default="softmax", metadata=spec("softmax probability mass or expected top-K exposure")
    )
    k: int = field(default=10, metadata=spec("K of top-K exposure", ge=1))
    count: Literal["targets", "interactions"] = field(
        default="targets", metadata=spec("platform-level training frequency (see count_items)")
    )
    bootstrap: int = field(
        default=1000, metadata=spec("bootstrap resamples of the exponent CI", ge=1)
    )
    sgd: SGDSection = field(default_factory=SGDSection, metadata=spec("early-SGD experiment"))


@dataclass
class PopularityProbeConfig(ProbeBase):
    popularity: PopularitySection = field(
        default_factory=PopularitySection, metadata={"help": "the popularity probe"}
    )


@dataclass
class LatentSection(Config):
    sigmas: list[float] = field(
        default_factory=lambda: [0.0, 0.25, 0.5, 1.0, 2.0],
        metadata=spec("logit-noise scales sigma to sweep", ge=0, min_len=1),
    )
    draws: int = field(default=5, metadata=spec("noise draws per sigma on the trained model", ge=1))
    head_draws: int = field(default=20000, metadata=spec("noise draws on the isolated head", ge=1))
    history_len: int = field(default=10, metadata=spec("isolated head: history positions", ge=2))
    mean_gap: float = field(
        default=0.5,
        metadata=spec("isolated head: mean logits -gap * j, so the pair (0, 1) has gap Delta"),
    )
    kappa: float = field(
        default=3.0, metadata=spec("odds-ratio threshold of P(a_i/a_j >= kappa)", gt=0)
    )
    k: int = field(default=10, metadata=spec("top-K of the Jaccard stability", ge=1))


@dataclass
class LatentProbeConfig(ProbeBase):
    latent: LatentSection = field(
        default_factory=LatentSection, metadata={"help": "the latent probe"}
    )

    def check(self) -> None:
        if self.model.kind not in ("none", "genrec"):
            need = "the latent probe needs set_attention_noise (kind 'genrec') or 'none'"
            raise invalid("model.kind", need + " for the isolated head only", self.model.kind)


@dataclass
class SyntheticSection(Config):
    n_items: int = field(default=50, metadata=spec("catalogue size within one context", ge=1))
    zipf: float = field(
        default=1.0, metadata=spec("organic distribution p*(i) ~ (i+1)^-zipf", ge=0)
    )
    logs_per_round: int = field(
        default=200, metadata=spec("logged choices per round (n + m)", ge=1)
    )
    lambdas: list[float] = field(
        default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 0.9],
        metadata=spec("delegation shares lambda = m / (n + m)", ge=0, le=1, min_len=1),
    )
    rounds: int = field(default=30, metadata=spec("retraining rounds", ge=1))
    seeds: int = field(default=200, metadata=spec("Monte-Carlo repetitions per lambda", ge=1))


@dataclass
class SyntheticProbeConfig(Config):
    name: str = field(default="probe_synthetic", metadata=spec("run name"))
    seed: int = field(default=0, metadata=spec("seed of the Monte-Carlo draws"))
    output_dir: str = field(default="runs", metadata=spec("where run directories are created"))
    synthetic: SyntheticSection = field(
        default_factory=SyntheticSection, metadata={"help": "the synthetic feedback-loop probe"}
    )


CONFIGS: dict[str, type] = {
    "positional": PositionalProbeConfig,
    "popularity": PopularityProbeConfig,
    "latent": LatentProbeConfig,
    "synthetic": SyntheticProbeConfig,
}
