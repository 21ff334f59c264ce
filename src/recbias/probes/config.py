"""Typed configs of the four bias-channel probes (one TOML file per probe).

cfg = load_config(PositionalProbeConfig, Path("configs/probe_positional.toml"))
cfg = load_config(CONFIGS["synthetic"], path, ["synthetic.rounds=5"])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from recbias.baselines.sasrec import SASRecConfig
from recbias.data.config import DataConfig
from recbias.errors import ConfigError


def _help(text: str) -> dict[str, str]:
    return {"help": text}


def _positive(section: str, obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if value < 1:
            raise ConfigError(f"config key '{section}.{name}': must be >= 1, got {value}")


def _non_empty(key: str, values: list[float], low: float, high: float | None = None) -> None:
    if not values:
        raise ConfigError(f"config key '{key}': must be a non-empty list, got []")
    bad = [v for v in values if v < low or (high is not None and v > high)]
    if bad:
        span = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ConfigError(f"config key '{key}': every value must be {span}, got {bad[0]}")


@dataclass
class ProbeModelConfig:
    """Which trained model a probe measures (``none`` = isolated-head experiments only)."""

    kind: Literal["none", "genrec", "sasrec", "popularity"] = field(
        default="none", metadata=_help("trained model: none, genrec, sasrec or popularity")
    )
    genrec: dict[str, Any] = field(
        default_factory=dict, metadata=_help("GenRecConfig fields for kind = 'genrec'")
    )
    sasrec: SASRecConfig = field(
        default_factory=SASRecConfig, metadata=_help("SASRec settings for kind = 'sasrec'")
    )
    samples: int = field(
        default=500, metadata=_help("test samples (the first N) the trained model is probed on")
    )

    def validate(self) -> None:
        _positive("model", self, "samples")


@dataclass
class ProbeBase:
    name: str = field(default="probe", metadata=_help("run name (prefix of the run dir)"))
    seed: int = field(default=0, metadata=_help("seed of every random draw of the probe"))
    output_dir: str = field(default="runs", metadata=_help("where run directories are created"))
    data: DataConfig = field(default_factory=DataConfig, metadata=_help("dataset (trained models)"))
    model: ProbeModelConfig = field(default_factory=ProbeModelConfig, metadata=_help("model"))


@dataclass
class PositionalSection:
    m_grid: list[float] = field(
        default_factory=lambda: [0.0, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0],
        metadata=_help("positional strengths m (ALiBi slope) to sweep"),
    )
    window: int = field(default=2, metadata=_help("near window: the most recent w items"))
    history_len: int = field(default=10, metadata=_help("isolated head: items in the history"))
    tokens_per_item: int = field(default=3, metadata=_help("isolated head: tokens per item"))
    head_dim: int = field(default=16, metadata=_help("isolated head: query/key width"))
    key_draws: int = field(default=256, metadata=_help("isolated head: sampled query/key sets"))
    k: int = field(default=10, metadata=_help("list length of NDCG@k, coverage and Gini"))

    def validate(self) -> None:
        _non_empty("positional.m_grid", self.m_grid, 0.0)
        _positive("positional", self, "window", "history_len", "tokens_per_item", "head_dim")
        _positive("positional", self, "key_draws", "k")
        if self.window > self.history_len:
            raise ConfigError(
                f"config key 'positional.window': must be <= history_len ({self.history_len}), "
                f"got {self.window}"
            )


@dataclass
class PositionalProbeConfig(ProbeBase):
    positional: PositionalSection = field(default_factory=PositionalSection)

    def validate(self) -> None:
        if self.model.kind not in ("none", "genrec"):
            raise ConfigError(
                "config key 'model.kind': the positional probe needs history_attention "
                f"(kind 'genrec') or 'none' for the isolated head only, got {self.model.kind!r}"
            )


@dataclass
class SGDSection:
    counts: list[int] = field(
        default_factory=lambda: [32, 16, 8, 4, 2, 1],
        metadata=_help("history counts of the tokens; training frequencies are proportional"),
    )
    steps: int = field(default=200, metadata=_help("SGD steps (the early-training window)"))
    lr: float = field(default=0.05, metadata=_help("SGD learning rate"))
    dim: int = field(default=16, metadata=_help("query/key width (>= number of tokens)"))
    query_noise: float = field(default=0.3, metadata=_help("std of the query around its mean"))
    seeds: int = field(default=20, metadata=_help("independent training runs averaged"))
    checkpoints: int = field(default=10, metadata=_help("steps at which exposure is measured"))

    def validate(self) -> None:
        _positive("popularity.sgd", self, "steps", "dim", "seeds", "checkpoints")
        if len(self.counts) < 2 or min(self.counts) < 1:
            raise ConfigError(
                f"config key 'popularity.sgd.counts': need >= 2 positive counts, got {self.counts}"
            )
        if self.dim < len(self.counts):
            raise ConfigError(
                f"config key 'popularity.sgd.dim': must be >= {len(self.counts)} (one orthogonal "
                f"query direction per token), got {self.dim}"
            )
        if self.lr <= 0 or self.query_noise < 0:
            raise ConfigError(
                "config key 'popularity.sgd.lr'/'query_noise': need lr > 0 and noise >= 0, "
                f"got {self.lr} and {self.query_noise}"
            )


@dataclass
class PopularitySection:
    exposure: Literal["softmax", "topk"] = field(
        default="softmax", metadata=_help("softmax probability mass or expected top-K exposure")
    )
    k: int = field(default=10, metadata=_help("K of top-K exposure"))
    count: Literal["targets", "interactions"] = field(
        default="targets", metadata=_help("platform-level training frequency (see count_items)")
    )
    bootstrap: int = field(default=1000, metadata=_help("bootstrap resamples of the exponent CI"))
    sgd: SGDSection = field(default_factory=SGDSection, metadata=_help("early-SGD experiment"))

    def validate(self) -> None:
        _positive("popularity", self, "k", "bootstrap")


@dataclass
class PopularityProbeConfig(ProbeBase):
    popularity: PopularitySection = field(default_factory=PopularitySection)


@dataclass
class LatentSection:
    sigmas: list[float] = field(
        default_factory=lambda: [0.0, 0.25, 0.5, 1.0, 2.0],
        metadata=_help("logit-noise scales sigma to sweep"),
    )
    draws: int = field(default=5, metadata=_help("noise draws per sigma on the trained model"))
    head_draws: int = field(default=20000, metadata=_help("noise draws on the isolated head"))
    history_len: int = field(default=10, metadata=_help("isolated head: history positions"))
    mean_gap: float = field(
        default=0.5,
        metadata=_help("isolated head: mean logits -gap * j, so the pair (0, 1) has gap Delta"),
    )
    kappa: float = field(default=3.0, metadata=_help("odds-ratio threshold of P(a_i/a_j >= kappa)"))
    k: int = field(default=10, metadata=_help("top-K of the Jaccard stability"))

    def validate(self) -> None:
        _non_empty("latent.sigmas", self.sigmas, 0.0)
        _positive("latent", self, "draws", "head_draws", "k")
        if self.history_len < 2:
            raise ConfigError(
                f"config key 'latent.history_len': must be >= 2, got {self.history_len}"
            )
        if self.kappa <= 0:
            raise ConfigError(f"config key 'latent.kappa': must be > 0, got {self.kappa}")


@dataclass
class LatentProbeConfig(ProbeBase):
    latent: LatentSection = field(default_factory=LatentSection)

    def validate(self) -> None:
        if self.model.kind not in ("none", "genrec"):
            raise ConfigError(
                "config key 'model.kind': the latent probe needs set_attention_noise "
                f"(kind 'genrec') or 'none' for the isolated head only, got {self.model.kind!r}"
            )


@dataclass
class SyntheticSection:
    n_items: int = field(default=50, metadata=_help("catalogue size within one context"))
    zipf: float = field(default=1.0, metadata=_help("organic distribution p*(i) ~ (i+1)^-zipf"))
    logs_per_round: int = field(default=200, metadata=_help("logged choices per round (n + m)"))
    lambdas: list[float] = field(
        default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 0.9],
        metadata=_help("delegation shares lambda = m / (n + m)"),
    )
    rounds: int = field(default=30, metadata=_help("retraining rounds"))
    seeds: int = field(default=200, metadata=_help("Monte-Carlo repetitions per lambda"))

    def validate(self) -> None:
        _non_empty("synthetic.lambdas", self.lambdas, 0.0, 1.0)
        _positive("synthetic", self, "n_items", "logs_per_round", "rounds", "seeds")
        if self.zipf < 0:
            raise ConfigError(f"config key 'synthetic.zipf': must be >= 0, got {self.zipf}")


@dataclass
class SyntheticProbeConfig:
    name: str = field(default="probe_synthetic", metadata=_help("run name"))
    seed: int = field(default=0, metadata=_help("seed of the Monte-Carlo draws"))
    output_dir: str = field(default="runs", metadata=_help("where run directories are created"))
    synthetic: SyntheticSection = field(default_factory=SyntheticSection)


CONFIGS: dict[str, type] = {
    "positional": PositionalProbeConfig,
    "popularity": PopularityProbeConfig,
    "latent": LatentProbeConfig,
    "synthetic": SyntheticProbeConfig,
}
