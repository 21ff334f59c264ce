"""`recbias audit`: a tiny trained run (with epoch snapshots) audited end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import tiny
from recbias.audit import ANALYSES, AuditConfig, headline, run_audit
from recbias.audit.analyses import CachedRecommender
from recbias.cli import main
from recbias.config import load_config
from recbias.diagnostics.groups import popularity_grouping
from recbias.errors import ConfigError
from recbias.evaluation.predictions import read_predictions_jsonl
from recbias.llmrec import RunConfig, load_data
from recbias.metrics.concentration import exposure_counts, tail_share
from recbias.metrics.fairness import group_gap
from recbias.recs import Recommendations
from recbias.report import build_report
from recbias.report.sections import load_sections

TITLES = tiny.MOVIES_16
GENRES = ["Comedy", "Drama", "Action", "Sci-Fi"]
QUICK = [
    "max_samples=6",
    "ks=[3, 5]", "n_boot=20", "sensitivity.n_boot=20", "curves.max_prompts=6",
    "curves.token_samples=12", "sensitivity.k=5", "attribution.sample_chunk=8",
]  # fmt: skip
ROOT = Path(__file__).resolve().parents[1]


def _data(path: Path) -> Path:
    return tiny.write_table(path, TITLES, users=24, per_user=8, genres=GENRES)


def _config(root: Path, ckpt: Path, data: Path) -> Path:
    cfg = root / "exp.toml"
    cfg.write_text(f"""
