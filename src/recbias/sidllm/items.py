"""The items' semantic IDs for an LLM run: built by the genrec quantisers, saved with the run.

    sid = build_sid_items(cfg.items.sid, ds)      # SidItems: codes [n_items, L+1], sizes, report
    save_sid_items(sid, run_dir / "semantic_ids.json")
    sid = load_sid_items(path, n_items=len(ds.titles))
    text = SidText(titles, sid_strings, with_title=False)   # PromptBuilder's item spelling

The codes come from :func:`recbias.genrec.semantic_ids.build_semantic_ids` over the item text
embeddings of :func:`recbias.genrec.encoders.item_embeddings` (MiniLM by default), so the
quantiser, its seed and its codebook report are those of the genrec line.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recbias.data.dataset import PreparedDataset
from recbias.errors import ConfigError, DataError
from recbias.fsutil import write_text
from recbias.genrec.encoders import item_embeddings
from recbias.genrec.semantic_ids import build_semantic_ids
from recbias.sidllm.config import SidConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SidItems:
    """codes: [n_items, L+1] int64 (last column = collision suffix); sizes: tokens per level;
    report: codebook usage per level and collisions; source: the embeddings used."""

    codes: np.ndarray
    sizes: list[int]
    report: dict[str, Any]
    source: str


def build_sid_items(cfg: SidConfig, ds: PreparedDataset) -> SidItems:
    """Quantise the items' text embeddings into semantic IDs (deterministic given the seed)."""
    gen = cfg.quantiser()
    try:
        emb, source = item_embeddings(gen, ds.items)
        sid = build_semantic_ids(gen, emb)
    except ConfigError as exc:  # the genrec checks name their own section's keys
        raise ConfigError(str(exc).replace("'genrec.", "'items.sid.")) from None
    return SidItems(sid.codes, list(sid.sizes), sid.report, source)


def save_sid_items(sid: SidItems, path: Path) -> None:
    """JSON with the codes of every item, the sizes, the report and the embedding source."""
    doc = {
        "sizes": sid.sizes,
        "source": sid.source,
        "report": sid.report,
        "codes": sid.codes.tolist(),
    }
    write_text(path, json.dumps(doc, indent=1) + "\n")


def load_sid_items(path: Path, n_items: int) -> SidItems:
    """The semantic IDs saved by :func:`save_sid_items`, checked against the catalog size."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        codes = np.asarray(doc["codes"], dtype=np.int64)
        sizes = [int(s) for s in doc["sizes"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a semantic-ID file ({exc})") from None
    if codes.ndim != 2 or codes.shape != (n_items, len(sizes)):
        raise DataError(
            f"{path}: expected codes [n_items={n_items}, {len(sizes)}], got {list(codes.shape)}"
        )
    if (codes < 0).any() or (codes >= np.asarray(sizes)[None, :]).any():
        raise DataError(f"{path}: codes outside the sizes {sizes}")
    return SidItems(codes, sizes, doc.get("report", {}), str(doc.get("source", "file")))


def report_line(report: dict[str, Any], sizes: Sequence[int], source: str) -> str:
    """One line for the console and summary.md: levels, usage and collisions."""
    usage = "/".join(f"{lv['usage']:.0%}" for lv in report.get("levels", []))
    return (
        f"Semantic IDs ({source}): {len(sizes) - 1} levels x {sizes[0]} codes + suffix "
        f"({sizes[-1]}); codebook usage per level {usage}; {report.get('unique_prefixes', '?')} "
        f"distinct prefixes for {report.get('n_items', '?')} items, "
        f"{report.get('colliding_items', '?')} items share a prefix."
    )


def sid_summary(sid: SidItems) -> dict[str, Any]:
    """The codebook report with the sizes and the embedding source (metrics.json)."""
    return {**sid.report, "sizes": list(sid.sizes), "source": sid.source}


class SidText:
    """How a :class:`~recbias.prompts.PromptBuilder` spells items: history items and targets by
    their SID string (``with_title``: history items as ``SID title``). Titles not in the catalog
    (edited inputs of diagnostics) stay plain text in the history; as targets they are an error."""

    def __init__(self, titles: Sequence[str], sids: Sequence[str], with_title: bool) -> None:
        self.sid_of = dict(zip(titles, sids, strict=True))
        self.with_title = with_title

    def history(self, title: str) -> str:
        sid = self.sid_of.get(title)
        if sid is None:
            return title
        return f"{sid} {title}" if self.with_title else sid

    def target(self, title: str) -> str:
        try:
            return self.sid_of[title]
        except KeyError:
            raise DataError(
                f"target {title!r} is not a catalog item: it has no semantic ID"
            ) from None
