"""Ranked recommendation lists, the recommender protocol, and prediction files.

Two file formats:

* **Predictions JSONL** (``write_predictions_jsonl``), our own, one object per sample::

    {"sample_id": 7, "user": "u3", "target": 12, "target_title": "Heat",
     "items": [12, 4, null], "titles": ["Heat", "Babe", null], "scores": [-0.4, -1.2, null],
     "rank": 0}

  Lists keep all k slots; an empty slot (item −1) is ``null`` in ``items``, ``titles`` and
  ``scores`` so positions stay ranks. ``rank`` is the target's 0-based rank or ``null``.

* **Peer JSON** (``export_peer_json``), scored identically by D3 ``calc.py``, IGD ``calc.py`` and
  MSL ``evaluate_batch_match.py``::

    [{"output": "\\"Heat\\"", "predict": ["\\nHeat\\n", "\\nBabe\\n", "\\n\\n"]}]

  ``output`` is the quoted title: D3/IGD strip ``' \\n"'`` and MSL drops the first and last
  character. Each prediction is wrapped in newlines rather than quotes because IGD strips only
  spaces and newlines from predictions (quotes would never match), D3 strips newlines and quotes,
  and MSL drops the first and last character. An empty slot is ``"\\n\\n"`` (the empty title), so
  every list keeps length k, which MSL needs (it picks its K list from the length: 1, 5 or 10).
  Agreement with our id-level metrics holds when titles are distinct and non-empty and neither
  begin nor end with a space, newline or quote; the export logs how many titles break this.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from recbias.data.card import peer_title_caveats
from recbias.errors import DataError
from recbias.fsutil import write_json, write_jsonl, write_text
from recbias.metrics.ranking import target_ranks
from recbias.metrics.stats import align_sample_ids

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Recommendations:
    """Ranked top-k lists for n samples.

    items: [n, k] int64 item ids, best first; −1 = empty slot or invalid output (a miss).
    scores: [n, k] float64, NaN for empty slots. sample_ids: [n] int64.
    """

    items: np.ndarray
    scores: np.ndarray
    sample_ids: np.ndarray

    def __post_init__(self) -> None:
        items = np.asarray(self.items, dtype=np.int64)
        scores = np.asarray(self.scores, dtype=np.float64)
        ids = np.asarray(self.sample_ids, dtype=np.int64)
        if items.ndim != 2 or scores.shape != items.shape or ids.shape != (items.shape[0],):
            raise ValueError(
                f"expected items [n, k], scores [n, k], sample_ids [n]; "
                f"got {items.shape}, {scores.shape}, {ids.shape}"
            )
        object.__setattr__(self, "items", items)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "sample_ids", ids)

    @property
    def k(self) -> int:
        return int(self.items.shape[1])

    def __len__(self) -> int:
        return int(self.items.shape[0])

    def reorder(self, sample_ids: np.ndarray) -> Recommendations:
        """The same lists in the order of ``sample_ids`` (an error names missing ids)."""
        idx = align_sample_ids(
            np.asarray(sample_ids), self.sample_ids, ("samples", "recommendations")
        )
        return Recommendations(self.items[idx], self.scores[idx], self.sample_ids[idx])

    @classmethod
    def from_lists(
        cls,
        sample_ids: Sequence[int],
        items: Sequence[Sequence[int]],
        scores: Sequence[Sequence[float]] | None,
        k: int,
    ) -> Recommendations:
        """Pad (or cut) ragged ranked lists to k slots with −1 / NaN."""
        out_items = np.full((len(items), k), -1, dtype=np.int64)
        out_scores = np.full((len(items), k), np.nan)
        for row, ranked in enumerate(items):
            m = min(len(ranked), k)
            out_items[row, :m] = ranked[:m]
            if scores is not None:
                out_scores[row, :m] = scores[row][:m]
        return cls(out_items, out_scores, np.asarray(sample_ids, dtype=np.int64))


@runtime_checkable
class Recommender(Protocol):
    """Anything that turns samples into ranked top-k lists."""

    name: str

    def recommend(self, samples: pd.DataFrame, k: int) -> Recommendations: ...


def _aligned(samples: pd.DataFrame, recs: Recommendations) -> Recommendations:
    ids = samples["sample_id"].to_numpy(dtype=np.int64)
    return recs if np.array_equal(ids, recs.sample_ids) else recs.reorder(ids)


def _none_if_nan(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


def prediction_rows(
    samples: pd.DataFrame, recs: Recommendations, titles: Sequence[str]
) -> list[dict[str, Any]]:
    """The objects ``write_predictions_jsonl`` writes, one per sample, in samples' order."""
    recs = _aligned(samples, recs)
    targets = samples["target"].to_numpy(dtype=np.int64)
    ranks = target_ranks(recs.items, targets)
    rows = []
    for i, (sid, user, target) in enumerate(
        zip(recs.sample_ids, samples["user"], targets, strict=True)
    ):
        items = [None if x < 0 else int(x) for x in recs.items[i]]
        rows.append(
            {
                "sample_id": int(sid),
                "user": str(user),
                "target": int(target),
                "target_title": titles[target],
                "items": items,
                "titles": [None if x is None else titles[x] for x in items],
                "scores": [_none_if_nan(s) for s in recs.scores[i]],
                "rank": None if ranks[i] < 0 else int(ranks[i]),
            }
        )
    return rows


def write_predictions_jsonl(
    path: Path, samples: pd.DataFrame, recs: Recommendations, titles: Sequence[str]
) -> None:
    """Write one JSON object per sample (format in the module docstring), atomically."""
    write_jsonl(Path(path), prediction_rows(samples, recs, titles))


