"""D3's SASRec assistant is fitted once per run and reloaded by validation, the test decoding,
`recbias recommend` and the audit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from recbias.baselines.sasrec import SASRecConfig, SASRecRecommender
from recbias.cli import main
from recbias.data import PreparedDataset
from recbias.llmrec.assemble import SASREC_FILE, run_sasrec
from test_cli import write_config

D3 = [
    'decode.calibration=["d3"]',
    'decode.d3.assistant="sasrec"',
    "decode.d3.guidance=0.5",
    "baselines.sasrec.epochs=2",
    "baselines.sasrec.hidden=16",
    "baselines.sasrec.dtype=fp32",
    "train.epochs=1",
    "decode.beam.num_beams=4",
    "eval.ks=[1, 4]",
    "eval.bootstrap=20",
]


def _config(root: Path, ckpt: Path, data: Path) -> Path:
    return write_config(root, ckpt, data, "[finish]\nreport = false\n")


@pytest.fixture
def fits(monkeypatch) -> list[int]:
    """Counts SASRecRecommender.fit calls."""
    calls: list[int] = []
    real = SASRecRecommender.fit

    def counted(self, *args, **kwargs):
        calls.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(SASRecRecommender, "fit", counted)
    return calls


def _argv(*args: str) -> list[str]:
    return [*args, *[a for s in D3 for a in ("--set", s)]]


def test_a_d3_run_fits_its_assistant_once_and_reuses_it(tmp_path, tiny_ckpt, table_data, fits):
    cfg, run = _config(tmp_path, tiny_ckpt, table_data), tmp_path / "run"
    assert main(_argv("run", str(cfg), "--run-dir", str(run))) == 0
    assert len(fits) == 1  # validation after the epoch and the test decoding share one fit
    assert (run / SASREC_FILE).is_file()
    before = (run / "predictions" / "llm.jsonl").read_text()
    # recommend and the audit reload it
    assert main(_argv("recommend", str(cfg), "--run-dir", str(run))) == 0
    assert main(["audit", str(run), "--only", "sensitivity", "--set", "max_samples=4"]) == 0
    assert len(fits) == 1
    assert (run / "predictions" / "llm.jsonl").read_text() == before
    # without the saved assistant, recommend fits it again and decodes the same lists
    fresh = tmp_path / "fresh"
    shutil.copytree(run, fresh, ignore=lambda d, names: [SASREC_FILE, "audit"])
    (fresh / "predictions" / "llm.jsonl").unlink()
    assert main(_argv("recommend", str(cfg), "--run-dir", str(fresh))) == 0
    assert len(fits) == 2
    assert (fresh / "predictions" / "llm.jsonl").read_text() == before


def test_the_sasrec_baseline_is_the_same_fit_as_the_assistant(
    tmp_path, tiny_ckpt, table_data, fits
):
    cfg, run = _config(tmp_path, tiny_ckpt, table_data), tmp_path / "run"
    argv = _argv("run", str(cfg), "--run-dir", str(run), "--set", 'eval.baselines=["sasrec"]')
    assert main(argv) == 0
    assert len(fits) == 1  # validation, test decoding and the baseline share one fit
    assert (run / "predictions" / "sasrec.jsonl").is_file()
    # the baseline's lists are those of the saved model
    ds = PreparedDataset.load(next((tmp_path / "run").parent.rglob("card.json")).parent)
    saved = SASRecRecommender(SASRecConfig(hidden=16, epochs=2, dtype="fp32"))
    saved.restore(torch.load(run / SASREC_FILE, weights_only=True))
    lists = [json.loads(line)["items"] for line in (run / "predictions" / "sasrec.jsonl").open()]
    test = ds.split("test")
    want = saved.recommend(test, len(lists[0])).items
    np.testing.assert_array_equal(np.array(lists), want)


def _train(table_data, tmp_path) -> tuple[PreparedDataset, SASRecConfig]:
    from recbias.data import DataConfig, PrepareConfig, SourceConfig, prepare_dataset

    source = SourceConfig(
        kind="table",
        interactions=str(table_data / "inter.csv"),
        items=str(table_data / "items.csv"),
    )
    cfg = DataConfig(source, PrepareConfig(kcore=2), cache_dir=str(tmp_path / "cache"))
    ds = PreparedDataset.load(prepare_dataset(cfg))
    return ds, SASRecConfig(hidden=16, epochs=2, dtype="fp32")


def test_reloaded_assistant_scores_like_the_fitted_one(tmp_path, table_data, fits):
    ds, cfg = _train(table_data, tmp_path)
    train, n = ds.split("train"), len(ds.titles)
    fitted = run_sasrec(cfg, train, n, tmp_path)
    reloaded = run_sasrec(cfg, train, n, tmp_path)
    assert len(fits) == 1
    test = ds.split("test")
    np.testing.assert_array_equal(reloaded.scores(test), fitted.scores(test))
    plain = SASRecRecommender(cfg).fit(train, n)  # no run directory: the usual fit
    np.testing.assert_array_equal(plain.scores(test), fitted.scores(test))


def test_another_config_or_training_data_refits(tmp_path, table_data, fits):
    ds, cfg = _train(table_data, tmp_path)
    train, n = ds.split("train"), len(ds.titles)
    run_sasrec(cfg, train, n, tmp_path)
    run_sasrec(SASRecConfig(hidden=16, epochs=3, dtype="fp32"), train, n, tmp_path)
    assert len(fits) == 2
    run_sasrec(SASRecConfig(hidden=16, epochs=3, dtype="fp32"), train.iloc[1:], n, tmp_path)
    assert len(fits) == 3
    saved = torch.load(tmp_path / SASREC_FILE, weights_only=True)
    assert saved["config"]["epochs"] == 3 and saved["n_items"] == n


def _fit_on_rank(cache: Path, out: Path) -> None:
    """One rank of the two-process test: run_sasrec, then this rank's fit count and scores."""
    from recbias import distributed

    calls = []
    fit = SASRecRecommender.fit
    SASRecRecommender.fit = lambda self, *a: calls.append(1) or fit(self, *a)  # type: ignore
    ds = PreparedDataset.load(cache)
    model = run_sasrec(SASRecConfig(hidden=16, epochs=2, dtype="fp32"), ds.split("train"),
                       len(ds.titles), out / "run")  # fmt: skip
    rank = distributed.rank_and_world()[0]
    torch.save({"fits": len(calls), "scores": model.scores(ds.split("test"))}, out / f"{rank}.pt")


def test_under_two_processes_rank_0_fits_and_every_rank_scores_with_its_model(tmp_path, table_data):
    import functools

    import dist_helpers as dh

    ds, cfg = _train(table_data, tmp_path)
    cache = next((tmp_path / "cache").rglob("card.json")).parent
    dh.spawn(functools.partial(_fit_on_rank, cache), tmp_path / "out")
    ranks = [torch.load(tmp_path / "out" / f"{r}.pt", weights_only=False) for r in (0, 1)]
    assert [r["fits"] for r in ranks] == [1, 0]
    single = SASRecRecommender(cfg).fit(ds.split("train"), len(ds.titles))
    for r in ranks:
        np.testing.assert_array_equal(r["scores"], single.scores(ds.split("test")))
    assert (tmp_path / "out" / "run" / SASREC_FILE).is_file()
