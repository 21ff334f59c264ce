"""Training cost of each debiasing objective relative to SFT, and IGD decoding vs plain decoding.

    python bench/bench_objectives.py --samples 96 --users 32 --repeats 3
    python bench/bench_objectives.py --methods sft,gdrt,gdrt:previous --no-decoding

A method ``NAME:MODE`` is GDRT with ``weights_from = MODE`` (``gdrt:previous`` = the lagged Q;
plain ``gdrt`` = the default, Q from the step's whole effective batch).

Every objective trains the same SmolLM2-135M start point on the same quickstart samples with the
same effective batch, after an untimed warm-up pass over the very same batches. The timed passes
are interleaved: each of ``--repeats`` rounds times every objective once (the order rotates from
round to round), so slow drifts of the machine hit all objectives alike. Each round gives a
paired ratio objective/SFT; the bench prints their median and range. GDRT's one-time relevance
pass (``setup``) is timed separately and divided by the median SFT pass.

Pass-to-pass noise on a busy CPU is a few percent, as large as the targets' margins. So the bench
also times each objective's own token-level work (prepare, weights, loss and its backward to the
logits, over the same micro-batches, on fixed logits of the real shapes) without the model; 1 +
(its time − SFT's) / SFT's pass is the objective's extra cost per pass, free of the model's noise
("token work" column; CFT's extra forward pass makes that figure meaningless for it). The end-of-epoch
checkpoint write is left out of the timed passes (it is the same for every objective). The IGD calibration hook is timed in constrained beam search against the
plain search on the same prompts. Writes bench/results/objectives.json.

Targets (issue 3): GDRT <= 1.05x (relevance pass <= 0.35x of an SFT epoch), IGD <= 1.03x,
MSL <= 1.10x, CFT <= 2.1x; IGD decoding <= 1.10x.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch

from recbias.baselines.popularity import count_items
from recbias.config import load_config
from recbias.decoding import constrained_beam_search
from recbias.decoding.igd_calibration import igd_score_hook
from recbias.llmrec import RunConfig, load_data, load_lm, make_recommender
from recbias.lm.batching import collate, encode_samples
from recbias.lm.loading import autocast
from recbias.objectives import ObjectiveConfig, build_objective
from recbias.objectives.base import ObjectiveContext
from recbias.objectives.gdrt import GDRTConfig
from recbias.train.loop import TrainConfig, Trainer

METHODS = ["sft", "gdrt", "igd", "msl", "pos", "cft", "reweight"]


def objective_config(method: str) -> ObjectiveConfig:
    """``NAME`` with default settings, or ``gdrt:MODE`` = GDRT with ``weights_from = MODE``."""
    name, _, mode = method.partition(":")
    if not mode:
        return ObjectiveConfig(name=name)
    return ObjectiveConfig(name=name, gdrt=GDRTConfig(weights_from=mode))  # type: ignore[arg-type]


class TimedObjective:
    """One objective, set up once, that times a training pass from the shared start point."""

    def __init__(self, name, base_state, lm, ctx_args, samples, tcfg, tmp) -> None:
        self.name, self.base_state, self.lm = name, base_state, lm
        self.samples, self.tcfg, self.tmp, self.pad = samples, tcfg, tmp, ctx_args[-1]
        lm.model.load_state_dict(base_state)
        self.objective = build_objective(objective_config(name))
        t0 = time.perf_counter()
        self.objective.setup(ObjectiveContext(lm.model, *ctx_args))
        self.setup_seconds = time.perf_counter() - t0
        self.passes: list[float] = []
        self.run()  # warm-up pass over the same batches (untimed)

    def token_work(self, repeats: int = 5) -> float:
        """Seconds per pass of the objective's own token-level work, without the model.

        prepare + normaliser + loss + its backward to the logits over the same micro-batches as
        a training pass, on fixed random target logits of the real shapes (median of
        ``repeats``). For CFT the loss also runs its no-history forward pass.
        """
        steps = [
            [collate([self.samples[i] for i in idx], self.pad) for idx in group]
            for group in self._trainer().step_groups(self.samples, 0)
        ]
        vocab = self.lm.model.config.vocab_size
        gen = torch.Generator().manual_seed(0)
        logits = [
            [torch.randn(b.target_labels.numel(), vocab, generator=gen).bfloat16() for b in step]
            for step in steps
        ]
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for step, step_logits in zip(steps, logits, strict=True):
                begin = getattr(self.objective, "begin_step", None)
                if begin is not None:
                    begin()
                for b in step:
                    self.objective.prepare(b)
                total = sum(self.objective.normaliser(b.target_labels, b.meta) for b in step)
                for b, lg in zip(step, step_logits, strict=True):
                    leaf = lg.requires_grad_()
                    (self.objective(leaf.float(), b.target_labels, b.meta) / total).backward()
                    leaf.grad = None
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    def _trainer(self) -> Trainer:
        """A fresh trainer (optimiser, loop state) of this objective on the shared model."""
        return Trainer(self.lm.model, self.objective, self.tcfg, self.tmp, self.pad, 0, "bf16")

    def run(self) -> float:
        """Seconds of one pass: fresh optimiser and loop state, the shared start weights."""
        self.lm.model.load_state_dict(self.base_state)
        trainer = self._trainer()
        trainer._save_last = lambda: None  # time the training steps, not the checkpoint write
        t0 = time.perf_counter()
        trainer.fit(self.samples, None)
        return time.perf_counter() - t0


def time_decoding(cfg, ds, lm, users: int) -> tuple[float, float]:
    rec = make_recommender(cfg, ds, lm)
    prompts = rec.prompts(ds.split("test").head(users))
    hook = igd_score_hook(rec.trie, count_items(ds.split("train"), len(ds.titles)))
    pad = lm.builder.tokenizer.pad_token_id
    out = []
    for h in (None, hook, None, hook):  # interleaved: each side runs twice, best time kept
        t0 = time.perf_counter()
        with autocast(cfg.model.dtype):
            constrained_beam_search(lm.model, prompts, rec.trie, cfg.decode.beam, pad, h)
        out.append(time.perf_counter() - t0)
    return min(out[0], out[2]), min(out[1], out[3])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=96, help="training samples per timed pass")
    ap.add_argument("--users", type=int, default=32, help="test users for the decoding timing")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--repeats", type=int, default=3, help="timed passes per objective (median)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-decoding", action="store_true", help="skip the IGD decoding timing")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(RunConfig, Path("configs/quickstart.toml"))
    ds = load_data(cfg)
    lm = load_lm(cfg, ds)
    train_df = ds.split("train").head(args.samples)
    samples = encode_samples(lm.builder, train_df, ds.titles, lm.max_length)
    rec = make_recommender(cfg, ds, lm)
    counts = count_items(ds.split("train"), len(ds.titles))
    pad = lm.builder.tokenizer.pad_token_id
    ctx_args = (lm.builder, ds.titles, train_df, samples, counts, rec.trie, "bf16", pad)
    tcfg = TrainConfig(epochs=1, micro_batch_size=4, grad_accum=4, warmup_steps=0)
    base_state = copy.deepcopy(lm.model.state_dict())
    tmp = Path("bench/results/tmp_objectives")
    names = args.methods.split(",")
    if "sft" not in names:
        names.insert(0, "sft")
    timed = {n: TimedObjective(n, base_state, lm, ctx_args, samples, tcfg, tmp) for n in names}
    work = {n: t.token_work() for n, t in timed.items() if n != "cft"}
    for r in range(args.repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            timed[name].passes.append(timed[name].run())
    sft = timed["sft"]
    result: dict[str, dict] = {}
    for name, t in timed.items():
        paired = [a / b for a, b in zip(t.passes, sft.passes, strict=True)]
        result[name] = {
            "seconds": statistics.median(t.passes),
            "passes": t.passes,
            "paired_ratios": paired,
            "ratio_vs_sft": statistics.median(paired),
            "ratio_range": [min(paired), max(paired)],
            "setup_seconds": t.setup_seconds,
            "setup_ratio_vs_sft_pass": t.setup_seconds / statistics.median(sft.passes),
        }
        if name in work:  # the objective's own extra cost, free of the model's timing noise
            extra = (work[name] - work["sft"]) / statistics.median(sft.passes)
            result[name].update(token_work_seconds=work[name], token_work_ratio=1 + extra)
        r = result[name]
        print(
            f"{name:13s} {r['seconds']:7.1f} s  {r['ratio_vs_sft']:.3f}x SFT "
            f"[{r['ratio_range'][0]:.2f}, {r['ratio_range'][1]:.2f}]   setup "
            f"{r['setup_seconds']:6.1f} s ({r['setup_ratio_vs_sft_pass']:.3f}x an SFT pass)"
            + (
                f"   token work {r['token_work_seconds'] * 1e3:6.0f} ms/pass "
                f"-> {r['token_work_ratio']:.4f}x"
                if "token_work_ratio" in r
                else ""
            )
        )
    if not args.no_decoding:
        lm.model.load_state_dict(base_state)
        plain, igd = time_decoding(cfg, ds, lm, args.users)
        print(
            f"decoding {args.users} users: plain {plain:.1f} s, IGD-calibrated {igd:.1f} s "
            f"-> {igd / plain:.3f}x"
        )
        result["decoding"] = {"plain_seconds": plain, "igd_seconds": igd, "ratio": igd / plain}
    result["threads"] = {"torch": torch.get_num_threads()}
    out = Path("bench/results/objectives.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
