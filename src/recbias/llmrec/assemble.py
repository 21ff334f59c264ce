"""Assembling the LLM recommender once: the prepared dataset, the loaded model and its prompt
builder, and the recommender with its configured score calibrations.

    ds = load_data(cfg)                          # PreparedDataset (rank 0 prepares it first)
    lm = load_lm(cfg, ds)                        # LoadedModel: model, prompt builder, context size
    lm = load_lm(cfg, ds, weights=run_dir / "model")   # a trained one
    rec = make_recommender(cfg, ds, lm)          # LLMRecommender over the catalog trie
    rec = make_recommender(cfg, ds, lm, run_dir) # D3's SASRec assistant fitted once per run

The run's SASRec (D3's assistant, ``decode.d3.assistant = "sasrec"``, and the ``sasrec`` baseline
of ``eval.baselines``, both ``baselines.sasrec`` on the training split) is fitted on the first use
in a run and saved as ``RUN/sasrec.pt`` (weights, SASRec config, item count and a fingerprint of
the training samples); validation, the test decoding, the baseline, ``recbias recommend`` and the
audit reload it while all three match, instead of fitting it again.

The pipeline (:mod:`recbias.llmrec.pipeline`) and the run loader (:mod:`recbias.llmrec.run`)
both build their models here.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from recbias import distributed
from recbias.baselines.popularity import count_items
from recbias.baselines.sasrec import SASRecConfig, SASRecRecommender
from recbias.config import to_dict
from recbias.data.dataset import PreparedDataset
from recbias.data.prepare import prepare_dataset
from recbias.decoding import ItemTrie
from recbias.decoding.config import ScoreHook
from recbias.decoding.d3 import d3_score_hook, item_distribution, popularity_distribution
from recbias.decoding.igd_calibration import igd_score_hook
from recbias.fsutil import atomic_path
from recbias.llmrec.config import RunConfig
from recbias.llmrec.recommender import (
    HookFactory,
    LLMRecommender,
    build_trie,
    candidate_items,
    chain_hooks,
)
from recbias.lm import loading
from recbias.prompts import PromptBuilder
from recbias.sidllm.assemble import (
    SidSetup,
    attach_sid_encoder,
    check_checkpoint_tokens,
    lora_token_indices,
    sid_setup,
)

log = logging.getLogger(__name__)
SASREC_FILE = "sasrec.pt"


@dataclass
class LoadedModel:
    """A causal LM with its prompt builder; ``max_length`` = the context size in tokens,
    ``base_path`` = the checkpoint it was loaded from (before any trained weights), ``sid`` =
    the items' semantic IDs and tokens of a SID-LLM run (``items.representation != "title"``)."""

    model: torch.nn.Module
    builder: PromptBuilder
    max_length: int
    base_path: Path
    sid: SidSetup | None = None


def load_data(cfg: RunConfig) -> PreparedDataset:
    """The prepared dataset (rank 0 prepares and caches it first under several processes)."""
    if distributed.is_main():
        prepare_dataset(cfg.data)
    distributed.barrier()
    return PreparedDataset.load(prepare_dataset(cfg.data))


def load_lm(cfg: RunConfig, ds: PreparedDataset, weights: Path | None = None) -> LoadedModel:
    """The model to train (or, with ``weights``, a trained one from a run directory)."""
    base = loading.resolve_path(cfg.model)
    tok = loading.load_tokenizer(base)
    device = distributed.init_from_env() or loading.resolve_device(cfg.model.device)
    attention = loading.attention_for(cfg.model.attention, device)
    full_weights = weights is not None and cfg.model.finetune == "full"
    model = loading.load_model(weights if full_weights else base, attention=attention)
    sid = sid_setup(cfg.items, ds, tok, weights) if cfg.items.uses_sid else None
    if sid is not None:
        sid.fit_model(model, tok, ds.titles, init=not full_weights)
        if weights is not None:
            check_checkpoint_tokens(weights, sid.vocab)
    if cfg.model.finetune == "lora":
        adapter = weights or (Path(cfg.model.adapter) if cfg.model.adapter else None)
        if adapter is not None:
            model = loading.load_adapter(model, adapter, trainable=weights is None)
        else:
            tokens = lora_token_indices(model, sid.vocab) if sid is not None else None
            model = loading.add_lora(model, cfg.model.lora, tokens)
    if sid is not None:
        model = attach_sid_encoder(model, sid, cfg.items, weights)
    model.to(device)
    distributed.sync_from_rank0(model)  # every rank holds what rank 0 loaded
    builder = PromptBuilder(tok, cfg.prompt, ds.domain, sid.text if sid is not None else None)
    return LoadedModel(model, builder, loading.context_size(model, cfg.model), base, sid)


