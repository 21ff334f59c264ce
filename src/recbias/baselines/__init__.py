"""Non-LLM baselines that implement the ``Recommender`` protocol."""

from recbias.baselines.gru4rec import GRU4RecConfig, GRU4RecRecommender
from recbias.baselines.popularity import PopularityRecommender, count_items, popularity_order
from recbias.baselines.sasrec import SASRecConfig, SASRecRecommender

__all__ = [
    "GRU4RecConfig",
    "GRU4RecRecommender",
    "PopularityRecommender",
    "SASRecConfig",
    "SASRecRecommender",
    "count_items",
    "popularity_order",
]
