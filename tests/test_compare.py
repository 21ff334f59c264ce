"""The method-comparison runner: tiny model + CSV data, methods × seeds → one table."""

from __future__ import annotations

import csv as csv_module
import json
import math
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import tiny
from recbias.cli import main
from recbias.compare import (
    CompareConfig,
    flatten_set,
    load_compare_config,
    resolve_methods,
    run_comparison,
    select_methods,
)
from recbias.compare.run import prune_resume_state
from recbias.compare.table import MethodRuns, build_comparison, comparison_csv
from recbias.config import from_dict, load_config, read_toml
from recbias.data.dataset import PreparedDataset
from recbias.diagnostics.groups import popularity_grouping
from recbias.errors import ConfigError, RecbiasError
from recbias.evaluation.predictions import read_predictions_jsonl, write_predictions_jsonl
from recbias.metrics.concentration import coverage, exposure_counts, gini, tail_share
from recbias.metrics.fairness import group_gap
from recbias.metrics.ranking import per_sample_metrics
from recbias.recs import Recommendations
from recbias.report.build import build_report

TITLES = tiny.MOVIES_16
ROOT = Path(__file__).parent.parent
COMPARE_CONFIGS = [p for p in sorted(ROOT.glob("configs/*.toml")) if "base" in read_toml(p)]

METHODS = """
[[methods]]
name = "sft"

[[methods]]
name = "sft_lr"
set = { "train.lr" = 0.001 }

[[methods]]
name = "sft_lp0"
reuse_model_of = "sft"
set = { "decode.beam.length_penalty" = 0.0 }
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_ckpt, table_data) -> dict[str, Path]:
    paths = {"root": tmp_path_factory.mktemp("compare"), "ckpt": tiny_ckpt, "data": table_data}
    return paths | {"config": write_config(paths, paths["root"] / "exp.toml")}


def write_config(paths: dict[str, Path], path: Path, methods: str = METHODS, top: str = "") -> Path:
    root, data = paths["root"], paths["data"]
    path.write_text(f"""
