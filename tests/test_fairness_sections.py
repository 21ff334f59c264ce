"""The audit's fairness and concentration sections: tables and figures from the metrics' numbers."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from recbias.audit.fairness_sections import concentration_section, fairness_section
from recbias.metrics.concentration import concentration, exposure_counts
from recbias.metrics.fairness import ItemGrouping, group_gap, top1_group_shares
from recbias.report.sections import load_sections, save_sections

# items 0, 1 -> group A; items 2, 3 -> group B
AB = ItemGrouping.from_labels("ab", np.array([0, 0, 1, 1]), ["A", "B"])
RECS = np.array([[0, 1], [0, 2]])
HISTORIES = [[2, 3], [0, 3, 3, 3]]


def test_fairness_section_writes_figures(tmp_path):
    gaps = [group_gap(RECS, HISTORIES, AB, k=k) for k in (1, 2)]
    top1 = [top1_group_shares(RECS, np.array([0, 2]), AB)]
    sec = fairness_section(gaps, top1, tmp_path, model="sft")
    assert len(sec.tables[0].rows) == 2
    assert len(sec.figures) == 2
    for fig in sec.figures:
        assert (tmp_path / fig.file).is_file() and fig.file.endswith(".png")
    assert "above the dashed line" in sec.figures[0].caption


def test_fairness_section_table_and_data_hold_the_metric_numbers(tmp_path):
    gap = group_gap(RECS, HISTORIES, AB, k=2)  # recs: A 3/4, B 1/4; histories: A 1/6, B 5/6
    top1 = top1_group_shares(RECS, np.array([0, 2]), AB)
    sec = fairness_section([gap], [top1], tmp_path, model="sft")
    assert sec.tables[0].rows == [["ab", 2, "pooled", 0.5833, 1.1667, 2, 0, 0, 0]]
    assert sec.data["gaps"][0]["gap"] == pytest.approx([3 / 4 - 1 / 6, 1 / 4 - 5 / 6])
    assert sec.data["gaps"][0] == gap.as_dict()
    assert sec.data["top1"][0] == top1.as_dict() and top1.as_dict()["rec_share"] == [1.0, 0.0]


def test_concentration_section_has_table_figure_and_roundtrips(tmp_path):
    items = np.array([[0, 1], [0, 2]])
    conc = concentration(items, 2, 4, np.array([3, 2, 1, 0]))
    sec = concentration_section({"sft": [conc]}, tmp_path, {"sft": exposure_counts(items, 4)})
    assert (tmp_path / sec.figures[0].file).is_file()
    assert sec.tables[0].rows[0][:2] == ["sft", 2]
    save_sections(tmp_path / "audit.json", [sec])
    _, back = load_sections(tmp_path / "audit.json")
    assert back[0].data["concentration"]["sft"][0]["gini"] == pytest.approx(conc.gini)
    json.loads((tmp_path / "audit.json").read_text())


def test_concentration_table_rounds_floats_and_keeps_counts(tmp_path):
    conc = concentration(np.array([[0, 1], [0, 2]]), 2, 4, np.array([3, 2, 1, 0]))
    row = concentration_section({"sft": [conc]}, tmp_path).tables[0].rows[0]
    assert row[2] == 0.75 and row[10] == 3 and row[11] == 0  # coverage, distinct, empty slots
    assert row[3] == round(conc.gini, 4)


def test_metric_modules_load_neither_the_report_nor_matplotlib():
    code = (
        "import sys, recbias.metrics.fairness, recbias.metrics.concentration, "
        "recbias.metrics.overlap; "
        "print(sorted(m for m in sys.modules if m.startswith(('recbias.report', 'matplotlib'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
