"""Decoding constrained to the item catalog: item trie, batched beam search, exact item scores."""

from recbias.decoding.beam import BeamResult, constrained_beam_search
from recbias.decoding.config import BeamConfig, EdgeScores, ScoreHook
from recbias.decoding.scorer import item_token_logprobs, score_items, score_items_batch
from recbias.decoding.trie import ItemTrie

__all__ = [
    "BeamConfig",
    "BeamResult",
    "EdgeScores",
    "ItemTrie",
    "ScoreHook",
    "constrained_beam_search",
    "item_token_logprobs",
    "score_items",
    "score_items_batch",
]
