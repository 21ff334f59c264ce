"""`recbias compare` writes the table after every finished method, so a time-out keeps what
finished."""

from __future__ import annotations

import json
import tomllib

import pytest

import test_compare
from recbias import compare
from recbias.compare import CompareConfig, run_comparison
from recbias.config import load_config
from recbias.hardware import resolve_dtype

setup = test_compare.setup  # the tiny checkpoint, CSV data and 3-method config of test_compare


class TimeOut(Exception):
    pass


def test_a_time_out_keeps_the_table_of_the_finished_methods(setup, tmp_path, monkeypatch):
    out = tmp_path / "cmp"
    real = compare.run_method
    seen: list[str] = []

    def run_until_the_third(cfg, run_dir, source, reporter=None):
        if len(seen) == 2:
            # the table already holds the two methods that finished
            table = json.loads((out / "comparison.json").read_text())
            assert list(table["methods"]) == ["sft", "sft_lr", "popularity"]
            assert table["complete"] is False
            assert "| sft_lr |" in (out / "comparison.md").read_text()
            raise TimeOut
        seen.append(run_dir.name)
        return real(cfg, run_dir, source, reporter)

    monkeypatch.setattr(compare, "run_method", run_until_the_third)
    # dtype = "auto": the runs record the resolved dtype, and the rerun must still match them
    path = tmp_path / "auto.toml"
    path.write_text(setup["config"].read_text().replace('dtype = "fp32"', 'dtype = "auto"'))
    cfg = load_config(CompareConfig, path)
    with pytest.raises(TimeOut):
        run_comparison(cfg, out)
    assert seen == ["sft", "sft_lr"]
    monkeypatch.setattr(compare, "run_method", real)
    result = run_comparison(cfg, out)  # the rerun finishes the last method
    assert result["status"]["seed-0/sft"] == "skipped"
    assert result["status"]["seed-0/sft_lp0"] == "decoded"
    final = json.loads((out / "comparison.json").read_text())
    assert list(final["methods"]) == ["sft", "sft_lr", "sft_lp0", "popularity"]
    assert final["complete"] is True
    recorded = tomllib.loads((out / "seed-0" / "sft" / "config.toml").read_text())
    assert recorded["model"]["dtype"] == resolve_dtype("auto", "cpu")


def test_partial_table_needs_the_reference(setup, tmp_path):
    cfg = load_config(CompareConfig, setup["config"])
    with pytest.raises(compare.DataError, match="reference method 'sft' has not finished"):
        compare.write_table(cfg, tmp_path, ["sft"], [0])
