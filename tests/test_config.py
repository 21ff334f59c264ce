from __future__ import annotations

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
