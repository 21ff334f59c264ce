from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import tiny
from prefixmem_helpers import (
    ITEM_CODES,
    VOCAB,
    history_prompt,
    item_tokens,
    loud_config,
    sid,
    sid_model,
    sid_samples,
    vocab_tensors,
)
from recbias.errors import ConfigError, ModelError
from recbias.sidllm.prefixmem import (
    PrefixMem,
    PrefixMemConfig,
    complete_runs,
    hash_primes,
    prefix_codes,
)
from recbias.sidllm.prefixmem_attach import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    attach_prefixmem,
    detach_prefixmem,
    find_prefixmem,
    load_prefixmem,
    save_prefixmem,
)
from recbias.sidllm.prefixmem_pretrain import pretrain_prefixmem

# -- keys -----------------------------------------------------------------------------------


def _two_level_encoder(**kw) -> PrefixMem:
    level = torch.tensor([-1, 0, 0, 0, 1, 1])  # token 1..3: level 0 codes 0..2; 4, 5: level 1
    code = torch.tensor([-1, 0, 1, 2, 0, 1])
    cfg = PrefixMemConfig(heads=2, memory_dim=4, table_rows=13, **kw)
    return PrefixMem(cfg, level, code, d_model=3)


def test_hash_rows_are_the_hand_computed_multiply_xor():
    pm = _two_level_encoder(inject_levels=[0, 1])
    pm.multipliers.copy_(torch.tensor([[3, 5], [7, 11]]))  # p[position, head]
    rows = pm.rows(torch.tensor([2, 1]))  # prefix c0 = 2, c1 = 1 -> c + 1 = 3, 2
    # order 1: 3*3 = 9, 3*5 = 15 -> 2; order 2: 9 ^ 14 = 7, 15 ^ 22 = 25 -> 12 (mod 13)
    assert rows.tolist() == [[9, 2], [7, 12]]


def test_memory_sums_the_rows_of_every_order_and_concatenates_heads():
    pm = _two_level_encoder(inject_levels=[0, 1])
    pm.multipliers.copy_(torch.tensor([[3, 5], [7, 11]]))
    mem = pm.token_memory(torch.tensor([[0, 3, 5]]))[0]  # text, (level 0, code 2), (1, 1)
    t = pm.tables.detach()  # [order * heads + head, row, d_h]
    assert mem[0].abs().sum() == 0
    torch.testing.assert_close(mem[1], torch.cat([t[0, 9], t[1, 2]]))
    torch.testing.assert_close(mem[2], torch.cat([t[0, 9] + t[2, 7], t[1, 2] + t[3, 12]]))


def test_code_zero_still_changes_the_key():
    pm = _two_level_encoder(inject_levels=[0, 1])
    rows = pm.rows(torch.tensor([[0, 0], [0, 1]]))
    assert rows[0, 1].tolist() != rows[1, 1].tolist()  # (0, 0) and (0, 1) differ at order 2
    assert rows[0, 0].tolist() != [0, 0]  # c + 1: code 0 is not the zero key


def test_hash_primes_are_distinct_primes_and_depend_only_on_the_seed():
    primes = hash_primes(16, seed=3)
    assert len(set(primes)) == 16 and hash_primes(16, seed=3) == primes
    assert hash_primes(16, seed=4) != primes
    for p in primes:
        assert 2**28 <= p < 2**31 and p % 2 == 1
        assert all(p % d for d in range(3, int(p**0.5) + 1, 2))  # trial division


def test_exact_keys_are_collision_free_mixed_radix_rows():
    pm = _two_level_encoder(inject_levels=[0, 1], keys="exact")  # codebooks 3, 2: 6 <= 13 rows
    rows = pm.rows(torch.tensor([[c0, c1] for c0 in range(3) for c1 in range(2)]))
    assert rows[:, 0, 0].tolist() == [0, 0, 1, 1, 2, 2]
    assert rows[:, 1, 0].tolist() == [0, 3, 1, 4, 2, 5]  # c0 + 3 * c1: all distinct


# -- levels and prefixes --------------------------------------------------------------------


