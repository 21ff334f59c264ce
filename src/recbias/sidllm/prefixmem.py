"""PrefixMem: a semantic-ID encoder of prefix n-gram memory tables (arXiv 2606.00324).

A semantic-ID (SID) item is a run of tokens ``c_0 c_1 .. c_{L-1}``, one per level, and the meaning
of ``c_l`` depends on its prefix. PrefixMem adds to the input embedding of a SID token at level
``l`` a vector looked up by its prefix ``c_0..c_l``::

    mem_t = sum_{n=1..min(N, l+1)} concat_h E[n, h][ key_{n,h}(c_0..c_{n-1}) ]     # [d_mem]
    x_t   = tok_embed(token_t) + active_t * (mem_t @ W_out)                         # [d_model]

so the position that predicts ``c_{l+1}`` sees a vector specific to its whole prefix.

    from recbias.sidllm.prefixmem_attach import attach_prefixmem, load_prefixmem, save_prefixmem
    pm = attach_prefixmem(model, vocab.level_of, vocab.code_of, PrefixMemConfig())
    save_prefixmem(model, out_dir)       # prefixmem.safetensors + prefixmem.json
    load_prefixmem(model2, out_dir)      # attach the saved encoder to a freshly loaded model

Choices the paper leaves open (reference note, section 4), and why:

* **Keys.** ``key_{n,h} = (XOR_{i<n} (c_i + 1) * p[i, h]) mod T`` in int64, with a distinct prime
  ``p[i, h] < 2^31`` per (position in the prefix, head), drawn deterministically from
  ``hash_seed`` and stored with the weights. ``c + 1`` because ``0 * p = 0`` would make code 0
  vanish from every key. Products stay below ``2^48`` (codebooks up to ``2^17``), so nothing
  overflows. ``T`` defaults to a prime: ``mod`` a power of two would keep only the low bits, and
  ``(c + 1) * p mod 2^k`` depends only on the low bits of ``c + 1``. ``keys = "exact"`` instead
  addresses rows by the mixed-radix number of the prefix (no collisions; needs
  ``prod_{i<n} K_i <= T`` for every order used), for small codebooks and as a reference.
* **Tables shared across levels.** ``E[n]`` is keyed by the first ``n`` codes, which always sit
  at levels ``0..n-1``, so the same n-gram at two positions is the same prefix and shares its row
  (the paper's parameter count, 4 x 4 x 2M x 64, also implies one table per order and head).
  Orders no injecting level reaches are not allocated.
* **Injected levels.** By default every level whose next token is a deeper SID level (all but the
  deepest): the paper's default injects at the two deepest of those, and adding one more helped.
  History SIDs get the memory too (the encoder does not know prompt from target).
* **Runs.** A position at level ``l`` gets memory only when the ``l`` tokens before it read
  levels ``0..l-1`` in order; otherwise (a broken or truncated run, a text token in between) its
  term is zero. Its prefix codes are then those ``l + 1`` tokens' codes.
* **Init.** Tables ``N(0, table_init_std)``; ``W_out`` (no bias) zero by default, so attaching
  leaves the model's outputs unchanged (like LoRA's ``B``) and the tables start learning once
  ``W_out`` moves. ``out_init_std > 0`` starts both at once.
* **No gate by default** (none is reported). ``gate = "engram"`` scales the term by
  ``sigmoid(<rms(e_t), rms(m_t)> / sqrt(d_model))`` as Engram (arXiv 2601.07372) gates its memory.
* **Optimiser.** Dense gradients in the run's AdamW; the encoder's parameters get
  ``lr * lr_multiplier`` (paper: 5x) through the training loop's ``lr_multiplier`` hook.
* **Decoding.** Forwards that feed one token at a time pass each beam's own prefix through
  :mod:`recbias.lm.token_context`, so decoding embeds exactly as a teacher-forced forward does.

The encoder hooks the model's input embedding module (which keeps its class, its ``weight`` and
its name), so tied output embeddings, ``resize_token_embeddings`` (in place in transformers 5),
``tie_weights`` and PEFT keep working. It only runs when the embedding is called with token ids
(not with ``inputs_embeds``). Attach it *after* wrapping with LoRA: PEFT freezes every parameter
that exists when it wraps the model.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recbias.config import Config, invalid
from recbias.errors import ConfigError


@dataclass
class PrefixMemPretrainConfig(Config):
    epochs: int = field(
        default=0,
        metadata={
            "help": "epochs of encoder pretraining (predict c_{l+1} from the memory of c_0..c_l "
            "over the training items' codes) before attaching; 0 = random tables",
            "ge": 0,
        },
    )
    batch_size: int = field(default=512, metadata={"help": "prefixes per step", "ge": 1})
    lr: float = field(default=1e-2, metadata={"help": "Adam learning rate", "gt": 0})
    seed: int = field(default=0, metadata={"help": "seed of the batch order and the heads"})


@dataclass
class PrefixMemConfig(Config):
    heads: int = field(
        default=4, metadata={"help": "hash heads per n-gram order (paper: 4)", "ge": 1}
    )
    max_order: int = field(
        default=4, metadata={"help": "longest prefix n-gram looked up (paper: 4)", "ge": 1}
    )
    table_rows: int = field(
        default=65_521,
        metadata={
            "help": "rows T of every (order, head) table; a prime uses every bit of the hash "
            "(paper: 2M)",
            "ge": 1,
        },
    )
    memory_dim: int = field(
        default=256,
        metadata={"help": "memory width d_mem, split evenly over the heads (paper: 256)", "ge": 1},
    )
    inject_levels: list[int] = field(
        default_factory=list,
        metadata={
            "help": "0-based SID levels whose positions get the memory; empty = every level but "
            "the deepest (the positions that predict a deeper level)",
            "ge": 0,
            "unique": True,
        },
    )
    keys: Literal["hash", "exact"] = field(
        default="hash",
        metadata={
            "help": "hash = multiply-XOR hashing with per-(position, head) primes; exact = "
            "collision-free mixed-radix rows (needs the product of the codebook sizes <= rows)"
        },
    )
    hash_seed: int = field(default=0, metadata={"help": "seed of the hash primes"})
    table_init_std: float = field(
        default=0.02, metadata={"help": "standard deviation of the initial tables", "ge": 0}
    )
    out_init_std: float = field(
        default=0.0,
        metadata={
            "help": "standard deviation of the initial output projection W_out; 0 = attaching "
            "leaves the model's outputs unchanged",
            "ge": 0,
        },
    )
    gate: Literal["none", "engram"] = field(
        default="none",
        metadata={"help": "none, or an Engram-style sigmoid gate on <rms(embedding), rms(memory)>"},
    )
    lr_multiplier: float = field(
        default=5.0,
        metadata={"help": "the encoder's learning rate over the model's (paper: 5)", "gt": 0},
    )
    pretrain: PrefixMemPretrainConfig = field(default_factory=PrefixMemPretrainConfig)

    def check(self) -> None:
        if self.memory_dim % self.heads:
            raise invalid("memory_dim", f"a multiple of heads ({self.heads})", self.memory_dim)


class PrefixMem(nn.Module):
    """The encoder: token ids -> the additive input-embedding term ``[B, S, d_model]``.

    ``level_of, code_of: [V]`` give each token's 0-based SID level and code (-1 for other tokens).
    Ids outside ``[0, V)`` (e.g. ``-1`` context padding) count as non-SID tokens.
    """

    def __init__(
        self, cfg: PrefixMemConfig, level_of: Tensor, code_of: Tensor, d_model: int
    ) -> None:
        super().__init__()
        cfg.validate()
        sizes = codebook_sizes(level_of, code_of)
        self.cfg, self.codebooks, self.d_model = cfg, sizes, d_model
        inject = sorted(cfg.inject_levels) or list(range(len(sizes) - 1))
        _check_levels(inject, len(sizes))
        self.context_tokens = max(inject, default=0)  # tokens before a position that it reads
        self.n_orders = min(cfg.max_order, self.context_tokens + 1)
        self.lr_multiplier = cfg.lr_multiplier
        self.register_buffer("level_of", level_of.detach().long().clone())
        self.register_buffer("code_of", code_of.detach().long().clone())
        mask = torch.zeros(len(sizes), dtype=torch.bool)
        mask[inject] = True
        self.register_buffer("inject_mask", mask)
        self.register_buffer("multipliers", self._multipliers())
        head_dim = cfg.memory_dim // cfg.heads
        self.tables = nn.Parameter(torch.empty(self.n_orders * cfg.heads, cfg.table_rows, head_dim))
        self.out = nn.Linear(cfg.memory_dim, d_model, bias=False)
        self.reset_tables()
        self.reset_output()
        self._keys: Tensor | None = None

    def _multipliers(self) -> Tensor:
        """``[n_orders, heads]`` int64: hash primes, or the mixed-radix place values (exact)."""
        n, heads = self.n_orders, self.cfg.heads
        if self.cfg.keys == "hash":
            return torch.tensor(hash_primes(n * heads, self.cfg.hash_seed)).view(n, heads)
        places = [math.prod(self.codebooks[:i]) for i in range(n)]
        needed = math.prod(self.codebooks[:n])
        if needed > self.cfg.table_rows:
            raise ConfigError(
                f"config key 'keys': 'exact' needs table_rows >= {needed} (the product of the "
                f"codebook sizes of levels 0..{n - 1}), got {self.cfg.table_rows}"
            )
        return torch.tensor(places).view(n, 1).expand(n, heads).contiguous()

    def reset_tables(self) -> None:
        nn.init.normal_(self.tables, std=self.cfg.table_init_std)

    def reset_output(self) -> None:
        """A fresh ``W_out`` (as when pretrained tables are attached to an LLM)."""
        nn.init.normal_(self.out.weight, std=self.cfg.out_init_std)

    @contextlib.contextmanager
    def token_context(self, keys: Tensor) -> Iterator[None]:
        """The next forward reads ``keys: [B, context + S]`` (:mod:`recbias.lm.token_context`)."""
        self._keys = keys
        try:
            yield
        finally:
            self._keys = None

    def forward(self, input_ids: Tensor, embeds: Tensor) -> Tensor:
        """``embeds [B, S, d_model]`` plus the (gated) term of ``input_ids [B, S]``."""
        term = self.term(input_ids).to(embeds.dtype)
        if self.cfg.gate == "engram":
            score = (_rms(embeds.float()) * _rms(term.float())).sum(-1, keepdim=True)
            term = term * torch.sigmoid(score / math.sqrt(self.d_model)).to(term.dtype)
        return embeds + term

    def term(self, input_ids: Tensor) -> Tensor:
        """The additive term ``[B, S, d_model]``; zero at non-SID and inactive positions."""
        keys = self._keys if self._keys is not None else input_ids
        if keys.shape[0] != input_ids.shape[0] or keys.shape[1] < input_ids.shape[1]:
            raise ValueError(
                f"token context {tuple(keys.shape)} does not end with the fed ids "
                f"{tuple(input_ids.shape)}"
            )
        mem = self.token_memory(keys)[:, keys.shape[1] - input_ids.shape[1] :]
        return self.out(mem.to(self.out.weight.dtype))

    def token_memory(self, ids: Tensor) -> Tensor:
        """``ids [B, S]`` -> memory ``[B, S, d_mem]`` (zero where no memory is injected)."""
        level, code = self.levels_and_codes(ids)
        complete = complete_runs(level, len(self.codebooks))
        active = complete & self.inject_mask[level.clamp(min=0)]
        return self.memory(
            prefix_codes(code, level, self.n_orders, self.context_tokens), level, active
        )

    def levels_and_codes(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        """``ids [B, S]`` -> SID level and code of every token ``[B, S]`` (-1: not a SID token)."""
        vocab = self.level_of.numel()
        inside = (ids >= 0) & (ids < vocab)
        safe = ids.clamp(0, vocab - 1)
        return (
            torch.where(inside, self.level_of[safe], -1),
            torch.where(inside, self.code_of[safe], -1),
        )

    def memory(self, prefix: Tensor, level: Tensor, active: Tensor) -> Tensor:
        """``prefix [..., n_orders]`` codes ``c_0..`` of each position's prefix, ``level, active
        [...]`` -> ``[..., d_mem]``: order ``n`` counts where ``level >= n - 1`` and ``active``."""
        n, heads, rows = self.n_orders, self.cfg.heads, self.cfg.table_rows
        order = torch.arange(n, device=prefix.device)
        used = active[..., None] & (level[..., None] >= order)  # [..., n]
        offset = torch.arange(n * heads, device=prefix.device).view(n, heads) * rows
        flat = self.rows(prefix) + offset  # [..., n, heads]
        vec = F.embedding(flat, self.tables.view(n * heads * rows, -1))  # [..., n, heads, d_h]
        vec = vec * used[..., None, None].to(vec.dtype)
        return vec.sum(-3).flatten(-2)

    def rows(self, prefix: Tensor) -> Tensor:
        """``prefix [..., n_orders]`` -> table row of every (order, head) ``[..., n_orders, heads]``."""
        if self.cfg.keys == "exact":
            place = prefix.clamp(min=0)[..., None] * self.multipliers  # [..., n, heads]
            return place.cumsum(-2)
        product = (prefix.clamp(min=-1) + 1)[..., None] * self.multipliers  # [..., n, heads]
        acc = torch.zeros_like(product[..., 0, :])
        out = []
        for i in range(self.n_orders):  # XOR-prefix over the (at most max_order) positions
            acc = acc ^ product[..., i, :]
            out.append(acc % self.cfg.table_rows)
        return torch.stack(out, dim=-2)

    def load_tables(self, source: PrefixMem) -> None:
        """Copy ``source``'s tables and keys (pretrained) into this encoder; ``W_out`` is kept."""
        if source.tables.shape != self.tables.shape or source.cfg.keys != self.cfg.keys:
            raise ConfigError(
                f"pretrained PrefixMem tables {tuple(source.tables.shape)} ({source.cfg.keys} "
                f"keys) do not fit this encoder's {tuple(self.tables.shape)} ({self.cfg.keys})"
            )
        with torch.no_grad():
            self.tables.copy_(source.tables)
            self.multipliers.copy_(source.multipliers)


