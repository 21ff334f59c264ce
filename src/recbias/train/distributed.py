"""Data parallelism through ``torch.distributed``, launched by ``torchrun`` (or ``accelerate launch``).

    torchrun --nproc_per_node 4 -m recbias.cli run configs/quickstart.toml --run-dir runs/ddp

Every rank builds the same effective batches (same seed); the micro-batches of one optimiser step
are dealt round-robin to the ranks, each rank back-propagates its share divided by the *global*
normaliser, and the gradients are summed across ranks. The update therefore equals the
single-process one, whatever the number of processes. Rank 0 alone validates, decodes the test
split and writes files; it broadcasts the validation metric so that every rank stops together.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch
import torch.distributed as dist


def launched() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env() -> torch.device | None:
    """Join the process group started by torchrun; returns this rank's device (None if single)."""
    if not launched() or (dist.is_available() and dist.is_initialized()):
        return None
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        dist.init_process_group("nccl")
        return torch.device("cuda", local)
    dist.init_process_group("gloo")
    return torch.device("cpu")


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return rank_and_world()[0] == 0


def sum_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """All-reduce (sum) the gradients; a rank without a micro-batch contributes zeros."""
    if rank_and_world()[1] == 1:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)


def sum_scalar(value: torch.Tensor) -> torch.Tensor:
    if rank_and_world()[1] > 1:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def broadcast_float(value: float | None) -> float | None:
    """Rank 0's value on every rank."""
    if rank_and_world()[1] == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if rank_and_world()[1] > 1:
        dist.barrier()