def test_runs_and_prefixes_on_a_mixed_sequence():
    s = sid
    ids = [
        5, s(0, 1), s(1, 2), s(2, 3), 6,  # text, a full run, text
        s(1, 0), s(0, 2), s(2, 1),  # level 1 without level 0; level 2 right after level 0
        s(0, 3), s(1, 1), s(0, 0), s(1, 2), s(2, 0),  # truncated run, then a new full one
        -1, 999,  # context padding and an id outside the vocabulary
    ]  # fmt: skip
    level_of, code_of = vocab_tensors()
    pm = PrefixMem(loud_config(inject_levels=[0, 1, 2]), level_of, code_of, d_model=4)
    level, code = pm.levels_and_codes(torch.tensor([ids]))
    assert level[0].tolist() == [-1, 0, 1, 2, -1, 1, 0, 2, 0, 1, 0, 1, 2, -1, -1]
    complete = complete_runs(level, 3)[0].tolist()
    assert [i for i, ok in enumerate(complete) if ok] == [1, 2, 3, 6, 8, 9, 10, 11, 12]
    prefix = prefix_codes(code, level, 3, 2)[0]
    expected = {1: [1], 2: [1, 2], 3: [1, 2, 3], 6: [2], 8: [3], 9: [3, 1], 10: [0], 11: [0, 2]}
    expected[12] = [0, 2, 0]
    for pos, codes in expected.items():
        assert prefix[pos, : len(codes)].tolist() == codes, pos
    mem = pm.token_memory(torch.tensor([ids]))[0].abs().sum(-1)
    assert [i for i, v in enumerate(mem.tolist()) if v > 0] == [1, 2, 3, 6, 8, 9, 10, 11, 12]


def test_default_injects_every_level_but_the_deepest():
    level_of, code_of = vocab_tensors()
    pm = PrefixMem(loud_config(), level_of, code_of, d_model=4)
    assert pm.inject_mask.tolist() == [True, True, False] and pm.context_tokens == 1
    ids = torch.tensor([[5, sid(0, 1), sid(1, 2), sid(2, 3)]])
    assert (pm.token_memory(ids).abs().sum(-1) > 0)[0].tolist() == [False, True, True, False]


# -- attached to a causal LM ----------------------------------------------------------------


def _ids():
    return torch.tensor([history_prompt([0, 3, 6], [30, 31]) + item_tokens(ITEM_CODES[4])])


def test_zero_output_projection_leaves_the_model_exactly_unchanged():
    model = sid_model()
    plain = model(input_ids=_ids()).logits
    attach_prefixmem(model, *vocab_tensors(), PrefixMemConfig(table_rows=97))
    assert torch.equal(model(input_ids=_ids()).logits, plain)
    assert find_prefixmem(model).out.weight.abs().sum() == 0


def test_the_term_changes_only_sid_positions_and_later():
    model = sid_model()
    ids = _ids()
    plain = model.get_input_embeddings()(ids)
    attach_prefixmem(model, *vocab_tensors(), loud_config())
    changed = (model.get_input_embeddings()(ids) - plain).abs().sum(-1)[0] > 0
    level, _ = find_prefixmem(model).levels_and_codes(ids)
    assert changed.tolist() == ((level == 0) | (level == 1))[0].tolist()


def test_gradients_reach_the_tables_and_the_output_projection():
    model = sid_model()
    pm = attach_prefixmem(model, *vocab_tensors(), loud_config())
    model(input_ids=_ids(), labels=_ids()).loss.backward()
    assert pm.tables.grad.abs().sum() > 0 and pm.out.weight.grad.abs().sum() > 0
    assert model.get_input_embeddings().weight.grad.abs().sum() > 0


def test_tied_embeddings_stay_tied_through_attach_resize_and_tie_weights():
    model = sid_model()
    pm = attach_prefixmem(model, *vocab_tensors(), loud_config())
    names = dict(model.named_parameters())
    assert "model.embed_tokens.weight" in names and "model.embed_tokens.prefixmem.tables" in names
    assert model.lm_head.weight is model.get_input_embeddings().weight
    model.resize_token_embeddings(VOCAB + 5)
    model.tie_weights()
    embedding = model.get_input_embeddings()
    assert model.lm_head.weight is embedding.weight and embedding.weight.shape[0] == VOCAB + 5
    assert find_prefixmem(model) is pm
    ids = torch.cat([_ids(), torch.tensor([[VOCAB + 3]])], dim=1)  # a token beyond level_of
    out = model(input_ids=ids).logits
    assert out.shape[-1] == VOCAB + 5 and torch.isfinite(out).all()


