"""Sequential baselines: recbias's SASRec/GRU4Rec vs RecBole 1.2.1 on ML-100K, LOO + full ranking.

    python bench/bench_seqrec.py --epochs 30 --models gru4rec,sasrec --threads 2

Both sides use RecBole's ML-100K quick-start protocol (chronological leave-one-out, prefix
augmentation with MAX_ITEM_LIST_LENGTH 50, full ranking without history masking; see
``recbias.baselines.loo``) and the same hyperparameters: RecBole's model defaults (GRU4Rec:
embedding 64, hidden 128, 1 layer, dropout 0.3; SASRec: hidden 64, 2 layers, 2 heads, inner 256,
dropout 0.5), CE loss, batch 2048, Adam lr 1e-3, ``--epochs`` epochs. After every epoch (not timed)
both sides are evaluated on valid and test; the table reports the last epoch, the epoch of best
valid NDCG@10 (RecBole's own model selection, with NDCG@10 as its valid metric) and the mean over
the last ``--tail`` epochs (default 5: a single epoch's test NDCG@10 moves from one epoch to the
next by about as much as the gaps measured; the seed summary prints that std), and for each a
paired bootstrap CI and sign-flip p of the per-user test NDCG@10 difference (ours − RecBole), users
matched by their ML-100K id. SASRec layouts: ours is pre-norm ReLU by default, RecBole's post-norm
GELU; ``--sasrec-norm post`` runs our RecBole-identical layout (``SASRecConfig(norm="post",
activation="gelu")``). Init is N(0, 0.02) on both. recbias trains with its defaults (``dtype`` bf16
autocast, ``--dtype fp32`` to compare; ``--shared-prefix`` lets prefix samples ride on one pass,
faster but slower to converge per epoch), so epochs see the same samples.

RecBole runs in its own venv, ``bench/.recbole-venv`` (created on first use: torch 2.13.0 CPU,
recbole 1.2.1, numpy < 1.24 because RecBole's NDCG uses the removed ``np.float``), in a child
process that calls ``trainer._train_epoch`` per epoch (timed), ``trainer.evaluate(...,
load_best_model=False)`` (its own checkpoint reload fails under torch's ``weights_only`` load) and,
for the per-user values, ``trainer._full_sort_batch_eval`` (their mean equals RecBole's NDCG@10).
Nothing in RecBole is patched. Its result is cached in
``bench/results/recbole-MODEL-eEPOCHS-sSEED-tTHREADS.json`` (``--recbole-only`` fills the cache
alone; delete a file to rerun). Each side is timed single-process with ``--threads`` threads;
writes bench/results/seqrec.json (``--results`` elsewhere, e.g. one file per seed).

Over seeds (one file per seed, each run on its own, then)::

    python bench/bench_seqrec.py --summarise bench/results/seqrec-s2020.json bench/results/seqrec-s2021.json

prints, per model and selection (last / best valid / tail mean), each side's test NDCG@10 per seed,
mean ± std over seeds with the 95% t-interval, the per-seed difference ours − RecBole (mean and
t-interval over seeds) and the paired bootstrap CI / sign-flip p of the per-user differences
averaged over seeds (the same statistics as ``recbias compare``, :mod:`recbias.compare.table`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
VENV = HERE / ".recbole-venv"
RECBOLE_PINS = ["torch==2.13.0", "recbole==1.2.1", "numpy<1.24"]
COMMON = {"MAX_ITEM_LIST_LENGTH": 50, "train_batch_size": 2048, "learning_rate": 1e-3}
# What replicates over seeds share (the thread count changes timing, not what is trained).
SETTING_KEYS = ("epochs", "dtype", "shared_prefix", "sasrec_norm")
RECBOLE_MODELS = {
    "gru4rec": ("GRU4Rec", {"embedding_size": 64, "hidden_size": 128, "num_layers": 1,
                            "dropout_prob": 0.3}),
    "sasrec": ("SASRec", {"hidden_size": 64, "n_layers": 2, "n_heads": 2, "inner_size": 256,
                          "hidden_dropout_prob": 0.5, "attn_dropout_prob": 0.5}),
}  # fmt: skip


# --- RecBole side (runs inside bench/.recbole-venv; imports nothing from recbias) ---------------


def recbole_child(model: str, epochs: int, seed: int, out: Path) -> None:
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    name, params = RECBOLE_MODELS[model]
    settings = {
        **COMMON, **params, "loss_type": "CE", "train_neg_sample_args": None, "epochs": epochs,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full"},
        "metrics": ["Recall", "MRR", "NDCG", "Hit", "Precision"], "topk": [10],
        "valid_metric": "NDCG@10", "use_gpu": False, "seed": seed, "show_progress": False,
        "repeatable": True, "checkpoint_dir": tempfile.mkdtemp(prefix="recbole-"),
    }  # fmt: skip
    config = Config(model=name, dataset="ml-100k", config_dict=settings)
    init_seed(config["seed"], config["reproducibility"])
    train, valid, test = data_preparation(config, create_dataset(config))
    net = get_model(name)(config, train._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], name)(config, net)
    seconds, curve = [], []
    for epoch in range(epochs):
        start = time.perf_counter()
        trainer._train_epoch(train, epoch, show_progress=False)
        seconds.append(time.perf_counter() - start)
        point = {}
        for split, data in (("valid", valid), ("test", test)):
            point[split] = dict(trainer.evaluate(data, load_best_model=False))
            point[split + "_users"], point[split + "_ndcg"] = recbole_user_ndcg(trainer, data)
        curve.append(point)
    out.write_text(json.dumps({"epoch_seconds": seconds, "curve": curve}))


def recbole_user_ndcg(trainer, data, k: int = 10) -> tuple[list[str], list[float]]:
    """Per-user NDCG@k (one target each) from RecBole's own full-sort scores, for paired tests:
    (user tokens, values). Ties count against the target (rank = items scored strictly higher)."""
    import torch

    trainer.model.eval()
    tokens = data._dataset.field2id_token[data._dataset.uid_field]
    users, values = [], []
    with torch.no_grad():
        for batch in data:
            interaction, scores, positive_u, positive_i = trainer._full_sort_batch_eval(batch)
            scores = scores.view(len(interaction), -1)
            rank = (scores[positive_u] > scores[positive_u, positive_i][:, None]).sum(dim=1)
            gain = torch.where(rank < k, 1.0 / torch.log2(rank.double() + 2.0), 0.0)
            uid = interaction[data._dataset.uid_field][positive_u]
            users += [str(tokens[u]) for u in uid.tolist()]
            values += gain.tolist()
    return users, values


def ensure_venv() -> Path:
    python = VENV / "bin" / "python"
    if python.exists():
        return python
    subprocess.run([shutil.which("python3.11") or sys.executable, "-m", "venv", str(VENV)],
                   check=True)  # fmt: skip
    subprocess.run([str(python), "-m", "pip", "install", "-q", *RECBOLE_PINS], check=True)
    return python


def _normalise(metrics: dict) -> dict:
    return {key.replace("recall", "Recall").replace("ndcg", "NDCG"): value
            for key, value in metrics.items()}  # fmt: skip


def run_recbole(model: str, epochs: int, seed: int, threads: int) -> dict:
    """RecBole's result, cached in bench/results/ (RecBole never changes; rerun: delete it)."""
    from recbias.fsutil import write_json

    cache = HERE / "results" / f"recbole-{model}-e{epochs}-s{seed}-t{threads}.json"
    if cache.exists():
        print(f"RecBole {model}: reusing {cache.relative_to(HERE.parent)}", flush=True)
        return json.loads(cache.read_text())
    python = ensure_venv()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [str(python), str(Path(__file__).resolve()), "--child", model, "--epochs", str(epochs),
               "--seed", str(seed), "--out", str(out)]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        subprocess.run(cmd, check=True, cwd=tmp, env=env)  # RecBole writes log/ into its cwd
        result = json.loads(out.read_text())
    result["curve"] = [{key: _normalise(m) if key in ("valid", "test") else m
                        for key, m in point.items()} for point in result["curve"]]  # fmt: skip
    write_json(cache, result)
    return result