name = "tiny"
output_dir = "{root / "runs"}"
threads = 1
[data]
cache_dir = "{root / "cache"}"
[data.source]
kind = "table"
interactions = "{data / "inter.csv"}"
items = "{data / "items.csv"}"
[data.source.columns]
genres = "genres"
[data.prepare]
kcore = 2
[model]
path = "{ckpt}"
dtype = "fp32"
[train]
epochs = 2
lr = 0.01
warmup_steps = 0
micro_batch_size = 8
grad_accum = 1
snapshot_epochs = true
[decode.beam]
num_beams = 5
[eval]
ks = [1, 5]
bootstrap = 20
""")
    return cfg


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_ckpt) -> Path:
    root = tmp_path_factory.mktemp("audit")
    cfg = _config(root, tiny_ckpt, _data(root / "data"))
    assert main(["run", str(cfg), "--run-dir", str(root / "run")]) == 0
    return root / "run"


@pytest.fixture(scope="module")
def audited(run_dir) -> Path:
    assert main(["audit", str(run_dir), *[a for s in QUICK for a in ("--set", s)]]) == 0
    return run_dir / "audit"


def _copy(run_dir: Path, dest: Path, without: tuple[str, ...] = ("audit",)) -> Path:
    shutil.copytree(run_dir, dest, ignore=lambda d, names: [n for n in names if n in without])
    return dest


def _audit(*args: str) -> int:
    return main(["audit", *[a for s in QUICK for a in ("--set", s)], *args])


# --------------------------------------------------------------------------- contents


def test_every_section_in_report_order_with_existing_figures(audited):
    meta, sections = load_sections(audited / "audit.json")
    keys = [s.key for s in sections]
    assert keys == ["audit_overview", "fairness_llm", "fairness_popularity", "concentration",
                    "attribution", "cooccurrence", "token_ig_llm", "training_curves_llm",
                    "sensitivity", "positional"]  # fmt: skip
    for sec in sections:
        for fig in sec.figures:
            assert (audited / fig.file).is_file() and fig.file.endswith(".png"), fig.file
    assert set(meta["timings_s"]) == set(ANALYSES)
    assert meta["config"]["max_samples"] == 6 and meta["versions"]["torch"]
    for name in ("attribution_base", "attribution_sft", "sensitivity", "positional_sft"):
        assert not pd.read_csv(audited / "data" / f"{name}.csv").empty


def test_fairness_matches_a_direct_computation(audited, run_dir):
    _, sections = load_sections(audited / "audit.json")
    gaps = {(g["grouping"], g["k"], g["mode"]): g
            for g in next(s for s in sections if s.key == "fairness_llm").data["gaps"]}  # fmt: skip
    assert {m for _, _, m in gaps} == {"pooled", "per_user"}
    assert {g for g, _, _ in gaps} == {"relevance", "genre", "popularity"}
    pred = read_predictions_jsonl(run_dir / "predictions" / "llm.jsonl")
    ds = load_data(load_config(RunConfig, run_dir / "config.toml"))
    test = ds.split("test")
    hist = test.set_index("sample_id").loc[pred.sample_ids, "history"].tolist()
    grouping = popularity_grouping(ds.train_popularity(), 5)
    want = group_gap(pred.items, hist, grouping, 5, "pooled")
    assert gaps[("popularity", 5, "pooled")]["mgu"] == pytest.approx(want.mgu)
    assert gaps[("popularity", 5, "pooled")]["dgu"] == pytest.approx(want.dgu)


def test_tail_share_counts_the_head_on_all_training_interactions(audited, run_dir):
    _, sections = load_sections(audited / "audit.json")
    conc = next(s for s in sections if s.key == "concentration").data["concentration"]
    pred = read_predictions_jsonl(run_dir / "predictions" / "llm.jsonl")
    ds = load_data(load_config(RunConfig, run_dir / "config.toml"))
    for cell in conc["llm"]:
        counts = exposure_counts(pred.items[:, : cell["k"]], len(ds.titles))
        want = tail_share(counts, ds.train_popularity(), 0.2)
        assert cell["tail_share"] == pytest.approx(want)


def test_training_curves_cover_base_and_every_epoch(audited):
    _, sections = load_sections(audited / "audit.json")
    data = next(s for s in sections if s.key == "training_curves_llm").data["training_curves"]
    assert data["labels"] == ["base", "epoch-1", "epoch-2"]
    shares = np.asarray(data["top1_share"])
    assert shares.shape[0] == 3 and np.allclose(shares.sum(axis=1), 1.0)
    assert np.isfinite(np.asarray(data["token_loss"], dtype=float)).any(axis=1).all()


def test_in_place_snapshot_loading_does_not_depend_on_order(audited, run_dir, tmp_path):
    out = tmp_path / "one"
    assert _audit(str(run_dir), "--only", "curves", "--out", str(out),
                  "--set", 'curves.checkpoints=["epoch-2"]') == 0  # fmt: skip
    one = load_sections(out / "audit.json")[1][1].data["training_curves"]
    full = next(s for s in load_sections(audited / "audit.json")[1]
                if s.key == "training_curves_llm").data["training_curves"]  # fmt: skip
    assert one["labels"] == ["epoch-2"]
    assert np.allclose(one["top1_share"][0], full["top1_share"][2])
    assert np.allclose(one["token_loss"][0], full["token_loss"][2], equal_nan=True)


def test_report_renders_the_audit(audited, run_dir, tmp_path):
    paths = build_report([run_dir], tmp_path / "report")
    html = paths.html.read_text()
    for title in ("Bias audit: headline numbers", "Context-bias attribution",
                  "Sensitivity to the user", "Context bias over training"):  # fmt: skip
        assert title in html


def test_headline_has_the_numbers_the_cli_prints(audited, capsys):
    _, sections = load_sections(audited / "audit.json")
    heads = dict(headline(sections))
    for key in ("MGU@10 (popularity, pooled)", "Gini@10", "coverage@10",
                "attribution task/history (sft)", "mean Jaccard, history swap",
                "mean Jaccard, rewording"):  # fmt: skip
        assert key.replace("@10", "@5") in heads, key


def test_no_snapshots_section_says_how_to_get_them(run_dir, tmp_path):
    run = _copy(run_dir, tmp_path / "run", ("audit", "epoch-1", "epoch-2"))
    assert _audit(str(run), "--only", "curves") == 0
    sec = load_sections(run / "audit" / "audit.json")[1][1]
    assert sec.key == "training_curves" and not sec.figures
    assert "train.snapshot_epochs = true" in sec.summary


def test_only_selects_analyses_and_prints_the_table(run_dir, tmp_path, capsys):
    out = tmp_path / "a"
    assert _audit(str(run_dir), "--only", "fairness,cooccurrence", "--out", str(out)) == 0
    meta, sections = load_sections(out / "audit.json")
    assert [s.key for s in sections] == ["audit_overview", "fairness_llm", "fairness_popularity",
                                         "concentration", "cooccurrence"]  # fmt: skip
    assert list(meta["timings_s"]) == ["fairness", "cooccurrence"]
    printed = capsys.readouterr()
    assert "MGU@5 (genre, pooled)" in printed.out and "audit.json" in printed.err


# --------------------------------------------------------------------------- bad input


def _rewrite(path: Path, edit) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps(edit(r)) + "\n" for r in rows))


def _fails(capsys, args: list[str], *needles: str) -> str:
    assert _audit(*args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err.replace("\n", ""), (needle, err)
    return err


def test_predictions_of_another_catalog_name_file_and_field(run_dir, tmp_path, capsys):
    run = _copy(run_dir, tmp_path / "run")
    _rewrite(
        run / "predictions" / "popularity.jsonl", lambda r: r | {"items": [99, *r["items"][1:]]}
    )
    _fails(capsys, [str(run), "--only", "fairness"], "popularity.jsonl", "'items'", "99")


def test_predictions_of_another_split_name_the_sample_id(run_dir, tmp_path, capsys):
    run = _copy(run_dir, tmp_path / "run")
    _rewrite(run / "predictions" / "llm.jsonl", lambda r: r | {"sample_id": r["sample_id"] + 10**6})
    _fails(capsys, [str(run), "--only", "fairness"], "llm.jsonl", "'sample_id'")


def test_k_larger_than_the_lists_names_k_and_the_length(run_dir, capsys, tmp_path):
    _fails(capsys, [str(run_dir), "--only", "fairness", "--set", "ks=[50]", "--out",
                    str(tmp_path / "x")], "K=50", "hold 5 items")  # fmt: skip
    assert not (tmp_path / "x").exists()


def test_missing_model_and_checkpoint_name_the_path(run_dir, tmp_path, capsys):
    run = _copy(run_dir, tmp_path / "run", ("audit", "model"))
    _fails(capsys, [str(run), "--only", "attribution"], "model/")
    _fails(capsys, [str(run_dir), "--only", "curves", "--out", str(tmp_path / "y"), "--set",
                    'curves.checkpoints=["epoch-9"]'], "checkpoints/epoch-9/weights.pt")  # fmt: skip


def test_not_a_run_and_unknown_analysis(tmp_path, run_dir, capsys):
    _fails(capsys, [str(tmp_path)], "not a recbias run directory", "config.toml")
    _fails(capsys, [str(run_dir), "--only", "fairness,vibes"], "vibes", "cooccurrence")


def test_failure_leaves_the_previous_audit_and_no_temp_dirs(run_dir, tmp_path, capsys):
    run = _copy(run_dir, tmp_path / "run", ())
    before = (run / "audit" / "audit.json").read_bytes()
    _fails(capsys, [str(run), "--only", "fairness", "--set", "ks=[50]"], "K=50")
    assert (run / "audit" / "audit.json").read_bytes() == before
    assert not [p for p in run.iterdir() if p.name.startswith(".audit")]


def test_out_refuses_a_directory_that_is_not_an_audit(run_dir, tmp_path, capsys):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    _fails(capsys, [str(run_dir), "--only", "cooccurrence", "--out", str(tmp_path / "notes")],
           "not a recbias audit")  # fmt: skip
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"


# --------------------------------------------------------------------------- config and units


def test_shipped_config_loads_and_bad_keys_are_named():
    cfg = load_config(AuditConfig, ROOT / "configs" / "audit.toml")
    assert cfg == AuditConfig()
    with pytest.raises(ConfigError, match=r"config key 'ks\[0\]'"):
        load_config(AuditConfig, None, ["ks=[0]"])
    with pytest.raises(ConfigError, match="curves.checkpoints"):
        load_config(AuditConfig, None, ['curves.checkpoints=["auto", "epoch-1"]'])
    with pytest.raises(ConfigError, match="unknown config key 'kk'"):
        load_config(AuditConfig, None, ["kk=1"])


def test_cached_recommender_decodes_each_input_once():
    calls = []

    class Rec:
        name = "r"

        def recommend(self, samples, k):
            calls.append(len(samples))
            ids = samples["sample_id"].to_numpy()
            return Recommendations(np.zeros((len(ids), k), int), np.zeros((len(ids), k)), ids)

    frame = pd.DataFrame({"sample_id": [1, 2], "history": [[1, 2], [3]]})
    rec = CachedRecommender(Rec())
    a, b = rec.recommend(frame, 3), rec.recommend(frame.copy(), 3)
    assert a is b and calls == [2]
    rec.recommend(frame.assign(history=[[2, 1], [3]]), 3)
    assert calls == [2, 2]


def test_run_audit_api_writes_to_out(run_dir, tmp_path):
    cfg = load_config(AuditConfig, None, [*QUICK, 'analyses=["cooccurrence"]'])
    out = run_audit(run_dir, cfg, tmp_path / "api")
    assert out == tmp_path / "api" and (out / "audit.json").is_file()
