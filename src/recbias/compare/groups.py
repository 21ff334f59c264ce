"""Decoding groups of a comparison: every method is compared with the reference decoded the same way.

A method's *decoding settings* are the ``decode`` keys that change which lists come out without
being a score calibration: ``decode.candidates`` and ``decode.beam.*`` except the speed-only
``batch_size`` and ``share_prompt_kv``. Calibrations (``decode.calibration`` with ``decode.igd``,
``decode.d3``) are what a decode-side method contributes, so they are not grouped on.

Methods with the reference's settings form the reference's group. Methods with other settings
(D3 and IGD's decoding also drop the length normalisation, ``length_penalty = 0``) form one group
per combination, labelled by the keys that differ (``length_penalty=0.0``). Each such group gets a
reference row: the reference's trained model decoded with the group's settings, named
``<reference>@<label>`` and run as a decode-only variant (no training), unless a selected method is
exactly that (e.g. ``sft_lp0``: ``reuse_model_of = "sft"`` and only the length penalty set), which
then serves as the group's reference. A method's Δ and paired test compare it with its group's
reference; a group's reference is compared with the reference itself, which isolates the effect of
the decoding settings alone.

    groups = decoding_groups("sft", reuse, resolved, "cmp")
    groups.label["d3"], groups.compare_to["d3"]    # "length_penalty=0.0", "sft@length_penalty=0.0"
    groups.extra["sft@length_penalty=0.0"]          # (its RunConfig, "sft": the model it decodes)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from recbias.config import from_dict, to_dict
from recbias.llmrec import RunConfig

SPEED_ONLY = ("batch_size", "share_prompt_kv")  # beam settings that do not change the lists


def decoding_settings(cfg: RunConfig) -> dict[str, Any]:
    """The settings a group shares: ``{"candidates": ..., "num_beams": ..., ...}``."""
    beam = {k: v for k, v in to_dict(cfg.decode.beam).items() if k not in SPEED_ONLY}
    return {"candidates": cfg.decode.candidates, **beam}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return "none" if value is None else str(value)


def decoding_label(settings: Mapping[str, Any], base: Mapping[str, Any]) -> str:
    """``key=value`` of the settings that differ from ``base``, comma-joined ("" = none)."""
    return ",".join(f"{k}={_text(v)}" for k, v in settings.items() if base.get(k) != v)


def with_decoding(cfg: RunConfig, settings_of: RunConfig, name: str) -> RunConfig:
    """``cfg`` (named ``name``) decoding with the decoding settings of ``settings_of``."""
    data = to_dict(cfg)
    data["name"] = name
    data["decode"]["candidates"] = settings_of.decode.candidates
    for key, value in to_dict(settings_of.decode.beam).items():
        if key not in SPEED_ONLY:
            data["decode"]["beam"][key] = value
    return from_dict(RunConfig, data)


@dataclass
class DecodingGroups:
    """Rows of a comparison by decoding settings (user methods and the added reference rows)."""

    label: dict[str, str] = field(default_factory=dict)  # row → its settings' label, "" = ref's
    heads: dict[str, str] = field(default_factory=dict)  # label → the group's reference row
    extra: dict[str, tuple[RunConfig, str]] = field(default_factory=dict)  # added rows

    @property
    def compare_to(self) -> dict[str, str | None]:
        """Row → the row its Δ and paired test compare against (None for the reference)."""
        ref = self.heads[""]
        out: dict[str, str | None] = {}
        for row, lab in self.label.items():
            head = self.heads[lab]
            out[row] = None if row == ref else ref if row == head else head
        return out

    def order(self) -> list[str]:
        """Rows group by group (the reference's first), each group's reference first."""
        out: list[str] = []
        for lab, head in self.heads.items():
            out += [head, *(r for r, g in self.label.items() if g == lab and r != head)]
        return out


def _is_reference_with(
    cfg: RunConfig, ref: RunConfig, reused: str | None, source: str, name: str
) -> bool:
    """Whether ``cfg`` decodes the reference's model exactly as the reference would with its
    decoding settings (then it is that group's reference)."""
    if reused != source:
        return False
    return to_dict(with_decoding(ref, cfg, name)) == to_dict(cfg)


def decoding_groups(
    reference: str,
    reuse: Mapping[str, str | None],
    resolved: Mapping[str, RunConfig],
    base_name: str,
) -> DecodingGroups:
    """Groups of the ``resolved`` methods (in table order); ``reuse`` maps each method to the
    method whose model it decodes (None: its own), ``base_name`` names the added runs."""
    ref = resolved[reference]
    source = reuse[reference] or reference
    base = decoding_settings(ref)
    groups = DecodingGroups(heads={"": reference})
    for name, cfg in resolved.items():
        groups.label[name] = decoding_label(decoding_settings(cfg), base)
    for name, cfg in resolved.items():
        lab = groups.label[name]
        if lab not in groups.heads and _is_reference_with(cfg, ref, reuse[name], source, cfg.name):
            groups.heads[lab] = name
    for name in list(resolved):
        lab = groups.label[name]
        if lab not in groups.heads:
            row = f"{reference}@{lab}"
            run = with_decoding(ref, resolved[name], f"{base_name}-{row}")
            groups.extra[row], groups.heads[lab] = (run, source), row
            groups.label[row] = lab
    # heads in order of each group's first row, the reference's group first
    first = list(dict.fromkeys(["", *groups.label.values()]))
    groups.heads = {lab: groups.heads[lab] for lab in first}
    return groups