def test_save_pretrained_leaves_the_encoder_out_and_load_restores_it(tmp_path):
    from transformers import LlamaForCausalLM

    model = sid_model()
    attach_prefixmem(model, *vocab_tensors(), loud_config(keys="hash", hash_seed=7))
    expected = model(input_ids=_ids()).logits
    model.save_pretrained(tmp_path)
    assert save_prefixmem(model, tmp_path)
    assert not any("prefixmem" in k for k in load_file(tmp_path / "model.safetensors"))
    assert json.loads((tmp_path / CONFIG_FILE).read_text())["config"]["hash_seed"] == 7
    loaded = LlamaForCausalLM.from_pretrained(tmp_path)
    assert load_prefixmem(loaded, tmp_path) is not None
    torch.testing.assert_close(loaded(input_ids=_ids()).logits, expected, atol=0, rtol=0)
    assert load_prefixmem(sid_model(), tmp_path / "nothing") is None


def test_a_corrupt_saved_encoder_is_a_clear_error(tmp_path):
    model = sid_model()
    attach_prefixmem(model, *vocab_tensors(), loud_config())
    save_prefixmem(model, tmp_path)
    meta = json.loads((tmp_path / CONFIG_FILE).read_text())
    meta["config"]["table_rows"] = 50
    (tmp_path / CONFIG_FILE).write_text(json.dumps(meta))
    other = sid_model()
    with pytest.raises(ModelError, match=WEIGHTS_FILE):
        load_prefixmem(other, tmp_path)
    assert find_prefixmem(other) is None


def test_attaching_after_lora_trains_the_encoder_with_the_adapters():
    from recbias.lm.loading import LoraSettings, add_lora

    model = add_lora(sid_model(), LoraSettings(r=2, alpha=4, dropout=0.0))
    pm = attach_prefixmem(model, *vocab_tensors(), loud_config())
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("lora_" in n for n in trainable) and any("prefixmem" in n for n in trainable)
    assert not any(n.endswith("embed_tokens.weight") for n in trainable)
    model(input_ids=_ids(), labels=_ids()).loss.backward()
    assert pm.tables.grad.abs().sum() > 0


def test_bf16_model_gets_a_bf16_term():
    model = sid_model().to(torch.bfloat16)
    pm = attach_prefixmem(model, *vocab_tensors(), loud_config())
    assert pm.tables.dtype == torch.bfloat16 and pm.level_of.dtype == torch.long
    assert model.get_input_embeddings()(_ids()).dtype == torch.bfloat16


# -- training loop --------------------------------------------------------------------------


def test_the_optimizer_gives_the_encoder_its_learning_rate_multiplier():
    from recbias.train.loop import param_groups

    model = sid_model()
    pm = attach_prefixmem(model, *vocab_tensors(), loud_config(lr_multiplier=5.0))
    groups = param_groups(model, 2e-3)
    assert [g["lr"] for g in groups] == [2e-3, 1e-2]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in pm.parameters()}
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def _trainer(tmp_path, **fit):
    from recbias.objectives import ObjectiveConfig, build_objective
    from recbias.train.loop import TrainConfig, Trainer

    model = sid_model(seed=1)
    attach_prefixmem(model, *vocab_tensors(), loud_config(out_init_std=0.0))
    cfg = TrainConfig(
        epochs=2, lr=1e-2, warmup_steps=0, micro_batch_size=2, grad_accum=1, checkpoint_every=2
    )
    trainer = Trainer(model, build_objective(ObjectiveConfig()), cfg, tmp_path, 0, 0, "fp32")
    trainer.fit(sid_samples(), validate=None, **fit)
    return trainer


def test_training_moves_the_encoder_and_resume_restores_it(tmp_path):
    full = _trainer(tmp_path / "full")
    pm = find_prefixmem(full.model)
    assert pm.out.weight.abs().sum() > 0  # started at zero
    _trainer(tmp_path / "killed", stop_after_steps=3)
    resumed = _trainer(tmp_path / "killed", resume=True)
    for (name, a), b in zip(full.model.named_parameters(), resumed.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0, msg=name)


