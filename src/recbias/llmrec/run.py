"""The run loader: a finished run directory → a loaded run that analyses receive.

    run = LoadedRun.open(Path("runs/quickstart"))   # config.toml + the prepared dataset
    run.cfg, run.ds                                  # RunConfig, PreparedDataset
    run.tuned()            # LoadedModel with the run's trained weights (loaded once)
    run.base()             # the model the run started from (loaded once)
    cfg, ds, lm = load_run(Path("runs/quickstart"))  # config, dataset and the tuned model at once

Every problem with the run is a :mod:`recbias.errors` exception naming the path or field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from recbias.config import load_recorded
from recbias.data.dataset import PreparedDataset
from recbias.errors import ConfigError, DataError, ModelError
from recbias.llmrec.assemble import LoadedModel, load_data, load_lm
from recbias.llmrec.config import RunConfig
from recbias.lm import loading
from recbias.prompts import PromptBuilder
from recbias.sidllm.assemble import sid_setup


def read_run_config(run_dir: Path) -> RunConfig:
    """The resolved ``config.toml`` of a run; errors say the directory is not a run."""
    if not run_dir.is_dir():
        raise DataError(f"run directory '{run_dir}': no such directory")
    path = run_dir / "config.toml"
    if not path.is_file():
        raise DataError(
            f"'{run_dir}' is not a recbias run directory: no config.toml "
            "(expected the directory written by `recbias run` or `recbias train`)"
        )
    try:
        return load_recorded(RunConfig, path)
    except ConfigError as exc:
        raise ConfigError(f"run directory '{run_dir}': {exc}") from None


def trained_weights(cfg: RunConfig, run_dir: Path) -> Path | None:
    """The run's trained ``model/`` or ``adapter/``; None for ``train.epochs = 0`` (the base)."""
    if cfg.train.epochs == 0:
        return None
    path = run_dir / ("adapter" if cfg.model.finetune == "lora" else "model")
    if not path.is_dir():
        raise ModelError(f"run directory '{run_dir}' has no trained {path.name}/ (train it first)")
    return path


def load_run(run_dir: Path, trained: bool = True) -> tuple[RunConfig, PreparedDataset, LoadedModel]:
    """A run directory's config, dataset and model: the tuned weights (``trained``) or the base
    model the run started from. A missing config or checkpoint raises an error naming the path."""
    path = Path(run_dir) / "config.toml"
    if not path.is_file():
        raise ModelError(f"run directory '{run_dir}' has no config.toml (not a recbias run)")
    cfg = load_recorded(RunConfig, path)
    weights = trained_weights(cfg, Path(run_dir)) if trained else None
    ds = load_data(cfg)
    return cfg, ds, load_lm(cfg, ds, weights)


@dataclass
class LoadedRun:
    """A run opened for analysis; its models are loaded on first use."""

    run_dir: Path
    cfg: RunConfig
    ds: PreparedDataset
    _models: dict[str, LoadedModel] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, run_dir: Path) -> LoadedRun:
        cfg = read_run_config(Path(run_dir))
        return cls(Path(run_dir), cfg, load_data(cfg))

    def tuned(self) -> LoadedModel:
        """The run's trained model (``model/`` or ``adapter/``); missing = error naming it."""
        if "tuned" not in self._models:
            weights = trained_weights(self.cfg, self.run_dir)
            self._models["tuned"] = self._load(weights)
        return self._models["tuned"]

    def base(self) -> LoadedModel:
        """The model the run started from (fresh LoRA adapters are the identity)."""
        if "base" not in self._models:
            self._models["base"] = self._load(None)
        return self._models["base"]

    def take_base(self) -> LoadedModel:
        """The base model for in-place weight loading; later ``base()`` calls reload it."""
        lm = self.base()
        del self._models["base"]
        return lm

    def _load(self, weights: Path | None) -> LoadedModel:
        try:
            lm = load_lm(self.cfg, self.ds, weights)
        except OSError as exc:
            what = weights or self.cfg.model.path or "the packaged base model"
            raise ModelError(f"cannot load the model from '{what}': {exc}") from None
        lm.model.eval()
        return lm

    def tokenizer_builder(self) -> PromptBuilder:
        """The run's prompt builder, without loading a model if none is loaded yet."""
        if self._models:
            return next(iter(self._models.values())).builder
        tok = loading.load_tokenizer(loading.resolve_path(self.cfg.model))
        sid = None
        if self.cfg.items.uses_sid:  # the SID tokens and the codes the run was trained with
            weights = self.run_dir / ("adapter" if self.cfg.model.finetune == "lora" else "model")
            sid = sid_setup(self.cfg.items, self.ds, tok, weights if weights.is_dir() else None)
        return PromptBuilder(tok, self.cfg.prompt, self.ds.domain, sid.text if sid else None)

    def checkpoint_dir(self, name: str) -> Path:
        """``RUN/checkpoints/NAME`` holding ``weights.pt``; missing = error naming the path."""
        path = self.run_dir / "checkpoints" / name / "weights.pt"
        if not path.is_file():
            raise ModelError(f"checkpoint '{name}': {path} does not exist")
        return path.parent
