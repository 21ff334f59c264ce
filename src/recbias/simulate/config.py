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
from recbias.config import Config, invalid, spec
from recbias.data.config import DataConfig

WorldKind = Literal["synthetic", "dataset"]
ScorerName = Literal["popularity", "mf", "sasrec"]
ChoiceModel = Literal["argmax", "logit", "pbm"]
ChoicePool = Literal["catalog", "slate"]
LogMode = Literal["accumulate", "replace"]
Reweight = Literal["none", "inverse_popularity", "group_dro"]


@dataclass
class WorldConfig(Config):
    kind: WorldKind = field(
        default="synthetic",
        metadata=spec("synthetic: seeded Zipf + latent-factor world; dataset: a prepared dataset"),
    )
    n_users: int = field(default=2000, metadata=spec("synthetic: number of users", ge=1))
    n_items: int = field(default=500, metadata=spec("synthetic: number of items", ge=1))
    dim: int = field(
        default=16, metadata=spec("synthetic: latent dimension (= item clusters)", ge=1)
    )
    zipf: float = field(
        default=1.0, metadata=spec("synthetic: popularity skew, utility += -zipf * log(rank)", ge=0)
    )
    affinity: float = field(
        default=2.0, metadata=spec("synthetic: scale of the user-item latent affinity term", ge=0)
    )
    initial_interactions: int = field(
        default=10,
        metadata=spec("synthetic: organic interactions per user in the round-0 logs", ge=1),
    )
    genre_weight: float = field(
        default=5.0, metadata=spec("dataset: weight of the user's genre affinity in utility", ge=0)
    )
    popularity_weight: float = field(
        default=1.0, metadata=spec("dataset: weight of log(1 + item count) in utility", ge=0)
    )
    data: DataConfig = field(
        default_factory=DataConfig, metadata=spec("dataset: source and preparation")
    )


@dataclass
class ScorerConfig(Config):
    name: ScorerName = field(
        default="popularity",
        metadata=spec("recommender: popularity, mf (ALS) or sasrec (adapter)"),
    )
    chunk_size: int = field(
        default=4096, metadata=spec("users scored per chunk (bounds memory)", ge=1)
    )
    smoothing: float = field(
        default=0.0, metadata=spec("popularity: pseudo-count added to every item's count", ge=0)
    )
    dim: int = field(default=32, metadata=spec("mf: latent dimension", ge=1))
    reg: float = field(default=1.0, metadata=spec("mf: L2 regularisation of the ALS solves", ge=0))
    iterations: int = field(
        default=2, metadata=spec("mf: warm-started ALS sweeps per retrain", ge=1)
    )
    history_len: int = field(
        default=10, metadata=spec("sasrec: most recent logged items used", ge=1)
    )
    samples_per_user: int = field(
        default=20, metadata=spec("sasrec: most recent training samples kept per user", ge=1)
    )
    sasrec: SASRecConfig = field(
        default_factory=SASRecConfig, metadata=spec("sasrec: model config")
    )


@dataclass
class ChoiceConfig(Config):
    model: ChoiceModel = field(
        default="logit", metadata=spec("argmax, logit (multinomial logit) or pbm (position-based)")
    )
    pool: ChoicePool = field(
        default="catalog",
        metadata=spec(
            "catalog: organic choices ignore the slate (Prop. 4.6 setting); slate: users choose "
            "among the k recommended items"
        ),
    )
    temperature: float = field(
        default=1.0, metadata=spec("logit/pbm: P ∝ exp(utility / temperature)", gt=0)
    )
    pbm_decay: float = field(
        default=0.8,
        metadata=spec("pbm: examination propensity of rank r is decay**(r-1)", gt=0, le=1),
    )
    pbm_depth: int = field(
        default=20, metadata=spec("pbm, catalog pool: length of the user's own ranked list", ge=1)
    )
    per_round: int = field(default=1, metadata=spec("choices each user makes per round", ge=1))


