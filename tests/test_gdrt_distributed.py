"""GDRT in 2 CPU processes (gloo): Q comes from both ranks' micro-batches of a step.

Default ``weights_from = "batch"`` with accumulation: each rank runs a no-grad pass over its other
micro-batches and the per-group sums are added across ranks, so training equals one process.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import dist_helpers as dh
from recbias import distributed
from recbias.objectives.gdrt import GDRTConfig, GDRTObjective
from recbias.train.loop import TrainConfig, Trainer

# 16 samples in micro-batches of 2: accum 4 = 2 steps of 4 (2 per rank); accum 3 = steps of
# 3, 3 and 2 micro-batches (ranks hold 2 and 1: FSDP pads the no-grad pass with a dummy forward).
SCENARIOS = {
    "ddp_accum4": {"parallel": "ddp", "accum": 4},
    "ddp_accum3": {"parallel": "ddp", "accum": 3},
    "fsdp_accum3": {"parallel": "fsdp", "accum": 3},
}


def _train(run_dir: Path, parallel: str, accum: int) -> dict:
    model, tok, samples, ctx = dh.objective_setup(16)
    obj = GDRTObjective(GDRTConfig(groups=3, tau=0.3))
    obj.setup(ctx)
    cfg = TrainConfig(epochs=1, lr=1e-2, warmup_steps=1, micro_batch_size=2, grad_accum=accum,
                      max_grad_norm=0.5, parallel=parallel, share_prompt_prefix=False)  # fmt: skip
    trainer = Trainer(model, obj, cfg, run_dir, tok.pad_token_id, 0, "fp32")
    trainer.fit(samples, validate=None)
    return {"weights": dh.weights(trainer), "stats": obj.stats()}


def _scenarios(out: Path) -> None:
    for name, kw in SCENARIOS.items():
        result = _train(out / name, **kw)
        if distributed.is_main():
            torch.save(result, out / f"{name}.pt")


@pytest.fixture(scope="module")
def two_procs(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gdrt_dist")
    dh.spawn(_scenarios, out)
    return out


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_two_processes_give_the_single_process_gdrt_update(two_procs, tmp_path, name):
    kw = dict(SCENARIOS[name], parallel="none")
    want = _train(tmp_path / "one", **kw)
    got = torch.load(two_procs / f"{name}.pt")
    # the last step's Q and group losses cover both ranks' micro-batches
    for key, value in want["stats"].items():
        torch.testing.assert_close(got["stats"][key], value, rtol=1e-4, atol=1e-6, msg=key)
    assert got["stats"]["gdrt_group_tokens"].sum() > 0
    for key, value in want["weights"].items():
        torch.testing.assert_close(got["weights"][key], value, rtol=1e-4, atol=1e-5, msg=key)
