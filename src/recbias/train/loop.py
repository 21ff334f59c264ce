"""One readable training loop for generative recommenders.

    trainer = Trainer(model, objective, TrainConfig(), run_dir, pad_id, seed=0)
    trainer.fit(train_samples, validate=lambda model: ndcg_at_10(model))

Per optimiser step the loop takes one *effective batch* (micro-batch × accumulation), built from
length-bucketed, seeded shuffles so the samples of a step do not depend on the micro-batch size.
The objective's summed numerators are divided by the effective batch's summed denominator, so
accumulation does not change the loss. Only the supervised target positions go through the LM
head. Validation (NDCG@K by constrained decoding) runs after each epoch, with early stopping; the
best weights are kept and restored at the end.

Several processes (``train.parallel``, :mod:`recbias.distributed`): the training forward is a
module (:class:`TrainForward`) wrapped in DDP or sharded with FSDP2; each rank runs its share of a
step's micro-batches and the update equals the one-process update. Dropout masks are seeded per
(seed, step, micro-batch), so they too do not depend on the number of processes.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import torch

from recbias import distributed
from recbias.config import Config
from recbias.lm.batching import (
    Batch,
    TokenizedSample,
    bucketed_batches,
    collate,
    precompute_targets,
    split_micro_batches,
    to_device,
)
from recbias.lm.forward import MIN_SHARED_PREFIX, causal_lm, shared_prefix_length, target_logits
from recbias.lm.loading import autocast
from recbias.objectives import Objective, ObjectiveConfig
from recbias.train import checkpoint
from recbias.train.checkpoint import LoopState

log = logging.getLogger(__name__)


@dataclass
class TrainConfig(Config):
    epochs: int = field(
        default=2,
        metadata={"help": "maximum number of epochs (0: decode with the base model)", "ge": 0},
    )
    lr: float = field(default=1e-4, metadata={"help": "peak learning rate (AdamW)", "gt": 0})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    warmup_steps: int = field(
        default=20, metadata={"help": "linear warm-up steps (BIGRec/D3: 20)", "ge": 0}
    )
    schedule: Literal["linear", "cosine", "constant"] = field(
        default="linear", metadata={"help": "learning-rate decay after warm-up"}
    )
    micro_batch_size: int = field(default=8, metadata={"help": "samples per forward pass", "ge": 1})
    grad_accum: int = field(
        default=2, metadata={"help": "micro-batches per optimiser step", "ge": 1}
    )
    micro_batch_tokens: int = field(
        default=0,
        metadata={
            "help": "cap on the padded tokens (rows x longest row) of a forward pass: a step's "
            "micro_batch_size x grad_accum samples are then split, shortest first, into passes of "
            "at most micro_batch_size samples within this budget (bounds activation memory when "
            "prompt lengths vary; the update is the same); 0 = off",
            "ge": 0,
        },
    )
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping; 0 = off"})
    bucket_factor: int = field(
        default=32, metadata={"help": "length-bucketing window, in effective batches", "ge": 1}
    )
    patience: int = field(
        default=1,
        metadata={"help": "epochs without validation improvement before stopping", "ge": 1},
    )
    checkpoint_every: int = field(
        default=0,
        metadata={"help": "save a resumable checkpoint every N steps (0 = each epoch)", "ge": 0},
    )
    log_every: int = field(
        default=10, metadata={"help": "log training metrics every N steps", "ge": 1}
    )
    snapshot_every: int = field(
        default=0,
        metadata={
            "help": "keep the weights every N steps in checkpoints/step-N, for training-curve "
            "diagnostics (recbias audit); 0 = off",
            "ge": 0,
        },
    )
    snapshot_epochs: bool = field(
        default=False,
        metadata={"help": "keep the weights at the end of every epoch in checkpoints/epoch-E"},
    )
    share_prompt_prefix: bool = field(
        default=True,
        metadata={
            "help": "compute the prompt tokens that all rows of a micro-batch share (the task "
            "description) once per micro-batch instead of once per row; same result (CPU only: "
            "on a GPU the extra forward call costs more than it saves)"
        },
    )
    compile: bool = field(
        default=False,
        metadata={"help": "torch.compile the decoder stack for training (one-time cost)"},
    )
    parallel: Literal["auto", "none", "ddp", "fsdp"] = field(
        default="auto",
        metadata={
            "help": "several processes (torchrun / accelerate launch): ddp = DistributedDataParallel "
            "(a full copy per device, gradients summed); fsdp = FSDP2, parameters, gradients and "
            "optimiser state sharded per decoder layer (full fine-tuning of models that do not fit "
            "one device); auto = ddp when more than one process is launched, else none"
        },
    )
    loggers: list[str] = field(
        default_factory=list, metadata={"help": "extra loggers besides JSONL: tensorboard, mlflow"}
    )
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)

    @property
    def effective_batch(self) -> int:
        return self.micro_batch_size * self.grad_accum


class Reporter(Protocol):
    """Progress display; the CLI provides a rich one, the library default prints nothing."""

    def start(self, total_steps: int, done: int) -> None: ...
    def advance(self, info: dict[str, Any]) -> None: ...


class SilentReporter:
    def start(self, total_steps: int, done: int) -> None:
        return None

    def advance(self, info: dict[str, Any]) -> None:
        return None


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def release_free_memory() -> None:
    """Hand freed heap pages back to the OS (glibc): activations of varying shapes otherwise
    fragment the heap and the resident size creeps up over an epoch."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _lr_lambda(cfg: TrainConfig, total: int) -> Callable[[int], float]:
    def fn(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / (cfg.warmup_steps + 1)
        frac = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
        if cfg.schedule == "linear":
            return max(0.0, 1.0 - frac)
        if cfg.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(frac, 1.0)))
        return 1.0

    return fn


