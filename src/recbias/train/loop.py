"""One readable training loop for generative recommenders.

    trainer = Trainer(model, objective, TrainConfig(), run_dir, pad_id, seed=0)
    trainer.fit(train_samples, validate=lambda model: ndcg_at_10(model))

Per optimiser step the loop takes one *effective batch* (micro-batch × accumulation), built from
length-bucketed, seeded shuffles so the samples of a step do not depend on the micro-batch size.
The objective's summed numerators are divided by the effective batch's summed denominator, so
accumulation does not change the loss. Only the supervised target positions go through the LM
head. Validation (NDCG@K by constrained decoding) runs after each epoch, with early stopping; the
best weights are kept and restored at the end.
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

from recbias.errors import ConfigError
from recbias.lm.batching import Batch, TokenizedSample, bucketed_batches, collate
from recbias.lm.loading import autocast
from recbias.objectives import Objective, ObjectiveConfig
from recbias.train import checkpoint, distributed
from recbias.train.checkpoint import LoopState

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    epochs: int = field(default=2, metadata={"help": "maximum number of epochs"})
    lr: float = field(default=1e-4, metadata={"help": "peak learning rate (AdamW)"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    warmup_steps: int = field(default=20, metadata={"help": "linear warm-up steps (BIGRec/D3: 20)"})
    schedule: Literal["linear", "cosine", "constant"] = field(
        default="linear", metadata={"help": "learning-rate decay after warm-up"}
    )
    micro_batch_size: int = field(default=8, metadata={"help": "samples per forward pass"})
    grad_accum: int = field(default=2, metadata={"help": "micro-batches per optimiser step"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping; 0 = off"})
    bucket_factor: int = field(
        default=32, metadata={"help": "length-bucketing window, in effective batches"}
    )
    patience: int = field(
        default=1, metadata={"help": "epochs without validation improvement before stopping"}
    )
    checkpoint_every: int = field(
        default=0, metadata={"help": "save a resumable checkpoint every N steps (0 = each epoch)"}
    )
    log_every: int = field(default=10, metadata={"help": "log training metrics every N steps"})
    snapshot_every: int = field(
        default=0,
        metadata={
            "help": "keep the weights every N steps in checkpoints/step-N, for training-curve "
            "diagnostics (recbias audit); 0 = off"
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
            "description) once per micro-batch instead of once per row; same result"
        },
    )
    compile: bool = field(
        default=False,
        metadata={"help": "torch.compile the decoder stack for training (one-time cost)"},
    )
    loggers: list[str] = field(
        default_factory=list, metadata={"help": "extra loggers besides JSONL: tensorboard, mlflow"}
    )
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)

    @property
    def effective_batch(self) -> int:
        return self.micro_batch_size * self.grad_accum

    def validate(self) -> None:
        at_least = {
            "epochs": 1,
            "micro_batch_size": 1,
            "grad_accum": 1,
            "bucket_factor": 1,
            "patience": 1,
            "log_every": 1,
            "warmup_steps": 0,
            "checkpoint_every": 0,
            "snapshot_every": 0,
        }
        for key, low in at_least.items():
            if getattr(self, key) < low:
                raise ConfigError(
                    f"config key 'train.{key}': must be >= {low}, got {getattr(self, key)}"
                )
        if self.lr <= 0:
            raise ConfigError(f"config key 'train.lr': must be > 0, got {self.lr}")
        if self.schedule not in ("linear", "cosine", "constant"):
            raise ConfigError(
                f"config key 'train.schedule': must be linear, cosine or constant, got {self.schedule!r}"
            )


class Reporter(Protocol):
    """Progress display; the CLI provides a rich one, the library default prints nothing."""

    def start(self, total_steps: int, done: int) -> None: ...
    def advance(self, info: dict[str, Any]) -> None: ...


class SilentReporter:
    def start(self, total_steps: int, done: int) -> None:
        return None

    def advance(self, info: dict[str, Any]) -> None:
        return None


def causal_lm(model: torch.nn.Module) -> Any:
    """The underlying ``*ForCausalLM`` (unwraps PEFT; LoRA layers stay injected)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


MIN_SHARED_PREFIX = 8  # shorter common prefixes are not worth a second forward call


def shared_prefix_length(batch: Batch) -> int:
    """Leading tokens that every row of the batch shares, before any supervised position.

    The prompts of a template start with the same task description, so its hidden states and
    keys/values are the same in every row: they can be computed once. Capped so that every
    position whose next token is supervised lies after the prefix.
    """
    ids = batch.input_ids
    if ids.shape[0] < 2:
        return 0
    same = ((ids == ids[:1]) & batch.attention_mask.bool()).all(0)
    common = int(same.int().cumprod(0).sum())
    first_supervised = int(batch.target_mask.int().argmax(1).min())
    return min(common, first_supervised)


def _decode_with_shared_prefix(decoder: torch.nn.Module, batch: Batch, n: int) -> torch.Tensor:
    """[batch, seq-n, hidden] the decoder's states after the first ``n`` (shared) tokens.

    The prefix runs once (batch 1); its per-layer keys/values are broadcast to every row, so the
    rows' queries attend to them exactly as in the full forward, and gradients from all rows sum
    into the one prefix computation.
    """
    prefix = decoder(input_ids=batch.input_ids[:1, :n], use_cache=True)
    cache = prefix.past_key_values
    rows = batch.input_ids.shape[0]
    for layer in cache.layers:
        layer.keys = layer.keys.expand(rows, -1, -1, -1)
        layer.values = layer.values.expand(rows, -1, -1, -1)
    return decoder(
        input_ids=batch.input_ids[:, n:],
        attention_mask=batch.attention_mask,
        past_key_values=cache,
        use_cache=True,
    ).last_hidden_state


