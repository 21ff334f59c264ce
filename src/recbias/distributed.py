"""Several processes through torch's own engines: DDP, FSDP2, sharded decoding.

Launch one process per device with ``torchrun`` or ``accelerate launch`` (both set ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``). Every process needs the same
``--run-dir``; rank 0 alone writes and prints. These are the commands the tests run (2 CPU
processes, gloo; on GPUs the same commands use NCCL, one GPU per process):

    torchrun --nproc_per_node 2 -m recbias.cli run CONFIG.toml --run-dir runs/ddp
    torchrun --nproc_per_node 2 -m recbias.cli run CONFIG.toml --run-dir runs/fsdp \
        --set train.parallel=fsdp
    accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no \
        --dynamo_backend no -m recbias.cli run CONFIG.toml --run-dir runs/fsdp \
        --set train.parallel=fsdp
    torchrun --nproc_per_node 2 -m recbias.cli recommend CONFIG.toml --run-dir runs/ddp
    torchrun --nproc_per_node 2 -m recbias.cli audit runs/ddp
    torchrun --nproc_per_node 2 -m recbias.cli compare COMPARE.toml --out runs/cmp

``accelerate launch`` needs ``--multi_gpu`` even on CPU (its ``--cpu`` mode goes through MPI,
which recbias does not use); its ``--mixed_precision`` is ignored: ``model.dtype`` decides. A
killed run continues with the same command plus ``--resume`` (any number of processes, any mode:
checkpoints are consolidated, :mod:`recbias.train.checkpoint`).

Training (``train.parallel``): ``ddp`` wraps the training forward in
:class:`torch.nn.parallel.DistributedDataParallel` (bucketed all-reduce overlapped with the
backward, ``no_sync`` on all but the last micro-batch of a step); ``fsdp`` shards parameters,
gradients and optimiser state with FSDP2 (``fully_shard`` on every decoder layer, then on the
root), for full fine-tuning of models that do not fit one device; LoRA works under both. ``auto``
is ``ddp`` when several processes are launched.

The update equals the single-process one whatever the number of processes: every rank builds the
same effective batches (same seed), the micro-batches of a step are dealt round-robin to the
ranks, each back-propagates its share divided by the step's *global* normaliser, and the gradients
are **summed** across ranks (a summing DDP comm hook; FSDP's gradient divide factor set to 1).
A rank left without a micro-batch (or, under FSDP, with fewer than another rank) runs a
zero-weight forward and backward so that every rank takes part in every collective.

Decoding (validation, test, the audit's passes) is sharded too: every rank decodes its share of
the samples and all ranks receive the gathered results (:func:`gather_shards`), so the validation
metric is computed from the same numbers on every rank; rank 0 alone writes files. Under FSDP,
decoding runs inside :func:`full_weights` (each rank holds the unsharded weights meanwhile: the
model must fit one device for inference, not for training).
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import os
from collections.abc import Iterator, Sequence
from typing import Any, Literal, TypeVar

import torch
import torch.distributed as dist

from recbias.errors import ConfigError

ParallelMode = Literal["auto", "none", "ddp", "fsdp"]
T = TypeVar("T")


def launched() -> bool:
    """True under torchrun / accelerate launch (even with one process)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def init_from_env() -> torch.device | None:
    """Join the process group of the launcher; returns this rank's device (None if single)."""
    if not launched():
        return None
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local) if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def shutdown(sync: bool = True) -> None:
    """Leave the process group; with ``sync`` every rank waits for the others first.

    A rank that finished early (every rank but 0 skips the writing) would otherwise tear down
    its gloo threads while rank 0 is still working; the wrappers (DDP reducers, FSDP states)
    that still reference the group are collected before it is destroyed.
    """
    if not initialized():
        return
    if sync and dist.get_world_size() > 1:
        dist.barrier()
    gc.collect()
    dist.destroy_process_group()


