from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import DynamicCache, LlamaConfig, Qwen2Config

import tiny
from recbias.decoding import BeamConfig, EdgeScores, ItemTrie, constrained_beam_search
from recbias.decoding.kv import SharedPrefix, supports_shared_prefix
from recbias.errors import ConfigError, RecbiasError

EOS, PAD = 2, 0
TITLES = [
    "Toy Story",
    "Toy Story 2",
    "Heat",
    "Heat Wave",
    "Alien",
    "Aliens",
    "Star Wars",
    "Star Trek",
    "Casino",
    "Casablanca",
    "Fargo",
    "Babe",
    "Apollo 13",
    "Jumanji",
    "Sabrina",
    "GoldenEye",
    "Balto",
    "Nixon",
    "Othello",
    "Clueless (1995)",
]
PROMPTS = [
    "### Response:\n",
    'The user has watched "Heat", "Casino"\n### Response:\n',
    'Toy Story, Star Wars\n### Response:\n"',
]


@pytest.fixture(scope="module")
def setup(byte_tok):
    seqs = tiny.title_sequences(byte_tok, TITLES)
    prompts = [byte_tok(p, add_special_tokens=False).input_ids for p in PROMPTS]
    return seqs, ItemTrie.build(seqs), prompts, tiny.tiny_llama(len(byte_tok), seed=1)


def reference_ranking(model, prompt, seqs, trie, lp, renormalize):
    """Score every item by a plain forward of prompt + item; sort by the final score."""
    finals = []
    for seq in seqs:
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([prompt + seq])).logits[0, len(prompt) - 1 : -1]
        logp = torch.log_softmax(logits.float(), dim=-1)
        total, node = 0.0, 0
        for t, tok in enumerate(seq):
            norm = torch.logsumexp(logp[t, trie.allowed(node)], 0) if renormalize else 0.0
            total += float(logp[t, tok] - norm)
            node = trie.walk(seq[: t + 1])
        finals.append(total / len(seq) ** lp)
    order = sorted(range(len(seqs)), key=lambda i: -finals[i])
    return order, [finals[i] for i in order]


def hf_ranking(model, prompt, trie, cfg):
    ids = torch.tensor([prompt])
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        num_beams=cfg.num_beams,
        num_return_sequences=cfg.num_beams,
        do_sample=False,
        length_penalty=cfg.length_penalty,
        renormalize_logits=cfg.renormalize,
        max_new_tokens=trie.max_depth,
        prefix_allowed_tokens_fn=trie.hf_prefix_fn(len(prompt), EOS),
        pad_token_id=PAD,
        eos_token_id=EOS,
        return_dict_in_generate=True,
        output_scores=True,
    )
    items, scores = [], []
    for seq, score in zip(out.sequences, out.sequences_scores, strict=True):
        gen = seq[len(prompt) :].tolist()
        item = int(trie.leaf_item[trie.walk(gen[: gen.index(EOS) + 1])]) if EOS in gen else -1
        if item >= 0 and item not in items and score > -1e8:  # drop HF's -1e9 placeholders
            items.append(item)
            scores.append(float(score))
    return items, scores


@pytest.mark.parametrize("renormalize", [False, True])
@pytest.mark.parametrize("lp", [0.0, 1.0])
def test_wide_beam_equals_exhaustive_search(setup, lp, renormalize):
    seqs, trie, prompts, model = setup
    cfg = BeamConfig(num_beams=len(seqs) + 2, length_penalty=lp, renormalize=renormalize)
    results = constrained_beam_search(model, prompts, trie, cfg, PAD)
    for prompt, res in zip(prompts, results, strict=True):
        order, finals = reference_ranking(model, prompt, seqs, trie, lp, renormalize)
        assert res.items == order
        assert res.scores == pytest.approx(finals, abs=1e-4)


