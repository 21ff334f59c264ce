"""A run that failed or was killed is marked unfinished; report/evaluate/compare refuse it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recbias import pipeline
from recbias.cli import main
from recbias.config import load_config
from recbias.errors import DataError
from recbias.experiment import RunConfig
from recbias.report.collect import check_run_dir
from recbias.run_marker import UNFINISHED, mark_unfinished, require_finished, unfinished_dirs
from test_cli import write_config


def test_killed_run_keeps_the_marker_and_report_and_evaluate_refuse_it(
    tmp_path, tiny_ckpt, table_data, monkeypatch, capsys
):
    cfg = load_config(RunConfig, write_config(tmp_path, tiny_ckpt, table_data))
    run = tmp_path / "run"
    run.mkdir()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "load_lm", killed)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run_experiment(cfg, run)
    assert sorted(p.name for p in run.iterdir()) == [UNFINISHED, "config.toml", "environment.json"]
    assert main(["report", str(run), "--out", str(tmp_path / "rep")]) == 2
    assert "unfinished run" in capsys.readouterr().err
    assert not (tmp_path / "rep").exists()
    (run / "predictions").mkdir()
    row = {"sample_id": 0, "target": 1, "items": [1, 2], "scores": [0.5, 0.1]}
    (run / "predictions" / "llm.jsonl").write_text(json.dumps(row) + "\n")
    assert main(["evaluate", str(run / "predictions" / "llm.jsonl"), "--ks", "1"]) == 2
    assert "unfinished run" in capsys.readouterr().err


def test_finished_run_has_no_marker(tmp_path, tiny_ckpt, table_data):
    cfg = write_config(tmp_path, tiny_ckpt, table_data, extra="")
    run = tmp_path / "run"
    assert main(["run", str(cfg), "--run-dir", str(run), "--set", "train.epochs=1"]) == 0
    assert (run / "metrics.json").is_file() and not (run / UNFINISHED).exists()
    check_run_dir(run)  # accepted


def test_comparison_members_are_checked(tmp_path):
    member = tmp_path / "cmp" / "seed-1" / "gdrt"
    member.mkdir(parents=True)
    (tmp_path / "cmp" / "comparison.json").write_text("{}")
    mark_unfinished(member)
    assert unfinished_dirs(tmp_path / "cmp") == [member]
    with pytest.raises(DataError, match=r"seed-1/gdrt: unfinished run"):
        require_finished(tmp_path / "cmp")
    with pytest.raises(DataError, match="unfinished run"):
        check_run_dir(tmp_path / "cmp")


def test_compare_reruns_a_member_whose_metrics_exist_but_is_unfinished(tmp_path, monkeypatch):
    from recbias import compare

    run = tmp_path / "sft"
    run.mkdir()
    (run / "metrics.json").write_text("{}")
    mark_unfinished(run)
    calls = []
    monkeypatch.setattr(compare, "_check_recorded", lambda cfg, d: None)
    monkeypatch.setattr(
        compare.pipeline, "run_experiment", lambda cfg, d, resume, reporter: calls.append(d)
    )
    assert compare.run_method(RunConfig(), run, None) == "trained"
    assert calls == [run]
    (run / UNFINISHED).unlink()
    assert compare.run_method(RunConfig(), run, None) == "skipped"


def test_marker_text_says_what_happened(tmp_path):
    mark_unfinished(tmp_path, "seqrec")
    text = (tmp_path / UNFINISHED).read_text()
    assert text.startswith("recbias seqrec started ") and "not finished" in text
    assert isinstance(Path(tmp_path / UNFINISHED).stat().st_size, int)
