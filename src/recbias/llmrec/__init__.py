"""The LLM recommender line: config, assembly, pipeline stages and the run loader.

    cfg = load_config(RunConfig, Path("configs/quickstart.toml"))
    result = run_experiment(cfg, run_dir)    # prepare → load → train → recommend → evaluate
    run = LoadedRun.open(run_dir)            # a finished run, as analyses receive it

* :mod:`~recbias.llmrec.config`: ``RunConfig`` and its sections (decode, eval, baselines, finish);
* :mod:`~recbias.llmrec.recommender`: ``LLMRecommender`` (prompts → constrained beam search);
* :mod:`~recbias.llmrec.assemble`: the dataset, model and recommender, built once;
* :mod:`~recbias.llmrec.pipeline`: the stages of a run;
* :mod:`~recbias.llmrec.sprec`: SPRec self-play DPO iterations after SFT;
* :mod:`~recbias.llmrec.run`: a run directory → ``LoadedRun``.

What happens after a run (the audit and the report) is :mod:`recbias.workflow`'s.
"""

from recbias.llmrec.assemble import LoadedModel, load_data, load_lm, make_recommender
from recbias.llmrec.config import DecodeConfig, FinishConfig, RunConfig, SPRecConfig
from recbias.llmrec.pipeline import (
    evaluate,
    recommend,
    run_experiment,
    setup_run,
    train,
    write_summary,
)
from recbias.llmrec.recommender import LLMRecommender, build_trie, candidate_items
from recbias.llmrec.run import LoadedRun, load_run, read_run_config, trained_weights

__all__ = [
    "DecodeConfig",
    "FinishConfig",
    "LLMRecommender",
    "LoadedModel",
    "LoadedRun",
    "RunConfig",
    "SPRecConfig",
    "build_trie",
    "candidate_items",
    "evaluate",
    "load_data",
    "load_lm",
    "load_run",
    "make_recommender",
    "read_run_config",
    "recommend",
    "run_experiment",
    "setup_run",
    "train",
    "trained_weights",
    "write_summary",
]