# --- recbias side ------------------------------------------------------------------------------


def run_ours(
    model: str, epochs: int, seed: int, split, dtype: str, shared_prefix: bool, sasrec_norm: str
) -> dict:
    from recbias.baselines import GRU4RecConfig, GRU4RecRecommender, SASRecConfig, SASRecRecommender
    from recbias.baselines.loo import full_ranking_metrics, full_ranks
    from recbias.metrics import ndcg

    shared = {"max_len": 50, "batch_size": 2048, "lr": 1e-3, "epochs": epochs, "seed": seed,
              "dtype": dtype, "shared_prefix": shared_prefix}  # fmt: skip
    if model == "gru4rec":
        cfg = GRU4RecConfig(**shared, embedding=64, hidden=128, layers=1, dropout=0.3)
        rec = GRU4RecRecommender(cfg)
    else:
        layout = {"norm": sasrec_norm, "activation": "gelu" if sasrec_norm == "post" else "relu"}
        cfg = SASRecConfig(**shared, hidden=64, layers=2, heads=2, ffn=256, dropout=0.5, **layout)
        rec = SASRecRecommender(cfg)
    curve: list[dict] = []

    def evaluate(epoch: int, fitted) -> None:
        point: dict = {}
        for name in ("valid", "test"):
            samples = getattr(split, name)
            scores, targets = fitted.scores(samples), samples["target"].to_numpy()
            point[name] = full_ranking_metrics(scores, targets)
            point[name + "_users"] = samples["user"].astype(str).tolist()
            point[name + "_ndcg"] = ndcg(full_ranks(scores, targets), 10).tolist()
        curve.append(point)

    rec.fit(split.train, n_items=split.n_items, on_epoch=evaluate)
    return {"epoch_seconds": rec.epoch_seconds, "curve": curve}


