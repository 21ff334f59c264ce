"""Feature-ablation attribution: edits, batching, Captum agreement, ignored segments, ratios."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from captum.attr import FeatureAblation

import tiny
from recbias.config import write_resolved
from recbias.diagnostics.attribution import (
    TABLE_COLUMNS,
    AttributionConfig,
    AttributionResult,
    attribute,
    attribution_section,
    build_variants,
    load_run,
    summarize_ratios,
)
from recbias.errors import ConfigError, ModelError
from recbias.experiment import RunConfig

TITLES = tiny.DISTINCT_MOVIES
SAMPLES = pd.DataFrame(
    {
        "sample_id": [10, 11, 12, 13],
        "history": [[0, 1, 2], [3], [4, 5, 6, 1], []],
        "target": [3, 4, 0, 7],
    }
)


def fp32_cfg(**kw) -> AttributionConfig:
    """The references below are fp32 forward passes: attribute in fp32 too."""
    return AttributionConfig(dtype="fp32", **kw)


def _encode(builder, row):
    hist = list(SAMPLES.history[row])
    return builder.encode([TITLES[i] for i in hist], hist, TITLES[SAMPLES.target[row]])


def _logp_reference(model, ids: list[int], positions: list[int]) -> np.ndarray:
    """Plain full forward of one sequence: log p(ids[p] | ids[:p]) for each p."""
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].double()
    logp = torch.log_softmax(logits, dim=-1)
    return np.array([float(logp[p - 1, ids[p]]) for p in positions])


def _ignoring_model(vocab: int) -> torch.nn.Module:
    """Attention outputs zeroed: every position's logits depend only on its own token."""
    model = tiny.tiny_llama(vocab, seed=3)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
    return model


def test_placeholder_history_is_the_masked_prompt_of_eq2(any_tok):
    builder = tiny.movie_builder(any_tok)
    enc = _encode(builder, 0)
    variants = {v.feature: v for v in build_variants(builder, enc, 0, fp32_cfg())}
    masked = builder.encode([], None, TITLES[3]).full_ids
    assert list(variants["history"].ids) == masked
    assert [variants["history"].ids[p] for p in variants["history"].scored] == enc.target_ids


@pytest.mark.parametrize("j", [0, 1, 2])
def test_removing_an_item_equals_the_prompt_without_it(any_tok, j):
    builder = tiny.movie_builder(any_tok)
    enc = _encode(builder, 0)
    cfg = fp32_cfg(ablation="remove")
    variants = {v.feature: v for v in build_variants(builder, enc, 0, cfg)}
    rest = [i for k, i in enumerate([0, 1, 2]) if k != j]
    expected = builder.encode([TITLES[i] for i in rest], rest, TITLES[3]).full_ids
    assert list(variants[f"item_{j}"].ids) == expected
    assert variants[f"item_{j}"].item == [0, 1, 2][j]


def test_first_token_variant_scores_only_later_tokens(byte_tok):
    builder = tiny.movie_builder(byte_tok)
    enc = _encode(builder, 1)
    cfg = fp32_cfg(ablation="remove")
    v = next(v for v in build_variants(builder, enc, 0, cfg) if v.feature == "first_token")
    assert list(v.ids) == enc.input_ids + enc.target_ids[1:]
    assert v.steps == tuple(range(1, len(enc.target_ids)))
    assert [v.ids[p] for p in v.scored] == enc.target_ids[1:]


@pytest.mark.parametrize("ablation", ["remove", "placeholder"])
def test_batched_scores_match_plain_forward(any_tok, ablation):
    builder = tiny.movie_builder(any_tok)
    model = tiny.tiny_llama(len(any_tok))
    cfg = fp32_cfg(ablation=ablation, batch_size=3, sample_chunk=2)
    table = attribute(model, builder, SAMPLES, TITLES, cfg).table
    for row in range(len(SAMPLES)):
        enc = _encode(builder, row)
        variants = build_variants(builder, enc, row, cfg)
        orig = _logp_reference(model, list(variants[0].ids), list(variants[0].scored))
        for v in variants[1:]:
            abl = _logp_reference(model, list(v.ids), list(v.scored))
            got = table[(table.sample_id == SAMPLES.sample_id[row]) & (table.feature == v.feature)]
            assert got.attr_sum.item() == pytest.approx((orig[list(v.steps)] - abl).sum(), abs=1e-5)


def test_batch_size_and_prefix_sharing_do_not_change_results(byte_tok):
    builder, model = tiny.movie_builder(byte_tok), tiny.tiny_llama(len(byte_tok))
    a = attribute(model, builder, SAMPLES, TITLES, fp32_cfg(batch_size=16)).table
    b = attribute(
        model,
        builder,
        SAMPLES,
        TITLES,
        fp32_cfg(batch_size=1, sample_chunk=1, share_prefix=False),
    ).table
    assert list(a.columns) == TABLE_COLUMNS
    np.testing.assert_allclose(a.attr_sum, b.attr_sum, atol=1e-5)
    assert (a.feature == b.feature).all()


def test_empty_history_has_no_history_features(byte_tok):
    builder, model = tiny.movie_builder(byte_tok), tiny.tiny_llama(len(byte_tok))
    table = attribute(model, builder, SAMPLES, TITLES, fp32_cfg()).table
    assert set(table[table.sample_id == 13].feature) == {"task", "first_token"}
    res = AttributionResult(table, fp32_cfg())
    assert np.isnan(res.ratios().set_index("sample_id").task_history[13])


