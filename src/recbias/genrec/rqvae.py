"""RQ-VAE (Zeghidour et al. 2021; TIGER): an MLP autoencoder whose latent is residual-quantised.

    codes = rqvae_codes(cfg, embeddings)     # [n_items, L] int64

Loss = reconstruction MSE + codebook loss ‖sg(r) − e‖² + β · commitment ‖r − sg(e)‖², with a
straight-through estimator. Codebooks are initialised by k-means on the first latents' residuals,
and codes unused in a step are restarted at random residuals of that step (dead-code restarts).
Full-batch training: catalogs are small. Seeded and deterministic on CPU.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recbias.genrec.config import GenRecConfig
from recbias.genrec.rkmeans import residual_kmeans


class RQVAE(nn.Module):
    def __init__(self, dim: int, latent: int, levels: int, codebook_size: int) -> None:
        super().__init__()
        hidden = max(2 * latent, 64)
        self.encoder = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, latent))
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        self.books = nn.Parameter(torch.zeros(levels, codebook_size, latent))

    def quantise(self, z: Tensor) -> tuple[Tensor, Tensor, list[Tensor]]:
        """z: [n, latent] → codes [n, L], quantised latent [n, latent], residual per level."""
        residual, quantised = z, torch.zeros_like(z)
        codes, residuals = [], []
        for book in self.books:  # book: [C, latent]
            idx = torch.cdist(residual, book).argmin(dim=1)
            chosen = book[idx]
            residuals.append(residual)
            codes.append(idx)
            quantised = quantised + chosen
            residual = residual - chosen.detach()
        return torch.stack(codes, dim=1), quantised, residuals

    @torch.no_grad()
    def init_books(self, z: Tensor, seed: int) -> None:
        _, books = residual_kmeans(z.numpy(), self.books.shape[0], self.books.shape[1], seed)
        for level, book in enumerate(books):
            self.books[level, : len(book)] = torch.from_numpy(book).float()

    @torch.no_grad()
    def restart_dead(self, codes: Tensor, residuals: list[Tensor], gen: torch.Generator) -> int:
        """Move unused codes onto random residuals; returns how many were restarted."""
        restarted = 0
        for level, residual in enumerate(residuals):
            used = torch.bincount(codes[:, level], minlength=self.books.shape[1]) > 0
            dead = (~used).nonzero().flatten()
            if len(dead):
                pick = torch.randint(len(residual), (len(dead),), generator=gen)
                self.books[level, dead] = residual[pick].detach()
                restarted += len(dead)
        return restarted


def _loss(model: RQVAE, x: Tensor, beta: float) -> tuple[Tensor, Tensor, list[Tensor]]:
    z = model.encoder(x)
    codes, quantised, residuals = model.quantise(z)
    book_loss = sum(
        F.mse_loss(model.books[lvl][codes[:, lvl]], r.detach()) for lvl, r in enumerate(residuals)
    )
    commit = F.mse_loss(z, quantised.detach())
    z_q = z + (quantised - z).detach()  # straight-through
    loss = F.mse_loss(model.decoder(z_q), x) + book_loss + beta * commit
    return loss, codes, residuals


def rqvae_codes(cfg: GenRecConfig, embeddings: np.ndarray) -> np.ndarray:
    """Train an RQ-VAE on [n, dim] embeddings and return their codes [n, L] (int64)."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    x = torch.as_tensor(np.asarray(embeddings), dtype=torch.float32)
    model = RQVAE(x.shape[1], cfg.rqvae_latent, cfg.levels, cfg.codebook_size)
    with torch.no_grad():
        model.init_books(model.encoder(x), cfg.seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(cfg.rqvae_epochs):
        loss, codes, residuals = _loss(model, x, cfg.rqvae_beta)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step < cfg.rqvae_epochs * 3 // 4 and step % 20 == 19:  # restarts stop before the end
            model.restart_dead(codes, residuals, gen)
    with torch.no_grad():
        codes, _, _ = model.quantise(model.encoder(x))
    return codes.numpy().astype(np.int64)
