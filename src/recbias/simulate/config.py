"""Typed config of the closed-loop simulator (``recbias simulate``).

    cfg = load_config(SimulationConfig, Path("configs/simulate_mf.toml"), ["loop.rounds=5"])

Sections: ``world`` (synthetic latent-factor world or a prepared dataset), ``scorer`` (the
recommender retrained every round), ``choice`` (how users pick organically), ``loop`` (rounds,
delegation shares λ, accumulate/replace, slate size k), ``mitigation`` (one set of counter-measures)
and ``compare`` (named mitigation variants run side by side), ``telemetry`` (early-warning signal).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from recbias.baselines.sasrec import SASRecConfig
from recbias.data.config import DataConfig
from recbias.errors import ConfigError

WorldKind = Literal["synthetic", "dataset"]
ScorerName = Literal["popularity", "mf", "sasrec"]
ChoiceModel = Literal["argmax", "logit", "pbm"]
ChoicePool = Literal["catalog", "slate"]
LogMode = Literal["accumulate", "replace"]
Reweight = Literal["none", "inverse_popularity", "group_dro"]

SCORERS = ("popularity", "mf", "sasrec")
CHOICE_MODELS = ("argmax", "logit", "pbm")


def _help(text: str) -> dict[str, str]:
    return {"help": text}


def _fail(key: str, expected: str, got: object) -> ConfigError:
    return ConfigError(f"config key '{key}': must be {expected}, got {got!r}")


def _at_least(key: str, value: float, minimum: float) -> None:
    if value < minimum:
        raise _fail(key, f">= {minimum}", value)


def _unit(key: str, value: float, upper_open: bool = False) -> None:
    if not 0.0 <= value <= 1.0 or (upper_open and value >= 1.0):
        raise _fail(key, "in [0, 1)" if upper_open else "in [0, 1]", value)


@dataclass
class WorldConfig:
    kind: WorldKind = field(
        default="synthetic",
        metadata=_help("synthetic: seeded Zipf + latent-factor world; dataset: a prepared dataset"),
    )
    n_users: int = field(default=2000, metadata=_help("synthetic: number of users"))
    n_items: int = field(default=500, metadata=_help("synthetic: number of items"))
    dim: int = field(default=16, metadata=_help("synthetic: latent dimension (= item clusters)"))
    zipf: float = field(
        default=1.0, metadata=_help("synthetic: popularity skew, utility += -zipf * log(rank)")
    )
    affinity: float = field(
        default=2.0, metadata=_help("synthetic: scale of the user-item latent affinity term")
    )
    initial_interactions: int = field(
        default=10, metadata=_help("synthetic: organic interactions per user in the round-0 logs")
    )
    genre_weight: float = field(
        default=5.0, metadata=_help("dataset: weight of the user's genre affinity in utility")
    )
    popularity_weight: float = field(
        default=1.0, metadata=_help("dataset: weight of log(1 + item count) in utility")
    )
    data: DataConfig = field(
        default_factory=DataConfig, metadata=_help("dataset: source and preparation")
    )

    def validate(self) -> None:
        for key in ("n_users", "n_items", "dim", "initial_interactions"):
            _at_least(f"world.{key}", getattr(self, key), 1)
        for key in ("zipf", "affinity", "genre_weight", "popularity_weight"):
            _at_least(f"world.{key}", getattr(self, key), 0.0)


@dataclass
class ScorerConfig:
    name: ScorerName = field(
        default="popularity",
        metadata=_help("recommender: popularity, mf (ALS) or sasrec (adapter)"),
    )
    chunk_size: int = field(default=4096, metadata=_help("users scored per chunk (bounds memory)"))
    smoothing: float = field(
        default=0.0, metadata=_help("popularity: pseudo-count added to every item's count")
    )
    dim: int = field(default=32, metadata=_help("mf: latent dimension"))
    reg: float = field(default=1.0, metadata=_help("mf: L2 regularisation of the ALS solves"))
    iterations: int = field(default=2, metadata=_help("mf: warm-started ALS sweeps per retrain"))
    history_len: int = field(default=10, metadata=_help("sasrec: most recent logged items used"))
    samples_per_user: int = field(
        default=20, metadata=_help("sasrec: most recent training samples kept per user")
    )
    sasrec: SASRecConfig = field(
        default_factory=SASRecConfig, metadata=_help("sasrec: model config")
    )

    def validate(self) -> None:
        if self.name not in SCORERS:
            raise _fail("scorer.name", f"one of {SCORERS}", self.name)
        for key in ("chunk_size", "dim", "iterations", "history_len", "samples_per_user"):
            _at_least(f"scorer.{key}", getattr(self, key), 1)
        _at_least("scorer.smoothing", self.smoothing, 0.0)
        _at_least("scorer.reg", self.reg, 0.0)


@dataclass
class ChoiceConfig:
    model: ChoiceModel = field(
        default="logit", metadata=_help("argmax, logit (multinomial logit) or pbm (position-based)")
    )
    pool: ChoicePool = field(
        default="catalog",
        metadata=_help(
            "catalog: organic choices ignore the slate (Prop. 4.6 setting); slate: users choose "
            "among the k recommended items"
        ),
    )
    temperature: float = field(
        default=1.0, metadata=_help("logit/pbm: P ∝ exp(utility / temperature)")
    )
    pbm_decay: float = field(
        default=0.8, metadata=_help("pbm: examination propensity of rank r is decay**(r-1)")
    )
    pbm_depth: int = field(
        default=20, metadata=_help("pbm, catalog pool: length of the user's own ranked list")
    )
    per_round: int = field(default=1, metadata=_help("choices each user makes per round"))

    def validate(self) -> None:
        if self.model not in CHOICE_MODELS:
            raise _fail("choice.model", f"one of {CHOICE_MODELS}", self.model)
        if self.temperature <= 0:
            raise _fail("choice.temperature", "> 0", self.temperature)
        if not 0 < self.pbm_decay <= 1:
            raise _fail("choice.pbm_decay", "in (0, 1]", self.pbm_decay)
        _at_least("choice.pbm_depth", self.pbm_depth, 1)
        _at_least("choice.per_round", self.per_round, 1)


@dataclass
class LoopConfig:
    rounds: int = field(default=20, metadata=_help("recommend → choose → log → retrain rounds"))
    lambdas: list[float] = field(
        default_factory=lambda: [0.5],
        metadata=_help("delegation shares λ (each in [0, 1]); several values run a sweep"),
    )
    mode: LogMode = field(
        default="accumulate",
        metadata=_help("accumulate: logs grow every round; replace: retrain on the last round"),
    )
    k: int = field(default=10, metadata=_help("slate size (recommended items per user)"))
    jaccard_pairs: int = field(
        default=2000, metadata=_help("user pairs sampled for the Jaccard homogenisation")
    )
    drift_rate: float = field(
        default=0.2, metadata=_help("EMA rate of each user's consumed-group profile (drift)")
    )

    def validate(self) -> None:
        _at_least("loop.rounds", self.rounds, 1)
        _at_least("loop.k", self.k, 1)
        _at_least("loop.jaccard_pairs", self.jaccard_pairs, 1)
        if not self.lambdas:
            raise _fail("loop.lambdas", "a non-empty list", self.lambdas)
        for i, lam in enumerate(self.lambdas):
            _unit(f"loop.lambdas[{i}]", lam)
        if not 0 < self.drift_rate <= 1:
            raise _fail("loop.drift_rate", "in (0, 1]", self.drift_rate)


@dataclass
class MitigationConfig:
    organic_share: float = field(
        default=0.0,
        metadata=_help("share of training weight kept on the round-0 organic logs (0 = off)"),
    )
    epsilon: float = field(
        default=0.0, metadata=_help("ε-exploration: each slate slot becomes a random item w.p. ε")
    )
    exposure_cap: float = field(
        default=1.0, metadata=_help("max share of users an item is shown to per round (1 = off)")
    )
    temperature: float = field(
        default=0.0,
        metadata=_help("score temperature: slates sampled from softmax(scores/T); 0 = top-k"),
    )
    reweight: Reweight = field(
        default="none", metadata=_help("training weights: none, inverse_popularity, group_dro")
    )
    reweight_power: float = field(
        default=0.5, metadata=_help("inverse_popularity: weight ∝ count**(-power)")
    )
    dro_groups: int = field(default=3, metadata=_help("group_dro: popularity groups (head→tail)"))
    dro_step: float = field(default=1.0, metadata=_help("group_dro: exponentiated-gradient step"))

    def validate(self) -> None:
        _unit("mitigation.organic_share", self.organic_share, upper_open=True)
        _unit("mitigation.epsilon", self.epsilon)
        if not 0 < self.exposure_cap <= 1:
            raise _fail("mitigation.exposure_cap", "in (0, 1]", self.exposure_cap)
        _at_least("mitigation.temperature", self.temperature, 0.0)
        _at_least("mitigation.reweight_power", self.reweight_power, 0.0)
        _at_least("mitigation.dro_groups", self.dro_groups, 1)
        _at_least("mitigation.dro_step", self.dro_step, 0.0)


@dataclass
class TelemetryConfig:
    window: int = field(default=5, metadata=_help("rounds in the rolling trend window"))
    gain_threshold: float = field(
        default=0.01, metadata=_help("alert when the relative HHI slope per round exceeds this")
    )
    persistence_threshold: float = field(
        default=0.9, metadata=_help("alert when exposure shares' lag-1 correlation exceeds this")
    )
    diversity_threshold: float = field(
        default=0.01,
        metadata=_help("alert when log effective-items falls faster than this per round"),
    )

    def validate(self) -> None:
        _at_least("telemetry.window", self.window, 2)


@dataclass
class SimulationConfig:
    name: str = field(default="simulate", metadata=_help("run name (prefix of the run dir)"))
    seed: int = field(default=0, metadata=_help("seed of the world, choices and training"))
    output_dir: str = field(default="runs", metadata=_help("where run directories are created"))
    world: WorldConfig = field(default_factory=WorldConfig, metadata=_help("the simulated world"))
    scorer: ScorerConfig = field(default_factory=ScorerConfig, metadata=_help("the recommender"))
    choice: ChoiceConfig = field(default_factory=ChoiceConfig, metadata=_help("user choice model"))
    loop: LoopConfig = field(default_factory=LoopConfig, metadata=_help("the retraining loop"))
    mitigation: MitigationConfig = field(
        default_factory=MitigationConfig, metadata=_help("counter-measures of the main run")
    )
    compare: dict[str, MitigationConfig] = field(
        default_factory=dict,
        metadata=_help("named mitigation variants run instead of [mitigation], e.g. [compare.eps]"),
    )
    telemetry: TelemetryConfig = field(
        default_factory=TelemetryConfig, metadata=_help("collapse early-warning signal")
    )

    def validate(self) -> None:
        if self.choice.per_round > self.loop.k:
            raise _fail("choice.per_round", f"<= loop.k ({self.loop.k})", self.choice.per_round)
        if self.world.kind == "synthetic" and self.loop.k > self.world.n_items:
            raise _fail("loop.k", f"<= world.n_items ({self.world.n_items})", self.loop.k)

    def variants(self) -> dict[str, MitigationConfig]:
        """Mitigation settings to run: the ``compare`` table, else ``{"main": mitigation}``."""
        return dict(self.compare) if self.compare else {"main": self.mitigation}