@pytest.mark.parametrize("renormalize", [False, True])
@pytest.mark.parametrize("lp", [0.0, 1.0])
def test_narrow_beam_equals_hf_generate(setup, lp, renormalize):
    _seqs, trie, prompts, model = setup
    for width in (3, 5):
        cfg = BeamConfig(num_beams=width, length_penalty=lp, renormalize=renormalize)
        results = constrained_beam_search(model, prompts, trie, cfg, PAD)
        for prompt, res in zip(prompts, results, strict=True):
            items, scores = hf_ranking(model, prompt, trie, cfg)
            assert res.items == items
            assert res.scores == pytest.approx(scores, abs=1e-4)


def test_batch_of_mixed_prompts_equals_each_prompt_alone(setup):
    _, trie, prompts, model = setup
    mixed = [prompts[2], prompts[0], prompts[1], prompts[0][1:]]
    cfg = BeamConfig(num_beams=4, length_penalty=1.0, batch_size=4)
    batched = constrained_beam_search(model, mixed, trie, cfg, PAD)
    for prompt, res in zip(mixed, batched, strict=True):
        alone = constrained_beam_search(model, [prompt], trie, cfg, PAD)[0]
        assert res.items == alone.items
        assert res.scores == pytest.approx(alone.scores, abs=1e-5)


def test_results_are_deterministic(setup):
    _, trie, prompts, model = setup
    cfg = BeamConfig(num_beams=4, batch_size=2)
    first = constrained_beam_search(model, prompts, trie, cfg, PAD)
    assert constrained_beam_search(model, prompts, trie, cfg, PAD) == first


def test_only_catalog_items_are_returned(setup):
    _seqs, trie, prompts, model = setup
    targets = [1, 3, 4, 11, 19]  # a training-target-only candidate set
    sub = trie.restrict(targets)
    for res in constrained_beam_search(model, prompts, sub, BeamConfig(num_beams=4), PAD):
        assert set(res.items) <= set(targets)
        assert len(res.items) == len(set(res.items)) == 4


def test_titles_that_prefix_other_titles_are_returned(setup):
    _seqs, trie, prompts, model = setup
    names = ["Toy Story", "Toy Story 2", "Heat", "Heat Wave", "Alien", "Aliens"]
    sub = trie.restrict([TITLES.index(n) for n in names])
    for res in constrained_beam_search(model, prompts, sub, BeamConfig(num_beams=6), PAD):
        assert sorted(res.items) == sorted(TITLES.index(n) for n in names)


def test_catalog_smaller_than_beam_returns_every_item(setup):
    _seqs, trie, prompts, model = setup
    sub = trie.restrict([2, 7])
    res = constrained_beam_search(model, prompts[:1], sub, BeamConfig(num_beams=10), PAD)[0]
    assert sorted(res.items) == [2, 7]
    assert res.scores == sorted(res.scores, reverse=True)


def test_num_return_truncates_the_ranking(setup):
    _, trie, prompts, model = setup
    full = constrained_beam_search(model, prompts, trie, BeamConfig(num_beams=5), PAD)
    short = constrained_beam_search(
        model, prompts, trie, BeamConfig(num_beams=5, num_return=2), PAD
    )
    assert [r.items[:2] for r in full] == [r.items for r in short]


def test_identity_hook_changes_nothing_and_sees_consistent_edges(setup):
    _, trie, prompts, model = setup
    seen: list[EdgeScores] = []

    def hook(edges: EdgeScores) -> torch.Tensor:
        seen.append(edges)
        return edges.logp

    cfg = BeamConfig(num_beams=4, batch_size=2)
    plain = constrained_beam_search(model, prompts, trie, cfg, PAD)
    assert constrained_beam_search(model, prompts, trie, cfg, PAD, score_hook=hook) == plain
    for e in seen:
        expect = trie.next_nodes(
            e.parent[:, None].expand_as(e.token).reshape(-1), e.token.reshape(-1)
        )
        assert torch.equal(e.child[e.valid], expect.view_as(e.token)[e.valid])
        assert torch.all(trie.depth[e.parent] == e.step)
    assert {int(p) for e in seen for p in e.prompt} == {0, 1, 2}


