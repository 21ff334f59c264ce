"""SPRec: self-play preference tuning that pushes down what the model over-recommends.

SPRec (Gao et al., "SPRec: Self-Play to Debias LLM-based Recommendation", WWW 2025) starts from
the SFT model and repeats, for ``sprec.iterations`` iterations (public code:
RegionCh/SPRec ``shell/SPRec.sh``, ``train/data_generate.py``, ``train/dpo.py``):

1. draw ``sprec.samples`` training samples (SPRec: 2,048 of its training rows per iteration, after
   an SFT on 4,096) and decode them with the **current** model;
2. SFT for ``sprec.sft_epochs`` epoch(s) on those samples' real next items, continuing from the
   current weights (full model or LoRA adapter);
3. DPO (:mod:`recbias.objectives.dpo`) on (prompt, real next item, the model's own recommendation)
   with the model after step 2 as the frozen reference. Its log-probs are computed once per
   iteration and cached, so no second model is kept in memory (TRL's
   ``precompute_ref_log_probs``); the reference is exact because it is the starting point.

SPRec uses β = 0.1, lr 2e-5 for both phases, DPO micro-batch 2 × accumulation 4, 20 warm-up steps
and one epoch each; these are the defaults here. Where we differ, and why:

- **Rejected item.** SPRec greedy-decodes free text and takes its first quoted title (which can be
  the target itself or no catalog item). Here the rejected item comes from the same
  catalog-constrained beam search as evaluation (``decode.*``): ``rejected = "top1"`` takes the
  best-ranked item whose title differs from the target's, ``"sample"`` draws uniformly among the
  top ``top_k`` such items. A sample without enough such items is dropped (counted).
- **S-DPO.** ``n_rejected = K > 1`` takes K rejected items per prompt (the first K, or K drawn
  without replacement) and trains S-DPO's softmax loss; SPRec has only K = 1.
- **One prompt.** SPRec's DPO prompt is instruction + input without the template its SFT used;
  here SFT, DPO and decoding share one :class:`recbias.prompts.PromptBuilder`.
- **Per-iteration SFT objective** is plain SFT (SPRec's), whatever ``train.objective`` the
  initial SFT used; ``sft_epochs = 0`` runs DPO only.
- **No checkpoint selection.** SPRec keeps the DPO checkpoint of lowest validation loss; here each
  phase keeps its last weights and, with ``validate_each_iteration``, NDCG@``eval.validation_k``
  on the validation split is recorded after every iteration (in metrics.json).

Under ``torchrun`` (``train.parallel = "ddp"``) every phase is a
:class:`recbias.train.loop.Trainer` run, so gradient synchronisation is the trainer's; decoding is
sharded over the ranks as in evaluation, rank 0's rejected items go to every rank, and every rank
computes the (identical) reference log-probs. FSDP is refused for now: each phase builds a new
trainer, and sharding the same model a second time is untested. A killed run restarts its self-play iterations from
the SFT model (phases are not resumable one by one).

    [sprec]
    iterations = 3
    samples = 2048
    rejected = "top1"          # or "sample" (from the top top_k)
    n_rejected = 1             # > 1: S-DPO
    dpo = { beta = 0.1 }
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import torch

from recbias import distributed
from recbias.baselines.popularity import count_items
from recbias.errors import ConfigError
from recbias.llmrec.assemble import LoadedModel, make_recommender
from recbias.llmrec.config import RunConfig, SPRecConfig
from recbias.lm.batching import TokenizedSample, encode_samples
from recbias.metrics.ranking import ranking_metrics
from recbias.objectives import ObjectiveConfig, build_objective
from recbias.objectives.dpo import (
    DPOObjective,
    PreferenceSample,
    collate_preferences,
    dropout_disabled,
    reference_logps,
    with_target,
)
from recbias.train.loggers import build_loggers
from recbias.train.loop import Reporter, TrainConfig, Trainer

if TYPE_CHECKING:
    from recbias.data.dataset import PreparedDataset

log = logging.getLogger(__name__)


def draw_samples(train: pd.DataFrame, n: int, seed: int, iteration: int) -> pd.DataFrame:
    """``n`` training samples without replacement (all if fewer), seeded per iteration."""
    rng = np.random.default_rng([seed, iteration, 0x5E1F])
    rows = rng.choice(len(train), size=min(n, len(train)), replace=False)
    return train.iloc[np.sort(rows)].reset_index(drop=True)


def pick_rejected(
    ranked: np.ndarray, targets: np.ndarray, titles, cfg: SPRecConfig, rng: np.random.Generator
) -> list[list[int] | None]:
    """Per sample, ``cfg.n_rejected`` item ids from its ranked list (``ranked``: [n, k], -1 =
    empty) that are not its target nor share its title; None when there are too few."""
    out: list[list[int] | None] = []
    for items, target in zip(ranked, targets, strict=True):
        pool = [int(i) for i in items if i >= 0 and titles[i] != titles[int(target)]]
        if cfg.rejected == "sample":
            pool = pool[: cfg.top_k]
            if len(pool) >= cfg.n_rejected:
                pool = [pool[j] for j in rng.choice(len(pool), cfg.n_rejected, replace=False)]
        out.append(pool[: cfg.n_rejected] if len(pool) >= cfg.n_rejected else None)
    return out


def build_preferences(
    builder, chosen: list[TokenizedSample], rejected: list[list[int] | None], titles, max_len: int
) -> list[PreferenceSample]:
    """Preference samples of the prompts that have rejected items (same prompt tokens)."""
    out = []
    for sample, items in zip(chosen, rejected, strict=True):
        if items is None:
            continue
        rows = [with_target(builder, sample, i, titles[i]) for i in items]
        if max(r.length for r in rows) <= max_len:
            out.append(PreferenceSample(sample, rows))
    return out


def phase_config(cfg: RunConfig, phase: Literal["sft", "dpo"]) -> TrainConfig:
    """The training settings of one phase: ``train.*`` with SPRec's epochs, lr and batches."""
    s = cfg.sprec
    common = dict(
        lr=s.lr,
        warmup_steps=s.warmup_steps,
        checkpoint_every=0,
        snapshot_every=0,
        snapshot_epochs=False,
        objective=ObjectiveConfig(name="sft"),
    )
    if phase == "sft":
        return dataclasses.replace(cfg.train, epochs=s.sft_epochs, **common)
    return dataclasses.replace(
        cfg.train,
        epochs=s.dpo_epochs,
        micro_batch_size=s.dpo_micro_batch_size,
        grad_accum=s.dpo_grad_accum,
        log_every=1,
        **common,
    )


