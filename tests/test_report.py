"""recbias report: formatting, CSV/LaTeX tables, self-contained HTML, run discovery, atomic output."""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from recbias.errors import DataError
from recbias.report import build_report
from recbias.report.accuracy import family_tables, metric_families
from recbias.report.collect import read_curve
from recbias.report.format import fmt_ci, fmt_number, round_cell
from recbias.report.sections import Figure, Section, Table, save_sections
from recbias.report.text import latex_escape, table_csv, table_latex
from report_helpers import AUDIT_SECTIONS, fake_comparison, fake_run, png

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _build(tmp_path: Path, *runs: Path) -> tuple:
    paths = build_report(list(runs), tmp_path / "out")
    return paths, paths.html.read_text(encoding="utf-8")


# --- formatting ---------------------------------------------------------------------------------


def test_fmt_number_four_significant_digits():
    assert fmt_number(0.0136232) == "0.01362"
    assert fmt_number(607.9184) == "607.9"
    assert fmt_number(1.0) == "1.000"
    assert fmt_number(1000) == "1000"
    assert fmt_number(-0.004535, signed=True) == "-0.004535"
    assert fmt_number(0.5, signed=True) == "+0.5000"
    assert fmt_number(9.999e-05) == "9.999e-05"
    assert fmt_number(None) == "—"
    assert fmt_number(float("nan")) == "nan"


def test_fmt_ci_bounds_use_the_means_decimals():
    assert fmt_ci(0.013623, 0.0083304, 0.020027) == "0.01362 [0.00833, 0.02003]"
    assert fmt_ci(-0.0045, -0.0128, 0.004, signed=True) == "-0.004500 [-0.012800, +0.004000]"
    assert fmt_ci(0.5, None, None) == "0.5000"
    assert fmt_ci(None, 0.1, 0.2) == "—"


# --- tables -------------------------------------------------------------------------------------


def test_table_csv_round_trips():
    rows = [
        ["a,b", 0.1 + 0.2, 3, None],
        ['quote "x"', 1e-12, -7, True],
        ["Δ ±", float("inf"), 0, False],
    ]
    table = Table("t", "caption", ["name", "value", "count", "flag"], rows)
    parsed = list(csv.reader(io.StringIO(table_csv(table))))
    assert parsed[0] == table.columns
    assert len(parsed) == len(rows) + 1
    for row, got in zip(rows, parsed[1:], strict=True):
        assert got[0] == row[0]
        assert float(got[1]) == row[1]  # full precision, not the display format
        assert int(got[2]) == row[2]
        assert got[3] == ("" if row[3] is None else str(row[3]).lower())


def test_latex_escapes_special_characters():
    assert latex_escape("a_b 50% R&D #1") == r"a\_b 50\% R\&D \#1"
    assert latex_escape("{x}^~$\\") == r"\{x\}\textasciicircum{}\textasciitilde{}\$\textbackslash{}"
    assert latex_escape("Δ ± −") == r"$\Delta$ $\pm$ $-$"


def test_table_latex_is_a_booktabs_table_with_escaped_cells():
    table = Table("t_1", "Share in % & count", ["group_name", "n"], [["#1_top", 3], ["[x]", 4]])
    tex = table_latex(table, "run-t-1")
    for command in (r"\begin{table}", r"\toprule", r"\midrule", r"\bottomrule", r"\end{table}"):
        assert tex.count(command) == 1
    assert r"\begin{tabular}{lr}" in tex
    assert r"\caption{Share in \% \& count}" in tex
    assert r"\label{tab:run-t-1}" in tex
    assert r"\#1\_top & 3 \\" in tex
    assert r"{}[x] & 4 \\" in tex  # '[' after '\\' must not become the row-spacing argument


# --- whole reports ------------------------------------------------------------------------------