def codebook_sizes(level_of: Tensor, code_of: Tensor) -> list[int]:
    """Codes per level ``[K_0, .., K_{L-1}]`` (largest code + 1) of a SID vocabulary."""
    if level_of.dim() != 1 or level_of.shape != code_of.shape:
        raise ConfigError(
            f"level_of and code_of must be 1-D of one length (the vocabulary), got "
            f"{tuple(level_of.shape)} and {tuple(code_of.shape)}"
        )
    level, code = level_of.long().cpu(), code_of.long().cpu()
    sid = level >= 0
    if not bool(sid.any()):
        raise ConfigError("level_of marks no SID token (every entry is -1)")
    if bool(((code >= 0) != sid).any()) or bool((level < -1).any()):
        raise ConfigError("level_of and code_of must both be -1 exactly at the non-SID tokens")
    n_levels = int(level.max()) + 1
    present = torch.bincount(level[sid], minlength=n_levels)
    if bool((present == 0).any()):
        missing = (present == 0).nonzero().flatten().tolist()
        raise ConfigError(f"level_of has no token at levels {missing} (levels must be 0..L-1)")
    sizes = torch.zeros(n_levels, dtype=torch.long).scatter_reduce(
        0, level[sid], code[sid] + 1, "amax"
    )
    if int(sizes.max()) >= 2**17:
        raise ConfigError(f"codebooks of up to 2^17 codes are supported, got {int(sizes.max())}")
    return sizes.tolist()


