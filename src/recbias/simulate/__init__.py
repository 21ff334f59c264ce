"""Closed-loop retraining simulator (issue 5 §3; Prop. 4.6 of paper 000).

    from recbias.config import load_config
    from recbias.simulate import SimulationConfig, run_simulation

    cfg = load_config(SimulationConfig, Path("configs/simulate_popularity.toml"))
    result = run_simulation(cfg, Path("runs/simulate-pop"))   # metrics.json, rounds.csv, PNG

Modules: ``config`` (typed config), ``world`` (synthetic / dataset worlds), ``scorers``
(popularity, ALS matrix factorisation, adapter for fit/scores models such as SASRec), ``choice``
(argmax / logit / PBM), ``recommend`` (chunked top-k and mitigations), ``logs`` (logs and
training weights), ``loop`` (one run), ``metrics``, ``telemetry`` (collapse early warning),
``runner`` (all runs of a config plus the files of the run directory).
"""

from recbias.simulate.config import SimulationConfig
from recbias.simulate.loop import Simulation
from recbias.simulate.runner import build_world, run_simulation

__all__ = ["Simulation", "SimulationConfig", "build_world", "run_simulation"]
