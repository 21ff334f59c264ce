"""Shared fixtures of the report tests: a fake run directory with metrics, log, config and audit."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from recbias.report.sections import Figure, Section, Table, save_sections


def png(path: Path, color: str = "tab:blue") -> None:
    """Write a tiny bar-chart PNG to ``path``, creating its parent directories."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.bar([0, 1], [1, 2], color=color)
    fig.savefig(path, format="png", dpi=50)
    plt.close(fig)


def ci(mean: float, half: float = 0.004) -> dict[str, float]:
    """A confidence-interval dict of ``mean`` ± ``half``."""
    return {"mean": mean, "lo": mean - half, "hi": mean + half}


def metrics(extra_metric: str | None = None, ks: tuple[int, ...] = (10,)) -> dict:
    """A metrics.json payload for two methods (llm, popularity) with a paired test."""

    def method(base: float) -> dict:
        out: dict = {f"HR@{k}": ci(2 * base * k / 10) for k in ks}
        out |= {f"NDCG@{k}": ci(base * k / 10) for k in ks}
        out |= {"valid_ratio": 1.0, "n": 200}
        if extra_metric:
            out[extra_metric] = ci(base / 2)
        return out

    paired = {"diff": -0.002, "lo": -0.006, "hi": 0.001, "p_value": 0.31}
    paired.update({"n": 200, "a_better": 5, "b_better": 7, "ties": 188})
    return {
        "dataset": "toy",
        "training": {"steps": 20, "train_seconds": 12.5},
        "timing": {"train": 12.5, "recommend_llm": 3.25},
        "metrics": {
            "methods": {"llm": method(0.0136), "popularity": method(0.0156)},
            "paired_vs_llm": {"popularity": {"NDCG@10": paired}},
        },
    }


AUDIT_SECTIONS = [
    ("fairness", "Fairness & concentration", "MGU_10 is 12% (#1 genre)"),
    ("attribution", "Attribution <by position>", "History items get 40% of the credit"),
]


def fake_run(
    root: Path, name: str = "run_a", extra_metric: str | None = None, ks: tuple[int, ...] = (10,)
) -> Path:
    """A run directory as ``recbias run`` + ``recbias audit`` write it, with tiny numbers."""
    run = root / name
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps(metrics(extra_metric, ks)))
    log = [
        {"event": "train", "step": s, "epoch": s // 10, "loss": 3.0 / s} for s in (5, 10, 15, 20)
    ]
    log += [{"event": "epoch", "epoch": e, "step": 10 * e, "val_metric": 0.01 * e} for e in (1, 2)]
    (run / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    (run / "config.toml").write_text('name = "toy"\nseed = 0\n\n[eval]\nvalidation_k = 10\n')
    env = {"time_utc": "2026-01-01T00:00:00+00:00", "python": "3.11.7", "seed": 0}
    env.update({"packages": {"torch": "2.13.0"}, "git": {"commit": "abc123" * 7, "dirty": False}})
    (run / "environment.json").write_text(json.dumps(env))
    sections = []
    for i, (key, title, summary) in enumerate(AUDIT_SECTIONS):
        png(run / "audit" / "figures" / f"{key}.png")
        table = Table(
            key,
            f"{title}: 95% CI",
            ["group_name", "share %"],
            [["a_b", 0.1234567], ["<script>", i]],
        )
        sections.append(
            Section(key, title, summary, [table], [Figure(f"figures/{key}.png", "What to see")])
        )
    save_sections(run / "audit" / "audit.json", sections)
    return run


def fake_comparison(
    root: Path, methods: tuple[str, ...] = ("sft", "gdrt"), ks: tuple[int, ...] = (10,)
) -> Path:
    """A ``recbias compare`` directory over two seeds; the first method is the reference."""
    cmp_dir = root / "cmp"
    cell = {"mean": 0.02, "std": 0.001, "lo": 0.018, "hi": 0.022, "per_seed": [0.019, 0.021]}
    paired = {"NDCG@10": {"diff": 0.004, "lo": 0.001, "hi": 0.007, "p_value": 0.01}}
    row = {"reuse_model_of": None, "valid_ratio": 1.0, "train_seconds": 10.0, "decode_seconds": 2.0}
    cells = {f"{m}@{k}": cell for m in ("HR", "NDCG") for k in ks}
    rows = {
        name: {**row, "metrics": cells, "paired_vs_reference": paired if i else None}
        for i, name in enumerate(methods)
    }
    table = {"name": "cmp", "seeds": [0, 1], "reference": methods[0], "ks": list(ks)}
    table |= {"n_samples": 50, "paired_metric": "NDCG@10", "n_seeds": 2, "ci": "t-interval"}
    cmp_dir.mkdir()
    (cmp_dir / "comparison.json").write_text(json.dumps(table | {"methods": rows}))
    for seed in (0, 1):
        for name in methods:
            member = cmp_dir / f"seed-{seed}" / name
            member.mkdir(parents=True)
            line = {"event": "train", "step": 1, "loss": 1.0 + seed}
            (member / "train_log.jsonl").write_text(json.dumps(line) + "\n")
    return cmp_dir
