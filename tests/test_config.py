from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from recbias.config import dumps, from_dict, load_config, parse_override, read_toml
from recbias.errors import ConfigError
from recbias.experiment import RunConfig

# Comparison configs (a top-level [base] table) are loaded as CompareConfig in test_compare.py.
CONFIGS = [
    p
    for p in sorted(Path(__file__).parent.parent.glob("configs/*.toml"))
    if "base" not in read_toml(p)
]


def _kind(path: Path):
    """The config class of a shipped config, by its file name."""
    from recbias.audit.config import AuditConfig
    from recbias.evaluation.loo import SeqRecConfig
    from recbias.genrec import GenRecRunConfig
    from recbias.probes.runner import load_probe_config
    from recbias.simulate.config import SimulationConfig

    name = path.stem
    if name.startswith("probe_"):
        return lambda p: load_probe_config(name.removeprefix("probe_"), p)
    kinds = {
        "audit": AuditConfig,
        "simulate": SimulationConfig,
        "genrec": GenRecRunConfig,
        "seqrec": SeqRecConfig,
    }
    cls = next((c for prefix, c in kinds.items() if name.startswith(prefix)), RunConfig)
    return lambda p: load_config(cls, p)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_loads(path):
    cfg = _kind(path)(path)
    seed = getattr(cfg, "seed", None)
    if seed is None and hasattr(cfg, "genrec"):
        seed = cfg.genrec.seed
    assert seed is not None, f"{path.name} has no seed"


def test_unknown_key_names_the_dotted_key_and_suggests():
    with pytest.raises(ConfigError, match=r"unknown config key 'train.lrr'.*did you mean 'lr'"):
        from_dict(RunConfig, {"train": {"lrr": 0.1}})


def test_wrong_type_names_the_key_and_expected_type():
    with pytest.raises(ConfigError, match=r"'train.epochs': expected int, got 'two'"):
        from_dict(RunConfig, {"train": {"epochs": "two"}})


def test_bool_is_not_an_int():
    with pytest.raises(ConfigError, match="train.epochs"):
        from_dict(RunConfig, {"train": {"epochs": True}})


def test_literal_values_are_checked():
    with pytest.raises(ConfigError, match=r"'prompt.template': expected one of"):
        from_dict(RunConfig, {"prompt": {"template": "alpacca"}})


def test_int_is_accepted_for_float():
    cfg = from_dict(RunConfig, {"train": {"lr": 1}})
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)