def param_groups(model: torch.nn.Module, lr: float) -> list[dict[str, Any]]:
    """The trainable parameters (sharded ones under FSDP) as AdamW groups: those of a module
    that sets ``lr_multiplier`` (e.g. the PrefixMem encoder) train at ``lr * lr_multiplier``."""
    scaled: dict[int, float] = {}
    for module in model.modules():
        factor = getattr(module, "lr_multiplier", None)
        if factor is not None:
            scaled.update({id(p): float(factor) for p in module.parameters()})
    groups: dict[float, list[torch.nn.Parameter]] = {}
    for p in model.parameters():
        if p.requires_grad:
            groups.setdefault(scaled.get(id(p), 1.0), []).append(p)
    return [{"params": ps, "lr": lr * factor} for factor, ps in groups.items()]


class TrainForward(torch.nn.Module):
    """The training forward (:func:`target_logits`) as a module, so that DDP and FSDP, which hook
    into module calls, see it. ``decoder`` (optional) is a compiled view of the model's own
    decoder stack, kept out of the module tree (it holds no parameters of its own)."""

    def __init__(self, model: torch.nn.Module, share_prefix: bool) -> None:
        super().__init__()
        self.model, self.share_prefix = model, share_prefix
        self.__dict__["decoder"] = None

    def forward(self, batch: Batch) -> torch.Tensor:
        """[n_tok, vocab] logits at the batch's supervised positions."""
        return target_logits(self.model, batch, self.decoder, self.share_prefix)


