from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import tiny
from recbias.diagnostics.groups import item_relevance, relevance_grouping
from recbias.diagnostics.token_ig import loss_by_group, target_token_losses
from recbias.diagnostics.training_curves import (
    Checkpoint,
    prompts_for,
    sample_token_groups,
    top1_items,
    training_curves,
    training_curves_section,
)
from recbias.errors import RecbiasError
from recbias.lm.batching import encode_samples
from recbias.objectives.relevance import relevance_groups, token_relevance

TITLES = tiny.MOVIES


def _frame():
    hists = [[0], [1, 2], [3, 4, 5, 0], [2], [5, 1, 3], [7, 6]]
    targets = [2, 3, 0, 5, 1, 4]
    return pd.DataFrame(
        {"sample_id": range(6), "user": list("abcdef"), "history": hists, "target": targets}
    )


@pytest.fixture
def setup(byte_tok):
    builder = tiny.movie_builder(byte_tok)
    samples = encode_samples(builder, _frame(), TITLES, max_length=512)
    ref = tiny.tiny_llama(len(byte_tok), seed=0)
    grouping = relevance_grouping(item_relevance(ref, builder, TITLES), n_groups=4)
    rel = token_relevance(ref, builder, samples, dtype="fp32")
    groups = sample_token_groups(rel, relevance_groups(rel, 3, "quantile"), samples)
    return builder, samples, grouping, groups


def _plain_top1(model, prompt, seqs):
    scores = []
    for seq in seqs:
        ids = torch.tensor([prompt + seq])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
        steps = torch.arange(len(prompt) - 1, len(prompt) + len(seq) - 1)
        scores.append(float(logp[steps, torch.tensor(seq)].sum()))
    return int(np.argmax(scores))


def test_two_checkpoints_shapes_and_group1_share_equal_reference(setup, byte_tok):
    builder, samples, grouping, token_groups = setup
    models = {s: tiny.tiny_llama(len(byte_tok), seed=s) for s in (1, 2)}
    ckpts = [Checkpoint(f"seed-{s}", lambda s=s: models[s]) for s in (1, 2)]
    prompts = prompts_for(builder, TITLES, _frame())
    curves = training_curves(
        ckpts,
        None,
        builder,
        TITLES,
        prompts,
        grouping,
        samples,
        token_groups,
        pad_id=byte_tok.pad_token_id,
        batch_size=3,
    )
    assert curves.labels == ["seed-1", "seed-2"]
    assert curves.top1_share.shape == (2, grouping.n_groups)
    assert curves.token_loss.shape == (2, 3)
    np.testing.assert_allclose(curves.top1_share.sum(axis=1), 1.0)
    seqs = [builder.encode_target(t) for t in TITLES]
    for row, s in enumerate((1, 2)):
        top1 = [_plain_top1(models[s], p, seqs) for p in prompts]
        expected = np.mean(grouping.group_of()[top1] == 0)
        assert curves.group1_share[row] == pytest.approx(expected)
        per_tok = target_token_losses(models[s], samples, byte_tok.pad_token_id)
        np.testing.assert_allclose(
            curves.token_loss[row], loss_by_group(per_tok, token_groups, 3)[0]
        )
    assert curves.token_count.sum() == sum(len(s.prompt.target_ids) for s in samples)


def test_top1_over_a_candidate_subset_returns_item_ids(setup, byte_tok):
    builder, *_ = setup
    model = tiny.tiny_llama(len(byte_tok), seed=1)
    prompts = prompts_for(builder, TITLES, _frame())
    seqs = [builder.encode_target(TITLES[i]) for i in (6, 3)]
    best = top1_items(model, prompts, seqs, [6, 3])
    assert set(best.tolist()) <= {6, 3}
    expected = [(6, 3)[_plain_top1(model, p, seqs)] for p in prompts]
    assert best.tolist() == expected


def test_paths_go_through_the_loader(setup, byte_tok, tmp_path):
    builder, samples, grouping, token_groups = setup
    model = tiny.tiny_llama(len(byte_tok), seed=1)
    seen = []

    def load(path):
        seen.append(path)
        return model

    prompts = prompts_for(builder, TITLES, _frame())[:2]
    args = (builder, TITLES, prompts, grouping, samples, token_groups)
    training_curves([Checkpoint("c", tmp_path)], load, *args, pad_id=0)
    assert seen == [tmp_path]
    with pytest.raises(RecbiasError, match="needs a loader"):
        training_curves([Checkpoint("c", tmp_path)], None, *args, pad_id=0)
    with pytest.raises(RecbiasError, match="does not exist"):
        training_curves([Checkpoint("c", tmp_path / "nope")], load, *args, pad_id=0)


def test_section_has_both_figures(tmp_path):
    from recbias.diagnostics.training_curves import TrainingCurves

    curves = TrainingCurves(
        ["e1", "e2"],
        ["R1 (most relevant)", "R2"],
        np.array([[0.6, 0.4], [0.8, 0.2]]),
        np.array([[1.0, 2.0], [0.5, 1.8]]),
        np.array([10, 10]),
    )
    sec = training_curves_section(curves, tmp_path, target_share=np.array([0.5, 0.5]))
    assert "60.0%" in sec.summary and "80.0%" in sec.summary
    assert len(sec.figures) == 2 and all((tmp_path / f.file).is_file() for f in sec.figures)
