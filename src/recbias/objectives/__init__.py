"""Training objectives, registered explicitly by name.

objective = build_objective(ObjectiveConfig(name="sft"))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from recbias.errors import ConfigError
from recbias.objectives.base import Objective
from recbias.objectives.sft import SFTConfig, SFTObjective

_REGISTRY: dict[str, tuple[str, Callable[[Any], Objective]]] = {}


def register_objective(name: str, config_field: str, factory: Callable[[Any], Objective]) -> None:
    """Register ``factory(cfg)``; ``config_field`` names its config table in ObjectiveConfig."""
    if name in _REGISTRY:
        raise ValueError(f"objective '{name}' is already registered")
    _REGISTRY[name] = (config_field, factory)


@dataclass
class ObjectiveConfig:
    name: str = field(default="sft", metadata={"help": "training objective: " + "sft"})
    sft: SFTConfig = field(default_factory=SFTConfig)

    def validate(self) -> None:
        if self.name not in _REGISTRY:
            raise ConfigError(
                f"config key 'train.objective.name': unknown objective '{self.name}'; "
                f"registered: {', '.join(sorted(_REGISTRY))}"
            )


def build_objective(cfg: ObjectiveConfig) -> Objective:
    config_field, factory = _REGISTRY[cfg.name]
    return factory(getattr(cfg, config_field))


def registered() -> list[str]:
    return sorted(_REGISTRY)


register_objective("sft", "sft", SFTObjective)

__all__ = ["Objective", "ObjectiveConfig", "build_objective", "register_objective", "registered"]