def test_fake_run_renders_every_section(tmp_path):
    run = fake_run(tmp_path)
    paths, html = _build(tmp_path, run)
    ids = [
        "run-a-accuracy",
        "run-a-training",
        "run-a-fairness",
        "run-a-attribution",
        "run-a-reproducibility",
    ]
    positions = [html.index(f'<section id="{i}">') for i in ids]
    assert positions == sorted(positions)
    for i in ids:
        assert f'href="#{i}"' in html  # in the table of contents
    for _, title, summary in AUDIT_SECTIONS:
        assert (
            f">{title.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')}</h3>" in html
        )
        assert summary.replace("&", "&amp;") in html
    # NDCG@10 of llm, 4 significant digits; HTML puts the interval on a second line
    assert '0.01360<br><span class="ci">[0.00960, 0.01760]</span>' in html
    assert "0.1235" in html and "0.1234567" not in html
    markdown = paths.markdown.read_text()
    assert "| 0.01360 [0.00960, 0.01760] |" in markdown
    for _, title, _ in AUDIT_SECTIONS:
        assert f"### {title}" in markdown
    for link in re.findall(r"\]\((figures/[^)]+)\)", markdown):
        assert (paths.out_dir / link).read_bytes().startswith(PNG_MAGIC)
    assert len(paths.figures) == 4  # forest, training, two audit figures
    # tables: accuracy HR and NDCG, paired, run facts, 2 audit tables, environment, packages
    assert len(paths.csv) == len(paths.latex) == 8
    heads = {p.name: next(csv.reader(p.open())) for p in paths.csv if "accuracy-acc" in p.name}
    assert heads == {
        "run-a-accuracy-accuracy-hr.csv": ["method", "HR@10"],
        "run-a-accuracy-accuracy-ndcg.csv": ["method", "NDCG@10", "valid", "n"],
    }
    assert all(p.is_file() for p in paths.csv + paths.latex)


def test_html_is_self_contained(tmp_path):
    _, html = _build(tmp_path, fake_run(tmp_path))
    refs = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', html)
    assert refs and not [r for r in refs if re.match(r"\s*(https?:)?//", r)]
    assert "http://" not in html and "https://" not in html
    images = re.findall(r'<img src="([^"]*)"', html)
    assert len(images) == 4
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)
    assert "<script" not in html.replace("&lt;script&gt;", "")
    assert "&lt;script&gt;" in html  # cell text is escaped


def test_reproducibility_is_collapsed_and_shows_config(tmp_path):
    _, html = _build(tmp_path, fake_run(tmp_path))
    repro = html[html.index('<section id="run-a-reproducibility">') :]
    assert repro.index("<details>") < repro.index("validation_k = 10")
    assert "abc123abc123" in repro and "abc123abc123a" not in repro  # 12-character commit


def test_cross_run_table_on_shared_metrics(tmp_path):
    a = fake_run(tmp_path, "sft", extra_metric="MRR")
    b = fake_run(tmp_path, "gdrt")
    paths, html = _build(tmp_path, a, b)
    assert html.index('<section id="overview-accuracy">') < html.index(
        '<section class="part" id="sft">'
    )
    tables = [list(csv.reader(p.open())) for p in paths.csv if p.name.startswith("overview-")]
    assert [t[0] for t in tables] == [  # MRR is not shared
        ["run / method", "HR@10"],
        ["run / method", "NDCG@10", "n"],
    ]
    rows = tables[1]
    assert [r[0] for r in rows[1:]] == [
        "sft / llm",
        "sft / popularity",
        "gdrt / llm",
        "gdrt / popularity",
    ]


def test_comparison_dir_renders_seed_spread_and_paired_test(tmp_path):
    paths, html = _build(tmp_path, fake_comparison(tmp_path))
    assert '0.02000 ± 0.001000<br><span class="ci">[0.01800, 0.02200]</span>' in html
    assert "+0.004000" in html and "0.01000 *" in html
    rows = list(csv.reader(next(p for p in paths.csv if "accuracy-ndcg" in p.name).open()))
    assert rows[0][:2] == ["method", "NDCG@10"] and rows[0][-3:] == [
        "Δ NDCG@10 [95% CI]",
        "vs",
        "p",
    ]
    assert rows[1][-3:] == ["(reference)", "", ""]
    assert rows[2][-2] == "sft"  # a comparison.json without decoding groups: vs the reference
    assert 'id="cmp-training"' in html and len(paths.figures) == 2


# --- inputs and errors --------------------------------------------------------------------------