def best_epoch(curve: list[dict], metric: str = "NDCG@10") -> int:
    """The epoch (0-based) with the highest validation ``metric``; ties: the earliest."""
    values = [point["valid"][metric] for point in curve]
    return values.index(max(values))


def _aligned_ndcg(points: list[dict], split: str) -> tuple[np.ndarray, np.ndarray]:
    """(user ids of the first point, per-user NDCG@10 [P, n] with every point in that order)."""
    from recbias.metrics.stats import align_sample_ids

    ids = np.asarray(points[0][split + "_users"])
    rows = []
    for point in points:
        order = align_sample_ids(ids, np.asarray(point[split + "_users"]), ("first", "other"))
        rows.append(np.asarray(point[split + "_ndcg"], dtype=np.float64)[order])
    return ids, np.stack(rows)


def tail_point(curve: list[dict], k: int) -> dict:
    """One evaluation point that averages the last ``k`` epochs: every metric, and each user's
    NDCG@10 (a single epoch's reading moves from one epoch to the next by about as much as the
    gaps being measured, see :func:`epoch_wobble`; the mean over the final epochs does not hinge
    on one)."""
    if not 1 <= k <= len(curve):
        raise SystemExit(f"--tail {k}: must be between 1 and the {len(curve)} epochs run")
    points = curve[-k:]
    out: dict = {}
    for split in ("valid", "test"):
        out[split] = {m: float(np.mean([p[split][m] for p in points])) for m in points[0][split]}
        ids, rows = _aligned_ndcg(points, split)
        out[split + "_users"], out[split + "_ndcg"] = ids.tolist(), rows.mean(axis=0).tolist()
    return out


def epoch_wobble(curve: list[dict], k: int, metric: str = "NDCG@10") -> float:
    """Standard deviation (ddof 1) of test ``metric`` over the last ``k`` epochs of one run: how
    far a single-epoch reading moves once training has levelled off."""
    return float(np.std([p["test"][metric] for p in curve[-k:]], ddof=1)) if k > 1 else 0.0


SELECTIONS = ("last", "best", "tail")


def select(curve: list[dict], label: str, tail: int) -> tuple[dict, str]:
    """(point, what it is) for a selection: the last epoch, the best-valid epoch, or the mean
    of the last ``tail`` epochs."""
    if label == "last":
        return curve[-1], f"last{len(curve)}"
    if label == "best":
        epoch = best_epoch(curve)
        return curve[epoch], f"best{epoch + 1}"
    return tail_point(curve, tail), f"{len(curve) - tail + 1}-{len(curve)}"


