"""Training checkpoints: weights, optimiser, scheduler, RNG and loop state, written atomically.

A run killed at any point resumes from ``checkpoints/last`` and reaches the same numbers as an
uninterrupted run: the data order is a pure function of (seed, epoch), and the RNG states are saved.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recbias.errors import ModelError
from recbias.fsutil import atomic_dir


@dataclass
class LoopState:
    step: int = 0  # optimiser steps done
    epoch: int = 0  # epochs fully done
    group_in_epoch: int = 0  # optimiser steps done inside the current epoch
    best_metric: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that training changes (all for full fine-tuning, adapters for LoRA)."""
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}


def rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    state: LoopState,
    objective_state: dict[str, Any] | None = None,
) -> None:
    with atomic_dir(path) as tmp:
        torch.save(trainable_state(model), tmp / "weights.pt")
        torch.save(
            {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": rng_state(),
                "objective": objective_state or {},
            },
            tmp / "trainer.pt",
        )
        (tmp / "state.json").write_text(json.dumps(asdict(state), indent=2))


def load(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any
) -> tuple[LoopState, dict[str, Any]]:
    """Restore weights, optimiser, scheduler and RNG; returns the loop and objective state."""
    if not (path / "state.json").exists():
        raise ModelError(f"cannot resume: no checkpoint in '{path}'")
    weights = torch.load(path / "weights.pt", weights_only=True)
    params = dict(model.named_parameters())
    unknown = [n for n in weights if n not in params]
    if unknown:
        raise ModelError(f"checkpoint '{path}' does not match the model (e.g. '{unknown[0]}')")
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
    extra = torch.load(path / "trainer.pt", weights_only=False)
    optimizer.load_state_dict(extra["optimizer"])
    scheduler.load_state_dict(extra["scheduler"])
    set_rng_state(extra["rng"])
    state = LoopState(**json.loads((path / "state.json").read_text()))
    return state, extra.get("objective", {})


def save_weights(path: Path, model: torch.nn.Module) -> None:
    """Keep a copy of the trainable weights (the best checkpoint)."""
    with atomic_dir(path) as tmp:
        torch.save(trainable_state(model), tmp / "weights.pt")


def load_weights(path: Path, model: torch.nn.Module) -> None:
    weights = torch.load(path / "weights.pt", weights_only=True)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
