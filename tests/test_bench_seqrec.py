"""bench/bench_seqrec.py's epoch selections and its multi-seed summary, on hand-made curves."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).parent.parent
_spec = importlib.util.spec_from_file_location("bench_seqrec", ROOT / "bench" / "bench_seqrec.py")
assert _spec is not None and _spec.loader is not None
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def point(valid: float, users: list[str], ndcg: list[float]) -> dict:
    """One epoch's evaluation as the bench records it (the same users on valid and test)."""
    return {
        "valid": {"NDCG@10": valid, "Recall@10": 2 * valid},
        "valid_users": users,
        "valid_ndcg": [valid] * len(users),
        "test": {"NDCG@10": float(np.mean(ndcg)), "Recall@10": 0.5},
        "test_users": users,
        "test_ndcg": ndcg,
    }


CURVE = [
    point(0.10, ["a", "b"], [0.0, 0.2]),
    point(0.30, ["b", "a"], [0.4, 0.0]),  # best valid; users listed in another order
    point(0.20, ["a", "b"], [1.0, 0.0]),
]


def test_last_and_best_pick_single_epochs() -> None:
    assert bench.select(CURVE, "last", 2) == (CURVE[2], "last3")
    assert bench.select(CURVE, "best", 2) == (CURVE[1], "best2")


def test_tail_averages_each_user_over_the_last_epochs() -> None:
    tail, at = bench.select(CURVE, "tail", 2)
    assert at == "2-3"
    assert tail["test_users"] == ["b", "a"]  # the first averaged epoch's order
    # user b: (0.4 + 0.0) / 2, user a: (0.0 + 1.0) / 2
    assert tail["test_ndcg"] == pytest.approx([0.2, 0.5])
    assert tail["test"]["NDCG@10"] == pytest.approx((0.2 + 0.5) / 2)
    assert tail["valid"]["NDCG@10"] == pytest.approx(0.25)
    assert tail["valid"]["Recall@10"] == pytest.approx(0.5)
    whole, _ = bench.select(CURVE, "tail", 3)
    assert whole["test_users"] == ["a", "b"]
    assert whole["test_ndcg"] == pytest.approx([(0.0 + 0.0 + 1.0) / 3, (0.2 + 0.4 + 0.0) / 3])


def test_tail_longer_than_the_run_is_refused() -> None:
    with pytest.raises(SystemExit, match="--tail 4"):
        bench.select(CURVE, "tail", 4)


def test_summary_over_seeds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    users = [str(u) for u in range(40)]
    rng = np.random.default_rng(0)
    paths = []
    for seed in (1, 2):
        runs = {}
        for impl, shift in (("recbias", 0.1), ("recbole", 0.0)):
            curve = [point(0.1 * e, users, list(rng.uniform(0, 0.5, 40) + shift)) for e in (1, 2)]
            runs[impl] = {"epoch_seconds": [1.0, 1.0], "curve": curve}
        path = tmp_path / f"s{seed}.json"
        path.write_text(json.dumps({"epochs": 2, "dtype": "bf16", "shared_prefix": False,
                                    "sasrec_norm": "pre", "seed": seed, "gru4rec": runs}))  # fmt: skip
        paths.append(path)
    bench.summarise_seeds(bench.load_seed_results(paths), tail=2)
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "per-user Δ" in line]
    assert [line.split()[0] for line in lines] == ["last", "best", "tail"]
    for line in lines:  # ours is 0.1 higher for every user by construction
        assert float(line.split(":")[1].split()[0]) > 0.05


def test_seed_files_of_other_settings_are_refused(tmp_path: Path) -> None:
    base = {"epochs": 2, "dtype": "bf16", "shared_prefix": False, "sasrec_norm": "pre"}
    (tmp_path / "a.json").write_text(json.dumps({**base, "seed": 1, "gru4rec": {}}))
    (tmp_path / "b.json").write_text(json.dumps({**base, "epochs": 3, "seed": 2, "gru4rec": {}}))
    with pytest.raises(SystemExit, match="b.json: settings"):
        bench.load_seed_results([tmp_path / "a.json", tmp_path / "b.json"])


def test_epoch_wobble_is_the_std_of_the_last_epochs() -> None:
    # test NDCG@10 of CURVE: 0.1, 0.2, 0.5
    assert bench.epoch_wobble(CURVE, 2) == pytest.approx(np.std([0.2, 0.5], ddof=1))
    assert bench.epoch_wobble(CURVE, 3) == pytest.approx(np.std([0.1, 0.2, 0.5], ddof=1))
    assert bench.epoch_wobble(CURVE, 1) == 0.0


def test_a_tail_longer_than_the_epochs_is_refused_before_training() -> None:
    import subprocess
    import sys

    args = [sys.executable, str(ROOT / "bench" / "bench_seqrec.py"), "--epochs", "3", "--tail", "5"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--tail 5: must be between 1 and --epochs (3)" in done.stderr
    assert "Traceback" not in done.stderr