def test_hook_can_steer_the_ranking(setup):
    seqs, trie, prompts, model = setup
    target = TITLES.index("Balto")
    path = set(seqs[target])

    def boost(edges: EdgeScores) -> torch.Tensor:
        on_path = torch.isin(edges.token, torch.tensor(sorted(path), device=edges.token.device))
        return torch.where(on_path, edges.logp * 0.01, edges.logp)

    res = constrained_beam_search(model, prompts, trie, BeamConfig(num_beams=4), PAD, boost)
    assert all(r.items[0] == target for r in res)


def test_exact_stop_only_adds_hypotheses(setup):
    _, trie, prompts, model = setup
    hf = constrained_beam_search(
        model, prompts, trie, BeamConfig(num_beams=3, length_penalty=1.0), PAD
    )
    cfg = BeamConfig(num_beams=3, length_penalty=1.0, stop="exact")
    exact = constrained_beam_search(model, prompts, trie, cfg, PAD)
    for a, b in zip(hf, exact, strict=True):
        assert all(y >= x - 1e-6 for x, y in zip(a.scores, b.scores, strict=True))
    lp0 = BeamConfig(num_beams=3, stop="exact")
    assert constrained_beam_search(model, prompts, trie, lp0, PAD) == constrained_beam_search(
        model, prompts, trie, BeamConfig(num_beams=3), PAD
    )


def test_bf16_model_returns_valid_items(setup):
    seqs, trie, prompts, model = setup
    half = tiny.tiny_llama(model.config.vocab_size, seed=1).to(torch.bfloat16)
    for res in constrained_beam_search(half, prompts, trie, BeamConfig(num_beams=4), PAD):
        assert len(set(res.items)) == 4 and set(res.items) <= set(range(len(seqs)))


def test_non_prefix_free_trie_is_rejected(setup):
    *_, model = setup
    trie = ItemTrie.build([[40, 41], [40, 41, 42]])
    with pytest.raises(RecbiasError, match="proper prefix"):
        constrained_beam_search(model, [[5, 6]], trie, BeamConfig(num_beams=2), PAD)


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="num_return"):
        BeamConfig(num_beams=3, num_return=4)
    with pytest.raises(ConfigError, match="stop"):
        BeamConfig(stop="never")  # type: ignore[arg-type]


@pytest.mark.parametrize("lp", [0.0, 1.0])
def test_shared_prompt_cache_equals_per_beam_cache(setup, lp):
    _, trie, prompts, model = setup
    mixed = [prompts[1], prompts[0], prompts[2]]
    shared = BeamConfig(num_beams=4, length_penalty=lp, batch_size=3)
    per_beam = BeamConfig(num_beams=4, length_penalty=lp, batch_size=3, share_prompt_kv=False)
    for a, b in zip(
        constrained_beam_search(model, mixed, trie, shared, PAD),
        constrained_beam_search(model, mixed, trie, per_beam, PAD),
        strict=True,
    ):
        assert a.items == b.items
        assert a.scores == pytest.approx(b.scores, abs=1e-5)


def test_prompt_cache_is_shared_only_for_full_attention_models():
    llama = SimpleNamespace(config=LlamaConfig())
    sliding = SimpleNamespace(config=Qwen2Config(use_sliding_window=True, sliding_window=8))
    assert supports_shared_prefix(llama)
    assert not supports_shared_prefix(sliding)


def test_training_mode_model_is_decoded_without_dropout_and_restored(setup):
    _, trie, prompts, model = setup
    noisy = tiny.tiny_llama(model.config.vocab_size, seed=1)
    noisy.config.attention_dropout = 0.5
    noisy.train()
    cfg = BeamConfig(num_beams=3)
    got = constrained_beam_search(noisy, prompts, trie, cfg, PAD)
    assert noisy.training
    assert got == constrained_beam_search(model, prompts, trie, cfg, PAD)