class StoredPredictions(NamedTuple):
    """Arrays read back from a predictions JSONL file, in file order."""

    sample_ids: np.ndarray  # [n] int64
    items: np.ndarray  # [n, k] int64, −1 for null slots (k = longest list)
    scores: np.ndarray  # [n, k] float64, NaN for null slots
    targets: np.ndarray  # [n] int64

    def recommendations(self) -> Recommendations:
        return Recommendations(self.items, self.scores, self.sample_ids)


def _field(obj: dict[str, Any], name: str, where: str) -> Any:
    if name not in obj:
        raise DataError(f"{where}: missing field {name!r}")
    return obj[name]


def _int_field(obj: dict[str, Any], name: str, where: str) -> int:
    value = _field(obj, name, where)
    if not isinstance(value, int) or isinstance(value, bool):
        raise DataError(f"{where}: field {name!r} must be an integer, got {value!r}")
    return value


def _list_field(obj: dict[str, Any], name: str, where: str, ok: type | tuple[type, ...]) -> list:
    value = _field(obj, name, where)
    bad = not isinstance(value, list) or any(
        x is not None and (isinstance(x, bool) or not isinstance(x, ok)) for x in value
    )
    if bad:
        raise DataError(f"{where}: field {name!r} must be a list of {ok} or null, got {value!r}")
    return value


def _parse_line(line: str, where: str) -> tuple[int, list, list, int]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not valid JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    items = _list_field(obj, "items", where, int)
    scores = _list_field(obj, "scores", where, (int, float))
    if any(x is not None and x < 0 for x in items):
        raise DataError(f"{where}: field 'items' must hold item ids ≥ 0 or null")
    if len(scores) != len(items):
        raise DataError(f"{where}: 'scores' has {len(scores)} entries but 'items' has {len(items)}")
    target = _int_field(obj, "target", where)
    if target < 0:
        raise DataError(f"{where}: field 'target' must be an item id ≥ 0, got {target}")
    return _int_field(obj, "sample_id", where), items, scores, target


def read_predictions_jsonl(path: Path) -> StoredPredictions:
    """Read a file written by ``write_predictions_jsonl``; errors name the file, line and field."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DataError(f"{path}: cannot read predictions ({exc.strerror})") from None
    parsed = [_parse_line(line, f"{path}:{no}") for no, line in enumerate(lines, 1) if line.strip()]
    ids = np.array([p[0] for p in parsed], dtype=np.int64)
    if len(np.unique(ids)) != len(ids):
        raise DataError(f"{path}: field 'sample_id' has duplicate values")
    k = max((len(p[1]) for p in parsed), default=0)
    rows = [[-1 if x is None else x for x in p[1]] for p in parsed]
    scores = [[np.nan if s is None else s for s in p[2]] for p in parsed]
    recs = Recommendations.from_lists(ids, rows, scores, k)
    targets = np.array([p[3] for p in parsed], dtype=np.int64)
    return StoredPredictions(ids, recs.items, recs.scores, targets)


def _portable(title: str) -> bool:
    """True when the peers' normalisation (strip ' \\n"', or drop first/last char) keeps it."""
    return bool(title) and title[0] not in ' \n"' and title[-1] not in ' \n"'


def _log_peer_caveats(titles: Sequence[str], used: np.ndarray) -> None:
    used_titles = [titles[i] for i in np.unique(used[used >= 0])]
    bad = sum(not _portable(t) for t in used_titles)
    dup = len(used_titles) - len(set(used_titles))
    if bad or dup:
        logger.warning(
            "peer export: %d titles are empty or start/end with a space, newline or quote and "
            "%d share a title with another item; peer scripts may score these differently",
            bad,
            dup,
        )


def peer_records(
    samples: pd.DataFrame, recs: Recommendations, titles: Sequence[str]
) -> list[dict[str, Any]]:
    """The ``{"output", "predict"}`` objects ``export_peer_json`` writes (format in module doc)."""
    recs = _aligned(samples, recs)
    targets = samples["target"].to_numpy(dtype=np.int64)
    _log_peer_caveats(titles, np.concatenate([recs.items.ravel(), targets]))
    return [
        {
            "output": f'"{titles[target]}"',
            "predict": [f"\n{titles[x] if x >= 0 else ''}\n" for x in row],
        }
        for target, row in zip(targets, recs.items, strict=True)
    ]


def export_peer_json(
    path: Path, samples: pd.DataFrame, recs: Recommendations, titles: Sequence[str]
) -> None:
    """Write a JSON list that D3/IGD ``calc.py`` and MSL's matcher score like our HR/NDCG.

    Next to it go ``info.txt`` (the item file ``calc.py --item_path`` needs) and
    ``peer_titles.json`` (:func:`peer_title_caveats` of the catalog): the titles on which a peer
    script's score can differ from ours, so a disagreement is never silent.
    """
    path = Path(path)
    write_json(path, peer_records(samples, recs, titles))
    write_peer_item_file(path.parent / PEER_ITEM_FILE, titles)
    write_json(path.parent / PEER_CAVEATS_FILE, peer_title_caveats(titles))


PEER_ITEM_FILE = "info.txt"
PEER_CAVEATS_FILE = "peer_titles.json"


def write_peer_item_file(path: Path, titles: Sequence[str]) -> None:
    """Write the ``info.txt`` that D3/IGD ``calc.py`` read (``title<TAB>id`` per line).

    calc.py uses it only to count predictions outside the catalogue (its ``CC``).
    """
    bad = [i for i, t in enumerate(titles) if "\t" in t or "\n" in t]
    if bad:
        raise DataError(f"titles: item {bad[0]} contains a tab or newline; info.txt needs neither")
    write_text(Path(path), "".join(f"{t}\t{i}\n" for i, t in enumerate(titles)))
