"""Semantic IDs: residual k-means, RQ-VAE, collision suffix, report, encoders and bad configs."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from recbias.errors import ConfigError, DataError
from recbias.genrec.config import GenRecConfig
from recbias.genrec.encoders import item_embeddings, item_texts, load_npy, tfidf_embeddings
from recbias.genrec.semantic_ids import (
    build_semantic_ids,
    codebook_report,
    collision_suffix,
    reconstruct,
    residual_kmeans,
)


def blobs(n: int = 60, dim: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(6, dim)) * 3
    return (centers[rng.integers(0, 6, n)] + rng.normal(size=(n, dim))).astype(np.float32)


def items_frame(n: int = 24) -> pd.DataFrame:
    genres = [["Comedy"], ["Drama", "Romance"], ["Action", "Thriller"], ["Animation"]]
    return pd.DataFrame(
        {
            "item": range(n),
            "title": [f"Film {i} {['alpha', 'beta', 'gamma'][i % 3]}" for i in range(n)],
            "year": [str(1990 + i % 7) for i in range(n)],
            "genres": [genres[i % 4] for i in range(n)],
        }
    )


def test_collision_suffix_counts_earlier_items_with_the_same_prefix():
    prefix = np.array([[0, 1], [2, 2], [0, 1], [0, 1], [2, 2], [1, 0]])
    assert collision_suffix(prefix).tolist() == [0, 0, 1, 2, 1, 0]


def test_codebook_report_hand_case():
    codes = np.array([[0, 1, 0], [0, 1, 1], [1, 0, 0], [2, 0, 0]])
    rep = codebook_report(codes, codebook_size=4)
    assert rep["levels"][0]["used"] == 3 and rep["levels"][0]["usage"] == 0.75
    # level 0 distribution (2, 1, 1)/4: perplexity exp(H)
    h = -(0.5 * np.log(0.5) + 2 * 0.25 * np.log(0.25))
    assert rep["levels"][0]["perplexity"] == pytest.approx(np.exp(h))
    assert rep["levels"][1]["used"] == 2
    assert (rep["colliding_items"], rep["colliding_prefixes"], rep["max_suffix"]) == (2, 1, 1)
    assert rep["unique_prefixes"] == 3 and rep["unique_codes"]


@pytest.mark.parametrize("quantizer", ["rkmeans", "rqvae"])
def test_every_item_gets_exactly_one_unique_code(quantizer):
    cfg = GenRecConfig(
        quantizer=quantizer, levels=2, codebook_size=8, max_suffix=30, rqvae_epochs=60
    )
    sid = build_semantic_ids(cfg, blobs())
    assert sid.codes.shape == (60, 3)
    assert len({tuple(c) for c in sid.codes}) == 60
    assert sid.sizes[:2] == [8, 8] and sid.sizes[2] == sid.codes[:, 2].max() + 1
    assert (sid.codes[:, :2] < 8).all() and (sid.codes >= 0).all()
    assert sid.report["unique_codes"] and sid.report["max_suffix"] == sid.codes[:, 2].max()
    # the suffix is exactly the count of earlier items with the same prefix
    assert sid.codes[:, 2].tolist() == collision_suffix(sid.codes[:, :2]).tolist()


def test_residual_kmeans_is_deterministic_under_a_seed():
    x = blobs()
    a, _ = residual_kmeans(x, 3, 5, seed=7)
    b, _ = residual_kmeans(x, 3, 5, seed=7)
    assert np.array_equal(a, b)


def test_reconstruction_error_decreases_with_levels():
    x = blobs(dim=16).astype(np.float64)
    codes, books = residual_kmeans(x, 4, 5, seed=0)
    errors = [((x - reconstruct(codes, books[:lvl])) ** 2).sum() for lvl in range(1, 5)]
    assert all(b < a for a, b in itertools.pairwise(errors))
    assert errors[0] < (x**2).sum()


def test_rqvae_is_deterministic_under_a_seed():
    cfg = GenRecConfig(quantizer="rqvae", levels=2, codebook_size=8, max_suffix=40, rqvae_epochs=40)
    assert np.array_equal(
        build_semantic_ids(cfg, blobs()).codes, build_semantic_ids(cfg, blobs()).codes
    )


def test_codebook_too_small_for_the_catalog_raises_naming_the_key():
    cfg = GenRecConfig(levels=2, codebook_size=7)  # 49 < 60 items
    with pytest.raises(ConfigError, match="'genrec.codebook_size'.*49"):
        build_semantic_ids(cfg, blobs())


def test_suffix_beyond_max_suffix_raises_naming_the_key():
    x = np.repeat(blobs(n=4), 5, axis=0)  # 5 identical copies of each row
    with pytest.raises(ConfigError, match="'genrec.max_suffix'.*largest collision suffix 4"):
        build_semantic_ids(GenRecConfig(levels=2, codebook_size=8, max_suffix=3), x)


@pytest.mark.parametrize(
    ("override", "key"),
    [({"codebook_size": 1}, "codebook_size"), ({"heads": 3}, "heads"), ({"levels": 0}, "levels"),
     ({"dropout": 1.0}, "dropout"), ({"embeddings_path": "x.txt"}, "embeddings_path")],
)  # fmt: skip
def test_bad_config_values_name_their_key(override, key):
    with pytest.raises(ConfigError, match=f"'genrec.{key}'"):
        GenRecConfig(**override).validate("genrec")


def test_item_texts_use_title_year_and_genres():
    texts = item_texts(items_frame(2))
    assert texts == [
        "Film 0 alpha (1990). Genres: Comedy",
        "Film 1 beta (1991). Genres: Drama, Romance",
    ]


def test_tfidf_fallback_gives_normalised_embeddings_and_codes():
    cfg = GenRecConfig(encoder="tfidf", tfidf_dim=8, levels=2, codebook_size=5, max_suffix=30)
    emb, used = item_embeddings(cfg, items_frame())
    assert used == "tfidf" and emb.shape == (24, 8)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(emb, tfidf_embeddings(item_texts(items_frame()), 8, cfg.seed))
    sid = build_semantic_ids(cfg, emb)
    assert len({tuple(c) for c in sid.codes}) == 24


def test_npy_embeddings_are_used_and_checked(tmp_path):
    path = tmp_path / "emb.npy"
    np.save(path, blobs(n=24))
    emb, used = item_embeddings(GenRecConfig(embeddings_path=str(path)), items_frame())
    assert used == "npy" and np.array_equal(emb, blobs(n=24))
    with pytest.raises(DataError, match=r"emb.npy: expected a numeric array \[n_items=25"):
        load_npy(str(path), 25)
    with pytest.raises(DataError, match="not a readable .npy"):
        load_npy(str(tmp_path / "missing.npy"), 24)


@pytest.mark.integration
def test_semantic_ids_for_the_real_ml100k_catalog():
    from recbias.data.config import DataConfig, PrepareConfig, SourceConfig
    from recbias.data.dataset import PreparedDataset
    from recbias.data.prepare import prepare_dataset

    data = DataConfig(source=SourceConfig(kind="ml100k"), prepare=PrepareConfig(kcore=5))
    ds = PreparedDataset.load(prepare_dataset(data))
    cfg = GenRecConfig(encoder="auto", levels=3, codebook_size=32, max_suffix=40)
    emb, used = item_embeddings(cfg, ds.items)
    sid = build_semantic_ids(cfg, emb)
    assert used in ("minilm", "tfidf") and emb.shape[0] == len(ds.items)
    assert len({tuple(c) for c in sid.codes}) == len(ds.items)
    assert all(level["used"] >= 16 for level in sid.report["levels"])
