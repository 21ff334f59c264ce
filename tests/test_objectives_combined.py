"""MSL+GDRT: Group-DRO weights over relevance groups of MSL's token losses."""

from __future__ import annotations

import pytest
import torch

import tiny
from objective_helpers import loss_and_grads, make_ctx, train
from recbias.config import from_dict
from recbias.errors import ConfigError
from recbias.llmrec import RunConfig
from recbias.lm.batching import collate
from recbias.objectives import ObjectiveConfig, build_objective
from recbias.objectives.gdrt import GDRTConfig
from recbias.objectives.msl import MSLConfig


def _objective(groups: int) -> ObjectiveConfig:
    gdrt = GDRTConfig(groups=groups, weights_from="batch")
    return ObjectiveConfig(name="msl_gdrt", gdrt=gdrt, msl=MSLConfig(tau=2.0))


def test_msl_gdrt_with_one_group_is_msl(byte_tok):
    model = tiny.tiny_llama(len(byte_tok), seed=1)
    ctx = make_ctx(byte_tok, model)
    results = []
    for cfg in (_objective(1), ObjectiveConfig(name="msl", msl=MSLConfig(tau=2.0))):
        obj = build_objective(cfg)
        obj.setup(ctx)
        if hasattr(obj, "begin_step"):
            obj.begin_step()
        results.append(loss_and_grads(model, obj, collate(ctx.samples[:6], byte_tok.pad_token_id)))
    (l1, g1), (l2, g2) = results
    torch.testing.assert_close(l1, l2)
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b)


def test_msl_gdrt_differs_from_msl_with_several_groups_and_is_accumulation_invariant(
    byte_tok, tmp_path
):
    a, rows = train(byte_tok, tmp_path / "a", 4, 1, _objective(2))
    b, _ = train(byte_tok, tmp_path / "b", 2, 2, _objective(2))
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, atol=1e-4, rtol=1e-4)
    assert any("gdrt_group_weight" in r for r in rows if r["event"] == "train")


def test_msl_gdrt_rejects_adaptive_temperature():
    with pytest.raises(ConfigError, match="msl.ats"):
        build_objective(
            ObjectiveConfig(name="msl_gdrt", msl=MSLConfig(ats=True), gdrt=GDRTConfig(groups=2))
        )


def test_msl_gdrt_is_selectable_from_toml():
    cfg = from_dict(RunConfig, {"train": {"objective": {"name": "msl_gdrt"}}})
    assert cfg.train.objective.name == "msl_gdrt"


@pytest.mark.parametrize(
    "objective",
    [
        ObjectiveConfig(name="msl", msl=MSLConfig(ats=True, ats_min_tau=0.1, ats_ema=0.5)),
        ObjectiveConfig(name="gdrt", gdrt=GDRTConfig(groups=2, ema=0.5, weights_from="previous")),
        ObjectiveConfig(
            name="gdrt", gdrt=GDRTConfig(groups=2, relevance_model="refresh", weights_from="batch")
        ),
    ],
    ids=["msl-ats", "gdrt-ema", "gdrt-refresh"],
)
def test_objective_state_survives_a_resume(byte_tok, tmp_path, objective):
    from recbias.objectives import build_objective
    from recbias.train.loop import TrainConfig, Trainer

    def run(path, **kw):
        model = tiny.tiny_llama(len(byte_tok), seed=1)
        ctx = make_ctx(byte_tok, model)
        obj = build_objective(objective)
        obj.setup(ctx)
        cfg = TrainConfig(
            epochs=2, lr=1e-2, warmup_steps=0, micro_batch_size=2, grad_accum=1, checkpoint_every=2
        )
        trainer = Trainer(model, obj, cfg, path, byte_tok.pad_token_id, seed=0, dtype="fp32")
        trainer.fit(ctx.samples, None, **kw)
        return model, obj

    full, full_obj = run(tmp_path / "full")
    steps_per_epoch = len(make_ctx(byte_tok, tiny.tiny_llama(len(byte_tok))).samples) // 2
    run(tmp_path / "killed", stop_after_steps=steps_per_epoch + 3)  # resumes inside epoch 2
    resumed, resumed_obj = run(tmp_path / "killed", resume=True)
    for a, b in zip(full.parameters(), resumed.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    state = full_obj.state_dict()
    for key, value in state.items():
        torch.testing.assert_close(resumed_obj.state_dict()[key], value, equal_nan=True)
    moving = state["tau"] if "tau" in state else state["estimate"]
    assert not torch.equal(moving, build_objective(objective).state_dict().get("tau", moving * 0))