class Trainer:
    def __init__(
        self,
        model: torch.nn.Module,
        objective: Objective,
        cfg: TrainConfig,
        run_dir: Path,
        pad_id: int,
        seed: int,
        dtype: str = "bf16",
        logger: Any = None,
        reporter: Reporter | None = None,
        collate_fn: Callable[[Sequence[Any], int], Batch] = collate,
    ) -> None:
        self.model, self.objective, self.cfg = model, objective, cfg
        # Builds a micro-batch from samples (preference objectives collate several rows each).
        self.collate_fn = collate_fn
        self.run_dir, self.pad_id, self.seed, self.dtype = Path(run_dir), pad_id, seed, dtype
        self.logger = logger
        self.reporter = reporter or SilentReporter()
        self.state = LoopState()
        self.device = next(model.parameters()).device
        self.mode = distributed.resolve_parallel(cfg.parallel)
        # Under FSDP every forward is a collective: one forward per micro-batch on every rank.
        # Sharing the prompt prefix saves FLOPs but costs a second forward and backward call: it
        # pays on CPUs, which are bound by FLOPs; a GPU step of these models is bound by the host
        # launching kernels, which the second call doubles.
        share = (
            cfg.share_prompt_prefix
            and not cfg.compile
            and self.mode != "fsdp"
            and self.device.type == "cpu"
        )
        self.train_forward = TrainForward(model, share)
        self.forward = distributed.wrap(self.train_forward, self.mode, self.device)
        if self.mode == "fsdp":
            distributed.register_root(model, self.forward)
        # The fused kernel avoids foreach's temporary copies of every parameter (peak memory).
        self.optimizer = torch.optim.AdamW(
            param_groups(model, cfg.lr), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True
        )
        # Compiling fuses the elementwise ops around the matmuls (about 1.2x on CPU here) after a
        # one-time compilation of a few minutes; decoding keeps the uncompiled model.
        if cfg.compile:
            compiled = torch.compile(causal_lm(model).get_decoder(), dynamic=True)
            self.train_forward.__dict__["decoder"] = compiled  # not a second registration

    @property
    def ckpt_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    def step_groups(self, samples: Sequence[TokenizedSample], epoch: int) -> list[list[list[int]]]:
        """Sample indices of every optimiser step of ``epoch``, split into micro-batches."""
        lengths = [s.length for s in samples]
        eff = bucketed_batches(
            lengths, self.cfg.effective_batch, self.seed * 100_003 + epoch, self.cfg.bucket_factor
        )
        mbs, budget = self.cfg.micro_batch_size, self.cfg.micro_batch_tokens
        return [split_micro_batches(b, lengths, mbs, budget) for b in eff]

    def _step(self, samples: Sequence[TokenizedSample], group: list[list[int]]) -> dict[str, float]:
        batches = [self.collate_fn([samples[i] for i in idx], self.pad_id) for idx in group]
        begin_step = getattr(self.objective, "begin_step", None)
        if begin_step is not None:
            begin_step()
        # Everything data-dependent is settled on the host before the copies: the objective's
        # per-token metadata, the normaliser, the shared prefix and the target positions. The
        # micro-batches then run without waiting on the device.
        for b in batches:
            self.objective.prepare(b)
        total = sum(self.objective.normaliser(b.target_labels, b.meta) for b in batches)
        share = self.train_forward.share_prefix
        for b in batches:
            n = shared_prefix_length(b) if share else 0
            precompute_targets(b, n if n >= MIN_SHARED_PREFIX else 0)
            to_device(b, self.device)
        total = torch.as_tensor(total, dtype=torch.float32).to(self.device, non_blocking=True)
        total = total.clamp_min(1e-12)
        loss_sum = self._backward(batches, total)
        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.cfg.max_grad_norm > 0:  # DTensor-aware: the global norm under FSDP too
            torch.nn.utils.clip_grad_norm_(params, self.cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.device.type == "cpu":  # the CUDA caching allocator keeps its own pool
            release_free_memory()
        return {
            "loss": float(loss_sum / total),  # the step's one synchronisation
            "tokens": sum(b.n_tokens for b in batches),
            "samples": sum(len(idx) for idx in group),
        }

    def _backward(self, batches: list[Batch], total: torch.Tensor) -> torch.Tensor:
        """Forward and backward of this rank's share of the step; returns the summed numerator
        over all ranks. Gradients are communicated once, after the last micro-batch."""
        mine = distributed.shard(batches)
        rank, world = distributed.rank_and_world()
        # DDP needs one synchronised backward per rank; FSDP the same number of forwards.
        calls = -(-len(batches) // world) if self.mode == "fsdp" else max(1, len(mine))
        loss_sum = torch.zeros((), device=self.device)
        for i in range(calls):
            # Dropout masks depend on the micro-batch, not on which process runs it.
            torch.manual_seed(hash((self.seed, self.state.step, i * world + rank)) % 2**63)
            real = i < len(mine)
            b = mine[i] if real else batches[0]
            with distributed.gradient_sync(self.forward, sync=i == calls - 1):
                with autocast(self.dtype, self.device):
                    logits = self.forward(b)
                if real:
                    num = self.objective(logits.float(), b.target_labels, b.meta)
                    (num / total).backward()
                    loss_sum += num.detach()
                else:  # zero weight: this rank only takes part in the collectives
                    idle = getattr(self.objective, "idle_loss", None)
                    zero = logits.float().sum() * 0.0 if idle is None else idle(logits, b)
                    zero.backward()
        return distributed.sum_scalar(loss_sum)

    def fit(
        self,
        samples: Sequence[TokenizedSample],
        validate: Callable[[torch.nn.Module], float] | None,
        resume: bool = False,
        stop_after_steps: int | None = None,
    ) -> LoopState:
        """Train; ``stop_after_steps`` simulates a kill (for resume tests and time-boxed runs)."""
        steps_per_epoch = len(self.step_groups(samples, 0))
        total = steps_per_epoch * self.cfg.epochs
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _lr_lambda(self.cfg, total)
        )
        if resume:
            self.state, objective_state = checkpoint.load(
                self.ckpt_dir / "last", self.model, self.optimizer, self.scheduler
            )
            self.objective.load_state_dict(objective_state)
        self.model.train()
        self.reporter.start(total, self.state.step)
        while self.state.epoch < self.cfg.epochs and not self.state.stopped_early:
            if not self._run_epoch(samples, stop_after_steps):
                return self.state
            self._end_epoch(validate)
        distributed.barrier()
        if validate is not None and self.state.best_epoch is not None:
            checkpoint.load_weights(self.ckpt_dir / "best", self.model)
        self.model.eval()
        return self.state

    def _run_epoch(self, samples: Sequence[TokenizedSample], stop_after: int | None) -> bool:
        groups = self.step_groups(samples, self.state.epoch)
        if self.state.group_in_epoch == 0:  # not when resuming mid-epoch: it already started
            with distributed.full_weights(self.model):  # e.g. GDRT's relevance pass
                self.objective.on_epoch_start(self.state.epoch, self.model)
        for gi in range(self.state.group_in_epoch, len(groups)):
            t0 = time.perf_counter()
            info = self._step(samples, groups[gi])
            info["tokens_per_s"] = info["tokens"] / max(time.perf_counter() - t0, 1e-9)
            self.state.step += 1
            self.state.group_in_epoch = gi + 1
            info.update(
                step=self.state.step, epoch=self.state.epoch, lr=self.scheduler.get_last_lr()[0]
            )
            self.reporter.advance(info)
            logging_step = self.state.step % self.cfg.log_every == 0
            if self.logger is not None and logging_step:
                extra = {k: v.detach().cpu().tolist() for k, v in self.objective.stats().items()}
                self.logger.log({"event": "train", **info, **extra})
            every = self.cfg.checkpoint_every
            if every and self.state.step % every == 0:
                self._save_last()
            snap = self.cfg.snapshot_every
            if snap and self.state.step % snap == 0:
                checkpoint.save_weights(self.ckpt_dir / f"step-{self.state.step}", self.model)
            if stop_after is not None and self.state.step >= stop_after:
                return False
        self.state.epoch += 1
        self.state.group_in_epoch = 0
        return True

    def _end_epoch(self, validate: Callable[[torch.nn.Module], float] | None) -> None:
        record: dict[str, Any] = {
            "event": "epoch",
            "epoch": self.state.epoch,
            "step": self.state.step,
        }
        if validate is not None:
            # Every rank decodes its share and gets the gathered results: the same metric.
            self.model.eval()
            with distributed.full_weights(self.model):
                metric = float(validate(self.model))
            self.model.train()
            record["val_metric"] = metric
            best = self.state.best_metric
            if best is None or metric > best:
                self.state.best_metric, self.state.best_epoch = metric, self.state.epoch
                self.state.bad_epochs = 0
                checkpoint.save_weights(self.ckpt_dir / "best", self.model)
            else:
                self.state.bad_epochs += 1
                self.state.stopped_early = self.state.bad_epochs >= self.cfg.patience
        self.state.history.append(record)
        if self.logger is not None:
            self.logger.log(record)
        if self.cfg.snapshot_epochs:
            checkpoint.save_weights(self.ckpt_dir / f"epoch-{self.state.epoch}", self.model)
        self._save_last()

    def _save_last(self) -> None:
        """Every rank calls (gathering FSDP shards is a collective); rank 0 writes."""
        checkpoint.save(
            self.ckpt_dir / "last",
            self.model,
            self.optimizer,
            self.scheduler,
            self.state,
            self.objective.state_dict(),
        )
        distributed.barrier()
