"""eval.ks beyond the catalog (always) or the list length (policy 'error') fails before training."""

from __future__ import annotations

import pytest

from recbias.cli import main
from recbias.errors import ConfigError
from recbias.evaluation.cutoffs import check_cutoffs
from test_cli import write_config


def test_k_beyond_the_catalog_is_an_error():
    with pytest.raises(ConfigError, match=r"'eval.ks': K = 50 exceeds the catalog of 40 items"):
        check_cutoffs([5, 50], list_length=10, n_items=40, policy="repeat")


def test_k_beyond_the_list_follows_the_policy():
    check_cutoffs([5, 20], list_length=10, n_items=40, policy="repeat")
    with pytest.raises(ConfigError, match=r"K = 20 exceeds the 10 items .*ks_beyond_list"):
        check_cutoffs([5, 20], list_length=10, n_items=40, policy="error")
    check_cutoffs([5, 10], list_length=10, n_items=40, policy="error")


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["eval.ks=[1,100000]"], "exceeds the catalog"),
        (["eval.ks=[1,10]", "eval.ks_beyond_list=error"], "exceeds the 5 items"),
    ],
)
def test_run_stops_before_training(tmp_path, tiny_ckpt, table_data, capsys, overrides, fragment):
    cfg = write_config(tmp_path, tiny_ckpt, table_data)
    run = tmp_path / "run"
    args = ["run", str(cfg), "--run-dir", str(run)]
    assert main([*args, *(a for o in overrides for a in ("--set", o))]) == 2
    assert fragment in capsys.readouterr().err
    assert not (run / "train_log.jsonl").exists() and not (run / "model").exists()
