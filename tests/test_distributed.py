"""DDP and FSDP2 with 2 CPU processes (gloo) give the single-process update, and resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import dist_helpers as dh
from recbias import distributed
from recbias.errors import ConfigError

# (name, train() keywords); every scenario runs 2 epochs of 3 steps with 3, 3 and 1 micro-batches.
SCENARIOS = {
    "ddp": {"parallel": "ddp"},
    "ddp_one_micro_batch": {"parallel": "ddp", "mbs": 7, "accum": 1},
    "fsdp": {"parallel": "fsdp", "share_prompt_prefix": False},
    "lora_ddp": {"parallel": "ddp", "lora": True},
    "lora_fsdp": {"parallel": "fsdp", "lora": True, "share_prompt_prefix": False},
    # lengths 164-190: passes of 2 rows up to 180 tokens, single rows above (uneven per rank)
    "ddp_token_budget": {"parallel": "ddp", "micro_batch_tokens": 360},
    "fsdp_token_budget": {
        "parallel": "fsdp",
        "micro_batch_tokens": 360,
        "share_prompt_prefix": False,
    },
}
RESUMED = ("ddp", "fsdp")


def _scenarios(out: Path) -> None:
    for name, kw in SCENARIOS.items():
        trainer = dh.train(out / name, every=2, **kw)
        kind = type(trainer.forward).__name__
        state = dh.weights(trainer)
        if distributed.is_main():
            torch.save({"weights": state, "wrapper": kind}, out / f"{name}.pt")
    for name in RESUMED:
        kw = SCENARIOS[name]
        dh.train(out / f"{name}_killed", every=2, stop_after_steps=3, **kw)
        trainer = dh.train(out / f"{name}_killed", every=2, resume=True, **kw)
        state = dh.weights(trainer)
        if distributed.is_main():
            torch.save({"weights": state, "step": trainer.state.step}, out / f"{name}_resumed.pt")


def _validation(out: Path) -> None:
    for parallel in ("ddp", "fsdp"):
        result = dh.train_and_validate(out / f"valid-{parallel}", parallel)
        torch.save(result, out / f"valid-{parallel}-rank{distributed.rank_and_world()[0]}.pt")


def _synced(out: Path) -> None:
    """Rank 1 starts from zeros, as under accelerate's cpu-RAM-efficient FSDP loading."""
    import tiny

    model = tiny.tiny_llama(300, seed=4)
    rank = distributed.rank_and_world()[0]
    if rank == 1:
        with torch.no_grad():
            for p in model.parameters():
                p.zero_()
    distributed.sync_from_rank0(model)
    torch.save(model.state_dict(), out / f"synced-rank{rank}.pt")


def _all(out: Path) -> None:
    _scenarios(out)
    _validation(out)
    _synced(out)


@pytest.fixture(scope="module")
def two_procs(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    dh.spawn(_all, out)
    return out


def _assert_same(got: dict, want: dict, rtol: float, atol: float) -> None:
    assert got.keys() == want.keys()
    for name, value in want.items():
        torch.testing.assert_close(
            got[name], value, rtol=rtol, atol=atol, msg=lambda m, n=name: f"{n}: {m}"
        )


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_two_processes_give_the_single_process_update(two_procs, tmp_path, name):
    kw = {k: v for k, v in SCENARIOS[name].items() if k != "parallel"}
    single = dh.weights(dh.train(tmp_path, **kw))
    got = torch.load(two_procs / f"{name}.pt", weights_only=True)
    want = {"ddp": "DistributedDataParallel", "fsdp": "FSDPTrainForward"}
    assert got["wrapper"] == want[SCENARIOS[name]["parallel"]]
    _assert_same(got["weights"], single, rtol=1e-5, atol=2e-6)  # fp32 summation order
    init = dh.weights(dh.train(tmp_path / "init", epochs=0, **kw))
    assert all(not torch.equal(init[k], v) for k, v in single.items() if "lora_A" not in k)


@pytest.mark.parametrize("name", RESUMED)
def test_a_killed_two_process_run_resumes_to_the_same_weights(two_procs, name):
    full = torch.load(two_procs / f"{name}.pt", weights_only=True)["weights"]
    resumed = torch.load(two_procs / f"{name}_resumed.pt", weights_only=True)
    assert resumed["step"] == 6
    _assert_same(resumed["weights"], full, rtol=0, atol=0)


def test_fsdp_checkpoint_resumes_in_one_process(two_procs, tmp_path):
    """Checkpoints are consolidated: a 2-process FSDP checkpoint resumes in one process."""
    import shutil

    shutil.copytree(two_procs / "fsdp_killed" / "checkpoints", tmp_path / "checkpoints")
    kw = {k: v for k, v in SCENARIOS["fsdp"].items() if k != "parallel"}
    state = (tmp_path / "checkpoints" / "last" / "state.json").read_text()
    assert '"step": 6' in state  # the resumed run's last checkpoint: nothing left to train
    trainer = dh.train(tmp_path, resume=True, **kw)
    full = torch.load(two_procs / "fsdp.pt", weights_only=True)["weights"]
    _assert_same(dh.weights(trainer), full, rtol=0, atol=0)


def test_every_rank_gets_rank_0s_weights(two_procs):
    import tiny

    want = tiny.tiny_llama(300, seed=4).state_dict()
    for rank in (0, 1):
        got = torch.load(two_procs / f"synced-rank{rank}.pt", weights_only=True)
        _assert_same(got, want, rtol=0, atol=0)


def test_ddp_without_a_launcher_is_a_clear_error():
    with pytest.raises(ConfigError, match="train.parallel.*needs a launcher"):
        distributed.resolve_parallel("ddp")
    assert distributed.resolve_parallel("auto") == "none"


def test_parallel_mode_follows_the_launch(monkeypatch):
    monkeypatch.setattr(distributed, "initialized", lambda: True)
    monkeypatch.setattr(distributed, "rank_and_world", lambda: (0, 2))
    assert distributed.resolve_parallel("auto") == "ddp"
    with pytest.raises(ConfigError, match="'none' with 2 processes would train 2 unsync"):
        distributed.resolve_parallel("none")
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # accelerate launch --use_fsdp
    assert distributed.resolve_parallel("auto") == "fsdp"
    assert distributed.resolve_parallel("fsdp") == "fsdp"
    with pytest.raises(ConfigError, match="train.parallel.*'ddp', but accelerate.*--use_fsdp"):
        distributed.resolve_parallel("ddp")


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_sharded_decoding_and_validation_match_one_process(two_procs, tmp_path, parallel):
    ranks = [torch.load(two_procs / f"valid-{parallel}-rank{r}.pt") for r in (0, 1)]
    assert ranks[0] == ranks[1]  # every rank gathers the same lists and computes the same metric
    single = dh.train_and_validate(tmp_path, "none")
    before, after = ranks[0]["decoded"]
    assert before == single["decoded"][0]  # same weights: identical items and scores
    assert after[0] == single["decoded"][1][0]  # trained: same items (scores to fp32 rounding)
    np.testing.assert_allclose(after[1], single["decoded"][1][1], rtol=1e-5)
    np.testing.assert_allclose(ranks[0]["val"], single["val"], rtol=1e-6)
