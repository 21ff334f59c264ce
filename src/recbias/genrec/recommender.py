"""``GenerativeRecommender``: semantic IDs + transformer + constrained decoding behind one facade.

    rec = GenerativeRecommender(GenRecConfig(position="alibi", alibi_m=0.5)).fit(train, items, valid)
    recs = rec.recommend(test, k=10)          # Recommendations via catalog-constrained beam search
    logp = rec.scores(test)                   # [n, n_items] exact log p(item code | history)
    att = rec.history_attention(test)         # [n, max_len] attention mass per history item
    rec.set_attention_noise(0.5, seed=0)      # N(0, 0.25) on every attention logit at inference

``history_attention`` is read at the first decoding step (decoder input = BOS): the decoder's
cross-attention (encoder-decoder) or the BOS position's attention to the history tokens
(decoder-only), averaged over heads and blocks and summed over each item's T code tokens. Column
−1 is the most recent item; left padding gets 0. Rows sum to 1: for decoder-only the mass BOS puts
on itself is dropped and the rest renormalised; a sample with an empty history gets a zero row.
"""

from __future__ import annotations

import logging
from typing import Any, Self

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from recbias.errors import DataError, RecbiasError
from recbias.evaluation.predictions import Recommendations
from recbias.genrec.codes import BOS, CodeTrie, TokenLayout, encode_histories
from recbias.genrec.config import GenRecConfig
from recbias.genrec.decode import beam_search, exact_scores, trie_mask
from recbias.genrec.encoders import item_embeddings
from recbias.genrec.model import GenRecTransformer
from recbias.genrec.semantic_ids import SemanticIds, build_semantic_ids
from recbias.genrec.train import train_model
from recbias.hardware import autocast

log = logging.getLogger(__name__)