class _Tagged:
    """Adds the iteration and phase to every record of the run's training log."""

    def __init__(self, logger: Any, iteration: int, phase: str) -> None:
        self.logger, self.tags = logger, {"sprec_iteration": iteration, "phase": phase}

    def log(self, record: dict[str, Any]) -> None:
        self.logger.log({**record, **self.tags})


def _broadcast(value: Any) -> Any:
    """Rank 0's picklable value on every rank."""
    if distributed.rank_and_world()[1] == 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@dataclass
class _Phase:
    """What every phase of one run shares."""

    lm: LoadedModel
    cfg: RunConfig
    run_dir: Path
    logger: Any
    reporter: Reporter | None

    def fit(self, iteration: int, phase: str, objective, samples, **kw: Any) -> dict[str, Any]:
        tcfg = phase_config(self.cfg, phase)  # type: ignore[arg-type]
        phase_dir = self.run_dir / "sprec" / f"iteration-{iteration}" / phase
        logger = _Tagged(self.logger, iteration, phase) if self.logger is not None else None
        pad = self.lm.builder.tokenizer.pad_token_id
        seed = self.cfg.seed * 1009 + 2 * iteration + (phase == "dpo")
        trainer = Trainer(
            self.lm.model, objective, tcfg, phase_dir, pad, seed, self.cfg.model.dtype,
            logger, self.reporter, **kw,
        )  # fmt: skip
        t0 = time.perf_counter()
        state = trainer.fit(samples, validate=None)
        seconds = time.perf_counter() - t0
        if distributed.is_main():  # the phase is not resumable on its own: drop its checkpoint
            shutil.rmtree(phase_dir / "checkpoints", ignore_errors=True)
        return {f"{phase}_seconds": seconds, f"{phase}_steps": state.step}


def decode_rejected(
    cfg: RunConfig,
    ds: PreparedDataset,
    lm: LoadedModel,
    samples: pd.DataFrame,
    rng,
    run_dir: Path | None = None,
) -> list[list[int] | None]:
    """Decode ``samples`` with the current model (every rank its share, all gathered) and pick
    the rejected items; rank 0's picks go to every rank."""
    lm.model.eval()
    recs = make_recommender(cfg, ds, lm, run_dir).recommend(samples, cfg.sprec.candidates())
    picked = pick_rejected(recs.items, samples["target"].to_numpy(), ds.titles, cfg.sprec, rng)
    return _broadcast(picked)


