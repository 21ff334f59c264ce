"""PrefixMem under DDP and FSDP2 (2 CPU processes, gloo): the one-process update, and resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import dist_helpers as dh
from prefixmem_helpers import (
    loud_config,
    sid_model,
    sid_samples,
    vocab_tensors,
)
from recbias import distributed
from recbias.sidllm.prefixmem_attach import attach_prefixmem

MODES = {"ddp": {"parallel": "ddp"}, "fsdp": {"parallel": "fsdp", "share_prompt_prefix": False}}


def _train(run_dir: Path, **kw):
    """2 epochs of 2 steps, each of 2 micro-batches of 2 samples; clipping on."""
    from recbias.objectives import ObjectiveConfig, build_objective
    from recbias.train.loop import TrainConfig, Trainer

    model = sid_model(seed=1)
    attach_prefixmem(model, *vocab_tensors(), loud_config(out_init_std=0.0, lr_multiplier=3.0))
    fit = {k: kw.pop(k) for k in ("resume", "stop_after_steps") if k in kw}
    cfg = TrainConfig(epochs=2, lr=1e-2, warmup_steps=0, micro_batch_size=2, grad_accum=2,
                      max_grad_norm=0.5, checkpoint_every=1, **kw)  # fmt: skip
    trainer = Trainer(model, build_objective(ObjectiveConfig()), cfg, run_dir, 0, 0, "fp32")
    trainer.fit(sid_samples(), validate=None, **fit)
    return trainer


def _all(out: Path) -> None:
    for name, kw in MODES.items():
        full = dh.weights(_train(out / name, **kw))
        _train(out / f"{name}_killed", stop_after_steps=3, **kw)
        resumed = _train(out / f"{name}_killed", resume=True, **kw)
        state = dh.weights(resumed)
        if distributed.is_main():
            torch.save({"full": full, "resumed": state, "step": resumed.state.step},
                       out / f"{name}.pt")  # fmt: skip


@pytest.fixture(scope="module")
def two_procs(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prefixmem_dist")
    dh.spawn(_all, out)
    return out


@pytest.mark.parametrize("mode", list(MODES))
def test_prefixmem_trains_under_two_processes_like_one_and_resumes(two_procs, tmp_path, mode):
    kw = {k: v for k, v in MODES[mode].items() if k != "parallel"}
    single = dh.weights(_train(tmp_path, **kw))
    got = torch.load(two_procs / f"{mode}.pt", weights_only=True)
    assert got["full"].keys() == single.keys()
    encoder = "model.embed_tokens.prefixmem."
    assert single[encoder + "out.weight"].abs().sum() > 0  # trained: it started at zero
    assert encoder + "tables" in got["full"]
    for k, v in single.items():
        torch.testing.assert_close(got["full"][k], v, rtol=1e-5, atol=1e-6, msg=k)
    assert got["step"] == 4
    for k, v in got["full"].items():  # killed after step 3, resumed from its step-3 checkpoint
        torch.testing.assert_close(got["resumed"][k], v, rtol=0, atol=0, msg=k)
