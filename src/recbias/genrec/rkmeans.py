"""Residual k-means: level l runs k-means on the residuals left by levels < l (GRID / cornac
``rkmeans``); deterministic given the seed. Used by the semantic IDs and to initialise RQ-VAE.

    codes, books = residual_kmeans(x, levels=3, codebook_size=256, seed=0)   # x: [n, dim]
    reconstruct(codes, books)                                                # [n, dim]
"""

from __future__ import annotations

import numpy as np


def _kmeans(x: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels [n] and centroids [k', dim] (k' ≤ k when x has fewer distinct rows)."""
    from sklearn.cluster import KMeans

    k = min(k, len(np.unique(x, axis=0)))
    if k <= 1:
        return np.zeros(len(x), dtype=np.int64), x.mean(0, keepdims=True)
    km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(x)
    return km.labels_.astype(np.int64), km.cluster_centers_.astype(x.dtype)


def residual_kmeans(
    x: np.ndarray, levels: int, codebook_size: int, seed: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Codes [n, levels] and one centroid table [≤C, dim] per level."""
    residual = np.asarray(x, dtype=np.float64).copy()
    codes, books = [], []
    for level in range(levels):
        labels, centroids = _kmeans(residual, codebook_size, seed + level)
        residual -= centroids[labels]
        codes.append(labels)
        books.append(centroids)
    return np.stack(codes, axis=1), books


def reconstruct(codes: np.ndarray, books: list[np.ndarray]) -> np.ndarray:
    """Sum of the chosen centroids of the first ``len(books)`` levels: [n, dim]."""
    return sum(book[codes[:, level]] for level, book in enumerate(books))
