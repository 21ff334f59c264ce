"""The experiment config: one typed TOML file describes a whole run.

cfg = load_config(RunConfig, Path("configs/quickstart.toml"), ["train.epochs=1"])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from recbias.baselines.sasrec import SASRecConfig
from recbias.config import Config, invalid, spec
from recbias.data.config import DataConfig
from recbias.errors import ConfigError
from recbias.lm.loading import ModelConfig
from recbias.prompts import PromptConfig
from recbias.recommender import DecodeConfig
from recbias.sprec import SPRecConfig
from recbias.train.loop import TrainConfig

BASELINES = ("popularity", "sasrec")


@dataclass
class EvalConfig(Config):
    ks: list[int] = field(
        default_factory=lambda: [1, 3, 5, 10, 20],
        metadata=spec("cut-offs of HR@K and NDCG@K", ge=1, min_len=1),
    )
    bootstrap: int = field(default=1000, metadata=spec("bootstrap resamples for 95% CIs", ge=1))
    baselines: list[str] = field(
        default_factory=lambda: ["popularity"],
        metadata=spec("baselines evaluated on the same test samples", choices=BASELINES),
    )
    validation_k: int = field(
        default=10, metadata=spec("K of the validation NDCG@K that selects the checkpoint", ge=1)
    )
    peer_export: bool = field(
        default=True, metadata={"help": "also write the peers' {output, predict} JSON"}
    )
    ks_beyond_list: Literal["repeat", "error"] = field(
        default="repeat",
        metadata={
            "help": "a K above the list length (decode.beam.num_return): repeat (@K = @length, "
            "as D3/IGD calc.py) or error; K above the catalog is always an error"
        },
    )


@dataclass
class BaselinesConfig(Config):
    sasrec: SASRecConfig = field(
        default_factory=SASRecConfig,
        metadata={"help": "SASRec on the same data (eval.baselines = ['sasrec'])"},
    )


@dataclass
class FinishConfig(Config):
    """What ``recbias run`` does after evaluating: an audit, then the report."""

    audit: bool = field(
        default=False, metadata={"help": "audit the finished run (recbias audit) into RUN/audit/"}
    )
    audit_config: str | None = field(
        default=None,
        metadata=spec(
            "audit settings (configs/audit.toml format); unset = the defaults", path=True
        ),
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
        """The resolved audit settings (``AuditConfig``); the error names the finish key."""
        from recbias.audit.config import AuditConfig
        from recbias.config import load_config

        path = self.audit_config
        if path is not None and not Path(path).is_file():
            raise invalid("audit_config", "no such file", path)
        try:
            return load_config(AuditConfig, Path(path) if path else None, self.audit_set)
        except ConfigError as exc:
            raise invalid("audit_config / audit_set", f"invalid audit settings ({exc})") from None

    def check(self) -> None:
        if self.audit:
            self.audit_settings()  # fail at load time, not after training


@dataclass
class RunConfig(Config):
    name: str = field(default="experiment", metadata={"help": "run name (prefix of the run dir)"})
    seed: int = field(default=0, metadata={"help": "seed of model init, data order and sampling"})
    output_dir: str = field(default="runs", metadata={"help": "where run directories are created"})
    threads: int | None = field(
        default=None, metadata=spec("torch CPU threads (unset = all cores)", ge=1)
    )
    data: DataConfig = field(
        default_factory=DataConfig, metadata={"help": "dataset: source and preparation"}
    )
    prompt: PromptConfig = field(
        default_factory=PromptConfig, metadata={"help": "how a history becomes a prompt"}
    )
    model: ModelConfig = field(
        default_factory=ModelConfig,
        metadata={"help": "the language model and how it is fine-tuned"},
    )
    train: TrainConfig = field(
        default_factory=TrainConfig, metadata={"help": "fine-tuning: optimiser, batches, objective"}
    )
    decode: DecodeConfig = field(
        default_factory=DecodeConfig, metadata={"help": "constrained beam search over the catalog"}
    )
    eval: EvalConfig = field(
        default_factory=EvalConfig, metadata={"help": "metrics, confidence intervals and baselines"}
    )
    baselines: BaselinesConfig = field(
        default_factory=BaselinesConfig, metadata={"help": "settings of the baselines"}
    )
    finish: FinishConfig = field(
        default_factory=FinishConfig, metadata={"help": "audit and report after the run"}
    )
    sprec: SPRecConfig = field(
        default_factory=SPRecConfig,
        metadata={"help": "SPRec self-play DPO iterations after SFT (sprec.iterations = 0: off)"},
    )

    def check(self) -> None:
        if self.sprec.iterations and self.train.parallel == "fsdp":
            raise invalid(
                "sprec.iterations",
                "SPRec is not supported with train.parallel = 'fsdp' yet (use ddp)",
                self.sprec.iterations,
            )
        need = self.sprec.candidates()
        if self.sprec.iterations and self.decode.beam.n_return < need:
            raise invalid(
                "decode.beam.num_return",
                f"SPRec needs {need} ranked items per prompt (sprec.n_rejected or sprec.top_k, "
                "plus the target)",
                self.decode.beam.n_return,
            )