def target_logits(
    model: torch.nn.Module,
    batch: Batch,
    decoder: torch.nn.Module | None = None,
    share_prefix: bool = False,
) -> torch.Tensor:
    """[n_tok, vocab] logits at the supervised positions only (skips the LM head elsewhere).

    ``decoder`` replaces the model's own decoder stack (e.g. a ``torch.compile``d wrapper of it).
    ``share_prefix`` computes the rows' common leading tokens once (:func:`shared_prefix_length`);
    the result equals the plain forward up to floating-point summation order.
    """
    lm = causal_lm(model)
    stack = decoder if decoder is not None else lm.get_decoder()
    n = shared_prefix_length(batch) if share_prefix else 0
    if n >= MIN_SHARED_PREFIX:
        hidden = _decode_with_shared_prefix(stack, batch, n)
        return lm.get_output_embeddings()(hidden[:, :-1][batch.target_mask[:, n:]])
    hidden = stack(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False
    ).last_hidden_state
    return lm.get_output_embeddings()(hidden[:, :-1][batch.target_mask])


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
        params = [p for p in model.parameters() if p.requires_grad]
        # The fused kernel avoids foreach's temporary copies of every parameter (peak memory).
        self.optimizer = torch.optim.AdamW(
            params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True
        )
        self.state = LoopState()
        self.device = next(model.parameters()).device
        # Compiling fuses the elementwise ops around the matmuls (about 1.2x on CPU here) after a
        # one-time compilation of a few minutes; decoding keeps the uncompiled model.
        self.decoder = (
            torch.compile(causal_lm(model).get_decoder(), dynamic=True) if cfg.compile else None
        )
        # The compiled stack is traced without a cache argument; it keeps the plain forward.
        self.share_prefix = cfg.share_prompt_prefix and self.decoder is None

    @property
    def ckpt_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    def step_groups(self, samples: Sequence[TokenizedSample], epoch: int) -> list[list[list[int]]]:
        """Sample indices of every optimiser step of ``epoch``, split into micro-batches."""
        eff = bucketed_batches(
            [s.length for s in samples],
            self.cfg.effective_batch,
            self.seed * 100_003 + epoch,
            self.cfg.bucket_factor,
        )
        mbs = self.cfg.micro_batch_size
        return [[b[i : i + mbs] for i in range(0, len(b), mbs)] for b in eff]

    def _step(self, samples: Sequence[TokenizedSample], group: list[list[int]]) -> dict[str, float]:
        batches = [self.collate_fn([samples[i] for i in idx], self.pad_id) for idx in group]
        begin_step = getattr(self.objective, "begin_step", None)
        if begin_step is not None:
            begin_step()
        for b in batches:
            b.input_ids, b.attention_mask = (
                b.input_ids.to(self.device),
                b.attention_mask.to(self.device),
            )
            b.labels = b.labels.to(self.device)
            b.meta = {k: v.to(self.device) for k, v in b.meta.items()}
            self.objective.prepare(b)
        total = sum(self.objective.normaliser(b.target_labels, b.meta) for b in batches)
        total = torch.as_tensor(total, dtype=torch.float32, device=self.device).clamp_min(1e-12)
        loss_sum = torch.zeros((), device=self.device)
        rank, world = distributed.rank_and_world()
        for b in batches[rank::world]:  # this process's share of the effective batch
            with autocast(self.dtype, self.device):
                logits = target_logits(self.model, b, self.decoder, self.share_prefix)
            num = self.objective(logits.float(), b.target_labels, b.meta)
            (num / total).backward()
            loss_sum += num.detach()
        params = [p for p in self.model.parameters() if p.requires_grad]
        distributed.sum_gradients(params)
        loss_sum = distributed.sum_scalar(loss_sum)
        if self.cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, self.cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        release_free_memory()
        return {
            "loss": float(loss_sum / total),
            "tokens": sum(b.n_tokens for b in batches),
            "samples": sum(len(idx) for idx in group),
        }

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
            if self.logger is not None and logging_step and distributed.is_main():
                extra = {k: v.detach().cpu().tolist() for k, v in self.objective.stats().items()}
                self.logger.log({"event": "train", **info, **extra})
            every = self.cfg.checkpoint_every
            if every and self.state.step % every == 0:
                self._save_last()
            snap = self.cfg.snapshot_every
            if snap and self.state.step % snap == 0 and distributed.is_main():
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
            self.model.eval()
            metric = distributed.broadcast_float(
                float(validate(self.model)) if distributed.is_main() else None
            )
            self.model.train()
            record["val_metric"] = metric
            best = self.state.best_metric
            if best is None or metric > best:
                self.state.best_metric, self.state.best_epoch = metric, self.state.epoch
                self.state.bad_epochs = 0
                if distributed.is_main():
                    checkpoint.save_weights(self.ckpt_dir / "best", self.model)
            else:
                self.state.bad_epochs += 1
                self.state.stopped_early = self.state.bad_epochs >= self.cfg.patience
        self.state.history.append(record)
        if self.logger is not None and distributed.is_main():
            self.logger.log(record)
        if self.cfg.snapshot_epochs and distributed.is_main():
            checkpoint.save_weights(self.ckpt_dir / f"epoch-{self.state.epoch}", self.model)
        self._save_last()

    def _save_last(self) -> None:
        if distributed.is_main():
            checkpoint.save(
                self.ckpt_dir / "last",
                self.model,
                self.optimizer,
                self.scheduler,
                self.state,
                self.objective.state_dict(),
            )
        distributed.barrier()
