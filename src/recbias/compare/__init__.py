"""``recbias compare``: several methods × seeds on one dataset, in one table.

    cfg = load_compare_config(Path("configs/quickstart_compare.toml"), ["base.train.epochs=1"])
    run_comparison(cfg, Path("runs/compare"), seeds=[0, 1, 2])   # runs, then comparison.*

* :mod:`~recbias.compare.run`: the config, the methods' resolved run configs and the runs;
* :mod:`~recbias.compare.groups`: decoding groups (each method against the reference decoded
  with its decoding settings, added as a decode-only row where no method is that);
* :mod:`~recbias.compare.table`: the table (means over seeds, intervals, paired tests).
"""

from recbias.compare.run import (
    CompareConfig,
    MethodSpec,
    flatten_set,
    load_compare_config,
    resolve_methods,
    run_comparison,
    select_methods,
)
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
