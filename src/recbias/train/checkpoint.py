"""Training checkpoints: weights, optimiser, scheduler, RNG and loop state, written atomically.

A run killed at any point resumes from ``checkpoints/last`` and reaches the same numbers as an
uninterrupted run: the data order is a pure function of (seed, epoch), and the RNG states are saved.

Several processes: checkpoints are *consolidated*, one format whatever the launch. Every rank calls
:func:`save` / :func:`save_weights` (under FSDP gathering the shards is a collective:
``get_model_state_dict`` / ``get_optimizer_state_dict`` with ``full_state_dict=True,
cpu_offload=True``, so the full tensors land in rank 0's CPU memory, never on one device) and
rank 0 alone writes ``weights.pt`` (trainable parameters by name), ``trainer.pt`` (optimiser state
keyed by parameter name, scheduler, RNG, objective state) and ``state.json``. :func:`load` reads
the same files on every rank (the run directory must be on a file system all ranks see) and
``set_*_state_dict`` re-shards them. So a run saved under FSDP on N processes resumes under DDP, FSDP
or one process. The cost is rank 0's CPU memory for the full optimiser state (8 bytes per trainable
parameter with AdamW); beyond that, torch.distributed.checkpoint's sharded format would be the
next step.
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
from recbias.train import distributed


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
    """The parameters that training changes (all for full fine-tuning, adapters for LoRA), full
    tensors (gathered from every rank under FSDP: call on every rank; others get ``{}``)."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    full = full_model_state(model)
    if full is None:
        params = dict(model.named_parameters())
        return {n: params[n].detach() for n in names}
    return {n: full[n] for n in names if n in full}


def full_model_state(model: torch.nn.Module) -> dict[str, torch.Tensor] | None:
    """Under FSDP the full state dict (a collective; CPU tensors on rank 0, ``{}`` elsewhere),
    else None (the model's own tensors are full)."""
    if not distributed.fsdp_modules(model):
        return None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = get_model_state_dict(
        model, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
    )
    # named_parameters lists a tied weight once (as save_pretrained writes it)
    keep = {n for n, _ in model.named_parameters()} | {n for n, _ in model.named_buffers()}
    return {n: v for n, v in full.items() if n in keep}


def _options(**kw: Any) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=distributed.initialized(), **kw)


def optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimiser state keyed by parameter name, full tensors (rank 0 under several ranks)."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=_options())


def load_optimizer_state(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> None:
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    if any(isinstance(k, int) for k in state.get("state", {})):  # written by optimizer.state_dict
        optimizer.load_state_dict(state)
        return
    set_optimizer_state_dict(model, optimizer, state, options=_options())


def load_trainable(model: torch.nn.Module, weights: dict[str, torch.Tensor], where: Path) -> None:
    """Copy full trainable tensors into ``model`` (re-sharded under FSDP); names must match."""
    params = dict(model.named_parameters())
    unknown = [n for n in weights if n not in params]
    if unknown:
        raise ModelError(f"checkpoint '{where}' does not match the model (e.g. '{unknown[0]}')")
    if distributed.fsdp_modules(model):
        from torch.distributed.checkpoint.state_dict import set_model_state_dict

        set_model_state_dict(model, weights, options=_options(strict=False))
        return
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)


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
    """Call on every rank; rank 0 writes (module docstring)."""
    weights, optim = trainable_state(model), optimizer_state(model, optimizer)
    if not distributed.is_main():
        return
    with atomic_dir(path) as tmp:
        torch.save(weights, tmp / "weights.pt")
        torch.save(
            {
                "optimizer": optim,
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
    load_trainable(model, torch.load(path / "weights.pt", weights_only=True), path)
    extra = torch.load(path / "trainer.pt", weights_only=False)
    load_optimizer_state(model, optimizer, extra["optimizer"])
    scheduler.load_state_dict(extra["scheduler"])
    set_rng_state(extra["rng"])
    state = LoopState(**json.loads((path / "state.json").read_text()))
    return state, extra.get("objective", {})


def save_weights(path: Path, model: torch.nn.Module) -> None:
    """Keep a copy of the trainable weights (the best checkpoint, snapshots). Every rank calls;
    rank 0 writes."""
    weights = trainable_state(model)
    if distributed.is_main():
        with atomic_dir(path) as tmp:
            torch.save(weights, tmp / "weights.pt")


def load_weights(path: Path, model: torch.nn.Module) -> None:
    load_trainable(model, torch.load(path / "weights.pt", weights_only=True), path)
