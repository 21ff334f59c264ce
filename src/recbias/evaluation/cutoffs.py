"""Cut-offs K that a run can actually measure, checked before any training starts.

- K larger than the catalog is always an error: no list can hold that many distinct items.
- K larger than the recommendation list (``decode.beam.num_return``, default ``num_beams``)
  follows ``eval.ks_beyond_list``: ``"repeat"`` (the default) reports @K equal to @list length,
  as D3's and IGD's ``calc.py`` report @20 from 10 beams, and ``"error"`` refuses the config.
  The resolved ``config.toml`` of every run records which policy applied.
"""

from __future__ import annotations

from collections.abc import Sequence

from recbias.errors import ConfigError


def check_cutoffs(ks: Sequence[int], list_length: int, n_items: int, policy: str) -> None:
    """ConfigError naming ``eval.ks`` when a cut-off cannot be measured (see module doc)."""
    too_many = [k for k in ks if k > n_items]
    if too_many:
        raise ConfigError(
            f"config key 'eval.ks': K = {too_many[0]} exceeds the catalog of {n_items} items; "
            f"expected every K <= {n_items}"
        )
    beyond = [k for k in ks if k > list_length]
    if beyond and policy == "error":
        raise ConfigError(
            f"config key 'eval.ks': K = {beyond[0]} exceeds the {list_length} items of each "
            "recommendation list (decode.beam.num_return, default num_beams); expected every "
            f"K <= {list_length}, or eval.ks_beyond_list = 'repeat' to report @K as "
            f"@{list_length}"
        )