def paired_text(cmp) -> str:
    """One line for a :func:`recbias.metrics.stats.paired_comparison` result."""
    return (f"{cmp['diff']:+.4f} [{cmp['lo']:+.4f}, {cmp['hi']:+.4f}] 95% paired bootstrap over "
            f"{cmp['n']} users, sign-flip p = {cmp['p_value']:.3f}")  # fmt: skip


def report(results: dict, threads: int, tail: int) -> None:
    """Speed, the metrics at the last and at the best-valid epoch and averaged over the last
    ``tail`` epochs, and a paired test comparison for each."""
    from recbias.metrics.stats import paired_comparison

    print(f"\nML-100K, LOO full ranking, threads={threads} (median s/epoch; ratio = RecBole/ours;"
          " last = after the last epoch, best = at the epoch of best valid NDCG@10, a-b = mean of"
          " epochs a to b)")  # fmt: skip
    print(f"{'model':8} {'impl':8} {'s/epoch':>8} {'ratio':>6} {'at':>8} {'val R@10':>9} "
          f"{'val N@10':>9} {'test R@10':>9} {'test N@10':>9}")  # fmt: skip
    for model, sides in results.items():
        base = statistics.median(sides["recbole"]["epoch_seconds"])
        picked = {}
        for impl, res in sides.items():
            sec = statistics.median(res["epoch_seconds"])
            for label in SELECTIONS:
                point, at = select(res["curve"], label, tail)
                picked[impl, label] = point
                v, t = point["valid"], point["test"]
                print(f"{model:8} {impl:8} {sec:8.1f} {base / sec:6.2f} {at:>8} "
                      f"{v['Recall@10']:9.4f} {v['NDCG@10']:9.4f} {t['Recall@10']:9.4f} "
                      f"{t['NDCG@10']:9.4f}")  # fmt: skip
        for label in SELECTIONS:
            ours, theirs = picked["recbias", label], picked["recbole", label]
            cmp = paired_comparison(
                np.asarray(ours["test_ndcg"]), np.asarray(theirs["test_ndcg"]), n_boot=10_000,
                ids_a=np.asarray(ours["test_users"]), ids_b=np.asarray(theirs["test_users"]),
            )  # fmt: skip
            print(f"{model:8} test NDCG@10 ours - RecBole ({label}): {paired_text(cmp)}")


def load_seed_results(paths: list[Path]) -> dict[str, dict[int, dict]]:
    """{model: {seed: {"recbole": ..., "recbias": ...}}} from ``--results`` files of one setting.

    Errors name the file: unreadable JSON, no ``seed``, two files of the same seed and model, or
    settings other than the seed that differ between files (those runs are not replicates).
    """
    runs: dict[str, dict[int, dict]] = {}
    reference: tuple[Path, dict] | None = None
    for path in paths:
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise SystemExit(f"{path}: cannot read a bench result: {err}") from None
        if not isinstance(data.get("seed"), int):
            raise SystemExit(f"{path}: no integer 'seed' (written by an older bench_seqrec.py)")
        setting = {key: data.get(key) for key in SETTING_KEYS}
        if reference is None:
            reference = (path, setting)
        elif setting != reference[1]:
            raise SystemExit(f"{path}: settings {setting} differ from {reference[0]}'s "
                             f"{reference[1]}; only the seed may differ")  # fmt: skip
        for model in RECBOLE_MODELS:
            if model not in data:
                continue
            if data["seed"] in runs.setdefault(model, {}):
                raise SystemExit(f"{path}: a second {model} run of seed {data['seed']}")
            runs[model][data["seed"]] = data[model]
    if not runs:
        raise SystemExit(f"no model results in {[str(p) for p in paths]}")
    return runs


