"""Simulator config validation, shipped configs, choice models, the runner and the adapter."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from recbias.config import from_dict, load_config
from recbias.errors import ConfigError
from recbias.simulate import Simulation, SimulationConfig, build_world, run_simulation
from recbias.simulate.choice import choice_probabilities, choose_positions
from recbias.simulate.config import ChoiceConfig
from recbias.simulate.logs import Logs, TrainingSet
from recbias.simulate.scorers import SampleModelAdapter

CONFIGS = sorted(Path(__file__).resolve().parents[1].glob("configs/simulate_*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load(path):
    cfg = load_config(SimulationConfig, path)
    assert cfg.loop.rounds >= 1 and cfg.variants()


def test_shipped_configs_exist():
    names = {p.name for p in CONFIGS}
    assert {"simulate_popularity.toml", "simulate_mf.toml", "simulate_mitigations.toml"} <= names


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"loop": {"lambdas": [0.2, 1.5]}}, "loop.lambdas[1]"),
        ({"loop": {"lambdas": [-0.1]}}, "loop.lambdas[0]"),
        ({"loop": {"rounds": 0}}, "loop.rounds"),
        ({"loop": {"k": 600}}, "loop.k"),
        ({"scorer": {"name": "bert4rec"}}, "scorer.name"),
        ({"choice": {"model": "cascade"}}, "choice.model"),
        ({"choice": {"temperature": 0.0}}, "choice.temperature"),
        ({"choice": {"per_round": 11}}, "choice.per_round"),
        ({"mitigation": {"epsilon": 2.0}}, "mitigation.epsilon"),
        ({"mitigation": {"organic_share": 1.0}}, "mitigation.organic_share"),
        ({"compare": {"x": {"exposure_cap": 0.0}}}, "compare.x.exposure_cap"),
        ({"loop": {"lamdas": [0.5]}}, "loop.lamdas"),
    ],
)
def test_bad_config_names_the_key(data, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        from_dict(SimulationConfig, data)


def test_logit_tends_to_argmax_as_temperature_vanishes():
    utils = torch.tensor([[0.1, 0.5, 0.3], [2.0, -1.0, 1.9]])
    cold = choice_probabilities(utils, "logit", 1e-3, 1.0)
    assert torch.allclose(cold, choice_probabilities(utils, "argmax", 1.0, 1.0), atol=1e-6)
    warm = choice_probabilities(utils, "logit", 1.0, 1.0)
    assert torch.allclose(warm, torch.softmax(utils, dim=1))


def test_pbm_propensities_hand_computed():
    utils = torch.zeros(1, 3)  # equal attraction: choice follows the examination propensities
    got = choice_probabilities(utils, "pbm", 1.0, 0.5)
    assert torch.allclose(got, torch.tensor([[4 / 7, 2 / 7, 1 / 7]]))
    utils = torch.tensor([[0.0, float(np.log(2.0))]])
    assert torch.allclose(choice_probabilities(utils, "pbm", 1.0, 0.5), torch.tensor([[0.5, 0.5]]))


def test_pbm_sampling_frequencies():
    cfg = ChoiceConfig(model="pbm", pbm_decay=0.5)
    pos = choose_positions(torch.zeros(20000, 3), cfg, 1, torch.Generator().manual_seed(0))
    freq = np.bincount(pos.reshape(-1).numpy(), minlength=3) / 20000
    assert np.abs(freq - [4 / 7, 2 / 7, 1 / 7]).max() < 0.015


def test_argmax_choice_takes_the_best_slate_items():
    cfg = ChoiceConfig(model="argmax")
    pos = choose_positions(torch.tensor([[0.1, 0.9, 0.5]]), cfg, 2, torch.Generator())
    assert pos.tolist() == [[1, 2]]


def test_run_simulation_writes_the_run_directory(tmp_path):
    cfg = from_dict(
        SimulationConfig,
        {
            "world": {"n_users": 50, "n_items": 30, "dim": 3},
            "scorer": {"name": "mf", "dim": 4},
            "loop": {"rounds": 3, "lambdas": [0.0, 0.5], "k": 4},
            "compare": {"none": {}, "explore": {"epsilon": 0.2}},
        },
    )
    result = run_simulation(cfg, tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert {"config.toml", "environment.json", "metrics.json", "rounds.csv"} <= names
    assert "concentration.png" in names
    assert load_config(SimulationConfig, tmp_path / "config.toml") == cfg
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved == result and len(saved["runs"]) == 4
    table = pd.read_csv(tmp_path / "rounds.csv")
    assert len(table) == 4 * 4 and set(table["lambda"]) == {0.0, 0.5}
    assert "first_alert_round" in saved["runs"][0]["summary"]
    assert not list(tmp_path.glob(".*.tmp"))


class FakeSequenceModel:
    """Scores the successor (id + 1) of the last history item; records what it was fitted on."""

    name = "fake"

    def fit(self, samples: pd.DataFrame, n_items: int):
        self.samples, self.n_items = samples, n_items
        return self

    def scores(self, samples: pd.DataFrame) -> np.ndarray:
        out = np.zeros((len(samples), self.n_items), np.float32)
        for row, hist in enumerate(samples["history"]):
            out[row, (hist[-1] + 1) % self.n_items] = 1.0
        return out


def test_sample_model_adapter_builds_sliding_window_samples():
    logs = Logs(
        np.array([0, 1, 0, 0]), np.array([3, 5, 4, 6]), np.zeros(4, np.int32), np.zeros(4, bool)
    )
    model = FakeSequenceModel()
    adapter = SampleModelAdapter(model, history_len=1, samples_per_user=5)
    adapter.fit(TrainingSet(logs, np.ones(4, np.float32)), n_users=2, n_items=8)
    assert model.samples[["user", "target"]].values.tolist() == [[0, 4], [0, 6]]
    assert model.samples["history"].tolist() == [[3], [4]]
    assert adapter.scores(np.array([0, 1])).argmax(dim=1).tolist() == [7, 6]


def test_adapter_runs_in_the_loop():
    cfg = from_dict(
        SimulationConfig,
        {"world": {"n_users": 20, "n_items": 12}, "loop": {"rounds": 2, "k": 3}},
    )
    world = build_world(cfg)
    scorer = SampleModelAdapter(FakeSequenceModel(), history_len=3, samples_per_user=4)
    rows = Simulation(world, cfg, 1.0, cfg.mitigation, scorer=scorer).run()
    assert [r["logs"] for r in rows] == [200, 220, 240]


def test_sasrec_scorer_runs_in_the_loop():
    cfg = from_dict(
        SimulationConfig,
        {
            "world": {"n_users": 30, "n_items": 15},
            "scorer": {"name": "sasrec", "sasrec": {"epochs": 1, "hidden": 8, "heads": 1}},
            "loop": {"rounds": 2, "k": 3},
        },
    )
    rows = Simulation(build_world(cfg), cfg, 0.5, cfg.mitigation).run()
    assert len(rows) == 3 and rows[-1]["logs"] == 30 * 10 + 2 * 30


@pytest.mark.integration
def test_ml100k_world_runs(tmp_path):
    path = Path(__file__).resolve().parents[1] / "configs/simulate_ml100k.toml"
    cfg = load_config(SimulationConfig, path, ["loop.rounds=2", "loop.lambdas=[0.5]"])
    world = build_world(cfg)
    assert world.n_items > 1000 and world.n_users > 900 and world.n_groups >= 18
    assert len(world.initial_items) > 10_000
    result = run_simulation(cfg, tmp_path)
    assert len(result["runs"][0]["rounds"]) == 3