def rank_and_world() -> tuple[int, int]:
    if initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return rank_and_world()[0] == 0


def barrier() -> None:
    if rank_and_world()[1] > 1:
        dist.barrier()


def broadcast_object(obj: T) -> T:
    """Rank 0's ``obj`` on every rank (``obj`` itself with one process). It travels pickled: put
    tensors on the CPU first, or they arrive on rank 0's device."""
    if rank_and_world()[1] == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sync_from_rank0(module: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers on every rank, in place (FSDP's ``sync_module_states``).

    ``accelerate launch --use_fsdp`` asks ``transformers`` by default to read the checkpoint on
    rank 0 only (``fsdp_cpu_ram_efficient_loading``), and the other ranks start from zeros; this
    gives every rank the loaded weights. A no-op with one process.
    """
    if rank_and_world()[1] == 1:
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


def sum_scalar(value: torch.Tensor) -> torch.Tensor:
    """The sum over ranks of a tensor (a copy; the value itself when single)."""
    if rank_and_world()[1] > 1:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


# --------------------------------------------------------------------------- sharding


def shard(items: Sequence[T]) -> list[T]:
    """This rank's share of ``items``: every ``world``-th one from its rank (round-robin)."""
    rank, world = rank_and_world()
    return list(items[rank::world])


def gather_shards(mine: list[T], n: int) -> list[T]:
    """Undo :func:`shard` on every rank: the ``n`` results in the order of the original items.

    ``mine`` are this rank's results, in the order of ``shard(range(n))``."""
    world = rank_and_world()[1]
    if world == 1:
        return mine
    parts: list[Any] = [None] * world
    dist.all_gather_object(parts, mine)
    out: list[Any] = [None] * n
    for r, part in enumerate(parts):
        out[r::world] = part
    return out


# --------------------------------------------------------------------------- training


def accelerate_fsdp() -> bool:
    """Whether ``accelerate launch`` was asked for FSDP (``--use_fsdp`` or its config file)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true")


def resolve_parallel(mode: str) -> str:
    """``none``, ``ddp`` or ``fsdp`` for this launch: ``auto`` = ddp with several processes, or
    fsdp when ``accelerate launch --use_fsdp`` started them (recbias shards per decoder layer
    with FSDP2 itself; accelerate's other FSDP options are not read)."""
    world = rank_and_world()[1]
    if mode == "auto":
        if world == 1:
            return "none"
        return "fsdp" if accelerate_fsdp() else "ddp"
    if mode in ("ddp", "fsdp") and not initialized():
        raise ConfigError(
            f"config key 'train.parallel': {mode!r} needs a launcher "
            "(torchrun --nproc_per_node N or accelerate launch); got a single plain process"
        )
    if mode == "none" and world > 1:
        raise ConfigError(
            f"config key 'train.parallel': 'none' with {world} processes would train "
            f"{world} unsynchronised copies; use auto, ddp or fsdp"
        )
    if mode == "ddp" and accelerate_fsdp():
        raise ConfigError(
            "config key 'train.parallel': 'ddp', but accelerate launch was given --use_fsdp; "
            "use 'fsdp' or 'auto', or launch without --use_fsdp"
        )
    return mode


def _sum_hook(state, bucket):  # unannotated: DDP checks the annotation's object at run time
    """DDP comm hook: all-reduce a gradient bucket as a *sum* (DDP's default averages)."""
    work = dist.all_reduce(bucket.buffer(), async_op=True)
    return work.get_future().then(lambda fut: fut.value()[0])


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The transformer blocks to shard one by one (HF's ``_no_split_modules`` classes)."""
    names = set()
    for m in model.modules():
        names |= set(getattr(m, "_no_split_modules", None) or [])
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        raise ConfigError(
            "config key 'train.parallel': fsdp needs the model's decoder-layer classes "
            f"(_no_split_modules); {type(model).__name__} names none"
        )
    return layers


def _no_buffer_sync() -> dict[str, bool]:
    """No buffer broadcast per forward: buffers (rotary tables) are constants, and ranks may run
    different numbers of forwards per step. The keyword changed name in torch 2.13."""
    params = inspect.signature(torch.nn.parallel.DistributedDataParallel).parameters
    key = "forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"
    return {key: False}


def wrap(module: torch.nn.Module, mode: str, device: torch.device) -> torch.nn.Module:
    """``module`` (the training forward) under DDP or FSDP2; itself for ``none``."""
    if mode == "ddp":
        ddp = torch.nn.parallel.DistributedDataParallel(
            module,
            device_ids=[device.index] if device.type == "cuda" else None,
            **_no_buffer_sync(),
        )
        ddp.register_comm_hook(None, _sum_hook)
        return ddp
    if mode == "fsdp":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(device.type, (rank_and_world()[1],))
        for layer in decoder_layers(module):
            fully_shard(layer, mesh=mesh)
        fully_shard(module, mesh=mesh)
        for m in fsdp_modules(module):  # per module: these setters do not recurse
            m.set_gradient_divide_factor(1.0)  # type: ignore[operator]  # sum, not mean
            if hasattr(m, "set_force_sum_reduction_for_comms"):  # plain SUM: gloo has no PREMUL
                m.set_force_sum_reduction_for_comms(True)
        return module
    return module


def is_fsdp(module: torch.nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return any(isinstance(m, FSDPModule) for m in module.modules())


@contextlib.contextmanager
def gradient_sync(wrapped: torch.nn.Module, sync: bool) -> Iterator[None]:
    """Accumulate locally (no communication) unless ``sync``: DDP ``no_sync`` / FSDP's switch."""
    if isinstance(wrapped, torch.nn.parallel.DistributedDataParallel) and not sync:
        with wrapped.no_sync():
            yield
        return
    if hasattr(wrapped, "set_requires_gradient_sync"):
        wrapped.set_requires_gradient_sync(sync)
    yield


def fsdp_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Every FSDP2 module that holds parameters of ``model`` (its root registered by wrap)."""
    from torch.distributed.fsdp import FSDPModule

    found = [m for m in model.modules() if isinstance(m, FSDPModule)]
    root = model.__dict__.get("_fsdp_root")
    return found + ([root] if root is not None else [])


def register_root(model: torch.nn.Module, root: torch.nn.Module) -> None:
    """Remember the FSDP root that wraps ``model`` (not a submodule: no reference cycle in
    ``modules()``) so that :func:`full_weights` can unshard its parameters too."""
    object.__setattr__(model, "_fsdp_root", root)


def _param_groups(module: torch.nn.Module) -> list[Any]:
    """The FSDP parameter groups of one FSDP module (torch < 2.13 has at most one)."""
    state = module._get_fsdp_state()  # type: ignore[operator]
    groups = getattr(state, "_fsdp_param_groups", None)
    if groups is None:
        group = state._fsdp_param_group
        groups = [group] if group is not None else []
    return list(groups)


@contextlib.contextmanager
def full_weights(model: torch.nn.Module) -> Iterator[None]:
    """Unsharded FSDP2 parameters on every rank for the duration (no collective inside, so ranks
    may run different numbers of forward passes); a no-op without FSDP."""
    mods = fsdp_modules(model)
    root = model.__dict__.get("_fsdp_root")
    if root is not None:  # FSDP picks its root at the first forward: make it the training one
        root._get_fsdp_state()._lazy_init()
    groups = [g for m in mods for g in _param_groups(m)]
    saved = [g.post_forward_mesh_info for g in groups]
    for m in mods:
        m.unshard()  # type: ignore[operator]
    for g in groups:
        g.post_forward_mesh_info = None  # keep them unsharded after each forward
    try:
        yield
    finally:
        for g, info in zip(groups, saved, strict=True):
            g.post_forward_mesh_info = info
        for m in mods:
            m.reshard()  # type: ignore[operator]