def run_iteration(
    i: int, cfg: RunConfig, ds: PreparedDataset, run: _Phase, counts: np.ndarray
) -> dict[str, Any]:
    """Decode → SFT → reference log-probs → DPO; returns the iteration's record."""
    lm, s = run.lm, cfg.sprec
    drawn = draw_samples(ds.split("train"), s.samples, cfg.seed, i)
    chosen = encode_samples(lm.builder, drawn, ds.titles, lm.max_length)
    t0 = time.perf_counter()
    rng = np.random.default_rng([cfg.seed, i, 1])
    rejected = decode_rejected(cfg, ds, lm, drawn, rng, run.run_dir)
    record: dict[str, Any] = {"iteration": i, "decode_seconds": time.perf_counter() - t0}
    pairs = build_preferences(lm.builder, chosen, rejected, ds.titles, lm.max_length)
    if not pairs:
        raise ConfigError(f"sprec iteration {i}: no sample has {s.n_rejected} rejected items")
    rej_items = np.array([r for p in pairs for r in (x.target_item for x in p.rejected)])
    record |= {
        "pairs": len(pairs),
        "dropped": len(drawn) - len(pairs),
        # Mean training-target count of the rejected vs the chosen items (> 1: popular ones).
        "rejected_popularity_ratio": float(
            counts[rej_items].mean()
            / max(counts[[p.chosen.target_item for p in pairs]].mean(), 1e-12)
        ),
    }
    if s.sft_epochs:
        record |= run.fit(i, "sft", build_objective(ObjectiveConfig(name="sft")), chosen)
    t0 = time.perf_counter()
    pad = lm.builder.tokenizer.pad_token_id
    if s.dpo.reference_free:
        for p in pairs:
            p.ref_logps = torch.zeros(1 + s.n_rejected)
    else:
        batch = cfg.decode.beam.batch_size
        on_cpu = next(lm.model.parameters()).device.type == "cpu"
        share = cfg.train.share_prompt_prefix and on_cpu  # as the trainer does
        reference_logps(lm.model, pairs, pad, cfg.model.dtype, batch, share)
    record["reference_seconds"] = time.perf_counter() - t0
    objective = DPOObjective(s.dpo)
    with dropout_disabled(lm.model, s.dpo.disable_dropout):
        record |= run.fit(i, "dpo", objective, pairs, collate_fn=collate_preferences)
    record |= {k: float(v) for k, v in objective.stats().items()}
    return record


def validation_ndcg(
    cfg: RunConfig, ds: PreparedDataset, lm: LoadedModel, run_dir: Path | None = None
) -> float | None:
    """NDCG@``eval.validation_k`` on the validation split (None if it is empty); every rank
    decodes its share, as the trainer's validation does."""
    valid = ds.split("valid")
    if not len(valid):
        return None
    lm.model.eval()
    k = cfg.eval.validation_k
    recs = make_recommender(cfg, ds, lm, run_dir).recommend(valid, k)
    return float(ranking_metrics(recs.items, valid["target"].to_numpy(), [k])[f"NDCG@{k}"])


def self_play(
    cfg: RunConfig,
    ds: PreparedDataset,
    lm: LoadedModel,
    run_dir: Path,
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """Run ``cfg.sprec.iterations`` self-play iterations on ``lm.model`` in place.

    Returns ``{"iterations": [record per iteration], "seconds": total}``; a record holds the
    pairs built, samples dropped, the rejected items' popularity relative to the chosen ones,
    each phase's seconds and steps, the last DPO step's statistics and (``validate_each_iteration``)
    ``val_ndcg`` after the iteration. Training records go to ``train_log.jsonl`` tagged with
    ``sprec_iteration`` and ``phase``.
    """
    t_start = time.perf_counter()
    logger = build_loggers(cfg.train.loggers, run_dir, cfg.name) if distributed.is_main() else None
    run = _Phase(lm, cfg, Path(run_dir), logger, reporter)
    counts = count_items(ds.split("train"), len(ds.titles))
    records = []
    try:
        for i in range(cfg.sprec.iterations):
            record = run_iteration(i, cfg, ds, run, counts)
            if cfg.sprec.validate_each_iteration:
                t0 = time.perf_counter()
                record["val_ndcg"] = validation_ndcg(cfg, ds, lm, run_dir)
                record["validation_seconds"] = time.perf_counter() - t0
            log.info("sprec iteration %d: %s", i, record)
            if logger is not None:
                logger.log({"event": "sprec_iteration", **record})
            records.append(record)
    finally:
        if logger is not None:
            logger.close()
    lm.model.eval()
    return {"iterations": records, "seconds": time.perf_counter() - t_start}
