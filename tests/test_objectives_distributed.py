"""Every training objective in 2 CPU processes (gloo) gives the one-process update.

GDRT's own cross-rank statistics are tested in test_gdrt_distributed.py; here each objective runs
under DDP (steps of 3, 3 and 2 micro-batches: ranks hold 2 and 1) and the ones with a second
forward pass or batch statistics also under FSDP2.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import dist_helpers as dh
import tiny
from recbias import distributed
from recbias.objectives import ObjectiveConfig, build_objective
from recbias.train.loop import TrainConfig, Trainer

SCENARIOS = [(name, "ddp") for name in ("igd", "msl", "pos", "cft", "reweight", "msl_gdrt")]
SCENARIOS += [(name, "fsdp") for name in ("cft", "msl", "igd")]


def _train(run_dir: Path, objective: str, parallel: str) -> dict:
    model, tok, samples, ctx = dh.objective_setup(16)
    obj = build_objective(ObjectiveConfig(name=objective))
    obj.setup(ctx)
    cfg = TrainConfig(epochs=1, lr=1e-2, warmup_steps=1, micro_batch_size=2, grad_accum=3,
                      max_grad_norm=0.5, parallel=parallel, share_prompt_prefix=False)  # fmt: skip
    trainer = Trainer(model, obj, cfg, run_dir, tok.pad_token_id, 0, "fp32")
    trainer.fit(samples, validate=None)
    return {"weights": dh.weights(trainer)}


def _scenarios(out: Path) -> None:
    for name, parallel in SCENARIOS:
        result = _train(out / f"{name}-{parallel}", name, parallel)
        if distributed.is_main():
            torch.save(result, out / f"{name}-{parallel}.pt")


@pytest.fixture(scope="module")
def two_procs(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("objectives_dist")
    dh.spawn(_scenarios, out)
    return out


@pytest.mark.parametrize(("name", "parallel"), SCENARIOS)
def test_two_processes_give_the_single_process_update(two_procs, tmp_path, name, parallel):
    want = _train(tmp_path / "one", name, "none")["weights"]
    got = torch.load(two_procs / f"{name}-{parallel}.pt", weights_only=True)["weights"]
    init = dh.weights(Trainer(tiny.tiny_llama(len(tiny.byte_level_tokenizer()), seed=1),
                              build_objective(ObjectiveConfig()), TrainConfig(), tmp_path / "i",
                              0, 0, "fp32"))  # fmt: skip
    assert any(not torch.equal(init[k], v) for k, v in want.items())  # it trained
    assert got.keys() == want.keys()
    for key, value in want.items():
        torch.testing.assert_close(got[key], value, rtol=1e-4, atol=1e-5, msg=key)