def test_shared_prefix_training_forward_sees_the_run_across_the_prefix():
    from recbias.lm.batching import collate
    from recbias.lm.forward import shared_prefix_length, target_logits

    model = sid_model()
    attach_prefixmem(model, *vocab_tensors(), loud_config())
    samples = sid_samples(4)
    for s, second in zip(samples, [1, 2, 3, 0], strict=True):  # rows share history item 6
        s.prompt.input_ids = history_prompt([6, second], [30, 31])
    s0 = samples[0].prompt.input_ids
    samples[1].prompt.input_ids = [*s0[:10], sid(1, 0), *s0[11:]]  # shared prefix ends mid-run
    batch = collate(samples, 0)
    assert shared_prefix_length(batch) == 10
    plain = target_logits(model, batch, share_prefix=False)
    shared = target_logits(model, batch, share_prefix=True)
    torch.testing.assert_close(shared, plain, atol=1e-5, rtol=1e-5)


# -- decoding -------------------------------------------------------------------------------


def _full_forward_scores(model, prompt, seqs):
    out = []
    for seq in seqs:
        ids = torch.tensor([prompt + seq])
        logp = F.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
        steps = range(len(prompt) - 1, len(prompt) + len(seq) - 1)
        out.append(sum(float(logp[t, ids[0, t + 1]]) for t in steps))
    return torch.tensor(out)


@pytest.mark.parametrize("share_kv", [True, False])
def test_beam_scores_equal_full_forward_and_exact_scorer(share_kv):
    from recbias.decoding import BeamConfig, ItemTrie, constrained_beam_search
    from recbias.decoding.scorer import score_items

    model = sid_model(seed=2)
    seqs = [item_tokens(c) for c in ITEM_CODES]
    trie = ItemTrie.build(seqs)
    # The two prompts share a header that ends inside a history run (after its level 0 token).
    prompts = [history_prompt([0, 5], [30, 31]), history_prompt([2, 7], [32])]
    cfg = BeamConfig(num_beams=6, length_penalty=0.0, share_prompt_kv=share_kv)
    plain = constrained_beam_search(model, prompts, trie, cfg, pad_token_id=0)
    attach_prefixmem(model, *vocab_tensors(), loud_config())
    model.eval()
    results = constrained_beam_search(model, prompts, trie, cfg, pad_token_id=0)
    assert [r.scores for r in results] != [r.scores for r in plain]
    with torch.no_grad():
        for prompt, res in zip(prompts, results, strict=True):
            chosen = [seqs[i] for i in res.items]
            full = _full_forward_scores(model, prompt, chosen)
            torch.testing.assert_close(torch.tensor(res.scores), full, atol=1e-4, rtol=1e-4)
            exact = score_items(model, prompt, chosen)
            torch.testing.assert_close(exact, full, atol=1e-4, rtol=1e-4)


def test_beam_search_reads_the_prompt_before_a_run_that_starts_there():
    """An item continuing a run begun in the prompt: the path alone would miss levels 0 and 1."""
    from recbias.decoding import BeamConfig, ItemTrie, constrained_beam_search
    from recbias.decoding.scorer import score_items

    model = sid_model(seed=4)
    attach_prefixmem(model, *vocab_tensors(), loud_config(inject_levels=[0, 1, 2]))
    model.eval()
    seqs = [[sid(2, c), sid(0, c), tiny.EOS] for c in range(4)]
    prompt = [*history_prompt([2], [30]), sid(0, 1), sid(1, 3)]
    cfg = BeamConfig(num_beams=4, length_penalty=0.0)
    res = constrained_beam_search(model, [prompt], ItemTrie.build(seqs), cfg, pad_token_id=0)[0]
    with torch.no_grad():
        full = _full_forward_scores(model, prompt, [seqs[i] for i in res.items])
    torch.testing.assert_close(torch.tensor(res.scores), full, atol=1e-4, rtol=1e-4)
    exact = score_items(model, prompt, [seqs[i] for i in res.items])
    torch.testing.assert_close(exact, full, atol=1e-4, rtol=1e-4)


# -- pretraining ----------------------------------------------------------------------------