name = "tiny comparison"
output_dir = "{root / "cmp"}"
ks = [1, 3, 5]
paired_metric = "NDCG@5"
{top}
[base]
name = "tiny"
threads = 1
[base.data]
cache_dir = "{root / "cache"}"
[base.data.source]
kind = "table"
interactions = "{data / "inter.csv"}"
items = "{data / "items.csv"}"
[base.data.prepare]
kcore = 2
[base.model]
path = "{paths["ckpt"]}"
dtype = "fp32"
[base.train]
epochs = 1
lr = 0.01
warmup_steps = 0
micro_batch_size = 8
[base.decode.beam]
num_beams = 5
length_penalty = 1.0
[base.eval]
ks = [1, 3, 5]
bootstrap = 50
{methods}
""")
    return path


@pytest.fixture(scope="module")
def compared(setup) -> tuple[Path, dict]:
    out = setup["root"] / "first"
    cfg = load_config(CompareConfig, setup["config"])
    return out, run_comparison(cfg, out)


def _copy(out: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "cmp"
    shutil.copytree(out, dst)
    return dst


def _resolved(run_dir: Path) -> dict:
    return tomllib.loads((run_dir / "config.toml").read_text())


def test_table_has_a_row_per_method_and_the_popularity_baseline(compared):
    out, result = compared
    table = result["comparison"]
    assert list(table["methods"]) == ["sft", "sft_lr", "sft_lp0", "popularity"]
    assert result["status"] == {
        "seed-0/sft": "trained",
        "seed-0/sft_lr": "trained",
        "seed-0/sft_lp0": "decoded",
    }
    assert table["methods"]["sft"]["paired_vs_reference"] is None
    for name in ("sft_lr", "sft_lp0", "popularity"):
        p = table["methods"][name]["paired_vs_reference"]["NDCG@5"]["p_value"]
        assert 0.0 < p <= 1.0
    md = (out / "comparison.md").read_text()
    assert md == result["markdown"]
    accuracy, bias = md.split("## Bias of the lists")
    assert sum(line.startswith("| ") for line in accuracy.splitlines()) == 5  # header + 4 rows
    # bias cells: header + 4 rows; Δ vs reference: header + 3 rows
    assert sum(line.startswith("| ") for line in bias.splitlines()) == 5 + 4
    assert "| sft_lp0 (model of sft) |" in md and "(reference)" in md
    csv = pd.read_csv(out / "comparison.csv")
    assert csv["method"].tolist() == ["sft", "sft_lr", "sft_lp0", "popularity"]
    assert json.loads((out / "comparison.json").read_text()) == table
    assert (out / "compare.toml").is_file()


def test_finished_runs_keep_their_model_but_not_the_resume_state(compared):
    out, _ = compared
    for name in ("sft", "sft_lr"):
        run = out / "seed-0" / name
        assert (run / "model").is_dir() and (run / "metrics.json").is_file()
        assert not (run / "checkpoints" / "last").exists()
        assert not (run / "checkpoints" / "best").exists()


def test_prune_leaves_unfinished_runs_and_epoch_snapshots(tmp_path):
    run = tmp_path / "run"
    for d in ("checkpoints/last", "checkpoints/best", "checkpoints/epoch-1", "model"):
        (run / d).mkdir(parents=True)
    (run / "UNFINISHED").write_text("")
    (run / "metrics.json").write_text("{}")
    assert prune_resume_state(run) == []  # still marked unfinished
    (run / "UNFINISHED").unlink()
    assert sorted(p.name for p in prune_resume_state(run)) == ["best", "last"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch-1"]


def test_cells_are_the_run_metrics_with_bootstrap_cis(compared):
    out, result = compared
    row = result["comparison"]["methods"]["sft"]
    run = json.loads((out / "seed-0/sft/metrics.json").read_text())["metrics"]["methods"]["llm"]
    for metric in ("HR@1", "HR@5", "NDCG@3"):
        cell = row["metrics"][metric]
        assert (cell["mean"], cell["lo"], cell["hi"]) == pytest.approx(
            (run[metric]["mean"], run[metric]["lo"], run[metric]["hi"])
        )
        assert cell["lo"] <= cell["mean"] <= cell["hi"] and cell["std"] is None
    assert row["valid_ratio"] == run["valid_ratio"]


def test_decode_only_variant_reuses_the_model_and_trains_nothing(compared):
    out, result = compared
    variant, sft = out / "seed-0" / "sft_lp0", out / "seed-0" / "sft"
    assert not (variant / "checkpoints").exists() and not (variant / "model").exists()
    assert (variant / "predictions" / "llm.jsonl").is_file() and (sft / "checkpoints").is_dir()
    metrics = json.loads((variant / "metrics.json").read_text())
    assert metrics["timing"]["train"] == 0.0
    assert metrics["reused_model_of"] == str(sft / "model")
    row = result["comparison"]["methods"]["sft_lp0"]
    assert row["train_seconds"] == 0.0 and row["decode_seconds"] > 0.0
    assert result["comparison"]["methods"]["sft"]["train_seconds"] > 0.0


def test_train_time_excludes_the_per_epoch_validation_decoding(compared):
    out, result = compared
    metrics = json.loads((out / "seed-0" / "sft" / "metrics.json").read_text())
    training, timing = metrics["training"], metrics["timing"]
    assert training["best_epoch"] is not None  # validation ran
    assert training["validation_seconds"] > 0.0 and timing["validate"] > 0.0
    assert timing["train"] == training["train_seconds"] > 0.0
    assert timing["train"] + timing["validate"] < timing["total"]
    assert result["comparison"]["methods"]["sft"]["train_seconds"] == pytest.approx(timing["train"])


def test_each_run_records_its_resolved_config_with_the_override(compared):
    out, _ = compared
    sft, lr, lp0 = (_resolved(out / "seed-0" / n) for n in ("sft", "sft_lr", "sft_lp0"))
    assert (sft["train"]["lr"], lr["train"]["lr"]) == (0.01, 0.001)
    assert sft["decode"]["beam"]["length_penalty"] == 1.0
    assert lp0["decode"]["beam"]["length_penalty"] == 0.0
    assert lp0["train"] == sft["train"]  # the variant's config describes the model it decodes
    assert (sft["name"], lr["name"], sft["seed"]) == ("tiny-sft", "tiny-sft_lr", 0)


def test_rerun_skips_finished_methods_and_adds_new_ones(compared, setup, tmp_path):
    out = _copy(compared[0], tmp_path)
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("seed-0/*/metrics.json")}
    methods = METHODS + '[[methods]]\nname = "sft_copy"\nreuse_model_of = "sft"\n'
    cfg = load_config(CompareConfig, write_config(setup, tmp_path / "c.toml", methods))
    result = run_comparison(cfg, out)
    assert result["status"] == {
        "seed-0/sft": "skipped",
        "seed-0/sft_lr": "skipped",
        "seed-0/sft_lp0": "skipped",
        "seed-0/sft_copy": "decoded",
    }
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    # Reusing the model with the same settings reproduces the reference exactly.
    copy = (out / "seed-0/sft_copy/predictions/llm.jsonl").read_text()
    assert copy == (out / "seed-0/sft/predictions/llm.jsonl").read_text()
    paired = result["comparison"]["methods"]["sft_copy"]["paired_vs_reference"]["NDCG@5"]
    assert (paired["diff"], paired["p_value"]) == (0.0, 1.0)


def test_a_method_killed_after_training_resumes_with_the_same_numbers(setup, tmp_path):
    cfg = load_config(CompareConfig, write_config(setup, tmp_path / "keep.toml",
                                                  top="keep_resume_state = true"))  # fmt: skip
    out = tmp_path / "cmp"
    run_comparison(cfg, out)
    assert (out / "seed-0/sft_lr/checkpoints/last").is_dir()  # kept on request
    before = json.loads((out / "seed-0/sft_lr/metrics.json").read_text())["metrics"]
    (out / "seed-0/sft_lr/metrics.json").unlink()
    result = run_comparison(cfg, out)
    assert result["status"]["seed-0/sft_lr"] == "resumed"
    assert result["status"]["seed-0/sft"] == "skipped"
    assert json.loads((out / "seed-0/sft_lr/metrics.json").read_text())["metrics"] == before


def test_a_finished_run_of_another_config_is_an_error(compared, setup, tmp_path):
    out = _copy(compared[0], tmp_path)
    methods = METHODS.replace('"train.lr" = 0.001', '"train.lr" = 0.002')
    cfg = load_config(CompareConfig, write_config(setup, tmp_path / "c.toml", methods))
    with pytest.raises(ConfigError, match="sft_lr' holds a run of a different config"):
        run_comparison(cfg, out)


def test_cli_with_two_seeds_aggregates_over_seeds(compared, setup, tmp_path, capsys):
    out = _copy(compared[0], tmp_path)
    argv = ["compare", str(setup["config"]), "--seeds", "0,1", "--out", str(out)]
    assert main(argv) == 0
    assert "| sft_lr |" in capsys.readouterr().out
    for name in ("sft", "sft_lr", "sft_lp0"):
        assert (out / "seed-1" / name / "metrics.json").is_file()
        assert _resolved(out / "seed-1" / name)["seed"] == 1
    assert not (out / "seed-1" / "sft_lp0" / "model").exists()
    table = json.loads((out / "comparison.json").read_text())
    assert table["n_seeds"] == 2 and table["seeds"] == [0, 1]
    cell = table["methods"]["sft_lr"]["metrics"]["NDCG@5"]
    per_seed = []
    for seed in (0, 1):
        run = json.loads((out / f"seed-{seed}/sft_lr/metrics.json").read_text())
        per_seed.append(run["metrics"]["methods"]["llm"]["NDCG@5"]["mean"])
    assert cell["per_seed"] == pytest.approx(per_seed)
    assert cell["mean"] == pytest.approx(np.mean(per_seed))
    assert cell["std"] == pytest.approx(np.std(per_seed, ddof=1))
    half = 12.706204736174707 * cell["std"] / math.sqrt(2)  # t_{0.975, 1}
    assert (cell["lo"], cell["hi"]) == pytest.approx((cell["mean"] - half, cell["mean"] + half))
    assert "±" in (out / "comparison.md").read_text()
    ids = [pd.read_json(out / f"seed-{s}/sft/predictions/llm.jsonl", lines=True) for s in (0, 1)]
    assert ids[0]["sample_id"].tolist() == ids[1]["sample_id"].tolist()  # same test samples


# --- configs and their errors (no training) ---


def _cfg(methods: list[dict], **top) -> CompareConfig:
    return from_dict(CompareConfig, {"methods": methods, **top})


SFT = {"name": "sft"}


@pytest.mark.parametrize(
    ("methods", "top", "message"),
    [
        ([SFT], {"reference": "sftt"}, r"'reference': unknown method 'sftt' \(did you mean 'sft'"),
        (
            [SFT, {"name": "d3", "reuse_model_of": "stf"}],
            {},
            r"'methods\[1\].reuse_model_of': unknown method 'stf'",
        ),
        (
            [SFT, {"name": "a", "reuse_model_of": "sft"}, {"name": "b", "reuse_model_of": "a"}],
            {},
            r"'methods\[2\].reuse_model_of': 'a' does not train",
        ),
        ([SFT, SFT], {}, r"'methods\[1\].name': duplicate method 'sft'"),
        ([SFT, {"name": "popularity"}], {}, r"'methods\[1\].name'"),
        ([SFT, {"name": "x", "set": {"seed": 3}}], {}, r"'methods\[1\].set.\"seed\"'"),
        (
            [SFT, {"name": "x", "set": {"data": {"prepare": {"test_samples": 9}}}}],
            {},
            r"'methods\[1\].set.\"data.prepare.test_samples\"': a method may not set 'data'",
        ),
        (
            [SFT, {"name": "d3", "reuse_model_of": "sft", "set": {"train.lr": 1.0}}],
            {},
            r"'methods\[1\].set.\"train.lr\"': 'd3' reuses the model of 'sft'",
        ),
        ([SFT], {"paired_metric": "NDCG@50"}, r"'paired_metric'"),
        ([], {}, r"'methods': expected at least one"),
    ],
)
def test_config_errors_name_the_key(methods, top, message):
    with pytest.raises(ConfigError, match=message):
        _cfg(methods, **top)


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        ({"train.lrr": 0.1}, r"'methods\[2\].set.\"train.lrr\"': unknown key 'lrr'.*'lr'"),
        ({"train": {"lrr": 0.1}}, r"'methods\[2\].set.\"train.lrr\"'"),
        ({"train.lr.x": 1}, r"'methods\[2\].set.\"train.lr.x\"': 'train.lr' is not a table"),
        ({"train.lr": "fast"}, r"method 'bad' \(methods\[2\].set\).*'train.lr'"),
        ({"train.objective.name": "nope"}, r"unknown objective 'nope' of method 'bad'"),
    ],
)
def test_bad_method_overrides_name_the_method_key(sets, message):
    cfg = _cfg([SFT, {"name": "ok", "set": {"train.lr": 0.5}}, {"name": "bad", "set": sets}])
    with pytest.raises(ConfigError, match=message):
        resolve_methods(cfg, select_methods(cfg))


def test_a_typo_in_the_last_method_fails_before_anything_runs(setup, tmp_path):
    methods = METHODS + '[[methods]]\nname = "typo"\nset = { "train.objective.sft.nope" = 1 }\n'
    cfg = load_config(CompareConfig, write_config(setup, tmp_path / "c.toml", methods))
    with pytest.raises(ConfigError, match=r"methods\[3\].set.\"train.objective.sft.nope\""):
        run_comparison(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_config_error_is_one_line(setup, tmp_path, capsys):
    path = write_config(setup, tmp_path / "c.toml", top='reference = "sfft"')
    assert main(["compare", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "config key 'reference'" in err and "Traceback" not in err


def test_only_adds_the_reference_and_reused_models():
    cfg = _cfg(
        [
            SFT,
            {"name": "lr", "set": {"train.lr": 0.5}},
            {"name": "d3", "reuse_model_of": "lr"},
            {"name": "other", "set": {"train.lr": 0.2}},
        ]
    )
    assert select_methods(cfg) == ["sft", "lr", "other", "d3"]  # variants after what they reuse
    assert select_methods(cfg, ["d3"]) == ["sft", "lr", "d3"]
    with pytest.raises(ConfigError, match="--only: unknown method 'd33'"):
        select_methods(cfg, ["d33"])


def test_set_reaches_one_method_by_name(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(
        '[[methods]]\nname = "sft"\n[[methods]]\nname = "igd"\n'
        '[[methods]]\nname = "igd+dec"\nreuse_model_of = "igd"\n'
        '[[methods]]\nname = "igd.v2"\nset = { "train.lr" = 0.5 }\n'
    )
    cfg = load_compare_config(
        path,
        [
            "methods.igd.train.objective.igd.beta=0.3",
            "methods.igd+dec.decode.beam.length_penalty=0.0",
            "methods.igd.v2.train.epochs=3",  # the longest fitting name wins: 'igd.v2'
            "base.train.epochs=1",
        ],
    )
    sets = {m.name: m.set for m in cfg.methods}
    assert sets == {
        "sft": {},
        "igd": {"train.objective.igd.beta": 0.3},
        "igd+dec": {"decode.beam.length_penalty": 0.0},
        "igd.v2": {"train.lr": 0.5, "train.epochs": 3},
    }
    assert cfg.base.train.epochs == 1
    resolved = resolve_methods(cfg, select_methods(cfg))
    assert resolved["igd"].train.objective.igd.beta == 0.3
    assert resolved["igd.v2"].train.epochs == 3 and resolved["sft"].train.epochs == 1


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("methods.gdrt.train.lr=1", r"override 'methods.gdrt.train.lr=1'.*\(sft\)"),
        ("methods.sft=1", r"expected methods.NAME.KEY=VALUE"),
        ("methods.sft.train.lrr=1", r"'methods\[0\].set.\"train.lrr\"': unknown key 'lrr'"),
    ],
)
def test_set_for_an_unknown_method_or_key_names_it(tmp_path, override, message):
    path = tmp_path / "c.toml"
    path.write_text('[[methods]]\nname = "sft"\n')
    with pytest.raises(ConfigError, match=message):
        cfg = load_compare_config(path, [override])
        resolve_methods(cfg, select_methods(cfg))


def test_flatten_set_accepts_dotted_and_nested_keys():
    assert flatten_set({"train": {"lr": 1, "objective": {"name": "x"}}, "decode.beam.n": 2}) == {
        "train.lr": 1,
        "train.objective.name": "x",
        "decode.beam.n": 2,
    }


@pytest.mark.parametrize("path", COMPARE_CONFIGS, ids=[p.name for p in COMPARE_CONFIGS])
def test_every_shipped_compare_config_loads(path):
    """Methods whose objective is not registered yet must say so; all others must resolve."""
    from recbias.objectives import registered

    cfg = load_config(CompareConfig, path)
    assert cfg.reference in [m.name for m in cfg.methods]
    by_name = {m.name: m for m in cfg.methods}
    for spec in cfg.methods:
        names = select_methods(cfg, [spec.name])
        trained = by_name[spec.reuse_model_of] if spec.reuse_model_of else spec
        objective = flatten_set(trained.set).get("train.objective.name", "sft")
        if objective in registered():
            run = resolve_methods(cfg, names)[spec.name]
            assert run.train.objective.name == objective
        else:
            with pytest.raises(ConfigError, match=f"unknown objective '{objective}'"):
                resolve_methods(cfg, names)


def test_compare_methods_lists_every_method():
    cfg = load_config(CompareConfig, ROOT / "configs" / "compare_methods.toml")
    names = [m.name for m in cfg.methods]
    assert names == [
        "sft",
        "gdrt",
        "igd",
        "d3",
        "msl",
        "pos",
        "cft",
        "reweight",
        "igd+dec",
        "sprec",
    ]
    assert cfg.methods[-1].set["sprec.iterations"] == 3
    d3 = cfg.methods[names.index("d3")]
    assert d3.reuse_model_of == "sft" and d3.set["decode.beam.length_penalty"] == 0.0
    assert d3.set["decode.calibration"] == ["d3"] and d3.set["decode.d3.assistant"] == "sasrec"
    igd_dec = cfg.methods[names.index("igd+dec")]
    assert igd_dec.reuse_model_of == "igd" and igd_dec.set["decode.calibration"] == ["igd"]
    assert cfg.base.decode.beam.length_penalty != 0.0


def test_the_comparison_bias_table_matches_the_audit_metrics_on_its_predictions(compared):
    """End to end: every cell equals group_gap (pooled) and the concentration functions computed
    on the run's own predictions, histories and training popularity."""
    out, result = compared
    bias = result["comparison"]["bias"]
    assert list(bias["rows"]) == list(result["comparison"]["methods"])
    assert (out / "comparison_bias.csv").is_file() and "## Bias of the lists" in result["markdown"]
    assert json.loads((out / "comparison.json").read_text())["bias"] == bias
    run_dir = out / "seed-0" / "sft"
    cache = next((run_dir.parents[2] / "cache").rglob("card.json")).parent
    ds = PreparedDataset.load(cache)
    test = ds.split("test").set_index("sample_id")
    pop = ds.train_popularity()
    grouping = popularity_grouping(pop, bias["n_groups"])
    for name in ("sft", "sft_lr", "popularity"):
        stem = "popularity" if name == "popularity" else "llm"
        d = out / "seed-0" / ("sft" if name == "popularity" else name)
        pred = read_predictions_jsonl(d / "predictions" / f"{stem}.jsonl")
        items = pred.items[:, : bias["k"]]
        hist = [list(h) for h in test.loc[pred.sample_ids, "history"]]
        gap = group_gap(items, hist, grouping, bias["k"], "pooled")
        counts = exposure_counts(items, len(pop))
        want = {"Gini": gini(counts), "Coverage": coverage(counts),
                "Tail": tail_share(counts, pop, 0.2), "MGU": gap.mgu, "DGU": gap.dgu}  # fmt: skip
        for metric, value in want.items():
            assert bias["rows"][name]["cells"][metric]["mean"] == pytest.approx(value, abs=1e-12)


