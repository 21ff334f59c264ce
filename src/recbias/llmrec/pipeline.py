"""The stages of an LLM run: prepare → load model → train → recommend → evaluate.

    result = run_experiment(cfg, run_dir)      # `recbias run CONFIG.toml` adds the audit and
                                               # report after it (recbias.workflow)

Every stage writes into the run directory: ``config.toml`` (resolved), ``environment.json``,
``train_log.jsonl``, ``checkpoints/``, ``model/`` (or ``adapter/`` for LoRA), ``predictions/``,
``metrics.json`` and ``summary.md``.

Under torchrun / accelerate launch every rank runs every stage: training is data-parallel (DDP or
FSDP, :mod:`recbias.distributed`), validation, the test decoding and the audit are sharded
(every rank decodes its share, all gather), and rank 0 alone writes the run directory.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from recbias import distributed
from recbias.baselines.popularity import PopularityRecommender, count_items
from recbias.config import write_resolved
from recbias.data.dataset import PreparedDataset
from recbias.decoding import information_gain as ig
from recbias.evaluation.cutoffs import check_cutoffs
from recbias.evaluation.predictions import export_peer_json, write_predictions_jsonl
from recbias.evaluation.summary import metrics_table_markdown, to_jsonable, write_metrics_json
from recbias.fsutil import write_text
from recbias.llmrec.assemble import LoadedModel, load_data, load_lm, make_recommender, run_sasrec
from recbias.llmrec.config import RunConfig
from recbias.lm import loading
from recbias.lm.batching import encode_samples
from recbias.metrics.ranking import per_sample_metrics, ranking_metrics
from recbias.metrics.stats import metrics_with_ci, paired_comparison
from recbias.objectives import build_objective
from recbias.objectives.base import ObjectiveContext
from recbias.recs import Recommendations
from recbias.run_marker import mark_finished, mark_unfinished
from recbias.runs import seed_everything, set_threads, write_environment
from recbias.sidllm.assemble import SID_FILE
from recbias.sidllm.items import report_line, save_sid_items, sid_summary
from recbias.sidllm.prefixmem_attach import save_prefixmem
from recbias.train.loggers import build_loggers
from recbias.train.loop import Reporter, Trainer

__all__ = [
    "evaluate",
    "load_data",
    "load_lm",
    "recommend",
    "run_experiment",
    "setup_run",
    "train",
    "write_summary",
]

log = logging.getLogger(__name__)


def setup_run(cfg: RunConfig, run_dir: Path, resume: bool) -> None:
    seed_everything(cfg.seed)
    set_threads(cfg.threads)
    loading.resolve_dtype(cfg.model)  # "auto" -> bf16/fp32, recorded in config.toml
    if not distributed.is_main():
        return
    resolved = run_dir / "config.toml"
    if resume and resolved.exists():
        from recbias.config import dumps

        if "\n".join(resolved.read_text().splitlines()[1:]) + "\n" != dumps(cfg):
            from recbias.errors import ConfigError

            raise ConfigError(f"--resume: the config differs from the one in '{resolved}'")
    write_resolved(cfg, resolved)
    parallel = distributed.resolve_parallel(cfg.train.parallel) if cfg.train.epochs else None
    write_environment(run_dir, cfg.seed, cfg.model.dtype, parallel)
    mark_unfinished(run_dir)


def train(
    cfg: RunConfig,
    ds: PreparedDataset,
    lm: LoadedModel,
    run_dir: Path,
    resume: bool,
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    train_df = ds.split("train")
    samples = encode_samples(lm.builder, train_df, ds.titles, lm.max_length)
    valid = ds.split("valid")
    rec = make_recommender(cfg, ds, lm, run_dir)
    k = cfg.eval.validation_k
    objective = build_objective(cfg.train.objective)
    pad_id = lm.builder.tokenizer.pad_token_id
    counts = count_items(train_df, len(ds.titles))
    t_setup = time.perf_counter()
    objective.setup(
        ObjectiveContext(
            lm.model,
            lm.builder,
            ds.titles,
            train_df,
            samples,
            counts,
            rec.trie,
            cfg.model.dtype,
            pad_id,
        )
    )
    setup_seconds = time.perf_counter() - t_setup
    zero_ig = zero_ig_share(lm, ds.titles, samples, counts)

    validation_seconds = 0.0  # the per-epoch validation decoding, kept out of train_seconds

    def validate(model: torch.nn.Module) -> float:
        nonlocal validation_seconds
        t_valid = time.perf_counter()
        recs = rec.recommend(valid, k)
        value = ranking_metrics(recs.items, valid["target"].to_numpy(), [k])[f"NDCG@{k}"]
        validation_seconds += time.perf_counter() - t_valid
        return value

    logger = build_loggers(cfg.train.loggers, run_dir, cfg.name) if distributed.is_main() else None
    trainer = Trainer(
        lm.model,
        objective,
        cfg.train,
        run_dir,
        pad_id,
        cfg.seed,
        cfg.model.dtype,
        logger,
        reporter,
    )
    t0 = time.perf_counter()
    state = trainer.fit(samples, validate if len(valid) else None, resume=resume)
    if logger is not None:
        logger.close()
    save_model(cfg, lm, run_dir)
    return {
        "train_seconds": time.perf_counter() - t0 - validation_seconds,
        "validation_seconds": validation_seconds,
        "steps": state.step,
        "best_epoch": state.best_epoch,
        "best_val_ndcg": state.best_metric,
        "train_samples": len(samples),
        "objective_setup_seconds": setup_seconds,
        "zero_ig_token_share": zero_ig,
    }


def zero_ig_share(lm: LoadedModel, titles, samples, counts: np.ndarray) -> float:
    """Share of training-target tokens with zero information gain (IGD §4.2; its paper reports
    56-73% on Amazon data), on the trie of training-target items."""
    trie = ig.target_trie(lm.builder, titles, counts)
    nodes, lengths = ig.walk_samples(trie, samples, titles, "IG reference trie")
    return ig.zero_ig_share(ig.zero_gain_tokens(ig.trie_information(trie, counts), nodes), lengths)


def save_model(cfg: RunConfig, lm: LoadedModel, run_dir: Path) -> Path:
    """Full fine-tuning saves the model; LoRA saves only the adapter. Every rank calls (FSDP
    gathers the full weights); rank 0 writes."""
    from recbias.fsutil import atomic_dir
    from recbias.train.checkpoint import full_model_state

    out = run_dir / ("adapter" if cfg.model.finetune == "lora" else "model")
    state = full_model_state(lm.model)
    # a copy: save_pretrained deletes the keys it does not save (the PrefixMem encoder's) from it
    kwargs = {} if state is None else {"state_dict": dict(state)}
    if lm.sid is not None and cfg.model.finetune == "lora":
        # the SID rows are PEFT trainable tokens in the adapter; the resized base rows are
        # rebuilt at load time, so the full embedding matrix need not be saved
        kwargs["save_embedding_layers"] = False
    if distributed.is_main():
        with atomic_dir(out) as tmp:
            lm.model.save_pretrained(tmp, **kwargs)
            lm.builder.tokenizer.save_pretrained(tmp)
            if lm.sid is not None:  # the codes the model was trained with travel with it
                save_sid_items(lm.sid.items, tmp / SID_FILE)
                save_prefixmem(lm.model, tmp, state)  # the SID encoder (not in HF's weights)
    distributed.barrier()
    return out


def recommend(
    cfg: RunConfig, ds: PreparedDataset, lm: LoadedModel, run_dir: Path, split: str = "test"
) -> tuple[pd.DataFrame, dict[str, Recommendations], dict[str, float]]:
    samples = ds.split(split)
    k = max(cfg.eval.ks)
    recs: dict[str, Recommendations] = {}
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    # Beam search returns at most num_return items; shorter lists are by design, not invalid.
    with distributed.full_weights(lm.model):  # sharded: every rank decodes its share
        rec = make_recommender(cfg, ds, lm, run_dir)
        recs["llm"] = rec.recommend(samples, min(k, cfg.decode.beam.n_return))
    seconds["llm"] = time.perf_counter() - t0
    if not distributed.is_main():  # rank 0 runs the baselines and writes
        return samples, recs, seconds
    for name in cfg.eval.baselines:
        t0 = time.perf_counter()
        recs[name] = make_baseline(cfg, name, ds, run_dir).recommend(samples, k)
        seconds[name] = time.perf_counter() - t0
    for name, r in recs.items():
        write_predictions_jsonl(run_dir / "predictions" / f"{name}.jsonl", samples, r, ds.titles)
        if cfg.eval.peer_export:
            export_peer_json(run_dir / "predictions" / f"{name}.peer.json", samples, r, ds.titles)
    return samples, recs, seconds


def make_baseline(cfg: RunConfig, name: str, ds: PreparedDataset, run_dir: Path | None = None):
    """A traditional recommender fitted on the training split and evaluated on the same samples
    (explicit, by name). SASRec is the run's one fit, shared with D3's assistant (``RUN/sasrec.pt``).
    Only rank 0 runs the baselines."""
    train, n_items = ds.split("train"), len(ds.titles)
    if name == "sasrec":
        return run_sasrec(cfg.baselines.sasrec, train, n_items, run_dir, collective=False)
    return PopularityRecommender().fit(train, n_items)


def evaluate(
    cfg: RunConfig, samples: pd.DataFrame, recs: dict[str, Recommendations]
) -> dict[str, Any]:
    targets = samples["target"].to_numpy()
    ks = cfg.eval.ks
    out: dict[str, Any] = {"methods": {}, "paired_vs_llm": {}}
    per = {name: per_sample_metrics(r.items, targets, ks) for name, r in recs.items()}
    for name, r in recs.items():
        out["methods"][name] = metrics_with_ci(r.items, targets, ks, cfg.eval.bootstrap, cfg.seed)
    for name in recs:
        if name == "llm":
            continue
        out["paired_vs_llm"][name] = {
            metric: to_jsonable(
                paired_comparison(
                    per["llm"][metric], per[name][metric], cfg.eval.bootstrap, cfg.seed
                )
            )
            for metric in (f"NDCG@{max(ks)}", f"HR@{max(ks)}", "NDCG@10")
            if metric in per["llm"]
        }
    return out


def write_summary(cfg: RunConfig, run_dir: Path, result: dict[str, Any]) -> str:
    table = metrics_table_markdown(result["metrics"]["methods"], cfg.eval.ks)
    lines = [f"# {cfg.name}", "", f"Run directory: `{run_dir}`", "", table, ""]
    for name, comp in result["metrics"]["paired_vs_llm"].items():
        for metric, c in comp.items():
            lines.append(
                f"- llm − {name} on {metric}: {c['diff']:+.4f} [{c['lo']:+.4f}, {c['hi']:+.4f}], "
                f"p = {c['p_value']:.4g}"
            )
    timing = result.get("timing", {})
    if "semantic_ids" in result:
        sid = result["semantic_ids"]
        lines += ["", report_line(sid, sid["sizes"], sid["source"])]
    lines += ["", "Timing (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timing.items())]
    text = "\n".join(lines) + "\n"
    write_text(run_dir / "summary.md", text)
    return text


def run_experiment(
    cfg: RunConfig, run_dir: Path, resume: bool = False, reporter: Reporter | None = None
) -> dict[str, Any]:
    t_start = time.perf_counter()
    setup_run(cfg, run_dir, resume)
    timing: dict[str, float] = {}
    t0 = time.perf_counter()
    ds = load_data(cfg)
    check_cutoffs(cfg.eval.ks, cfg.decode.beam.n_return, len(ds.titles), cfg.eval.ks_beyond_list)
    lm = load_lm(cfg, ds)
    timing["prepare_and_load"] = time.perf_counter() - t0
    if lm.sid is not None and distributed.is_main():
        save_sid_items(lm.sid.items, run_dir / SID_FILE)
    training = train(cfg, ds, lm, run_dir, resume, reporter) if cfg.train.epochs > 0 else {}
    timing["train"] = training.get("train_seconds", 0.0)
    timing["validate"] = training.get("validation_seconds", 0.0)
    if cfg.sprec.iterations:  # SPRec: self-play DPO iterations on the SFT model
        from recbias.llmrec.sprec import self_play

        training["sprec"] = self_play(cfg, ds, lm, run_dir, reporter)
        timing["sprec"] = training["sprec"]["seconds"]
        save_model(cfg, lm, run_dir)  # every rank (collective)
    lm.model.eval()
    samples, recs, seconds = recommend(cfg, ds, lm, run_dir)
    timing.update({f"recommend_{k}": v for k, v in seconds.items()})
    result: dict[str, Any] = {"summary": ""}
    if distributed.is_main():
        result = {
            "dataset": ds.card.get("name"),
            "training": training,
            "timing": timing,
            "metrics": evaluate(cfg, samples, recs),
        }
        if lm.sid is not None:
            result["semantic_ids"] = sid_summary(lm.sid.items)
        timing["total"] = time.perf_counter() - t_start
        write_metrics_json(run_dir / "metrics.json", result)
        result["summary"] = write_summary(cfg, run_dir, result)
    distributed.barrier()  # an audit of every rank (recbias.workflow) reads what rank 0 wrote
    mark_finished(run_dir)  # results complete; the audit and report after it read them as finished
    return result
