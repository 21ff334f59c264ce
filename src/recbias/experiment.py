"""The experiment config: one typed TOML file describes a whole run.

cfg = load_config(RunConfig, Path("configs/quickstart.toml"), ["train.epochs=1"])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recbias.baselines.sasrec import SASRecConfig
from recbias.data.config import DataConfig
from recbias.errors import ConfigError
from recbias.lm.loading import ModelConfig
from recbias.prompts import PromptConfig
from recbias.recommender import DecodeConfig
from recbias.sprec import SPRecConfig
from recbias.train.loop import TrainConfig

BASELINES = ("popularity", "sasrec")


@dataclass
class EvalConfig:
    ks: list[int] = field(
        default_factory=lambda: [1, 3, 5, 10, 20], metadata={"help": "cut-offs of HR@K and NDCG@K"}
    )
    bootstrap: int = field(default=1000, metadata={"help": "bootstrap resamples for 95% CIs"})
    baselines: list[str] = field(
        default_factory=lambda: ["popularity"],
        metadata={"help": "baselines evaluated on the same test samples: popularity, sasrec"},
    )
    validation_k: int = field(
        default=10, metadata={"help": "K of the validation NDCG@K that selects the checkpoint"}
    )
    peer_export: bool = field(
        default=True, metadata={"help": "also write the peers' {output, predict} JSON"}
    )

    def validate(self) -> None:
        bad = [b for b in self.baselines if b not in BASELINES]
        if bad:
            raise ConfigError(f"config key 'eval.baselines': unknown {bad}; known: {BASELINES}")
        if not self.ks or min(self.ks) < 1:
            raise ConfigError("config key 'eval.ks': expected positive integers")


@dataclass
class BaselinesConfig:
    sasrec: SASRecConfig = field(default_factory=SASRecConfig)


@dataclass
class FinishConfig:
    """What ``recbias run`` does after evaluating: an audit, then the report."""

    audit: bool = field(
        default=False, metadata={"help": "audit the finished run (recbias audit) into RUN/audit/"}
    )
    audit_config: str | None = field(
        default=None,
        metadata={"help": "audit settings (configs/audit.toml format); unset = the defaults"},
    )
    audit_set: list[str] = field(
        default_factory=list,
        metadata={"help": "overrides of the audit settings, e.g. ['attribution_samples=50']"},
    )
    report: bool = field(
        default=True,
        metadata={"help": "write RUN/report/ (HTML, Markdown, CSV, LaTeX) of the run"},
    )

    def audit_settings(self) -> Any:
        """The resolved audit settings (``AuditConfig``); ConfigError names the finish key."""
        from recbias.audit.config import AuditConfig
        from recbias.config import load_config

        path = self.audit_config
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"config key 'finish.audit_config': no such file: {path}")
        try:
            return load_config(AuditConfig, Path(path) if path else None, self.audit_set)
        except ConfigError as exc:
            raise ConfigError(f"finish.audit_config / finish.audit_set: {exc}") from None

    def validate(self) -> None:
        if self.audit:
            self.audit_settings()  # fail at load time, not after training


@dataclass
class RunConfig:
    name: str = field(default="experiment", metadata={"help": "run name (prefix of the run dir)"})
    seed: int = field(default=0, metadata={"help": "seed of model init, data order and sampling"})
    output_dir: str = field(default="runs", metadata={"help": "where run directories are created"})
    threads: int | None = field(
        default=None, metadata={"help": "torch CPU threads (unset = all cores)"}
    )
    data: DataConfig = field(default_factory=DataConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    baselines: BaselinesConfig = field(default_factory=BaselinesConfig)
    finish: FinishConfig = field(default_factory=FinishConfig)
    sprec: SPRecConfig = field(
        default_factory=SPRecConfig,
        metadata={"help": "SPRec self-play DPO iterations after SFT (sprec.iterations = 0: off)"},
    )

    def validate(self) -> None:
        self.sprec.check_decode(self.decode.beam.n_return)