def test_bias_k_above_a_methods_beam_fails_before_anything_runs(setup, tmp_path):
    cfg = load_compare_config(
        setup["config"], ["bias.k=4", "methods.sft_lr.decode.beam.num_beams=3"]
    )
    with pytest.raises(
        ConfigError, match=r"bias\.k': 4 is above the lists of 'sft_lr' \(3 items\)"
    ):
        run_comparison(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_report_of_a_comparison_shows_its_bias_table(compared, tmp_path):
    out, _ = compared
    paths = build_report([out], tmp_path / "report")
    html = paths.html.read_text()
    assert "Bias of the lists" in html
    delta = next(p for p in paths.csv if p.name.endswith("bias-delta.csv"))
    rows = list(csv_module.reader(delta.open()))
    assert rows[0][:3] == ["method", "vs", "Δ Gini@5"]
    assert [r[0] for r in rows[1:]] == ["sft_lr", "sft_lp0", "popularity"]


# --- the table from run directories (plain numpy reference) ---


def _fake_run(run_dir: Path, items: np.ndarray, targets: np.ndarray, order: np.ndarray) -> None:
    samples = pd.DataFrame({"sample_id": order, "user": "u", "target": targets[order]})
    recs = Recommendations(items[order], np.zeros(items[order].shape), order)
    write_predictions_jsonl(run_dir / "predictions" / "llm.jsonl", samples, recs, TITLES)
    timing = {"train": 2.0, "recommend_llm": 1.0}
    (run_dir / "metrics.json").write_text(json.dumps({"timing": timing}))


def test_table_over_seeds_matches_numpy(tmp_path):
    rng = np.random.default_rng(1)
    n, ks = 40, [1, 5]
    targets = rng.integers(0, len(TITLES), n)
    runs, values = [], {}
    for name in ("ref", "new"):
        dirs, ndcg = [], []
        for seed in range(3):
            items = np.stack([rng.permutation(len(TITLES))[:5] for _ in range(n)])
            _fake_run(tmp_path / f"{seed}-{name}", items, targets, rng.permutation(n))
            dirs.append(tmp_path / f"{seed}-{name}")
            ndcg.append(per_sample_metrics(items, targets, ks)["NDCG@5"])
        runs.append(MethodRuns(name, dirs))
        values[name] = np.stack(ndcg)  # [seeds, n] in sample-id order
    table = build_comparison(runs, "ref", ks, "NDCG@5", n_boot=200)
    cell = table["methods"]["new"]["metrics"]["NDCG@5"]
    per_seed = values["new"].mean(axis=1)
    assert cell["per_seed"] == pytest.approx(per_seed)
    assert (cell["mean"], cell["std"]) == pytest.approx((per_seed.mean(), per_seed.std(ddof=1)))
    half = 4.302652729911275 * per_seed.std(ddof=1) / math.sqrt(3)  # t_{0.975, 2}
    assert cell["hi"] - cell["mean"] == pytest.approx(half)
    paired = table["methods"]["new"]["paired_vs_reference"]["NDCG@5"]
    diff = values["new"].mean(axis=0) - values["ref"].mean(axis=0)
    assert paired["diff"] == pytest.approx(diff.mean())
    assert paired["a_better"] == int((diff > 0).sum())
    assert table["methods"]["new"]["train_seconds"] == 2.0
    assert (
        comparison_csv(table)
        .splitlines()[0]
        .startswith("method,decoding,reuse_model_of,n_seeds,HR@1")
    )


def test_table_refuses_runs_on_different_samples(tmp_path):
    items, targets = np.zeros((4, 2), dtype=np.int64), np.arange(4)
    _fake_run(tmp_path / "a", items, targets, np.arange(4))
    _fake_run(tmp_path / "b", items[:3], targets[:3], np.arange(3))
    runs = [MethodRuns("a", [tmp_path / "a"]), MethodRuns("b", [tmp_path / "b"])]
    with pytest.raises(RecbiasError, match="sample ids differ"):
        build_comparison(runs, "a", [1])


# --- decoding groups: a decoding method is compared with the reference decoded the same way ---

DECODE_VARIANT = """
[[methods]]
name = "d3p"
reuse_model_of = "sft"
set = { "decode.beam.renormalize" = true, "decode.calibration" = ["d3"], "decode.d3.assistant" = "popularity", "decode.d3.guidance" = 0.5 }
"""
SAME_SETTINGS = "sft@renormalize=true"


@pytest.fixture(scope="module")
def grouped(compared, setup, tmp_path_factory) -> tuple[Path, dict]:
    out = _copy(compared[0], tmp_path_factory.mktemp("grouped"))
    path = write_config(setup, out.parent / "c.toml", METHODS + DECODE_VARIANT)
    return out, run_comparison(load_config(CompareConfig, path), out)


def test_a_decoding_variant_gets_the_reference_decoded_with_its_settings(grouped):
    out, result = grouped
    assert result["status"][f"seed-0/{SAME_SETTINGS}"] == "decoded"
    assert result["status"]["seed-0/d3p"] == "decoded"
    assert result["status"]["seed-0/sft"] == "skipped"  # nothing retrains
    added = out / "seed-0" / SAME_SETTINGS
    assert not (added / "model").exists() and not (added / "checkpoints").exists()
    recorded, sft = _resolved(added), _resolved(out / "seed-0" / "sft")
    assert recorded["decode"]["beam"]["renormalize"] is True
    recorded["decode"]["beam"]["renormalize"] = False
    assert {**recorded, "name": sft["name"]} == sft  # sft's config, decoded with d3p's settings
    table = result["comparison"]["methods"]
    assert list(table) == ["sft", "sft_lr", "sft_lp0", SAME_SETTINGS, "d3p", "popularity"]
    assert [table[n]["decoding"] for n in table] == [
        "", "", "length_penalty=0.0", "renormalize=true", "renormalize=true", "n/a",
    ]  # fmt: skip
    assert [table[n]["vs"] for n in table] == [None, "sft", "sft", "sft", SAME_SETTINGS, "sft"]
    md = result["markdown"]
    assert "| d3p (model of sft) | renormalize=true |" in md and "| sft | as sft |" in md


def test_the_same_settings_row_equals_an_independent_recommend(grouped, tmp_path):
    import dataclasses

    from recbias import llmrec

    out, result = grouped
    sft_dir = out / "seed-0" / "sft"
    sft = llmrec.read_run_config(sft_dir)
    beam = dataclasses.replace(sft.decode.beam, renormalize=True)
    cfg = dataclasses.replace(sft, decode=dataclasses.replace(sft.decode, beam=beam))
    ds = llmrec.load_data(cfg)
    lm = llmrec.load_lm(cfg, ds, weights=sft_dir / "model")
    lm.model.eval()
    samples, recs, _ = llmrec.recommend(cfg, ds, lm, tmp_path)
    mine = (tmp_path / "predictions" / "llm.jsonl").read_text()
    assert mine == (out / "seed-0" / SAME_SETTINGS / "predictions" / "llm.jsonl").read_text()
    metrics = llmrec.evaluate(cfg, samples, recs)["methods"]["llm"]
    row = result["comparison"]["methods"][SAME_SETTINGS]["metrics"]
    for name in ("HR@1", "NDCG@3", "NDCG@5"):
        assert row[name]["mean"] == pytest.approx(metrics[name]["mean"])


def _per_sample(run_dir: Path, metric: str) -> np.ndarray:
    frame = pd.read_json(run_dir / "predictions" / "llm.jsonl", lines=True).sort_values("sample_id")
    items = np.array([list(i) + [-1] * (5 - len(i)) for i in frame["items"]])
    return per_sample_metrics(items, frame["target"].to_numpy(), [1, 3, 5])[metric]


def test_deltas_are_computed_within_the_decoding_group(grouped):
    out, result = grouped
    table = result["comparison"]["methods"]
    seed = out / "seed-0"
    within = _per_sample(seed / "d3p", "NDCG@5") - _per_sample(seed / SAME_SETTINGS, "NDCG@5")
    assert table["d3p"]["paired_vs_reference"]["NDCG@5"]["diff"] == pytest.approx(within.mean())
    alone = _per_sample(seed / SAME_SETTINGS, "NDCG@5") - _per_sample(seed / "sft", "NDCG@5")
    paired = table[SAME_SETTINGS]["paired_vs_reference"]["NDCG@5"]
    assert paired["diff"] == pytest.approx(alone.mean())


def test_a_method_that_is_the_reference_with_other_settings_heads_its_group():
    from recbias.compare.run import method_groups

    cfg = _cfg(
        [
            SFT,
            {"name": "lp0", "reuse_model_of": "sft", "set": {"decode.beam.length_penalty": 0.0}},
            {"name": "d3", "reuse_model_of": "sft", "set": {
                "decode.beam.length_penalty": 0.0, "decode.calibration": ["d3"],
                "decode.d3.assistant": "popularity"}},
            {"name": "bs", "reuse_model_of": "sft", "set": {"decode.beam.batch_size": 3}},
        ],
        base={"decode": {"beam": {"length_penalty": 1.0}}},
    )  # fmt: skip
    groups = method_groups(cfg, resolve_methods(cfg, select_methods(cfg)))
    assert groups.extra == {}  # lp0 is sft decoded with d3's settings; batch size is speed only
    assert groups.compare_to == {"sft": None, "lp0": "sft", "d3": "lp0", "bs": "sft"}
    assert groups.order() == ["sft", "bs", "lp0", "d3"]


def test_compare_methods_groups_d3_and_igd_decoding_under_length_penalty_zero():
    from recbias.compare.run import method_groups

    cfg = load_config(CompareConfig, ROOT / "configs" / "compare_methods.toml")
    resolved = resolve_methods(cfg, select_methods(cfg, ["d3", "igd+dec"]))
    groups = method_groups(cfg, resolved)
    row = "sft@length_penalty=0.0"
    assert list(groups.extra) == [row]
    run, source = groups.extra[row]
    assert source == "sft" and run.decode.beam.length_penalty == 0.0
    assert run.decode.calibration == [] and run.train == resolved["sft"].train
    assert groups.compare_to["d3"] == groups.compare_to["igd+dec"] == row
    assert groups.compare_to[row] == groups.compare_to["igd"] == "sft"
