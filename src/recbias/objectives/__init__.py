"""Training objectives, registered explicitly by name.

objective = build_objective(ObjectiveConfig(name="sft"))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from recbias.config import Config, spec
from recbias.errors import ConfigError
from recbias.objectives.base import Objective
from recbias.objectives.cft import CFTConfig, CFTObjective
from recbias.objectives.gdrt import GDRTConfig, GDRTObjective
from recbias.objectives.igd import IGDConfig, IGDObjective
from recbias.objectives.msl import MSLConfig, MSLObjective
from recbias.objectives.pos import PosConfig, PosObjective
from recbias.objectives.reweight import ReweightConfig, ReweightObjective
from recbias.objectives.sft import SFTConfig, SFTObjective

_REGISTRY: dict[str, tuple[str | None, Callable[[Any], Objective]]] = {}


def register_objective(
    name: str, config_field: str | None, factory: Callable[[Any], Objective]
) -> None:
    """Register ``factory(cfg)``; ``config_field`` names its config table in ObjectiveConfig
    (``None``: a combination whose factory receives the whole ObjectiveConfig)."""
    if name in _REGISTRY:
        raise ValueError(f"objective '{name}' is already registered")
    _REGISTRY[name] = (config_field, factory)


@dataclass
class ObjectiveConfig(Config):
    name: str = field(
        default="sft",
        metadata=spec("training objective", choices=lambda: tuple(sorted(_REGISTRY))),
    )
    sft: SFTConfig = field(
        default_factory=SFTConfig, metadata={"help": "name = 'sft' (no settings)"}
    )
    igd: IGDConfig = field(default_factory=IGDConfig, metadata={"help": "name = 'igd'"})
    msl: MSLConfig = field(
        default_factory=MSLConfig, metadata={"help": "name = 'msl' or 'msl_gdrt'"}
    )
    pos: PosConfig = field(default_factory=PosConfig, metadata={"help": "name = 'pos'"})
    cft: CFTConfig = field(default_factory=CFTConfig, metadata={"help": "name = 'cft'"})
    reweight: ReweightConfig = field(
        default_factory=ReweightConfig, metadata={"help": "name = 'reweight'"}
    )
    gdrt: GDRTConfig = field(
        default_factory=GDRTConfig, metadata={"help": "name = 'gdrt' or 'msl_gdrt'"}
    )


def build_objective(cfg: ObjectiveConfig) -> Objective:
    config_field, factory = _REGISTRY[cfg.name]
    return factory(cfg if config_field is None else getattr(cfg, config_field))


def _msl_gdrt(cfg: ObjectiveConfig) -> Objective:
    """MSL+GDRT (GDRT Table 3): Group-DRO weights over relevance groups of MSL's token losses,
    with the settings of ``train.objective.gdrt`` and ``train.objective.msl`` (fixed τ)."""
    if cfg.msl.ats:
        raise ConfigError("config key 'train.objective.msl.ats': MSL+GDRT uses a fixed τ")
    return GDRTObjective(cfg.gdrt, base=MSLObjective(cfg.msl))


def registered() -> list[str]:
    return sorted(_REGISTRY)


register_objective("sft", "sft", SFTObjective)
register_objective("igd", "igd", IGDObjective)
register_objective("msl", "msl", MSLObjective)
register_objective("pos", "pos", PosObjective)
register_objective("cft", "cft", CFTObjective)
register_objective("reweight", "reweight", ReweightObjective)
register_objective("gdrt", "gdrt", GDRTObjective)
register_objective("msl_gdrt", None, _msl_gdrt)

__all__ = ["Objective", "ObjectiveConfig", "build_objective", "register_objective", "registered"]
