from __future__ import annotations

from dataclasses import fields

import pytest
import torch

import tiny
from recbias.decoding import ItemTrie
from recbias.errors import RecbiasError

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
    "Clueless (1995)",
]
EOS = tiny.EOS


@pytest.fixture
def catalog(any_tok):
    seqs = [tiny.title_tokens(any_tok, t) for t in TITLES]
    ids = [100 + i for i in range(len(TITLES))]
    return any_tok, seqs, ids, ItemTrie.build(seqs, ids)


def test_every_item_walks_to_its_leaf(catalog):
    _, seqs, ids, trie = catalog
    for item, seq in zip(ids, seqs, strict=True):
        assert int(trie.leaf_item[trie.walk(seq)]) == item


def test_only_catalog_items_reach_a_leaf(catalog):
    tok, seqs, _, trie = catalog
    outsiders = ["Toy", "Toy Story 3", "Heat Waves", "Star", "Alien 3", "Casino Royale"]
    for title in outsiders:
        node = trie.walk(tiny.title_tokens(tok, title))
        assert node == -1 or int(trie.leaf_item[node]) == -1
    for seq in seqs:  # dropping the terminator never completes an item
        assert int(trie.leaf_item[trie.walk(seq[:-1])]) == -1


def test_title_that_is_a_token_prefix_of_another_stays_complete(catalog):
    tok, seqs, ids, trie = catalog
    short = tok("Heat", add_special_tokens=False).input_ids
    long = tok("Heat Wave", add_special_tokens=False).input_ids
    assert long[: len(short)] == short  # the premise, for both tokenizers
    fork = trie.walk(short)
    assert trie.allowed(fork).numel() >= 2
    assert int(trie.leaf_item[trie.walk(seqs[TITLES.index("Heat")])]) == ids[TITLES.index("Heat")]
    assert trie.prefix_free


def test_csr_children_are_contiguous_and_sorted(catalog):
    _, _, _, trie = catalog
    assert trie.child_ptr[0] == 0 and trie.child_ptr[-1] == trie.n_nodes - 1
    for node in range(trie.n_nodes):
        tokens = trie.allowed(node)
        assert torch.all(tokens[1:] > tokens[:-1])
        lo, hi = int(trie.child_ptr[node]), int(trie.child_ptr[node + 1])
        assert torch.all(trie.parent[trie.child_node[lo:hi]] == node)
    assert torch.all(trie.depth[trie.child_node] == trie.depth[trie.parent[trie.child_node]] + 1)


def test_next_nodes_matches_pointer_walk(catalog):
    _, _, _, trie = catalog
    reference = {(int(trie.parent[c]), int(trie.token_in[c])): c for c in range(1, trie.n_nodes)}
    gen = torch.Generator().manual_seed(0)
    nodes = torch.randint(-1, trie.n_nodes, (2000,), generator=gen)
    tokens = torch.randint(-1, trie.stride + 3, (2000,), generator=gen)
    tokens[:500] = trie.token_in[trie.child_node[torch.randint(0, trie.n_nodes - 1, (500,))]]
    got = trie.next_nodes(nodes, tokens).tolist()
    want = [reference.get((n, t), -1) for n, t in zip(nodes.tolist(), tokens.tolist(), strict=True)]
    assert got == want


def test_edges_are_padded_children(catalog):
    _, _, _, trie = catalog
    nodes = torch.tensor([0, trie.item_node[0], 1])
    token, child, valid = trie.edges(nodes)
    assert token.shape[1] == max(trie.allowed(int(n)).numel() for n in nodes)
    for row, node in enumerate(nodes.tolist()):
        assert token[row][valid[row]].tolist() == trie.allowed(node).tolist()
        assert child[row][~valid[row]].eq(-1).all()
        assert torch.equal(
            trie.next_nodes(torch.full_like(token[row], node), token[row])[valid[row]],
            child[row][valid[row]],
        )


def test_item_sequences_round_trip(catalog):
    _, seqs, ids, trie = catalog
    assert trie.item_sequences() == seqs
    assert trie.item_ids.tolist() == ids
    assert trie.max_depth == max(len(s) for s in seqs)


def test_max_leaf_depth_is_deepest_item_below():
    trie = ItemTrie.build([[5, 6, 7, 2], [5, 2], [8, 2]])
    assert trie.max_leaf_depth[0] == 4
    assert trie.max_leaf_depth[trie.walk([5])] == 4
    assert trie.max_leaf_depth[trie.walk([8])] == 2


def test_identical_sequences_name_both_items():
    with pytest.raises(RecbiasError, match=r"items 7 and 9"):
        ItemTrie.build([[4, 2], [5, 2], [4, 2]], item_ids=[7, 8, 9])


def test_invalid_catalogs_are_rejected():
    with pytest.raises(RecbiasError, match="empty catalog"):
        ItemTrie.build([])
    with pytest.raises(RecbiasError, match="appears more than once"):
        ItemTrie.build([[4, 2], [5, 2]], item_ids=[1, 1])
    with pytest.raises(RecbiasError, match="empty token sequence"):
        ItemTrie.build([[4, 2], []])


def test_sequence_that_is_a_prefix_of_another_is_allowed_but_flagged():
    trie = ItemTrie.build([[4, 5], [4, 5, 6]])
    assert int(trie.leaf_item[trie.walk([4, 5])]) == 0
    assert int(trie.leaf_item[trie.walk([4, 5, 6])]) == 1
    assert not trie.prefix_free


def test_restrict_keeps_only_the_given_items(catalog):
    _, seqs, ids, trie = catalog
    sub = trie.restrict([ids[3], ids[0]])
    assert sub.item_ids.tolist() == [ids[3], ids[0]]
    assert sub.item_sequences() == [seqs[3], seqs[0]]
    assert sub.walk(seqs[1]) == -1 or int(sub.leaf_item[sub.walk(seqs[1])]) == -1
    with pytest.raises(RecbiasError, match="not in the trie"):
        trie.restrict([12345])


def test_hf_prefix_fn_follows_the_generated_suffix(catalog):
    _, seqs, _, trie = catalog
    allowed = trie.hf_prefix_fn(prompt_width=3, dead_end=EOS)
    prompt = [9, 9, 9]
    assert allowed(0, torch.tensor(prompt)) == trie.allowed(0).tolist()
    assert (
        allowed(0, torch.tensor(prompt + seqs[0][:2]))
        == trie.allowed(trie.walk(seqs[0][:2])).tolist()
    )
    assert allowed(0, torch.tensor(prompt + seqs[0])) == [EOS]  # finished: dead end


def test_to_moves_every_tensor_field_and_keeps_the_trie(catalog):
    _, seqs, ids, trie = catalog
    tensor_fields = [
        f.name for f in fields(trie) if isinstance(getattr(trie, f.name), torch.Tensor)
    ]
    assert len(tensor_fields) == 11
    same = trie.to("cpu")
    assert same is not trie and same.stride == trie.stride and same.device == torch.device("cpu")
    for name in tensor_fields:
        assert torch.equal(getattr(same, name), getattr(trie, name)), name
    assert same.item_sequences() == seqs and same.item_ids.tolist() == ids
    meta = trie.to(torch.device("meta"))  # no GPU here: meta shows that no field is left behind
    assert meta.stride == trie.stride and meta.device == torch.device("meta")
    for name in tensor_fields:
        moved = getattr(meta, name)
        assert moved.device.type == "meta" and moved.shape == getattr(trie, name).shape, name
        assert getattr(trie, name).device.type == "cpu"  # the original is untouched
