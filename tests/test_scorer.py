from __future__ import annotations

import pytest
import torch

import tiny
from recbias.decoding import ItemTrie, score_items, score_items_batch
from recbias.decoding.scorer import item_token_logprobs
from recbias.errors import RecbiasError

EOS = tiny.EOS
TITLES = ["Toy Story", "Toy Story 2", "Heat", "Heat Wave", "Alien", "Aliens", "Fargo", "Balto"]


@pytest.fixture
def catalog(any_tok):
    seqs = tiny.title_sequences(any_tok, TITLES)
    prompt = any_tok("### Response:\n", add_special_tokens=False).input_ids
    return prompt, seqs


def full_forward_logprobs(model, prompt, seq):
    """Per-token log-probs of ``seq`` from one plain forward of prompt + seq."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + seq])).logits[0, len(prompt) - 1 : -1]
    return torch.log_softmax(logits.float(), -1).gather(1, torch.tensor(seq)[:, None]).squeeze(1)


def test_scores_equal_a_plain_forward_per_item(tiny_model, catalog):
    prompt, seqs = catalog
    got = score_items(tiny_model, prompt, seqs)
    want = torch.stack([full_forward_logprobs(tiny_model, prompt, s).sum() for s in seqs])
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


def test_per_token_logprobs_are_zero_after_the_item(tiny_model, catalog):
    prompt, seqs = catalog
    per_tok = item_token_logprobs(tiny_model, prompt, seqs)
    assert per_tok.shape == (len(seqs), max(len(s) for s in seqs))
    for row, seq in zip(per_tok, seqs, strict=True):
        torch.testing.assert_close(
            row[: len(seq)], full_forward_logprobs(tiny_model, prompt, seq), atol=1e-4, rtol=0
        )
        assert torch.all(row[len(seq) :] == 0)


def test_chunk_size_does_not_change_scores(tiny_model, catalog):
    prompt, seqs = catalog
    torch.testing.assert_close(
        score_items(tiny_model, prompt, seqs, batch_size=3),
        score_items(tiny_model, prompt, seqs),
        atol=1e-5,
        rtol=0,
    )


def test_single_token_items_use_the_prompt_logits(tiny_model):
    prompt = [5, 6, 7]
    got = score_items(tiny_model, prompt, [[EOS], [9]])
    want = torch.stack([full_forward_logprobs(tiny_model, prompt, [t]).sum() for t in (EOS, 9)])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_renormalized_scores_use_only_trie_siblings(tiny_model, catalog):
    prompt, seqs = catalog
    trie = ItemTrie.build(seqs)
    got = score_items(tiny_model, prompt, seqs, renormalize=True, trie=trie)
    for score, seq in zip(got, seqs, strict=True):
        with torch.no_grad():
            logits = tiny_model(input_ids=torch.tensor([prompt + seq])).logits[
                0, len(prompt) - 1 : -1
            ]
        logp = torch.log_softmax(logits.float(), -1)
        want = sum(
            logp[t, tok] - torch.logsumexp(logp[t, trie.allowed(trie.walk(seq[:t]))], 0)
            for t, tok in enumerate(seq)
        )
        assert float(score) == pytest.approx(float(want), abs=1e-4)
    probs = got.exp().sum()  # renormalised item probabilities form a distribution over the trie
    assert float(probs) == pytest.approx(1.0, abs=1e-4)


def test_renormalize_rejects_items_outside_the_trie(tiny_model, catalog):
    prompt, seqs = catalog
    trie = ItemTrie.build(seqs[:3])
    with pytest.raises(RecbiasError, match="not paths of the trie"):
        score_items(tiny_model, prompt, seqs, renormalize=True, trie=trie)
    with pytest.raises(RecbiasError, match="needs the item trie"):
        score_items(tiny_model, prompt, seqs, renormalize=True)


def test_batch_scoring_matches_single_prompt_scoring(tiny_model, catalog):
    prompt, seqs = catalog
    prompts = [prompt, [*prompt[1:], EOS]]
    got = score_items_batch(tiny_model, prompts, [seqs, seqs[:2]])
    torch.testing.assert_close(got[0], score_items(tiny_model, prompts[0], seqs))
    torch.testing.assert_close(got[1], score_items(tiny_model, prompts[1], seqs[:2]))


def test_scorer_creates_every_tensor_on_the_model_device(tiny_model, catalog):
    """No CUDA here, so scoring runs with the default device set to ``meta``: any tensor built
    without an explicit ``device=`` lands there and fails or changes the scores."""
    prompt, seqs = catalog
    trie = ItemTrie.build(seqs)
    prompts, cands = [prompt, [*prompt[1:], EOS]], [seqs, seqs[:3]]
    want = score_items_batch(tiny_model, prompts, cands, batch_size=3, renormalize=True, trie=trie)
    device, forward, seen = next(tiny_model.parameters()).device, tiny_model.forward, []

    def checked(**kwargs: object) -> object:
        cache = kwargs.get("past_key_values")
        layers = (
            []
            if cache is None
            else [t for layer in cache.layers for t in (layer.keys, layer.values)]
        )
        tensors = [v for v in kwargs.values() if isinstance(v, torch.Tensor)] + layers
        seen.extend(t.device for t in tensors)
        return forward(**kwargs)

    tiny_model.forward = checked
    with torch.device("meta"):
        got = score_items_batch(
            tiny_model, prompts, cands, batch_size=3, renormalize=True, trie=trie
        )
        per_tok = item_token_logprobs(tiny_model, prompt, seqs)
    assert set(seen) == {device} and len(seen) > 4
    assert all(g.device.type == "cpu" for g in got) and per_tok.device.type == "cpu"
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=0)