def make_recommender(
    cfg: RunConfig, ds: PreparedDataset, lm: LoadedModel, run_dir: Path | None = None
) -> LLMRecommender:
    """The run's recommender; ``run_dir`` keeps D3's SASRec assistant (None: fit it here)."""
    items = candidate_items(
        cfg.decode.candidates, len(ds.titles), ds.split("train")["target"].tolist()
    )
    trie = build_trie(lm.builder, ds.titles, items)
    hooks = score_hooks(cfg, ds, trie, run_dir)
    return LLMRecommender(
        lm.model, lm.builder, ds.titles, trie, cfg.decode.beam, cfg.model.dtype, hooks
    )


def score_hooks(
    cfg: RunConfig, ds: PreparedDataset, trie: ItemTrie, run_dir: Path | None = None
) -> HookFactory | None:
    """The configured beam-search score calibrations (decode.calibration), in order."""
    if not cfg.decode.calibration:
        return None
    train_df = ds.split("train")
    counts = count_items(train_df, len(ds.titles))
    assistant = None
    if "d3" in cfg.decode.calibration:
        assistant = d3_assistant(cfg, train_df, counts, run_dir)

    igd = igd_score_hook(trie, counts, cfg.decode.igd) if "igd" in cfg.decode.calibration else None

    def build(samples: pd.DataFrame) -> ScoreHook:
        hooks = []
        for name in cfg.decode.calibration:
            if name == "igd":
                hooks.append(igd)
            else:
                probs = assistant(samples) if assistant is not None else None
                hooks.append(d3_score_hook(trie, probs, cfg.decode.d3))
        return chain_hooks(hooks)

    return build


def d3_assistant(
    cfg: RunConfig, train_df: pd.DataFrame, counts: np.ndarray, run_dir: Path | None = None
) -> Callable[[pd.DataFrame], torch.Tensor]:
    """Per-sample item distributions of D3's text-free assistant (rows follow the samples)."""
    if cfg.decode.d3.assistant == "popularity":
        probs = popularity_distribution(counts)
        return lambda samples: probs
    sasrec = run_sasrec(cfg.baselines.sasrec, train_df, len(counts), run_dir)
    return lambda samples: item_distribution(sasrec.scores(samples))


def samples_fingerprint(samples: pd.DataFrame) -> str:
    """sha256 of the samples' ids, histories and targets (which training data a model saw)."""
    digest = hashlib.sha256()
    for column in ("sample_id", "target"):
        digest.update(samples[column].to_numpy(dtype=np.int64).tobytes())
    lengths = samples["history"].map(len).to_numpy(dtype=np.int64)
    digest.update(lengths.tobytes())
    for history in samples["history"]:
        digest.update(np.asarray(history, dtype=np.int64).tobytes())
    return digest.hexdigest()


def run_sasrec(
    cfg: SASRecConfig,
    train_df: pd.DataFrame,
    n_items: int,
    run_dir: Path | None,
    collective: bool = True,
) -> SASRecRecommender:
    """SASRec fitted on ``train_df``, once per run: reloaded from ``RUN/sasrec.pt`` when it
    was fitted with this config, item count and training samples, else fitted and saved there.

    With several processes every rank calls it (``collective``): rank 0 loads or fits the model
    and the others receive its weights, so every rank scores with the same model. A call that
    only rank 0 makes passes ``collective=False``.
    """
    model = SASRecRecommender(cfg)
    if not collective or distributed.rank_and_world()[1] == 1:
        _load_or_fit(model, cfg, train_df, n_items, run_dir)
        return model
    state = _load_or_fit(model, cfg, train_df, n_items, run_dir) if distributed.is_main() else None
    state = distributed.broadcast_object(state)
    return model if distributed.is_main() else model.restore(state)


def _load_or_fit(
    model: SASRecRecommender,
    cfg: SASRecConfig,
    train_df: pd.DataFrame,
    n_items: int,
    run_dir: Path | None,
) -> dict[str, Any]:
    """Fit (or restore) ``model`` in place; returns its state with CPU tensors."""
    path = None if run_dir is None else Path(run_dir) / SASREC_FILE
    key = samples_fingerprint(train_df)
    if path is not None and path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=True)
        same = state.get("config") == to_dict(cfg) and state.get("n_items") == n_items
        if same and state.get("samples") == key:
            model.restore(state)
            return state
        log.info("%s was fitted on other data or settings: fitting the assistant again", path)
    model.fit(train_df, n_items)
    state = model.state()
    state = {**state, "net": {k: v.cpu() for k, v in state["net"].items()}, "samples": key}
    if path is not None:
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
    return state