@dataclass
class LoopConfig(Config):
    rounds: int = field(
        default=20, metadata=spec("recommend → choose → log → retrain rounds", ge=1)
    )
    lambdas: list[float] = field(
        default_factory=lambda: [0.5],
        metadata=spec(
            "delegation shares λ (each in [0, 1]); several values run a sweep",
            ge=0,
            le=1,
            min_len=1,
        ),
    )
    mode: LogMode = field(
        default="accumulate",
        metadata=spec("accumulate: logs grow every round; replace: retrain on the last round"),
    )
    k: int = field(default=10, metadata=spec("slate size (recommended items per user)", ge=1))
    jaccard_pairs: int = field(
        default=2000, metadata=spec("user pairs sampled for the Jaccard homogenisation", ge=1)
    )
    drift_rate: float = field(
        default=0.2,
        metadata=spec("EMA rate of each user's consumed-group profile (drift)", gt=0, le=1),
    )


@dataclass
class MitigationConfig(Config):
    organic_share: float = field(
        default=0.0,
        metadata=spec(
            "share of training weight kept on the round-0 organic logs (0 = off)", ge=0, lt=1
        ),
    )
    epsilon: float = field(
        default=0.0,
        metadata=spec("ε-exploration: each slate slot becomes a random item w.p. ε", ge=0, le=1),
    )
    exposure_cap: float = field(
        default=1.0,
        metadata=spec("max share of users an item is shown to per round (1 = off)", gt=0, le=1),
    )
    temperature: float = field(
        default=0.0,
        metadata=spec("score temperature: slates sampled from softmax(scores/T); 0 = top-k", ge=0),
    )
    reweight: Reweight = field(
        default="none", metadata=spec("training weights: none, inverse_popularity, group_dro")
    )
    reweight_power: float = field(
        default=0.5, metadata=spec("inverse_popularity: weight ∝ count**(-power)", ge=0)
    )
    dro_groups: int = field(
        default=3, metadata=spec("group_dro: popularity groups (head→tail)", ge=1)
    )
    dro_step: float = field(
        default=1.0, metadata=spec("group_dro: exponentiated-gradient step", ge=0)
    )


@dataclass
class TelemetryConfig(Config):
    window: int = field(default=5, metadata=spec("rounds in the rolling trend window", ge=2))
    gain_threshold: float = field(
        default=0.01, metadata=spec("alert when the relative HHI slope per round exceeds this")
    )
    persistence_threshold: float = field(
        default=0.9, metadata=spec("alert when exposure shares' lag-1 correlation exceeds this")
    )
    diversity_threshold: float = field(
        default=0.01,
        metadata=spec("alert when log effective-items falls faster than this per round"),
    )


@dataclass
class SimulationConfig(Config):
    name: str = field(default="simulate", metadata=spec("run name (prefix of the run dir)"))
    seed: int = field(default=0, metadata=spec("seed of the world, choices and training"))
    output_dir: str = field(default="runs", metadata=spec("where run directories are created"))
    world: WorldConfig = field(default_factory=WorldConfig, metadata=spec("the simulated world"))
    scorer: ScorerConfig = field(default_factory=ScorerConfig, metadata=spec("the recommender"))
    choice: ChoiceConfig = field(default_factory=ChoiceConfig, metadata=spec("user choice model"))
    loop: LoopConfig = field(default_factory=LoopConfig, metadata=spec("the retraining loop"))
    mitigation: MitigationConfig = field(
        default_factory=MitigationConfig, metadata=spec("counter-measures of the main run")
    )
    compare: dict[str, MitigationConfig] = field(
        default_factory=dict,
        metadata=spec("named mitigation variants run instead of [mitigation], e.g. [compare.eps]"),
    )
    telemetry: TelemetryConfig = field(
        default_factory=TelemetryConfig, metadata=spec("collapse early-warning signal")
    )

    def check(self) -> None:
        if self.choice.per_round > self.loop.k:
            raise invalid(
                "choice.per_round", f"must be <= loop.k ({self.loop.k})", self.choice.per_round
            )
        if self.world.kind == "synthetic" and self.loop.k > self.world.n_items:
            raise invalid("loop.k", f"must be <= world.n_items ({self.world.n_items})", self.loop.k)

    def variants(self) -> dict[str, MitigationConfig]:
        """Mitigation settings to run: the ``compare`` table, else ``{"main": mitigation}``."""
        return dict(self.compare) if self.compare else {"main": self.mitigation}
