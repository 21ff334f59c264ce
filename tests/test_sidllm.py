"""SID-LLM pieces on tiny models: SID tokens, their embedding rows, prompts, trie, beam, scorer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import tiny
from recbias.decoding import BeamConfig, constrained_beam_search
from recbias.decoding import information_gain as ig
from recbias.decoding.scorer import score_items
from recbias.domain import Domain
from recbias.errors import DataError, ModelError
from recbias.llmrec.recommender import build_trie
from recbias.lm.batching import encode_samples
from recbias.lm.loading import LoraSettings, add_lora
from recbias.prompts import PromptBuilder, PromptConfig
from recbias.sidllm.assemble import lora_token_indices
from recbias.sidllm.config import SidConfig
from recbias.sidllm.embeddings import init_sid_rows, resize_for_sid
from recbias.sidllm.items import SidText
from recbias.sidllm.vocab import SidVocab, add_sid_tokens

TITLES = tiny.MOVIES  # 8 items
# 2 levels x 4 codes + a suffix level of 2; Toy Story / Toy Story 2 share the prefix (0, 1);
# level-1 code 2 is used by no item.
CODES = np.array(
    [[0, 1, 0], [0, 1, 1], [1, 0, 0], [1, 3, 0], [2, 0, 0], [2, 3, 0], [3, 1, 0], [3, 0, 0]]
)
SIZES = [4, 4, 2]


def fresh_tok(kind: str = "byte"):
    """A new tokenizer (adding tokens mutates it; the session fixtures stay untouched)."""
    return tiny.byte_level_tokenizer() if kind == "byte" else tiny.metaspace_tokenizer()


def sid_model(tok, vocab: SidVocab, tied: bool = True, cfg: SidConfig | None = None):
    """A tiny Llama over the tokenizer before the SID tokens, resized and initialised."""
    model = tiny.tiny_llama(min(vocab.ids), tied=tied)
    rows = resize_for_sid(model, vocab)
    vocab = vocab.with_rows(rows)
    init_sid_rows(model, tok, vocab, CODES, TITLES, cfg or SidConfig())
    return model, vocab


def sid_builder(tok, vocab: SidVocab, with_title: bool = False, **prompt) -> PromptBuilder:
    text = SidText(TITLES, [vocab.text(c) for c in CODES], with_title)
    return PromptBuilder(tok, PromptConfig(**prompt), Domain("movie", "movies"), text)


# -- tokens --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["byte", "meta"])
def test_each_sid_token_is_one_new_id(kind):
    tok = fresh_tok(kind)
    before = len(tok)
    vocab = add_sid_tokens(tok, SIZES)
    assert vocab.ids == list(range(before, before + sum(SIZES)))
    assert vocab.tokens[1][3] == "<b_3>" and vocab.tokens[2][1] == "<c_1>"
    assert vocab.n_levels == 3 and vocab.sizes == SIZES
    for row in CODES:
        assert tok(vocab.text(row), add_special_tokens=False).input_ids == vocab.item_ids(row)
    assert vocab.text(CODES[1]) == "<a_0><b_1><c_1>"


def test_level_and_code_maps_cover_every_row():
    tok = fresh_tok()
    vocab = add_sid_tokens(tok, SIZES).with_rows(len(tok) + 5)  # padded embedding rows
    assert vocab.level_of.shape == (len(tok) + 5,)
    sid = vocab.level_of >= 0
    assert int(sid.sum()) == sum(SIZES)
    assert (vocab.code_of[~sid] == -1).all() and (vocab.level_of[: min(vocab.ids)] == -1).all()
    tid = vocab.token_ids[1][2]
    assert (int(vocab.level_of[tid]), int(vocab.code_of[tid])) == (1, 2)


def test_adding_the_tokens_again_keeps_their_ids():
    tok = fresh_tok()
    first = add_sid_tokens(tok, SIZES)
    n = len(tok)
    assert add_sid_tokens(tok, SIZES).token_ids == first.token_ids and len(tok) == n


def test_too_few_rows_for_the_tokens_is_an_error():
    tok = fresh_tok()
    vocab = add_sid_tokens(tok, SIZES)
    with pytest.raises(ModelError, match="rows"):
        vocab.with_rows(len(tok) - 1)


# -- embedding rows ------------------------------------------------------------------------------


def expected_title_means(weight: torch.Tensor, tok, vocab: SidVocab) -> torch.Tensor:
    """Plain loops: per (level, code), mean over its items of the mean title-token row."""
    old = weight[: min(vocab.ids)]
    item_vecs = [old[tok(t, add_special_tokens=False).input_ids].mean(0) for t in TITLES]
    rows = []
    for level, size in enumerate(SIZES):
        for code in range(size):
            members = [v for v, c in zip(item_vecs, CODES[:, level], strict=True) if c == code]
            rows.append(torch.stack(members).mean(0) if members else old.mean(0))
    return torch.stack(rows)


def test_title_mean_init_matches_plain_loops_and_ties_the_output():
    tok = fresh_tok()
    vocab = add_sid_tokens(tok, SIZES)
    model, vocab = sid_model(tok, vocab)
    weight = model.get_input_embeddings().weight.detach()
    expect = expected_title_means(weight, tok, vocab)
    assert torch.allclose(weight[vocab.ids], expect, atol=1e-6)
    assert model.get_output_embeddings().weight.data_ptr() == weight.data_ptr()
    unused = vocab.token_ids[1][2]
    assert torch.allclose(weight[unused], weight[: min(vocab.ids)].mean(0), atol=1e-6)


def test_untied_output_rows_are_initialised_from_the_output_matrix():
    tok = fresh_tok()
    vocab = add_sid_tokens(tok, SIZES)
    model, vocab = sid_model(tok, vocab, tied=False)
    head = model.get_output_embeddings().weight.detach()
    assert head.data_ptr() != model.get_input_embeddings().weight.data_ptr()
    assert torch.allclose(head[vocab.ids], expected_title_means(head, tok, vocab), atol=1e-6)


def test_vocab_mean_noise_is_seeded_and_scaled():
    tok = fresh_tok()
    vocab = add_sid_tokens(tok, SIZES)
    rows = []
    for seed in (0, 0, 1):
        cfg = SidConfig(init="vocab_mean", init_noise=0.5, seed=seed)
        model, v = sid_model(tok, vocab, cfg=cfg)
        rows.append(model.get_input_embeddings().weight.detach()[v.ids])
    assert torch.equal(rows[0], rows[1]) and not torch.equal(rows[0], rows[2])
    model, v = sid_model(tok, vocab, cfg=SidConfig(init="vocab_mean"))
    old = model.get_input_embeddings().weight.detach()[: min(v.ids)]
    assert torch.allclose(model.get_input_embeddings().weight[v.ids], old.mean(0).expand(10, -1))


def test_lora_trains_the_sid_rows():
    tok = fresh_tok()
    vocab = add_sid_tokens(tok, SIZES)
    model, vocab = sid_model(tok, vocab)
    peft = add_lora(model, LoraSettings(r=2), lora_token_indices(model, vocab))
    ids = torch.tensor([[5, *vocab.item_ids(CODES[3]), 7]])
    peft.train()
    peft(input_ids=ids, labels=ids).loss.backward()
    trained = [p for n, p in peft.named_parameters() if "trainable_tokens" in n and p.requires_grad]
    assert trained and all(p.grad is not None and p.grad.abs().sum() > 0 for p in trained)
    assert sum(p.numel() for p in trained) == len(vocab.ids) * model.config.hidden_size


def test_lora_on_untied_embeddings_trains_input_and_output_rows():
    tok = fresh_tok()
    vocab = add_sid_tokens(tok, SIZES)
    model, vocab = sid_model(tok, vocab, tied=False)
    indices = lora_token_indices(model, vocab)
    assert isinstance(indices, dict) and set(indices) == {"embed_tokens", "lm_head"}
    peft = add_lora(model, LoraSettings(r=2), indices)
    ids = torch.tensor([[5, *vocab.item_ids(CODES[3])]])
    peft(input_ids=ids, labels=ids).loss.backward()
    trained = [
        n for n, p in peft.named_parameters() if "trainable_tokens" in n and p.grad is not None
    ]
    assert any("embed_tokens" in n for n in trained) and any("lm_head" in n for n in trained)


# -- prompts and targets -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["byte", "meta"])
def test_history_and_target_are_spelled_as_sids(kind):
    tok = fresh_tok(kind)
    vocab = add_sid_tokens(tok, SIZES)
    builder = sid_builder(tok, vocab)
    assert builder.target_text("Heat") == '"<a_1><b_0><c_0>"'
    text = builder.render(["Toy Story", "Fargo"], target="Heat")
    assert '"<a_0><b_1><c_0>", "<a_3><b_0><c_0>"' in text and "Toy Story" not in text
    enc = builder.encode(["Toy Story", "Fargo"], [0, 7], target="Heat")
    assert enc.target_ids == builder.encode_target("Heat")
    assert enc.target_ids[-1] == tok.eos_token_id
    sid = vocab.item_ids(CODES[2])
    assert any(enc.target_ids[i : i + 3] == sid for i in range(len(enc.target_ids)))
    for span, item in zip(enc.spans_of("history"), (0, 7), strict=True):
        assert vocab.item_ids(CODES[item])[0] in enc.input_ids[span.start : span.end]


def test_sid_plus_title_history_keeps_sid_targets():
    tok = fresh_tok()
    vocab = add_sid_tokens(tok, SIZES)
    builder = sid_builder(tok, vocab, with_title=True, template="igd")
    text = builder.render(["Alien"], target="Casino")
    assert "<a_2><b_0><c_0> Alien, " not in text and "<a_2><b_0><c_0> Alien\n" in text
    assert text.endswith("### Response: \n<a_3><b_1><c_0>\n")


def test_unknown_titles_stay_text_in_the_history_and_fail_as_targets():
    tok = fresh_tok()
    builder = sid_builder(tok, add_sid_tokens(tok, SIZES))
    assert "Apollo 13" in builder.render(["Apollo 13"])
    with pytest.raises(DataError, match="Apollo 13"):
        builder.encode_target("Apollo 13")


# -- trie, beam search, exact scorer, IGD weights ----------------------------------------------


@pytest.fixture
def sid_lm():
    tok = fresh_tok()
    vocab = add_sid_tokens(tok, SIZES)
    model, vocab = sid_model(tok, vocab)
    builder = sid_builder(tok, vocab)
    prompts = [
        builder.encode([TITLES[i] for i in hist], list(hist)).input_ids
        for hist in ([0, 2], [5], [7, 6, 1])
    ]
    return tok, vocab, model, builder, prompts


def test_trie_holds_each_items_sid_path(sid_lm):
    tok, vocab, _, builder, _ = sid_lm
    trie = build_trie(builder, TITLES, range(len(TITLES)))
    for item in range(len(TITLES)):
        seq = builder.encode_target(TITLES[item])
        assert int(trie.leaf_item[trie.walk(seq)]) == item
    node = trie.walk(tok('"', add_special_tokens=False).input_ids)
    allowed = sorted(trie.allowed(node).tolist())
    assert allowed == vocab.token_ids[0]  # after the quote: the 4 level-a codes


def reference_logprob(model, prompt: list[int], seq: list[int]) -> float:
    """Sum of the token log-probs of ``seq`` after ``prompt`` by one plain full forward."""
    ids = torch.tensor([prompt + seq])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
    return sum(float(logp[len(prompt) - 1 + t, tok]) for t, tok in enumerate(seq))


def test_exact_scorer_equals_a_full_forward(sid_lm):
    _, _, model, builder, prompts = sid_lm
    seqs = [builder.encode_target(t) for t in TITLES]
    for prompt in prompts:
        got = score_items(model, prompt, seqs)
        want = [reference_logprob(model, prompt, s) for s in seqs]
        assert got.tolist() == pytest.approx(want, abs=1e-4)


def test_wide_beam_ranks_every_item_by_its_exact_score(sid_lm):
    _, _, model, builder, prompts = sid_lm
    trie = build_trie(builder, TITLES, range(len(TITLES)))
    seqs = [builder.encode_target(t) for t in TITLES]
    cfg = BeamConfig(num_beams=len(TITLES) + 2, length_penalty=0.0)
    for prompt, res in zip(
        prompts, constrained_beam_search(model, prompts, trie, cfg, 0), strict=True
    ):
        exact = score_items(model, prompt, seqs)
        assert sorted(res.items) == list(range(len(TITLES)))
        assert res.scores == pytest.approx([float(exact[i]) for i in res.items], abs=1e-4)


def test_narrow_beam_returns_distinct_catalog_items(sid_lm):
    _, _, model, builder, prompts = sid_lm
    trie = build_trie(builder, TITLES, [1, 2, 4, 6])
    for res in constrained_beam_search(model, prompts, trie, BeamConfig(num_beams=3), 0):
        assert len(res.items) == 3 == len(set(res.items)) and set(res.items) <= {1, 2, 4, 6}


def test_igd_zero_gain_tokens_on_sid_targets(sid_lm):
    """Every item is a training target once. Forced (zero IG): the quotes, EOS, the suffix of an
    item alone under its prefix, and <b_1> after <a_0> (both Toy Story items sit under (0, 1));
    not forced: every a code, the other b codes, the suffix of the two Toy Story items."""
    tok, _, _, builder, _ = sid_lm
    counts = np.ones(len(TITLES), dtype=np.int64)
    frame = pd.DataFrame({"sample_id": range(8), "history": [[0]] * 8, "target": range(8)})
    samples = encode_samples(builder, frame, TITLES, 512)
    trie = ig.target_trie(builder, TITLES, counts)
    nodes, _ = ig.walk_samples(trie, samples, TITLES)
    zero = ig.zero_gain_tokens(ig.trie_information(trie, counts), nodes)
    quote = len(tok('"', add_special_tokens=False).input_ids)
    for row, s in enumerate(samples):
        n = len(s.prompt.target_ids)
        sid_part = zero[row, quote : quote + 3].tolist()
        assert zero[row, :quote].all() and zero[row, quote + 3 : n].all()
        toy_story = s.target_item <= 1
        assert sid_part == [False, toy_story, not toy_story]


# -- saved codes -----------------------------------------------------------------------------------


def test_saved_codes_round_trip_and_bad_files_name_the_path(tmp_path):
    from recbias.sidllm.items import SidItems, load_sid_items, save_sid_items

    path = tmp_path / "semantic_ids.json"
    save_sid_items(SidItems(CODES, SIZES, {"n_items": 8}, "tfidf"), path)
    back = load_sid_items(path, n_items=8)
    assert np.array_equal(back.codes, CODES) and back.sizes == SIZES and back.source == "tfidf"
    with pytest.raises(DataError, match=r"n_items=9"):
        load_sid_items(path, n_items=9)
    path.write_text(
        path.read_text().replace("[\n   3,\n   0,\n   0\n  ]", "[\n   4,\n   0,\n   0\n  ]")
    )
    with pytest.raises(DataError, match="outside the sizes"):
        load_sid_items(path, n_items=8)
    path.write_text("{")
    with pytest.raises(DataError, match="semantic_ids.json"):
        load_sid_items(path, n_items=8)