def _captum(model, enc, features: dict[str, list[int]], baseline: int) -> dict[str, float]:
    """Captum FeatureAblation over token ids; the scored target ids stay fixed."""
    full = torch.tensor([enc.full_ids])
    n_prompt, target = len(enc.input_ids), enc.target_ids

    def forward(ids: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(model(ids).logits.double(), dim=-1)
        rows = torch.arange(n_prompt - 1, n_prompt - 1 + len(target))
        return logp[:, rows, torch.tensor(target)].sum(dim=1)

    mask = torch.zeros_like(full)
    for k, positions in enumerate(features.values(), start=1):
        mask[0, positions] = k
    with torch.no_grad():
        attr = FeatureAblation(forward).attribute(full, baselines=baseline, feature_mask=mask)
    return {name: float(attr[0, pos[0]]) for name, pos in features.items()}


def test_agrees_with_captum_feature_ablation(any_tok):
    builder, model = tiny.movie_builder(any_tok), tiny.tiny_llama(len(any_tok), seed=1)
    cfg = fp32_cfg(placeholder_token=3)
    table = attribute(model, builder, SAMPLES.iloc[:3], TITLES, cfg).table
    for row in range(3):
        enc = _encode(builder, row)
        hist = enc.spans_of("history")
        head = enc.spans[0]
        groups = {
            "task": list(range(head.start, head.end)),
            "history": list(range(hist[0].start, hist[-1].end)),
            "first_token": [len(enc.input_ids)],
        }
        items = {f"item_{j}": list(range(s.start, s.end)) for j, s in enumerate(hist)}
        expected = _captum(model, enc, groups, 3) | _captum(model, enc, items, 3)
        got = table[table.sample_id == SAMPLES.sample_id[row]].set_index("feature").attr_sum
        for name, value in expected.items():
            assert got[name] == pytest.approx(value, abs=1e-5), name


@pytest.mark.parametrize("ablation", ["remove", "placeholder"])
def test_segments_the_model_ignores_get_exactly_zero(byte_tok, ablation):
    builder, model = tiny.movie_builder(byte_tok), _ignoring_model(len(byte_tok))
    table = attribute(model, builder, SAMPLES, TITLES, fp32_cfg(ablation=ablation)).table
    context = table[table.feature != "first_token"]
    assert (context.attr_sum == 0.0).all()
    assert (table[table.feature == "first_token"].attr_sum.abs() > 1e-4).all()


def _fake_result(rows: list[tuple[int, str, float, float]]) -> AttributionResult:
    data = [[sid, feat, feat, -1, -1, 3, 0.0, 0.0, a, a / 3, a2] for sid, feat, a, a2 in rows]
    return AttributionResult(pd.DataFrame(data, columns=TABLE_COLUMNS), fp32_cfg())


def test_ratios_hand_computed():
    res = _fake_result(
        [
            (0, "task", 3.0, 2.0), (0, "history", -1.5, 1.0), (0, "first_token", 4.0, 4.0),
            (1, "task", 1.0, 1.0), (1, "history", 0.0, 0.0), (1, "first_token", 1.0, 1.0),
            (2, "task", 2.0, 2.0), (2, "history", 2.0, 0.5), (2, "first_token", -1.0, -1.0),
        ]
    )  # fmt: skip
    r = res.ratios().set_index("sample_id")
    assert r.task_history[0] == 2.0 and r.prefix_history[0] == 4.0
    assert np.isnan(r.task_history[1]) and np.isnan(r.prefix_history[1])
    assert r.task_history[2] == 1.0 and r.prefix_history[2] == 2.0
    summ = summarize_ratios(res, n_boot=200)
    assert summ["task_history"]["n"] == 2 and summ["task_history"]["n_undefined"] == 1
    assert summ["task_history"]["median"] == 1.5
    assert summ["task_history"]["ratio_of_means"] == pytest.approx(2.5 / 1.75)
    assert summ["prefix_history"]["ratio_of_means"] == pytest.approx(2.5 / 0.75)


def test_section_has_tables_and_pngs(tmp_path, byte_tok):
    builder = tiny.movie_builder(byte_tok)
    results = {
        name: attribute(tiny.tiny_llama(len(byte_tok), seed=s), builder, SAMPLES, TITLES,
                        fp32_cfg())
        for name, s in (("base", 0), ("sft", 1))
    }  # fmt: skip
    sec = attribution_section(results, tmp_path, n_boot=50)
    assert [t.name for t in sec.tables] == ["attribution_ratios", "attribution_features"]
    assert len(sec.tables[0].rows) == 4
    for fig in sec.figures:
        assert (tmp_path / fig.file).read_bytes()[:4] == b"\x89PNG"
    assert "above 1" in sec.tables[0].caption


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"placeholder": ""}, "placeholder"),
        ({"placeholder_token": -1}, "placeholder_token"),
        ({"features": []}, "features"),
        ({"features": ["task", "task"]}, "features"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_config_names_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=f"'attribution.{key}'"):
        AttributionConfig(**kwargs).validate("attribution")


def test_run_without_checkpoint_names_the_missing_path(tmp_path):
    write_resolved(RunConfig(), tmp_path / "config.toml")
    with pytest.raises(ModelError, match=str(tmp_path)):
        load_run(tmp_path)
    with pytest.raises(ModelError, match="config.toml"):
        load_run(tmp_path / "nowhere")