def test_overrides_are_parsed_as_toml(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('name = "x"\n[train]\nepochs = 3\n')
    cfg = load_config(
        RunConfig, path, ["train.epochs=1", "eval.ks=[1,5]", "name=y", "model.dtype=fp32"]
    )
    assert (cfg.train.epochs, cfg.eval.ks, cfg.name, cfg.model.dtype) == (1, [1, 5], "y", "fp32")


def test_override_without_equals_is_an_error():
    with pytest.raises(ConfigError, match="expected key.path=value"):
        parse_override("train.epochs")


def test_resolved_config_round_trips(tmp_path):
    cfg = from_dict(RunConfig, {"train": {"epochs": 5}, "data": {"prepare": {"train_samples": 64}}})
    path = tmp_path / "resolved.toml"
    path.write_text(dumps(cfg))
    again = load_config(RunConfig, path)
    assert again == cfg


def test_invalid_toml_names_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[train\nepochs = 1\n")
    with pytest.raises(ConfigError, match=r"bad.toml': invalid TOML"):
        read_toml(path)


def test_missing_config_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_toml(tmp_path / "nope.toml")


def test_unknown_objective_is_rejected():
    with pytest.raises(ConfigError, match=r"'train.objective.name': must be one of .*got 'sfft'"):
        from_dict(RunConfig, {"train": {"objective": {"name": "sfft"}}})


def test_invalid_beam_settings_name_the_section():
    with pytest.raises(ConfigError, match="decode.beam"):
        from_dict(RunConfig, {"decode": {"beam": {"num_beams": 0}}})


# --- relative paths -------------------------------------------------------------------------


def _copy_quickstart(folder: Path) -> Path:
    folder.mkdir(parents=True)
    root = Path(__file__).parent.parent / "configs"
    for name in ("quickstart.toml", "audit_quickstart.toml"):
        (folder / name).write_bytes((root / name).read_bytes())
    return folder / "quickstart.toml"


def test_copied_quickstart_reads_its_audit_config_next_to_it(tmp_path, monkeypatch):
    from recbias.audit.config import AuditConfig

    _copy_quickstart(tmp_path / "elsewhere")
    monkeypatch.chdir(tmp_path)  # not the repository, not the config's folder
    cfg = load_config(RunConfig, Path("elsewhere/quickstart.toml"))
    assert cfg.finish.audit_config == str(tmp_path / "elsewhere" / "audit_quickstart.toml")
    shipped = Path(__file__).parent.parent / "configs" / "audit_quickstart.toml"
    assert cfg.finish.audit_settings() == load_config(AuditConfig, shipped)


def test_set_paths_resolve_against_the_current_directory(tmp_path, monkeypatch):
    path = _copy_quickstart(tmp_path / "cfg")
    (tmp_path / "mine.toml").write_text("max_samples = 7\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_config(RunConfig, path, ["finish.audit_config=mine.toml", "model.path=ckpt"])
    assert cfg.finish.audit_config == str(tmp_path / "mine.toml")
    assert cfg.model.path == str(tmp_path / "ckpt")
    assert cfg.finish.audit_settings().max_samples == 7


def test_paths_in_nested_sections_and_absolute_paths(tmp_path):
    from recbias.simulate.config import SimulationConfig

    path = tmp_path / "sim.toml"
    path.write_text(
        '[world]\nkind = "dataset"\n[world.data.source]\nkind = "table"\n'
        'path = "../data"\ninteractions = "/abs/inter.csv"\nitems = "~/items.csv"\n'
    )
    src = load_config(SimulationConfig, path).world.data.source
    assert src.path == str(tmp_path.parent / "data")
    assert src.interactions == "/abs/inter.csv"
    assert src.items == str(Path.home() / "items.csv")


def test_output_locations_stay_relative_to_the_current_directory(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('output_dir = "runs"\n[data]\ncache_dir = "cache"\n')
    cfg = load_config(RunConfig, path)
    assert (cfg.output_dir, cfg.data.cache_dir) == ("runs", "cache")


def test_compare_resolves_base_and_method_paths_against_its_folder(tmp_path):
    from recbias.compare import load_compare_config, resolve_methods

    path = tmp_path / "cmp.toml"
    path.write_text(
        'reference = "a"\n[base.model]\npath = "ckpt"\n'
        '[[methods]]\nname = "a"\n[[methods]]\nname = "b"\nset = {"model.adapter" = "ad"}\n'
    )
    cfg = load_compare_config(path)
    runs = resolve_methods(cfg, ["a", "b"])
    assert runs["a"].model.path == str(tmp_path / "ckpt")
    assert runs["b"].model.adapter == str(tmp_path / "ad")


# --- constraints ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "data", "message"),
    [
        ("run", {"data": {"prepare": {"kcore": -1}}}, "'data.prepare.kcore': must be >= 0, got -1"),
        ("run", {"train": {"lr": 0}}, "'train.lr': must be > 0, got 0.0"),
        ("run", {"eval": {"ks": [5, 0]}}, "'eval.ks[1]': must be >= 1, got 0"),
        (
            "run",
            {"baselines": {"sasrec": {"heads": 3}}},
            "'baselines.sasrec.heads': must be a divisor",
        ),
        ("run", {"decode": {"beam": {"num_beams": 0}}}, "'decode.beam.num_beams': must be >= 1"),
        ("run", {"data": {"prepare": {"train_ratio": 0.5}}}, "'data.prepare.train_ratio/valid_"),
        ("run", {"data": {"source": {"kind": "amazon2023"}}}, "'data.source.category': required"),
        ("simulate", {"world": {"data": {"prepare": {"kcore": -2}}}}, "'world.data.prepare.kcore'"),
        (
            "simulate",
            {"scorer": {"sasrec": {"dropout": 1.0}}},
            "'scorer.sasrec.dropout': must be in [0, 1)",
        ),
        (
            "seqrec",
            {"baselines": {"gru4rec": {"hidden": 0}}},
            "'baselines.gru4rec.hidden': must be >= 1",
        ),
        (
            "seqrec",
            {"genrec": {"d_model": 30}},
            "'genrec.heads': must be a divisor of d_model (30)",
        ),
        ("audit", {"attribution": {"batch_size": 0}}, "'attribution.batch_size': must be >= 1"),
        ("audit", {"sensitivity": {"instructions": [" "]}}, "'sensitivity.instructions[0]'"),
        ("audit", {"ks": [5, 5]}, "'ks': must not repeat entries, got [5, 5]"),
        ("probe-positional", {"positional": {"window": 20}}, "'positional.window': must be <="),
        (
            "probe-popularity",
            {"popularity": {"sgd": {"dim": 2}}},
            "'popularity.sgd.dim': must be >= 6",
        ),
    ],
)
def test_errors_are_one_line_naming_the_full_key(kind, data, message):
    from recbias.configdoc import config_class

    with pytest.raises(ConfigError) as info:
        from_dict(config_class(kind), data)
    text = str(info.value)
    assert text.startswith("config key ") and "\n" not in text
    assert message in text


def test_defaults_of_every_config_kind_are_valid():
    from recbias.configdoc import KINDS, config_class

    for kind in KINDS:
        if kind != "compare":  # a comparison needs its methods
            config_class(kind)().validate()


def test_every_section_declares_only_known_metadata_and_no_hand_written_validate():
    from recbias.config import METADATA_KEYS, Config
    from recbias.configdoc import KINDS, config_class, sections

    for kind in KINDS:
        for key, cls, _ in sections(config_class(kind)):
            assert "validate" not in vars(cls) or cls is Config, f"{kind} {key}"
            for f in dataclasses.fields(cls):
                unknown = set(f.metadata) - set(METADATA_KEYS)
                assert not unknown, f"{kind} {key}{f.name}: {unknown}"


def test_constraints_are_described_and_checked_by_hand():
    from recbias.config import check_value, describe, spec

    assert describe(spec("x", ge=0, lt=1)) == "in [0, 1)"
    assert describe(spec("x", gt=0, le=1)) == "in (0, 1]"
    assert describe(spec("x", gt=0)) == "> 0"
    assert describe(spec("x", le=5)) == "<= 5"
    assert describe(spec("x", choices=("a", "b"), min_len=1, unique=True)) == (
        "one of a, b, non-empty, no repeated entries"
    )
    check_value("k", spec("x", ge=0, lt=1), 0.0)
    check_value("k", spec("x", ge=1), None)  # unset optional values are not checked
    for value, message in [(1.0, "'k': must be in [0, 1), got 1.0"), ([0.5, -1], "'k[1]'")]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            check_value("k", spec("x", ge=0, lt=1), value)


def test_literal_fields_are_checked_on_configs_built_in_python():
    from recbias.decoding.d3 import D3Config

    with pytest.raises(ConfigError, match=r"'assistant': must be one of none, sasrec, popularity"):
        D3Config(assistant="knn").validate()  # type: ignore[arg-type]


def test_every_key_a_user_can_set_has_help():
    from recbias.configdoc import KINDS, config_class, field_docs

    missing = [(k, d.key) for k in KINDS for d in field_docs(config_class(k)) if not d.help]
    assert missing == []


def test_a_recorded_run_config_keeps_its_paths_as_written(tmp_path):
    from recbias.config import load_recorded, write_resolved

    cfg = from_dict(RunConfig, {"model": {"path": "ckpt"}})  # an older run: relative to its cwd
    write_resolved(cfg, tmp_path / "run" / "config.toml")
    assert load_recorded(RunConfig, tmp_path / "run" / "config.toml").model.path == "ckpt"
    assert load_config(RunConfig, tmp_path / "run" / "config.toml").model.path == str(
        tmp_path / "run" / "ckpt"
    )
