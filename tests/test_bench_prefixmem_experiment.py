"""bench/prefixmem_experiment.py: teacher-forced accuracy reads the right positions and tokens."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from recbias.domain import Domain
from recbias.prompts import PromptBuilder, PromptConfig
from recbias.sidllm.items import SidText
from recbias.sidllm.vocab import add_sid_tokens
from tiny import MOVIES, byte_level_tokenizer

ROOT = Path(__file__).parent.parent
_spec = importlib.util.spec_from_file_location(
    "prefixmem_experiment", ROOT / "bench" / "prefixmem_experiment.py"
)
assert _spec is not None and _spec.loader is not None
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

SIZES = [3, 4, 2]  # two code levels + a suffix level
CODES = [[0, 1, 0], [0, 3, 1], [1, 2, 0], [2, 0, 0], [2, 0, 1], [1, 1, 0], [0, 0, 0], [2, 3, 0]]


class NextTokenModel(torch.nn.Module):
    """Logits that put the highest score on the token ``shift`` places after each position
    (shift 1: the true next token, a perfect teacher-forced predictor)."""

    def __init__(self, vocab: int, shift: int) -> None:
        super().__init__()
        self.vocab, self.shift = vocab, shift

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> SimpleNamespace:
        logits = torch.zeros(*input_ids.shape, self.vocab)
        target = torch.roll(input_ids, -self.shift, dims=1)
        logits.scatter_(2, target[..., None], 1.0)
        return SimpleNamespace(logits=logits)


def fake_run(shift: int) -> SimpleNamespace:
    tok = byte_level_tokenizer()
    vocab = add_sid_tokens(tok, SIZES)
    text = SidText(MOVIES, [vocab.text(c) for c in CODES], with_title=False)
    builder = PromptBuilder(tok, PromptConfig(), Domain("movie", "movies"), text)
    samples = pd.DataFrame(
        {"sample_id": [10, 11, 12], "history": [[0, 1], [2], [3, 4, 5]], "target": [2, 6, 7]}
    )
    lm = SimpleNamespace(
        model=NextTokenModel(len(tok), shift),
        builder=builder,
        max_length=512,
        sid=SimpleNamespace(vocab=vocab),
    )
    ds = SimpleNamespace(split=lambda name: samples, titles=MOVIES)
    return SimpleNamespace(tuned=lambda: lm, ds=ds)


def test_a_perfect_next_token_model_scores_one_at_every_level() -> None:
    tf, preds, ids = bench.teacher_forced(fake_run(shift=1), batch=2)
    assert tf.shape == (3, 3) and tf.all()
    assert ids.tolist() == [10, 11, 12]
    assert preds.tolist() == [CODES[2], CODES[6], CODES[7]]


def test_an_off_by_one_model_is_scored_on_the_level_tokens_only() -> None:
    """Shift 2 predicts the token after next: at the level-0 position that is the level-1 token,
    which is not a level-0 token, so the argmax over level 0 falls back to code 0 (all scores
    tie); the suffix position's choice is likewise a tie -> code 0."""
    tf, preds, _ = bench.teacher_forced(fake_run(shift=2), batch=3)
    expected = np.asarray([c for c in (CODES[2], CODES[6], CODES[7])]) == 0
    assert (tf == expected).all()
    assert (preds == 0).all()


def test_argmax_diagnostics_count_distinct_codes_and_agreement() -> None:
    per = {
        "plain": {"_pred": np.asarray([[0, 1], [0, 2], [0, 1]])},
        "prefixmem": {"_pred": np.asarray([[0, 1], [1, 2], [2, 0]])},
    }
    out = bench.argmax_diagnostics(per)
    assert out["distinct_plain"] == [1, 2]
    assert out["distinct_prefixmem"] == [3, 3]
    assert out["agree"] == pytest.approx([1 / 3, 2 / 3])
