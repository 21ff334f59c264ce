"""A token trie over the item catalog, stored as flat CSR tensors for vectorised decoding.

Every item is one root-to-leaf path: its token sequence (title tokens plus a terminator, normally
EOS) as the caller tokenized it. Nodes are numbered breadth-first and children are sorted by token,
so the children of node ``n`` are the contiguous edge range ``child_ptr[n]:child_ptr[n + 1]``.

    trie = ItemTrie.build([[5, 9, 2], [5, 2]], item_ids=[10, 11])
    trie.walk([5, 2])                      # node id, -1 when the path leaves the trie
    trie.leaf_item[trie.walk([5, 2])]      # tensor(11)

Tensors live on one device; :meth:`ItemTrie.to` moves a copy (decoding moves the trie to the
model's device once per call). Only the CPU path is tested: no CUDA device was available.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace

import torch

from recbias.errors import RecbiasError


@dataclass(frozen=True, eq=False)
class ItemTrie:
    """Flat trie. Shapes: ``N`` nodes (root = 0), ``E = N - 1`` edges, ``I`` items."""

    child_ptr: torch.Tensor  # [N + 1] edge range of each node's children
    child_token: torch.Tensor  # [E] token on each edge, sorted within a node
    child_node: torch.Tensor  # [E] node each edge leads to
    parent: torch.Tensor  # [N] parent node (-1 for the root)
    token_in: torch.Tensor  # [N] token on the edge into the node (-1 for the root)
    depth: torch.Tensor  # [N] tokens from the root
    max_leaf_depth: torch.Tensor  # [N] depth of the deepest complete item at or below the node
    leaf_item: torch.Tensor  # [N] item id completed at the node, else -1
    item_ids: torch.Tensor  # [I] item ids in build order
    item_node: torch.Tensor  # [I] node reached by each item's full sequence
    edge_key: torch.Tensor  # [E] parent * stride + token: ascending, for searchsorted lookups
    stride: int  # 1 + largest token id in the trie

    @classmethod
    def build(
        cls, item_seqs: Sequence[Sequence[int]], item_ids: Sequence[int] | None = None
    ) -> ItemTrie:
        """Build from one token sequence per item; ``item_ids`` defaults to ``0..len-1``."""
        ids = list(range(len(item_seqs))) if item_ids is None else [int(i) for i in item_ids]
        _check_items(item_seqs, ids)
        children, ends = _insert_all(item_seqs, ids)
        return _flatten(children, ends, ids)

    @property
    def device(self) -> torch.device:
        return self.child_ptr.device

    def to(self, device: torch.device | str) -> ItemTrie:
        """A copy with every tensor field on ``device`` (tensors already there are shared)."""
        moved = {
            f.name: getattr(self, f.name).to(device)
            for f in fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return replace(self, **moved)

    @property
    def n_nodes(self) -> int:
        return self.depth.numel()

    @property
    def n_items(self) -> int:
        return self.item_ids.numel()

    @property
    def max_depth(self) -> int:
        return int(self.max_leaf_depth[0])

    @property
    def prefix_free(self) -> bool:
        """True when no item's sequence is a proper prefix of another (every leaf is a dead end)."""
        leaves = self.item_node
        return bool(torch.all(self.child_ptr[leaves + 1] == self.child_ptr[leaves]))

    def __len__(self) -> int:
        return self.n_items

    def walk(self, seq: Sequence[int]) -> int:
        """Node reached by following ``seq`` from the root, or -1 if it leaves the trie."""
        node = torch.zeros(1, dtype=torch.long, device=self.device)
        for tok in seq:
            node = self.next_nodes(node, torch.tensor([int(tok)], device=self.device))
        return int(node[0])

    def allowed(self, node: int) -> torch.Tensor:
        """Tokens that continue ``node``, ascending. ``[n_children]``"""
        return self.child_token[self.child_ptr[node] : self.child_ptr[node + 1]]

    def next_nodes(self, nodes: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Child of each ``nodes[i]`` along ``tokens[i]``; -1 where there is none or nodes[i] is -1.

        ``nodes, tokens: [m]`` -> ``[m]``. Edges are globally sorted by (parent, token), so one
        ``searchsorted`` on the composite key ``parent * stride + token`` finds them all.
        """
        keys = nodes.long() * self.stride + tokens.long()
        pos = torch.searchsorted(self.edge_key, keys).clamp(max=self.edge_key.numel() - 1)
        found = (self.edge_key[pos] == keys) & (nodes >= 0) & (tokens >= 0) & (tokens < self.stride)
        return torch.where(found, self.child_node[pos], -1)

    def edges(self, nodes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Padded children of each (valid, >= 0) node: ``token, child, valid``, each ``[m, D]``.

        ``D`` is the largest number of children among ``nodes`` (at least 1). Padding has token 0,
        child -1 and ``valid`` False.
        """
        start = self.child_ptr[nodes]
        degree = self.child_ptr[nodes + 1] - start
        width = max(int(degree.max()) if nodes.numel() else 0, 1)
        offset = torch.arange(width, device=nodes.device)
        valid = offset[None, :] < degree[:, None]
        index = torch.where(valid, start[:, None] + offset[None, :], 0)
        token = torch.where(valid, self.child_token[index], 0)
        child = torch.where(valid, self.child_node[index], -1)
        return token, child, valid

    def path_tail(self, nodes: torch.Tensor, k: int) -> torch.Tensor:
        """Last ``k`` tokens of the path from the root to each of ``nodes: [m]`` -> ``[m, k]``,
        aligned on the right (the node's own token last), -1 before the root."""
        out = torch.full((nodes.numel(), k), -1, dtype=torch.long, device=nodes.device)
        node = nodes.long()
        for col in range(k - 1, -1, -1):
            out[:, col] = torch.where(node >= 0, self.token_in[node.clamp(min=0)], -1)
            node = torch.where(node > 0, self.parent[node.clamp(min=0)], -1)
        return out

    def item_sequences(self) -> list[list[int]]:
        """Token sequence of every item, aligned with ``item_ids`` (rebuilt from parent links)."""
        depth = self.depth[self.item_node]
        cols = self.max_depth
        out = torch.full((self.n_items, cols), -1, dtype=torch.long, device=self.device)
        node = self.item_node.clone()
        for back in range(cols):
            col = depth - 1 - back
            live = col >= 0
            out[live, col[live]] = self.token_in[node[live]]
            node = torch.where(live, self.parent[node], node)
        return [row[:d] for row, d in zip(out.tolist(), depth.tolist(), strict=True)]

    def hf_prefix_table(self) -> dict[tuple[int, ...], list[int]]:
        """Every non-leaf path from the root -> the tokens allowed after it."""
        paths: list[tuple[int, ...]] = [()]
        parent, token_in = self.parent.tolist(), self.token_in.tolist()
        for node in range(1, self.n_nodes):  # breadth-first: parents come first
            paths.append((*paths[parent[node]], token_in[node]))
        ptr = self.child_ptr.tolist()
        tokens = self.child_token.tolist()
        return {
            path: tokens[ptr[n] : ptr[n + 1]] for n, path in enumerate(paths) if ptr[n + 1] > ptr[n]
        }

    def hf_prefix_fn(
        self,
        prompt_width: int,
        dead_end: int,
        table: dict[tuple[int, ...], list[int]] | None = None,
    ) -> Callable[[int, torch.Tensor], list[int]]:
        """A ``prefix_allowed_tokens_fn`` for HF ``generate`` over this trie (for comparisons).

        ``prompt_width`` is the padded prompt length of the batch; the generated suffix is looked
        up in ``table`` (default: :meth:`hf_prefix_table`, built now). Off-trie and finished beams
        (HF's -1e9 placeholders) get ``[dead_end]``.
        """
        lookup = self.hf_prefix_table() if table is None else table

        def allowed(batch_id: int, input_ids: torch.Tensor) -> list[int]:
            return lookup.get(tuple(input_ids[prompt_width:].tolist()), [dead_end])

        return allowed

    def restrict(self, item_ids: Sequence[int]) -> ItemTrie:
        """A new trie holding only ``item_ids`` (e.g. the training targets), in the given order."""
        index = {int(i): k for k, i in enumerate(self.item_ids.tolist())}
        missing = [int(i) for i in item_ids if int(i) not in index]
        if missing:
            raise RecbiasError(f"restrict: item ids not in the trie: {missing[:10]}")
        seqs = self.item_sequences()
        return ItemTrie.build([seqs[index[int(i)]] for i in item_ids], item_ids).to(self.device)


def _check_items(item_seqs: Sequence[Sequence[int]], ids: list[int]) -> None:
    if len(item_seqs) == 0:
        raise RecbiasError("cannot build an item trie from an empty catalog")
    if len(ids) != len(item_seqs):
        raise RecbiasError(f"{len(item_seqs)} item sequences but {len(ids)} item ids")
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise RecbiasError(f"item id {dup} appears more than once")
    for item, seq in zip(ids, item_seqs, strict=True):
        if len(seq) == 0:
            raise RecbiasError(f"item {item} has an empty token sequence")
        if min(seq) < 0:
            raise RecbiasError(f"item {item} has a negative token id")


def _insert_all(
    item_seqs: Sequence[Sequence[int]], ids: list[int]
) -> tuple[list[dict[int, int]], dict[int, int]]:
    """Pointer trie: ``children[node][token] -> node`` and ``ends[node] -> item id``."""
    children: list[dict[int, int]] = [{}]
    ends: dict[int, int] = {}
    for item, seq in zip(ids, item_seqs, strict=True):
        node = 0
        for tok in seq:
            nxt = children[node].get(int(tok))
            if nxt is None:
                nxt = len(children)
                children[node][int(tok)] = nxt
                children.append({})
            node = nxt
        if node in ends:
            raise RecbiasError(
                f"items {ends[node]} and {item} have identical token sequences; "
                "deduplicate titles or make them distinct before building the trie"
            )
        ends[node] = item
    return children, ends


def _flatten(children: list[dict[int, int]], ends: dict[int, int], ids: list[int]) -> ItemTrie:
    """Renumber the pointer trie breadth-first and lay it out as CSR tensors."""
    order, new_id = [0], {0: 0}
    ptr, tokens, parent, token_in, depth = [0], [], [-1], [-1], [0]
    for old in order:  # grows while iterating: breadth-first
        for tok in sorted(children[old]):
            child = children[old][tok]
            new_id[child] = len(order)
            order.append(child)
            tokens.append(tok)
            parent.append(new_id[old])
            token_in.append(tok)
            depth.append(depth[new_id[old]] + 1)
        ptr.append(len(tokens))
    leaf = [-1] * len(order)
    for old, item in ends.items():
        leaf[new_id[old]] = item
    node_of_item = {item: new_id[old] for old, item in ends.items()}
    parent_t = torch.tensor(parent, dtype=torch.long)
    depth_t = torch.tensor(depth, dtype=torch.long)
    leaf_t = torch.tensor(leaf, dtype=torch.long)
    token_t = torch.tensor(tokens, dtype=torch.long)
    stride = int(token_t.max()) + 1
    return ItemTrie(
        child_ptr=torch.tensor(ptr, dtype=torch.long),
        child_token=token_t,
        child_node=torch.arange(1, len(order), dtype=torch.long),  # breadth-first numbering
        parent=parent_t,
        token_in=torch.tensor(token_in, dtype=torch.long),
        depth=depth_t,
        max_leaf_depth=_max_leaf_depth(parent_t, depth_t, leaf_t),
        leaf_item=leaf_t,
        item_ids=torch.tensor(ids, dtype=torch.long),
        item_node=torch.tensor([node_of_item[i] for i in ids], dtype=torch.long),
        edge_key=parent_t[1:] * stride + token_t,
        stride=stride,
    )


def _max_leaf_depth(parent: torch.Tensor, depth: torch.Tensor, leaf: torch.Tensor) -> torch.Tensor:
    """Deepest item end in each subtree, propagated bottom-up one depth level at a time."""
    best = torch.where(leaf >= 0, depth, torch.zeros_like(depth))
    for d in range(int(depth.max()), 0, -1):
        at = (depth == d).nonzero().squeeze(1)
        best.scatter_reduce_(0, parent[at], best[at], reduce="amax")
    return best