def _structured_codes(n=240, seed=0):
    """Next code a deterministic function of the prefix (so a memory can learn it)."""
    g = torch.Generator().manual_seed(seed)
    c0 = torch.randint(0, 4, (n,), generator=g)
    c1 = (c0 * 3 + 1) % 4 ^ torch.randint(0, 2, (n,), generator=g)
    c2 = (c0 + 2 * c1) % 4
    return torch.stack([c0, c1, c2], dim=1)


def test_pretraining_lowers_the_loss_and_attaching_keeps_tables_with_a_fresh_projection():
    cfg = loud_config(table_rows=211, memory_dim=16, out_init_std=0.0)
    cfg.pretrain.epochs, cfg.pretrain.batch_size, cfg.pretrain.lr = 30, 32, 0.05
    encoder, losses = pretrain_prefixmem(cfg, *vocab_tensors(), _structured_codes())
    # chance is ln 4 = 1.39; the floor is ln 2 / 2 = 0.35 (c1 has one random bit, c2 none)
    assert losses[-1] < min(0.40, losses[0]) and losses[-1] > 0.34
    again, _ = pretrain_prefixmem(cfg, *vocab_tensors(), _structured_codes())
    assert torch.equal(again.tables, encoder.tables)  # seeded
    model = sid_model()
    pm = attach_prefixmem(model, *vocab_tensors(), cfg, pretrained=encoder)
    assert torch.equal(pm.tables, encoder.tables) and pm.out.weight.abs().sum() == 0
    assert pm.tables.data_ptr() != encoder.tables.data_ptr()


def test_pretraining_rejects_codes_outside_the_codebooks():
    with pytest.raises(ConfigError, match="codebooks"):
        pretrain_prefixmem(loud_config(), *vocab_tensors(), torch.tensor([[0, 4, 0]]), epochs=1)


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"memory_dim": 10, "heads": 4}, "memory_dim"),
        ({"inject_levels": [3]}, "inject_levels"),
        ({"table_rows": 0}, "table_rows"),
        ({"keys": "exact", "table_rows": 10}, "exact"),
        ({"lr_multiplier": 0.0}, "lr_multiplier"),
    ],
)
def test_bad_config_names_the_key(kw, match):
    with pytest.raises(ConfigError, match=match):
        PrefixMem(PrefixMemConfig(**kw), *vocab_tensors(), d_model=4)


def test_bad_vocabulary_tensors_are_clear_errors():
    level, code = vocab_tensors()
    with pytest.raises(ConfigError, match="one length"):
        PrefixMem(PrefixMemConfig(), level, code[:-1], d_model=4)
    broken = code.clone()
    broken[sid(1, 0)] = -1
    with pytest.raises(ConfigError, match="-1 exactly"):
        PrefixMem(PrefixMemConfig(), level, broken, d_model=4)
    gap = level.clone()
    gap[gap == 1] = 2
    with pytest.raises(ConfigError, match="levels"):
        PrefixMem(PrefixMemConfig(), gap, code, d_model=4)


def test_attaching_twice_or_before_resizing_is_refused():
    model = sid_model()
    attach_prefixmem(model, *vocab_tensors(), loud_config())
    with pytest.raises(ModelError, match="already"):
        attach_prefixmem(model, *vocab_tensors(), loud_config())
    assert detach_prefixmem(model) is not None and find_prefixmem(model) is None
    assert not model.get_input_embeddings()._forward_hooks
    with pytest.raises(ModelError, match="resize_token_embeddings"):
        attach_prefixmem(tiny.tiny_llama(VOCAB - 5), *vocab_tensors(), loud_config())


def test_engram_gate_scales_the_term_by_the_sigmoid_of_the_normalised_match():
    model = sid_model()
    embedding = model.get_input_embeddings()
    ids = _ids()
    with torch.no_grad():
        plain = embedding(ids)
        pm = attach_prefixmem(model, *vocab_tensors(), loud_config(gate="engram"))
        term = pm.term(ids)
        gated = embedding(ids)

    def rms(x):
        return x / x.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt()

    alpha = torch.sigmoid((rms(plain) * rms(term)).sum(-1, keepdim=True) / plain.shape[-1] ** 0.5)
    torch.testing.assert_close(gated, plain + alpha * term)
    assert float(alpha.min()) > 0 and float(alpha.max()) < 1 and term.abs().sum() > 0
