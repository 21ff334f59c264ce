"""``recbias compare``: several methods × seeds on one dataset, in one table.

    cfg = load_compare_config(Path("configs/quickstart_compare.toml"), ["base.train.epochs=1"])
    run_comparison(cfg, Path("runs/compare"), seeds=[0, 1, 2])   # runs, then comparison.*

* :mod:`~recbias.compare.config`: the config and each method's resolved, validated run config;
* :mod:`~recbias.compare.run`: the runs (train or decode only, resumable) and writing the tables;
* :mod:`~recbias.compare.groups`: decoding groups (each method against the reference decoded
  with its decoding settings, added as a decode-only row where no method is that);
* :mod:`~recbias.compare.table`: the table (means over seeds, intervals, paired tests);
* :mod:`~recbias.compare.bias`: the bias table (concentration, MGU/DGU) beside it.
"""

from recbias.compare.config import (
    CompareConfig,
    MethodSpec,
    flatten_set,
    load_compare_config,
    resolve_methods,
    select_methods,
)
from recbias.compare.run import run_comparison
from recbias.compare.table import (
    MethodRuns,
    build_comparison,
    comparison_csv,
    comparison_markdown,
    seed_interval,
    write_comparison,
)

__all__ = [
    "CompareConfig",
    "MethodRuns",
    "MethodSpec",
    "build_comparison",
    "comparison_csv",
    "comparison_markdown",
    "flatten_set",
    "load_compare_config",
    "resolve_methods",
    "run_comparison",
    "seed_interval",
    "select_methods",
    "write_comparison",
]