class GenerativeRecommender:
    name = "genrec"

    def __init__(self, cfg: GenRecConfig) -> None:
        cfg.validate()
        self.cfg = cfg
        self.device = torch.device(cfg.device)
        self.n_items = 0
        self.codes = np.zeros((0, cfg.levels + 1), dtype=np.int64)
        self.report: dict[str, Any] = {}
        self.encoder_used: str | None = None
        self.train_log: list[dict[str, Any]] = []
        self.net: GenRecTransformer | None = None

    # -- fitting -------------------------------------------------------------------------------

    def fit(
        self, train: pd.DataFrame, items: pd.DataFrame, valid: pd.DataFrame | None = None
    ) -> Self:
        """Build semantic IDs from the items' text, then train the transformer on ``train``."""
        emb, self.encoder_used = item_embeddings(self.cfg, items)
        return self.fit_semantic_ids(build_semantic_ids(self.cfg, emb)).fit_model(train, valid)

    def fit_semantic_ids(self, sid: SemanticIds) -> Self:
        """Use given semantic IDs (codes [n_items, L+1]) and build the layout, trie and model."""
        torch.manual_seed(self.cfg.seed)
        self.codes, self.report, self.n_items = sid.codes, sid.report, len(sid.codes)
        self.layout = TokenLayout(tuple(sid.sizes))
        self.trie = CodeTrie(sid.codes, sid.sizes).to(self.device)
        self.item_tokens = self.layout.item_tokens(sid.codes).to(self.device)
        self.net = GenRecTransformer(self.cfg, self.layout).to(self.device)
        self._trie_mask: Tensor | None = None
        return self

    def fit_model(self, train: pd.DataFrame, valid: pd.DataFrame | None = None) -> Self:
        self._check_samples(train, "train", need_target=True)
        if valid is not None:
            self._check_samples(valid, "valid", need_target=True)
        torch.manual_seed(self.cfg.seed)
        self.train_log = train_model(self._model(), self.cfg, self.item_tokens, train, valid)
        return self

    # -- inference -----------------------------------------------------------------------------

    def recommend(self, samples: pd.DataFrame, k: int) -> Recommendations:
        """Top-k catalog items by constrained beam search (width max(k, beam_size))."""
        net, width = self._model(), max(k, self.cfg.beam_size)
        items, scores = [], []
        for hist in self._batches(samples, self.cfg.batch_size):
            with self._autocast():
                top, logp = beam_search(net, hist, self.layout, self.trie, k, width)
            items.append(top.cpu())
            scores.append(logp.float().cpu())
        sc = torch.cat(scores).double().numpy()
        return Recommendations(
            torch.cat(items).numpy(), np.where(np.isinf(sc), np.nan, sc), self._ids(samples)
        )

    def scores(self, samples: pd.DataFrame, renormalize: bool = False) -> Tensor:
        """[n, n_items] exact log-probs of every item's full code (CPU float32). The model's own
        per-level softmax by default; ``renormalize`` restricts each level to the trie's valid
        children, so every row's exp sums to 1 over the catalog."""
        net, mask = self._model(), self._mask() if renormalize else None
        out = []
        for hist in self._batches(samples, self.cfg.score_batch):
            with self._autocast():
                out.append(exact_scores(net, hist, self.item_tokens, mask).float().cpu())
        return torch.cat(out) if out else torch.zeros((0, self.n_items))

    @torch.no_grad()
    def history_attention(self, samples: pd.DataFrame) -> Tensor:
        """[n, max_len] attention mass per history item at the first decoding step (module doc)."""
        net = self._model()
        out = []
        net.control.record = True
        try:
            for hist in self._batches(samples, self.cfg.batch_size):
                bos = torch.full((len(hist.tokens), 1, 1), BOS, device=self.device)
                net.decode(net.memory(hist), bos)
                probs = net.memory_attention()[:, 0, 0]  # [B, S]
                out.append(self._per_item(probs * hist.valid).cpu())
        finally:
            net.control.record = False
        return torch.cat(out) if out else torch.zeros((0, self.cfg.max_len))

    def set_attention_noise(self, sigma: float, seed: int) -> None:
        """Add N(0, σ²) to every attention logit at inference (σ = 0 disables)."""
        if sigma < 0:
            raise RecbiasError(f"attention noise sigma must be >= 0, got {sigma}")
        net = self._model()
        net.control.noise_sigma = float(sigma)
        net.control.generator = torch.Generator(device=self.device).manual_seed(seed)

    # -- helpers -------------------------------------------------------------------------------

    def _per_item(self, probs: Tensor) -> Tensor:
        mass = probs.unflatten(1, (self.cfg.max_len, self.layout.depth)).sum(-1)  # [B, max_len]
        total = mass.sum(1, keepdim=True)
        return torch.where(total > 0, mass / total.clamp(min=1e-30), torch.zeros_like(mass))

    def _model(self) -> GenRecTransformer:
        if self.net is None:
            raise RecbiasError("GenerativeRecommender: call fit() before using the model")
        self.net.eval()
        return self.net

    def _mask(self) -> Tensor:
        if self._trie_mask is None:
            self._trie_mask = trie_mask(self.trie, self.layout).to(self.device)
        return self._trie_mask

    def _autocast(self) -> torch.autocast:
        return autocast(self.cfg.dtype, self.device)

    def _batches(self, samples: pd.DataFrame, size: int):
        self._check_samples(samples, "samples", need_target=False)
        hists = [list(h) for h in samples["history"]]
        for start in range(0, len(hists), size):
            batch = encode_histories(
                hists[start : start + size], self.item_tokens.cpu(), self.cfg.max_len
            )
            yield batch.to(self.device)

    @staticmethod
    def _ids(samples: pd.DataFrame) -> np.ndarray:
        if "sample_id" in samples:
            return samples["sample_id"].to_numpy(dtype=np.int64)
        return np.arange(len(samples), dtype=np.int64)

    def _check_samples(self, samples: pd.DataFrame, name: str, need_target: bool) -> None:
        cols = ["history"] + (["target"] if need_target else [])
        missing = [c for c in cols if c not in samples]
        if missing:
            raise DataError(
                f"{name}: missing columns {missing}; expected history, target, sample_id"
            )
        ids = [i for h in samples["history"] for i in h]
        if need_target:
            ids += samples["target"].tolist()
        if ids and (min(ids) < 0 or max(ids) >= self.n_items):
            raise DataError(f"{name}: item ids outside 0..{self.n_items - 1} in history/target")