def summarise_seeds(runs: dict[str, dict[int, dict]], tail: int) -> None:
    """The multi-seed comparison of test NDCG@10 (see the module docstring); the per-user
    values the bench records are NDCG@10."""
    metric = "NDCG@10"
    from recbias.compare.table import seed_interval
    from recbias.metrics.stats import paired_comparison

    def interval(values: np.ndarray, sign: str = "") -> str:
        if len(values) < 2:
            return f"{values.mean():{sign}.4f}"
        mean, std, lo, hi = seed_interval(values)
        return f"{mean:{sign}.4f} ± {std:.4f} [{lo:{sign}.4f}, {hi:{sign}.4f}]"

    for model, by_seed in runs.items():
        seeds = sorted(by_seed)
        print(
            f"\n{model}: test {metric} over seeds {seeds} (mean ± std [95% t-interval over seeds])"
        )
        for label in SELECTIONS:
            picked = {
                impl: [select(by_seed[seed][impl]["curve"], label, tail)[0] for seed in seeds]
                for impl in ("recbias", "recbole")
            }
            means = {
                impl: np.array([p["test"][metric] for p in pts]) for impl, pts in picked.items()
            }
            for impl in ("recbias", "recbole"):
                per_seed = " ".join(f"{v:.4f}" for v in means[impl])
                print(f"  {label:4} {impl:8} per seed {per_seed}  mean {interval(means[impl])}")
            gap = interval(means["recbias"] - means["recbole"], "+")
            print(f"  {label:4} ours − RecBole per seed: {gap}")
            (ids_a, a), (ids_b, b) = (
                _aligned_ndcg(picked[i], "test") for i in ("recbias", "recbole")
            )
            cmp = paired_comparison(a.mean(axis=0), b.mean(axis=0), n_boot=10_000, ids_a=ids_a,
                                    ids_b=ids_b)  # fmt: skip
            print(f"  {label:4} per-user Δ averaged over seeds: {paired_text(cmp)}")
        for impl in ("recbias", "recbole"):
            wobble = [epoch_wobble(by_seed[seed][impl]["curve"], tail, metric) for seed in seeds]
            print(f"  {impl}: test {metric} std over the last {tail} epochs of a run, mean over "
                  f"seeds {np.mean(wobble):.4f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--models", default="gru4rec,sasrec")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--threads", type=int, default=1, help="torch threads on each side")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="bf16", help="recbias side")
    parser.add_argument(
        "--shared-prefix", action="store_true", help="recbias: prefix samples share a pass"
    )
    parser.add_argument(
        "--sasrec-norm",
        choices=["pre", "post"],
        default="pre",
        help="recbias SASRec: pre (our default) or post (RecBole's layout, GELU)",
    )
    parser.add_argument(
        "--recbole-only", action="store_true", help="only run (and cache) RecBole's side"
    )
    parser.add_argument(
        "--results", type=Path, default=HERE / "results" / "seqrec.json", help="result file"
    )
    parser.add_argument(
        "--summarise", type=Path, nargs="+", metavar="FILE",
        help="only summarise these --results files over their seeds",
    )  # fmt: skip
    parser.add_argument(
        "--tail", type=int, metavar="K",
        help="also compare the mean over the last K epochs (default 5, at most --epochs)",
    )  # fmt: skip
    parser.add_argument("--child", choices=sorted(RECBOLE_MODELS), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tail is None:
        args.tail = 5 if args.summarise else min(5, args.epochs)
    if args.tail < 1 or (not args.summarise and args.tail > args.epochs):
        parser.error(f"--tail {args.tail}: must be between 1 and --epochs ({args.epochs})")
    if args.child:
        recbole_child(args.child, args.epochs, args.seed, args.out)
        return
    if args.summarise:
        summarise_seeds(load_seed_results(args.summarise), args.tail)
        return
    import torch

    from recbias.baselines.loo import load_ml100k_loo
    from recbias.fsutil import write_json

    torch.set_num_threads(args.threads)
    split = load_ml100k_loo(max_len=50)
    results = {}
    settings = {"epochs": args.epochs, "threads": args.threads, "dtype": args.dtype,
                "shared_prefix": args.shared_prefix, "sasrec_norm": args.sasrec_norm,
                "seed": args.seed}  # fmt: skip
    out = args.results
    for model in args.models.split(","):
        if model not in RECBOLE_MODELS:
            parser.error(f"--models: unknown model {model!r}; expected {sorted(RECBOLE_MODELS)}")
        recbole = run_recbole(model, args.epochs, args.seed, args.threads)
        if args.recbole_only:
            continue
        ours = run_ours(
            model,
            args.epochs,
            args.seed,
            split,
            args.dtype,
            args.shared_prefix,
            args.sasrec_norm,
        )
        results[model] = {"recbole": recbole, "recbias": ours}
        write_json(out, {**settings, **results})  # before the report: a report bug loses nothing
        report({model: results[model]}, args.threads, args.tail)


if __name__ == "__main__":
    main()
