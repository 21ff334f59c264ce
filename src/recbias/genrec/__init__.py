"""Generative recommenders over semantic IDs (TIGER-style) for the bias probes.

from recbias.genrec import GenRecConfig, GenerativeRecommender
rec = GenerativeRecommender(GenRecConfig(position="alibi")).fit(train, items, valid)
"""

from recbias.genrec.config import GenRecConfig, GenRecRunConfig
from recbias.genrec.recommender import GenerativeRecommender

__all__ = ["GenRecConfig", "GenRecRunConfig", "GenerativeRecommender"]