def test_not_a_run_dir_names_it(tmp_path):
    empty = tmp_path / "photos"
    empty.mkdir()
    (empty / "cat.jpg").write_bytes(b"x")
    with pytest.raises(DataError, match=r"photos: not a recbias run"):
        build_report([empty], tmp_path / "out")
    with pytest.raises(DataError, match=r"nowhere: no such directory"):
        build_report([tmp_path / "nowhere"], tmp_path / "out")
    with pytest.raises(DataError, match=r"cat.jpg: not a directory"):
        build_report([empty / "cat.jpg"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_malformed_metrics_name_the_file_and_field(tmp_path):
    run = fake_run(tmp_path)
    (run / "metrics.json").write_text(json.dumps({"metrics": {"methods": []}}))
    with pytest.raises(DataError, match=r"metrics.json: metrics: field 'methods' must be a dict"):
        build_report([run], tmp_path / "out")


def test_missing_section_figure_names_the_json(tmp_path):
    run = fake_run(tmp_path)
    (run / "audit" / "figures" / "fairness.png").unlink()
    with pytest.raises(
        DataError, match=r"audit.json: section 'fairness' names figure 'figures/fairness.png'"
    ):
        build_report([run], tmp_path / "out")


def test_sections_files_of_probes_are_found(tmp_path):
    probe = tmp_path / "probe"
    png(probe / "figs" / "bias.png")
    sec = Section(
        "channels", "Bias channels", "probe summary", figures=[Figure("figs/bias.png", "c")]
    )
    save_sections(probe / "position.sections.json", [sec])
    save_sections(probe / "sub" / "sections.json", [Section("extra", "Extra")])
    _, html = _build(tmp_path, probe)
    assert '<section id="probe-channels">' in html and "probe summary" in html
    assert '<section id="probe-sub-extra">' in html and ">sub: Extra</h3>" in html


def test_an_audit_directory_can_be_given_directly(tmp_path):
    run = fake_run(tmp_path)
    _, html = _build(tmp_path, run / "audit")
    assert '<section id="audit-fairness">' in html and '<section id="audit-attribution">' in html
    assert '<img src="data:image/png;base64,' in html


def test_output_is_atomic_when_rendering_fails(tmp_path, monkeypatch):
    run = fake_run(tmp_path)
    out = tmp_path / "out"

    def broken(report):
        raise RuntimeError("disk full")

    monkeypatch.setattr("recbias.report.build.render_markdown", broken)
    with pytest.raises(RuntimeError):
        build_report([run], out)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["run_a"]  # no temporary directory left
    monkeypatch.undo()
    build_report([run], out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    monkeypatch.setattr("recbias.report.build.render_markdown", broken)
    with pytest.raises(RuntimeError):
        build_report([run], out)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_refuses_to_replace_a_directory_that_is_not_a_report(tmp_path):
    run = fake_run(tmp_path)
    with pytest.raises(DataError, match="would replace the run directory"):
        build_report([run], tmp_path)
    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "todo.txt").write_text("keep me")
    with pytest.raises(DataError, match="notes: exists and is not a recbias report"):
        build_report([run], precious)
    assert (precious / "todo.txt").read_text() == "keep me"


def test_read_curve_keeps_the_last_record_per_step(tmp_path):
    path = tmp_path / "train_log.jsonl"
    records = [{"event": "train", "step": s, "loss": float(s)} for s in (10, 20, 30)]
    records += [
        {"event": "train", "step": 20, "loss": 0.5},
        {"event": "epoch", "epoch": 1, "val_metric": 0.1},
    ]
    path.write_text(
        "".join(json.dumps(r) + "\n" for r in records) + '{"event": "tra'
    )  # killed mid-line
    curve = read_curve(path)
    assert curve.steps == [10, 20, 30] and curve.loss == [10.0, 0.5, 30.0]
    assert curve.epochs == [1] and curve.val == [0.1]


def test_round_cell_rounds_floats_and_keeps_integers_and_text():
    assert round_cell(0.0136232) == 0.0136 and round_cell(np.float64(2 / 3)) == 0.6667
    assert round_cell(3) == 3 and isinstance(round_cell(np.int64(3)), np.integer)
    assert round_cell(True) is True and round_cell("sft") == "sft"
    assert round_cell(None) is None and round_cell(math.nan) is None
    assert round_cell(np.float64("inf")) is None


def test_metric_families_group_by_the_name_before_the_at_sign():
    names = ["HR@5", "NDCG@5", "HR@10", "MRR", "NDCG@10"]
    assert metric_families(names) == [["HR@5", "HR@10"], ["NDCG@5", "NDCG@10"], ["MRR"]]
    assert metric_families([]) == []


def test_family_tables_split_columns_and_put_extras_with_the_named_family():
    rows = [
        ({"method": "sft", "HR@5": "a", "NDCG@5": "b"}, [1.0, "x"]),
        ({"method": "pop"}, [0, "y"]),
    ]
    metrics = ["HR@5", "NDCG@5"]
    hr, ndcg = family_tables("acc", "Cap.", "method", rows, metrics, ["valid", "p"])
    assert (hr.name, hr.columns, hr.rows) == (
        "acc_hr",
        ["method", "HR@5"],
        [["sft", "a"], ["pop", None]],
    )
    assert ndcg.columns == ["method", "NDCG@5", "valid", "p"]
    assert ndcg.rows == [["sft", "b", 1.0, "x"], ["pop", None, 0, "y"]]
    assert hr.caption == "HR@K. Cap."
    first, _ = family_tables("acc", "Cap.", "method", rows, metrics, ["valid", "p"], "HR@5")
    assert first.columns == ["method", "HR@5", "valid", "p"]
