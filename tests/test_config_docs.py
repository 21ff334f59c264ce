"""``recbias config show|explain|docs``: the configs' own metadata, readable by users."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from recbias import configdoc
from recbias.cli import main
from recbias.config import from_dict, read_toml
from recbias.errors import ConfigError

ROOT = Path(__file__).parent.parent
SHIPPED = sorted((ROOT / "configs").glob("*.toml"))


def _expected_kind(path: Path) -> str:
    name = path.stem
    if name.startswith("probe_"):
        return "probe-" + name.removeprefix("probe_")
    if "compare" in name:
        return "compare"
    prefixes = ("audit", "simulate", "genrec", "seqrec")
    return next((p for p in prefixes if name.startswith(p)), "run")


def test_configuration_md_is_up_to_date():
    """Regenerate with ``recbias config docs`` when this fails."""
    assert (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8") == configdoc.markdown()


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_show_infers_the_kind_and_its_toml_loads_back_to_the_same_config(path):
    kind = configdoc.infer_kind(read_toml(path))
    assert kind == _expected_kind(path)
    cfg = configdoc.load_kind(kind, path)
    text = configdoc.render_toml(cfg, "title")
    assert from_dict(configdoc.config_class(kind), tomllib.loads(text)) == cfg


def test_show_writes_every_default_with_its_help_and_the_overrides(capsys):
    assert (
        main(["config", "show", str(ROOT / "configs/quickstart.toml"), "--set", "train.lr=3e-4"])
        == 0
    )
    text = capsys.readouterr().out
    assert "# peak learning rate (AdamW) [> 0]\nlr = 0.0003\n" in text
    assert "# maximum number of epochs (0: decode with the base model) [>= 0]\nepochs = " in text
    assert "\n[train.objective.gdrt]\n" in text  # sections the file leaves out are shown too
    assert "# Iterative k-core on users and items until stable; 0 disables. [>= 0]" in text


def test_explain_gives_type_default_range_and_help(capsys):
    assert main(["config", "explain", "train.epochs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["key", "train.epochs"]
    assert {
        "type     int",
        "default  2",
        "allowed  >= 0",
        "help     maximum number of epochs (0: decode with the base model)",
    } <= set(lines)


def test_explain_uses_the_defaults_of_the_kind():
    # SASRec's max_len defaults to 10 in a run config but to 50 in the leave-one-out config.
    assert "default  10" in configdoc.explain("run", "baselines.sasrec.max_len")
    assert "default  50" in configdoc.explain("seqrec", "baselines.sasrec.max_len")


def test_explain_accepts_sections_list_items_and_named_tables():
    text = configdoc.explain("run", "data.prepare")
    assert text.startswith("[data.prepare] (run config, PrepareConfig): 21 keys")
    assert "data.prepare.kcore = 5" in text
    assert "default  required" in configdoc.explain("compare", "methods[0].name")
    assert "allowed  in [0, 1]" in configdoc.explain("simulate", "compare.eps.epsilon")
    assert "path     relative to the config file's folder" in configdoc.explain(
        "run", "finish.audit_config"
    )


def test_explain_of_an_unknown_key_suggests_the_closest(capsys):
    assert main(["config", "explain", "train.objective.gdrt.tauu"]) == 2
    err = capsys.readouterr().err
    assert "unknown run config key 'train.objective.gdrt.tauu'" in err
    assert "did you mean 'train.objective.gdrt.tau'" in err
    with pytest.raises(
        ConfigError, match=r"unknown run config key 'world.n_items'; .*--kind simulate"
    ):
        configdoc.explain("run", "world.n_items")
    assert "default  500" in configdoc.explain("simulate", "world.n_items")


def test_kind_inference_prefers_run_and_refuses_mixed_files():
    assert configdoc.infer_kind({"name": "x", "seed": 1}) == "run"
    with pytest.raises(ConfigError, match="cannot tell the config kind.*--kind"):
        configdoc.infer_kind({"world": {}, "positional": {}})


def test_docs_check_fails_on_a_stale_file_and_docs_rewrites_it(tmp_path, capsys):
    out = tmp_path / "configuration.md"
    out.write_text("# old\n")
    assert main(["config", "docs", "--check", "--out", str(out)]) == 2
    assert "is stale" in capsys.readouterr().err
    assert main(["config", "docs", "--out", str(out)]) == 0
    assert main(["config", "docs", "--check", "--out", str(out)]) == 0
    assert out.read_text() == configdoc.markdown()


def test_docs_list_every_key_of_every_kind_once_per_distinct_section():
    text = configdoc.markdown()
    for key in ("`train.objective.gdrt.tau`", "`world.n_items`", "`positional.m_grid`", "`ks`"):
        assert key in text
    assert "| `base.*` | table | | | same keys and defaults as the `run` config |" in text
    assert "`baselines.sasrec.max_len`" in text.split("## seqrec")[1]  # its defaults differ
