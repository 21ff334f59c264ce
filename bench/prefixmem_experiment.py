"""PrefixMem vs plain SID-LLM at matched training compute (issue 17): what arXiv 2606.00324 measures.

    OMP_NUM_THREADS=2 PYTHONPATH=src python bench/prefixmem_experiment.py            # 3 seeds
    OMP_NUM_THREADS=2 PYTHONPATH=src python bench/prefixmem_experiment.py --seeds 0 --train 64

For every seed a randomly initialised small Llama (``--hidden``, ``--layers``; built from a
LlamaConfig with the test suite's byte-level tokenizer, saved as a local model dir) is fine-tuned
twice through ``recbias.workflow.run_and_finish`` on the embedded ML-100K with semantic IDs:
``items.encoder = "none"`` and ``"prefixmem"``. Everything else is equal: model weights, data,
SIDs, seed, steps, tokens. One epoch by default with a one-sample validation split (the minimum the
config allows): the best-epoch restore then keeps the last weights, so both variants end after the
same optimiser steps (with more epochs each could restore a different epoch).

Measured on the test samples of each run:

* **TF-L_l**: teacher-forced top-1 accuracy at SID level ``l``. One forward over prompt + target;
  at the position that predicts the target's level-``l`` token, the argmax over that level's
  token ids only (the codes of level ``l``; restricted, as constrained decoding is) is compared with
  the true code. Levels are a, b, c (the code levels) and d (the collision suffix). "Deepest" =
  the last code level before the suffix (c with 3 levels).
* **R@K** (K = 5, 10, 20) and **NDCG@10** of the full SID from the run's constrained beam search
  (``predictions/llm.jsonl``; one target per sample, so recall@K = hit rate@K).
* The same split into **hard** samples: the *plain* model's teacher-forced top-1 is wrong at some
  code level before the deepest (a or b); the paper's "unreachable" uses top-10 at L1..L4, with
  3 x 32 codes top-10 is too loose. The split is fixed by the plain run of the same seed and used
  for both variants, so the comparison is paired.

Per seed: means with 95% bootstrap CIs over test samples (one per test user) and the paired
difference PrefixMem - plain (bootstrap CI + sign-flip p). Across seeds: mean and per-seed values.
Writes docs/measurements/prefixmem-experiment-DATE.json and a Markdown table beside it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

from recbias.config import load_config
from recbias.evaluation.predictions import read_predictions_jsonl
from recbias.llmrec.config import RunConfig
from recbias.llmrec.run import LoadedRun
from recbias.lm.batching import encode_samples
from recbias.metrics.ranking import per_sample_metrics
from recbias.metrics.stats import bootstrap_ci, paired_comparison
from recbias.workflow import run_and_finish

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # tiny.py: the download-free byte-level tokenizer
import tiny  # noqa: E402

CONFIG = ROOT / "configs" / "sidllm_ml100k.toml"
VARIANTS = ("plain", "prefixmem")
KS = (5, 10, 20)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--levels", type=int, default=3)
    p.add_argument("--codes", type=int, default=32)
    p.add_argument("--train", type=int, default=1024, help="training samples")
    p.add_argument("--test", type=int, default=150, help="test samples (users)")
    p.add_argument("--history", type=int, default=10, help="data.prepare.max_history")
    p.add_argument(
        "--epochs", type=int, default=1, help="1: the only validation keeps the last weights"
    )
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--beams", type=int, default=20)
    p.add_argument("--boot", type=int, default=1000)
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "prefixmem_experiment")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "measurements")
    p.add_argument("--tag", default="", help="suffix of the output file names")
    p.add_argument("--set", nargs="*", default=[], help="extra config overrides KEY=VALUE")
    return p.parse_args(argv)


def header() -> dict:
    flags = Path("/proc/cpuinfo").read_text().split()
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cpu_flags": {f: f in flags for f in ("avx512_bf16", "amx_bf16")},
    }


def build_model_dir(path: Path, hidden: int, layers: int, seed: int) -> Path:
    """A random-init Llama (SmolLM2-like proportions) + byte-level tokenizer as a model dir."""
    if (path / "config.json").is_file():
        return path
    tok = tiny.byte_level_tokenizer()
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=hidden * 8 // 3,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.model_max_length = 1024
    tok.save_pretrained(path)
    return path


def run_config(args: argparse.Namespace, variant: str, seed: int, model: Path) -> RunConfig:
    sets = [
        f"name=pm_{variant}_s{seed}",
        f"seed={seed}",
        f"output_dir={args.work}",
        f"model.path={model}",
        "model.dtype=fp32",
        f"data.prepare.train_samples={args.train}",
        "data.prepare.valid_samples=1",
        f"data.prepare.test_samples={args.test}",
        f"data.prepare.max_history={args.history}",
        "items.sid.encoder=tfidf",
        f"items.sid.levels={args.levels}",
        f"items.sid.codebook_size={args.codes}",
        "items.sid.max_suffix=63",
        f"items.encoder={'prefixmem' if variant == 'prefixmem' else 'none'}",
        "items.prefixmem.memory_dim=64",
        "items.prefixmem.table_rows=4093",
        f"train.epochs={args.epochs}",
        f"train.lr={args.lr}",
        f"train.patience={args.epochs}",
        "train.micro_batch_size=8",
        "train.grad_accum=1",
        f"decode.beam.num_beams={args.beams}",
        f"decode.beam.num_return={max(KS)}",
        f"eval.ks=[{','.join(map(str, KS))}]",
        f"eval.bootstrap={args.boot}",
        "eval.baselines=[]",
        "finish.report=false",
        *args.set,
    ]
    return load_config(RunConfig, CONFIG, sets)


@torch.no_grad()
def teacher_forced(run: LoadedRun, batch: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per test sample: [n, levels+1] 1 where the argmax over the level's tokens is the true
    code, the argmax codes [n, levels+1], and the sample ids. Levels in target order a, b, c, ...,
    suffix."""
    lm = run.tuned()
    vocab = lm.sid.vocab
    level_ids = [torch.tensor(ids) for ids in vocab.token_ids]
    samples = encode_samples(lm.builder, run.ds.split("test"), run.ds.titles, lm.max_length)
    rows, preds = [], []
    for start in range(0, len(samples), batch):
        chunk = samples[start : start + batch]
        seqs = [s.prompt.full_ids for s in chunk]
        width = max(map(len, seqs))
        ids = torch.zeros(len(seqs), width, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, s in enumerate(seqs):
            ids[i, : len(s)], mask[i, : len(s)] = torch.tensor(s), 1
        logits = lm.model(input_ids=ids, attention_mask=mask).logits
        for i, s in enumerate(chunk):
            n_prompt = len(s.prompt.input_ids)
            target = s.prompt.target_ids
            sid_pos = [j for j, t in enumerate(target) if int(vocab.level_of[t]) >= 0]
            if len(sid_pos) != vocab.n_levels:
                raise RuntimeError(f"sample {s.sample_id}: {len(sid_pos)} SID tokens in target")
            hits, codes = [], []
            for level, j in enumerate(sid_pos):
                cand = level_ids[level]
                code = int(logits[i, n_prompt + j - 1, cand].argmax())
                hits.append(int(cand[code]) == target[j])
                codes.append(code)
            rows.append(hits)
            preds.append(codes)
    ids = np.asarray([s.sample_id for s in samples])
    return np.asarray(rows, dtype=np.float64), np.asarray(preds), ids


def ranking(run_dir: Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    pred = read_predictions_jsonl(run_dir / "predictions" / "llm.jsonl")
    per = per_sample_metrics(pred.items, pred.targets, KS)
    out = {f"R@{k}": per[f"HR@{k}"] for k in KS}
    out["NDCG@10"] = per["NDCG@10"]
    return out, pred.sample_ids


def measure(run_dir: Path) -> dict[str, np.ndarray]:
    """Per-sample arrays keyed by metric, aligned by sample id."""
    run = LoadedRun.open(run_dir)
    tf, preds, ids = teacher_forced(run)
    names = [f"TF-{chr(ord('a') + level)}" for level in range(tf.shape[1] - 1)] + ["TF-suffix"]
    rank, rank_ids = ranking(run_dir)
    order = {int(s): i for i, s in enumerate(rank_ids)}
    idx = np.asarray([order[int(s)] for s in ids])
    out = {"sample_id": ids, "_pred": preds, **{n: tf[:, j] for j, n in enumerate(names)}}
    out.update({k: v[idx] for k, v in rank.items()})
    return out


def argmax_diagnostics(per: dict[str, dict[str, np.ndarray]]) -> dict:
    """Per level: how many distinct codes each variant's teacher-forced argmax takes over the
    test samples (1 = the same code for every sample, i.e. only the level's marginal was
    learned) and the share of samples where the two variants' argmax agree."""
    a, b = per["plain"]["_pred"], per["prefixmem"]["_pred"]
    return {
        "distinct_plain": [len(set(col)) for col in a.T.tolist()],
        "distinct_prefixmem": [len(set(col)) for col in b.T.tolist()],
        "agree": (a == b).mean(axis=0).tolist(),
    }


def summarise(per: dict[str, dict[str, np.ndarray]], hard: np.ndarray, boot: int) -> dict:
    metrics = [k for k in per["plain"] if k not in ("sample_id", "_pred")]
    out: dict = {"n": len(hard), "n_hard": int(hard.sum()), "subsets": {}}
    for subset, mask in (("all", np.ones_like(hard)), ("hard", hard), ("rest", ~hard)):
        block: dict = {}
        if not mask.any():  # e.g. no "rest" when the plain model misses a level everywhere
            out["subsets"][subset] = {m: None for m in metrics}
            continue
        for m in metrics:
            a, b = per["prefixmem"][m][mask], per["plain"][m][mask]
            row = {v: bootstrap_ci(per[v][m][mask], n_boot=boot)._asdict() for v in VARIANTS}
            row["diff"] = dict(paired_comparison(a, b, n_boot=boot))
            block[m] = row
        out["subsets"][subset] = block
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    head = header()
    print(json.dumps(head))
    results: dict = {"header": head, "settings": vars(args) | {"work": str(args.work)}}
    results["settings"]["out"] = str(args.out)
    results["seeds"] = {}
    for seed in args.seeds:
        model = build_model_dir(args.work / f"model_s{seed}", args.hidden, args.layers, seed)
        per, timing = {}, {}
        for variant in VARIANTS:
            cfg = run_config(args, variant, seed, model)
            run_dir = args.work / cfg.name
            t0 = time.perf_counter()
            if not (run_dir / "metrics.json").is_file():
                run_and_finish(cfg, run_dir)
            per[variant] = measure(run_dir)
            timing[variant] = time.perf_counter() - t0
            print(f"seed {seed} {variant}: {timing[variant]:.0f}s", flush=True)
        assert (per["plain"]["sample_id"] == per["prefixmem"]["sample_id"]).all()
        deepest = args.levels - 1
        hard = np.zeros(len(per["plain"]["sample_id"]), dtype=bool)
        for level in range(deepest):
            hard |= per["plain"][f"TF-{chr(ord('a') + level)}"] == 0
        summary = summarise(per, hard, args.boot)
        summary["seconds"] = timing
        summary["argmax"] = argmax_diagnostics(per)
        summary["train"] = {
            v: json.loads((args.work / f"pm_{v}_s{seed}" / "metrics.json").read_text()).get(
                "training", {}
            )
            for v in VARIANTS
        }
        results["seeds"][str(seed)] = summary
        print(markdown_seed(seed, summary), flush=True)
    results["across_seeds"] = across(results["seeds"])
    stamp = datetime.date.today().isoformat()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"prefixmem-experiment-{stamp}{args.tag}.json"
    path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    table = markdown(results)
    path.with_suffix(".md").write_text(table + "\n")
    print(table)
    print(f"wrote {path}")


def across(seeds: dict) -> dict:
    """Per metric and subset: each variant's per-seed means and their mean, the same for the
    paired differences (seeds where the subset is empty are left out)."""
    out: dict = {}
    first = next(iter(seeds.values()))
    for subset, block in first["subsets"].items():
        out[subset] = {}
        for m in block:
            rows = [s["subsets"][subset][m] for s in seeds.values()]
            rows = [r for r in rows if r is not None]
            agg = {v: _mean_of([r[v]["mean"] for r in rows]) for v in VARIANTS}
            agg["diff"] = _mean_of([r["diff"]["diff"] for r in rows])
            out[subset][m] = agg
    return out


def _mean_of(values: list[float]) -> dict:
    return {"per_seed": values, "mean": float(np.mean(values)) if values else None}


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _diff_cell(d: dict | None) -> str:
    return "-" if d is None else f"{_pct(d['diff'])} [{_pct(d['lo'])}, {_pct(d['hi'])}]"


def markdown_seed(seed: int, s: dict) -> str:
    lines = [f"seed {seed}: n = {s['n']}, hard = {s['n_hard']}"]
    for subset, block in s["subsets"].items():
        for m, row in block.items():
            if row is None:
                continue
            d = row["diff"]
            lines.append(
                f"  {subset:4} {m:9} plain {_pct(row['plain']['mean'])} "
                f"pm {_pct(row['prefixmem']['mean'])}  diff {_diff_cell(d)} p={d['p_value']:.3f}"
            )
    return "\n".join(lines)


def _subset_sizes(seeds: dict, subset: str) -> str:
    sizes = {"all": lambda s: s["n"], "hard": lambda s: s["n_hard"]}
    size = sizes.get(subset, lambda s: s["n"] - s["n_hard"])
    return " / ".join(str(size(s)) for s in seeds.values())


def markdown(results: dict) -> str:
    """One table per subset: metric | plain per seed (mean) | PrefixMem | diff with CIs."""
    seeds = results["seeds"]
    out = []
    for subset in ("all", "hard", "rest"):
        out += [
            f"**{subset}** (test samples per seed: {_subset_sizes(seeds, subset)}). Values in %: "
            "seed 0 / 1 / ... (mean over seeds); diff = PrefixMem - plain per seed with its 95% "
            "bootstrap CI over test users.",
            "",
            "| metric | plain | PrefixMem | diff per seed [95% CI] | mean diff |",
            "|---|---|---|---|---|",
        ]
        for m, agg in results["across_seeds"][subset].items():
            cells = [
                f"{' / '.join(_pct(x) for x in agg[v]['per_seed'])} ({_pct(agg[v]['mean'])})"
                for v in VARIANTS
            ]
            rows = [s["subsets"][subset][m] for s in seeds.values()]
            diffs = "; ".join(_diff_cell(r["diff"] if r else None) for r in rows)
            out.append(f"| {m} | {cells[0]} | {cells[1]} | {diffs} | {_pct(agg['diff']['mean'])} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    main()