def test_prompts_sharing_a_template_header_equal_each_prompt_alone(setup, byte_tok):
    _, trie, _, model = setup
    header = (
        "Below is an instruction that describes a task. ### Instruction:\nGiven a list of movies"
    )
    histories = ['"Heat"', '"Toy Story", "Casino"', '"Alien", "Babe", "Fargo"']
    prompts = [
        byte_tok(
            f"{header} the user has watched: {h}\n### Response:\n", add_special_tokens=False
        ).input_ids
        for h in histories
    ]
    cfg = BeamConfig(num_beams=4, length_penalty=1.0, batch_size=3)
    for lone, res in zip(
        prompts, constrained_beam_search(model, prompts, trie, cfg, PAD), strict=True
    ):
        alone = constrained_beam_search(model, [lone], trie, cfg, PAD)[0]
        assert res.items == alone.items
        assert res.scores == pytest.approx(alone.scores, abs=1e-5)


def test_benchmark_smoke_run(tmp_path, capsys):
    path = Path(__file__).parents[1] / "bench" / "bench_decoding.py"
    spec = importlib.util.spec_from_file_location("bench_decoding", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "decoding.json"
    bench.main(["--tiny", "--users", "3", "--beams", "4", "--threads", "1", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["agreement"]["same_order"] == 1.0
    assert result["versions"]["transformers"] and result["threads"] == 1
    assert "speed-up" in capsys.readouterr().out


def tensors_in(value: object) -> list[torch.Tensor]:
    """Tensors a model forward receives in one keyword argument (tensor, shared prefix, cache)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, SharedPrefix):
        return [*value.keys, *value.values, value.key_mask, value.slot]
    if isinstance(value, DynamicCache):
        kv = [
            (getattr(layer, "keys", None), getattr(layer, "values", None)) for layer in value.layers
        ]
        return [t for pair in kv for t in pair if isinstance(t, torch.Tensor)]
    return []


def device_checked(model: torch.nn.Module) -> list[list[str]]:
    """Wrap ``model.forward`` to assert every tensor it gets is on the parameters' device.

    Returns the list that collects the keyword names of each call.
    """
    device, forward, calls = next(model.parameters()).device, model.forward, []

    def checked(**kwargs: object) -> object:
        for name, value in kwargs.items():
            assert all(t.device == device for t in tensors_in(value)), name
        calls.append(sorted(kwargs))
        return forward(**kwargs)

    model.forward = checked
    return calls


@pytest.mark.parametrize("share", [True, False])
def test_search_creates_every_tensor_on_the_model_device(setup, byte_tok, share):
    """No CUDA here, so the search runs with the default device set to ``meta``: any tensor built
    without an explicit ``device=`` lands there and fails or changes the results."""
    _, trie, prompts, model = setup
    header = "Below is an instruction that describes a task. ### Instruction:\n"
    prompts = [
        *prompts,
        *(byte_tok(header + p, add_special_tokens=False).input_ids for p in PROMPTS),
    ]  # header path too
    checked = tiny.tiny_llama(model.config.vocab_size, seed=1)
    calls = device_checked(checked)
    hook_devices: set[torch.device] = set()

    def hook(e: EdgeScores) -> torch.Tensor:
        hook_devices.update(t.device for t in (e.logp, e.parent, e.token, e.child, e.prompt))
        return e.logp

    cfg = BeamConfig(num_beams=4, batch_size=3, length_penalty=1.0, share_prompt_kv=share)
    want = constrained_beam_search(model, prompts, trie, cfg, PAD)
    with torch.device("meta"):
        got = constrained_beam_search(checked, prompts, trie, cfg, PAD, score_hook=hook)
    assert got == want
    assert hook_devices == {torch.device("cpu")}
    assert any("recbias_prefix" in c for c in calls) == share
    assert sum("past_key_values" not in c for c in calls) == 1  # the 2nd batch's shared header
