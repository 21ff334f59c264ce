"""``recbias genrec`` with ``[finish] audit``: concentration, positional attention and history
sensitivity of the generative recommender, in the LLM audit's format."""

import json

import numpy as np
import pandas as pd
import pytest

from recbias.audit.config import AuditConfig
from recbias.audit.sequential import attention_of
from recbias.cli import main
from recbias.config import write_resolved
from recbias.genrec.config import GenRecRunConfig
from recbias.metrics.concentration import concentration
from recbias.report.sections import load_sections
from test_genrec_recommender import small_cfg, table_data


def test_attention_of_masks_missing_items_and_renormalises():
    mass = np.array([[0.0, 0.2, 0.6], [0.1, 0.1, 0.3]])
    att = attention_of(mass, pd.Series([[4, 5], [1, 2, 3, 4]]))
    assert np.isnan(att.mass[0, 0]) and att.lengths.tolist() == [2, 3]
    np.testing.assert_allclose(att.share[0, 1:], [0.25, 0.75])
    np.testing.assert_allclose(att.share[1], [0.2, 0.2, 0.6])


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("genrec")
    cfg = GenRecRunConfig(threads=1, data=table_data(tmp), genrec=small_cfg(codebook_size=4))
    cfg.eval.ks, cfg.eval.bootstrap = [1, 5], 50
    cfg.finish.audit, cfg.finish.report = True, True
    cfg.finish.audit_set = ["ks=[5]", "n_boot=50", "sensitivity_samples=6",
                            "positional_samples=6", "sensitivity.k=5"]  # fmt: skip
    write_resolved(cfg, tmp / "genrec.toml")
    assert main(["genrec", str(tmp / "genrec.toml"), "--run-dir", str(tmp / "run")]) == 0
    return tmp / "run"


def test_the_audit_has_the_three_sections_and_the_report_shows_them(audited):
    meta, sections = load_sections(audited / "audit" / "audit.json")
    assert [s.key for s in sections] == ["audit_overview", "concentration", "positional",
                                         "sensitivity"]  # fmt: skip
    assert meta["recommender"] == "genrec" and meta["config"]["ks"] == [5]
    positional = sections[2].data["positional"]["genrec"]
    assert positional["samples"] >= 1 and 0 <= positional["near_share"] <= 1
    html = (audited / "report" / "report.html").read_text()
    assert "Positional attention" in html and "Sensitivity" in html
    assert "Codebook usage per level" in html


def test_semantic_id_section_reads_both_files_and_rejects_a_bad_one(tmp_path):
    from recbias.errors import DataError
    from recbias.report.collect import semantic_id_section

    assert semantic_id_section(tmp_path) is None
    report = {"n_items": 3, "levels": [{"used": 2, "usage": 0.5, "perplexity": 1.9}],
              "unique_prefixes": 2, "colliding_items": 2, "max_suffix": 1}  # fmt: skip
    (tmp_path / "semantic_ids.json").write_text(json.dumps({"report": report, "codes": []}))
    sec = semantic_id_section(tmp_path)
    assert sec.tables[0].rows == [[1, 2, "0.5000", "1.900"]]
    assert "2 items share a prefix" in sec.summary
    (tmp_path / "semantic_ids.json").write_text(json.dumps({"report": {"levels": 3}}))
    with pytest.raises(DataError, match="semantic_ids.json"):
        semantic_id_section(tmp_path)


def test_concentration_equals_a_direct_computation_on_the_predictions(audited):
    from recbias.baselines.popularity import count_items
    from recbias.config import load_config
    from recbias.data.dataset import PreparedDataset
    from recbias.data.prepare import prepare_dataset

    _, sections = load_sections(audited / "audit" / "audit.json")
    got = sections[1].data["concentration"]["genrec"][0]
    cfg = load_config(GenRecRunConfig, audited / "config.toml")
    ds = PreparedDataset.load(prepare_dataset(cfg.data))
    preds = [json.loads(line) for line in (audited / "predictions" / "test.jsonl").open()]
    items = np.array([p["items"] for p in preds])
    n = len(ds.titles)
    want = concentration(items, 5, n, count_items(ds.split("train"), n), AuditConfig().head_fraction,
                         AuditConfig().or_top, "x")  # fmt: skip
    assert got["gini"] == pytest.approx(want.gini) and got["coverage"] == pytest.approx(
        want.coverage
    )


def test_bad_audit_settings_fail_before_training(tmp_path, capsys):
    cfg = GenRecRunConfig(threads=1, data=table_data(tmp_path), genrec=small_cfg(codebook_size=4))
    cfg.finish.audit, cfg.finish.audit_set = True, ["positional_window=0"]
    write_resolved(cfg, tmp_path / "genrec.toml")
    assert main(["genrec", str(tmp_path / "genrec.toml"), "--run-dir", str(tmp_path / "r")]) == 2
    assert "finish" in capsys.readouterr().err
    assert not (tmp_path / "r" / "metrics.json").exists()