def _check_levels(inject: list[int], n_levels: int) -> None:
    bad = [lvl for lvl in inject if lvl >= n_levels]
    if bad:
        raise invalid("inject_levels", f"levels below {n_levels} (the SID depth)", bad)
    if not inject:
        raise invalid("inject_levels", "at least one level (a 1-level SID has no prefix)", inject)


def complete_runs(level: Tensor, n_levels: int) -> Tensor:
    """``level [B, S]`` -> True where a SID token at level ``l`` follows levels ``0..l-1``."""
    ok = level >= 0
    for back in range(1, n_levels):
        before = F.pad(level, (back, 0), value=-1)[:, : level.shape[1]]
        ok &= (level < back) | (before == level - back)
    return ok


def prefix_codes(code: Tensor, level: Tensor, n_orders: int, reach: int) -> Tensor:
    """``code, level [B, S]`` -> ``[B, S, n_orders]``: code ``c_i`` of each position's run
    (the token ``level - i`` places back; meaningful for ``i <= level <= reach``)."""
    length = code.shape[1]
    shifted = torch.stack(
        [F.pad(code, (s, 0), value=-1)[:, :length] for s in range(reach + 1)], dim=-1
    )  # [B, S, reach + 1]: code s places back
    back = (level[..., None] - torch.arange(n_orders, device=code.device)).clamp(0, reach)
    return shifted.gather(-1, back)


def _rms(x: Tensor, eps: float = 1e-6) -> Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def hash_primes(count: int, seed: int) -> list[int]:
    """``count`` distinct primes in ``[2^28, 2^31)``, a pure function of ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    found: list[int] = []
    while len(found) < count:
        candidate = int(torch.randint(2**27, 2**30, (1,), generator=gen)) * 2 + 1
        if candidate not in found and _is_prime(candidate):
            found.append(candidate)
    return found


def _is_prime(n: int) -> bool:
    """Deterministic Miller-Rabin, exact below 3.2e9 with bases 2, 3, 5, 7."""
    if n < 2 or n % 2 == 0:
        return n == 2
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for a in (2, 3, 5, 7):
        x = pow(a, d, n)
        if x in (1, n - 1) or a % n == 0:
            continue
        for _ in range(r - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True
