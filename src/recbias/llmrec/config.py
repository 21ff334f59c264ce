"""The LLM run config: one typed TOML file describes a whole run.

cfg = load_config(RunConfig, Path("configs/quickstart.toml"), ["train.epochs=1"])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from recbias.baselines.sasrec import SASRecConfig
from recbias.config import Config, invalid, spec
from recbias.data.config import DataConfig
from recbias.decoding.config import BeamConfig
from recbias.decoding.d3 import D3Config
from recbias.decoding.igd_calibration import IGDDecodeConfig
from recbias.lm.loading import ModelConfig
from recbias.objectives.dpo import DPOConfig
from recbias.prompts import PromptConfig
from recbias.runs import FinishConfig
from recbias.sidllm.config import ItemsConfig
from recbias.train.loop import TrainConfig

BASELINES = ("popularity", "sasrec")


@dataclass
class DecodeConfig(Config):
    beam: BeamConfig = field(
        default_factory=BeamConfig, metadata={"help": "beam width, length penalty, batching"}
    )
    candidates: Literal["catalog", "train_targets"] = field(
        default="catalog",
        metadata={
            "help": "items decoding may produce: the full catalog (D3) or only items that are "
            "training targets (IGD); calibration 'igd' decodes only training targets either way "
            "unless decode.igd.unsupported = 'no_boost'"
        },
    )
    calibration: list[Literal["igd", "d3"]] = field(
        default_factory=list,
        metadata={
            "help": "score calibrations applied in this order at every beam step: igd (IGD "
            "Eq. 10, settings in decode.igd), d3 (D3's text-free assistant, decode.d3)",
            "unique": True,
        },
    )
    igd: IGDDecodeConfig = field(
        default_factory=IGDDecodeConfig, metadata={"help": "calibration 'igd'"}
    )
    d3: D3Config = field(default_factory=D3Config, metadata={"help": "calibration 'd3'"})

    def check(self) -> None:
        if "d3" in self.calibration and self.d3.assistant == "none":
            raise invalid(
                "d3.assistant", "calibration 'd3' needs an assistant (sasrec or popularity)"
            )
        if "igd" in self.calibration:
            self._check_igd()

    def _check_igd(self) -> None:
        """Settings that would silently undo IGD's candidate set (decode.igd.unsupported)."""
        excluding = self.candidates == "catalog" and self.igd.unsupported == "exclude"
        if excluding and self.beam.renormalize:
            raise invalid(
                "beam.renormalize",
                "calibration 'igd' over the catalog with igd.unsupported = 'exclude' needs "
                "log-probs that other catalog items do not change: set it to false, or "
                "decode.candidates = 'train_targets'",
                True,
            )
        order = self.calibration
        if "d3" in order and order.index("d3") > order.index("igd") and self.d3.guidance == 0:
            raise invalid(
                "d3.guidance",
                "0 ignores every score calibration 'igd' made before 'd3' (put 'd3' first or "
                "raise d3.guidance)",
                0.0,
            )


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
class SPRecConfig(Config):
    """Self-play iterations after SFT (SPRec, :mod:`recbias.llmrec.sprec`); ``iterations = 0``
    turns them off."""

    iterations: int = field(
        default=0, metadata=spec("self-play iterations after SFT (0 = off)", ge=0)
    )
    samples: int = field(
        default=2048,
        metadata=spec("training samples drawn (and decoded) per iteration", ge=1),
    )
    rejected: Literal["top1", "sample"] = field(
        default="top1",
        metadata={
            "help": "top1 = the best-ranked non-target items; sample = drawn from the top top_k"
        },
    )
    top_k: int = field(
        default=5,
        metadata=spec("candidates of rejected = 'sample' (<= decode.beam's items)", ge=1),
    )
    n_rejected: int = field(
        default=1, metadata=spec("rejected items per prompt; > 1 = S-DPO", ge=1)
    )
    sft_epochs: int = field(
        default=1, metadata=spec("SFT epochs per iteration before DPO (0 = none)", ge=0)
    )
    dpo_epochs: int = field(default=1, metadata=spec("DPO epochs per iteration", ge=1))
    lr: float = field(default=2e-5, metadata=spec("learning rate of both phases", gt=0))
    warmup_steps: int = field(default=20, metadata=spec("linear warm-up steps of each phase", ge=0))
    dpo_micro_batch_size: int = field(
        default=2, metadata=spec("prompts per DPO forward pass", ge=1)
    )
    dpo_grad_accum: int = field(
        default=4, metadata=spec("DPO micro-batches per optimiser step", ge=1)
    )
    validate_each_iteration: bool = field(
        default=True, metadata={"help": "record validation NDCG after every iteration"}
    )
    dpo: DPOConfig = field(
        default_factory=DPOConfig, metadata={"help": "the DPO / S-DPO loss of every iteration"}
    )

    def check(self) -> None:
        if self.rejected == "sample" and self.top_k < self.n_rejected:
            raise invalid(
                "top_k",
                f"must be >= sprec.n_rejected ({self.n_rejected}) to sample from",
                self.top_k,
            )

    def candidates(self) -> int:
        """Ranked items the rejected ones are taken from (the target may be among them)."""
        return (self.top_k if self.rejected == "sample" else self.n_rejected) + 1


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
    items: ItemsConfig = field(
        default_factory=ItemsConfig,
        metadata={"help": "how items are spelled: titles or semantic-ID tokens (SID-LLM)"},
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
