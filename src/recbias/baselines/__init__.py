"""Non-LLM baselines that implement the ``Recommender`` protocol."""

from recbias.baselines.popularity import PopularityRecommender, count_items, popularity_order

__all__ = ["PopularityRecommender", "count_items", "popularity_order"]
