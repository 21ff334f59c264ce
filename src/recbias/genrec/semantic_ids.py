"""Semantic IDs: quantise item embeddings into L levels × C codes plus a collision suffix.

    sid = build_semantic_ids(cfg, embeddings)     # embeddings: [n_items, dim]
    sid.codes        # [n_items, L+1] int64; last column = suffix (earlier items sharing the prefix)
    sid.sizes        # [C, ..., C, max_suffix_used + 1]: tokens per level
    sid.report       # codebook usage per level (used / C, perplexity) and collisions

Residual k-means (default, as in GRID / cornac ``rkmeans``): level l runs k-means on the residuals
left by levels < l; deterministic given the seed (:mod:`recbias.genrec.rkmeans`). RQ-VAE lives in
:mod:`recbias.genrec.rqvae`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from recbias.errors import ConfigError
from recbias.genrec.config import GenRecConfig
from recbias.genrec.rkmeans import residual_kmeans

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SemanticIds:
    codes: np.ndarray  # [n_items, L+1] int64
    sizes: list[int]  # tokens per level, L+1 entries
    report: dict[str, Any]


def collision_suffix(prefix: np.ndarray) -> np.ndarray:
    """[n] count of earlier rows (lower item id) with the same prefix row: 0, 1, 2, ..."""
    _, inverse = np.unique(prefix, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    seen: dict[int, int] = {}
    out = np.empty(len(prefix), dtype=np.int64)
    for i, group in enumerate(inverse.tolist()):
        out[i] = seen.get(group, 0)
        seen[group] = out[i] + 1
    return out


def _level_usage(col: np.ndarray, size: int) -> dict[str, float]:
    counts = np.bincount(col, minlength=size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    used = int((counts > 0).sum())
    return {"used": used, "usage": used / size, "perplexity": float(np.exp(-(p * np.log(p)).sum()))}


def codebook_report(codes: np.ndarray, codebook_size: int) -> dict[str, Any]:
    """Usage per level (used codes / C, perplexity) and collisions of the L-level prefixes."""
    prefix, suffix = codes[:, :-1], codes[:, -1]
    _, counts = np.unique(prefix, axis=0, return_counts=True)
    return {
        "n_items": len(codes),
        "levels": [_level_usage(prefix[:, j], codebook_size) for j in range(prefix.shape[1])],
        "unique_prefixes": len(counts),
        "colliding_items": int(counts[counts > 1].sum()),
        "colliding_prefixes": int((counts > 1).sum()),
        "max_suffix": int(suffix.max(initial=0)),
        "unique_codes": bool(len(np.unique(codes, axis=0)) == len(codes)),
    }


def check_capacity(cfg: GenRecConfig, n_items: int) -> None:
    """C^L must be able to give every item its own prefix."""
    if cfg.codebook_size**cfg.levels < n_items:
        raise ConfigError(
            f"config key 'genrec.codebook_size': must satisfy codebook_size ** levels >= n_items "
            f"({n_items}) so that the codes can index the catalog, got {cfg.codebook_size} ** "
            f"{cfg.levels} = {cfg.codebook_size**cfg.levels}"
        )


def with_suffix(cfg: GenRecConfig, prefix: np.ndarray) -> SemanticIds:
    """Append the collision suffix, check it against ``max_suffix`` and build the report."""
    suffix = collision_suffix(prefix)
    if suffix.max(initial=0) > cfg.max_suffix:
        raise ConfigError(
            f"config key 'genrec.max_suffix': must be >= the largest collision suffix "
            f"{int(suffix.max())} (raise it, codebook_size or levels), got {cfg.max_suffix}"
        )
    codes = np.concatenate([prefix, suffix[:, None]], axis=1).astype(np.int64)
    sizes = [cfg.codebook_size] * cfg.levels + [int(suffix.max(initial=0)) + 1]
    report = codebook_report(codes, cfg.codebook_size)
    log.info("semantic IDs: %s", report)
    return SemanticIds(codes, sizes, report)


def build_semantic_ids(cfg: GenRecConfig, embeddings: np.ndarray) -> SemanticIds:
    """Quantise [n_items, dim] embeddings with ``cfg.quantizer`` and add the suffix level."""
    check_capacity(cfg, len(embeddings))
    if cfg.quantizer == "rqvae":
        from recbias.genrec.rqvae import rqvae_codes

        prefix = rqvae_codes(cfg, embeddings)
    else:
        prefix, _ = residual_kmeans(embeddings, cfg.levels, cfg.codebook_size, cfg.seed)
    return with_suffix(cfg, prefix)
