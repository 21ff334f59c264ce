"""Write the decoding benchmark's inputs from a recbias config: test prompts and the item catalog.

    python bench/make_decoding_inputs.py configs/quickstart.toml --out bench/results/inputs

Writes ``prompts.jsonl`` ({"prompt_ids"}) and ``catalog.jsonl`` ({"item", "seq"}) built with the
same PromptBuilder and trie tokenization as `recbias run`, and prints the model directory.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from recbias.config import load_config
from recbias.llmrec import RunConfig, candidate_items, load_data
from recbias.lm import loading
from recbias.lm.loading import load_tokenizer
from recbias.prompts import PromptBuilder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("config", type=Path)
    ap.add_argument("--out", type=Path, default=Path("bench/results/inputs"))
    ap.add_argument("--split", default="test")
    args = ap.parse_args()
    cfg = load_config(RunConfig, args.config)
    ds = load_data(cfg)
    model_dir = loading.resolve_path(cfg.model)
    builder = PromptBuilder(load_tokenizer(model_dir), cfg.prompt, ds.domain)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "prompts.jsonl", "w") as f:
        for hist in ds.split(args.split)["history"]:
            items = [int(i) for i in hist]
            ids = builder.encode([ds.titles[i] for i in items], items).input_ids
            f.write(json.dumps({"prompt_ids": ids}) + "\n")
    train_targets = ds.split("train")["target"].tolist()
    with open(args.out / "catalog.jsonl", "w") as f:
        for item in candidate_items(cfg.decode.candidates, len(ds.titles), train_targets):
            seq = builder.encode_target(ds.titles[item])
            f.write(json.dumps({"item": item, "seq": seq}) + "\n")
    print(model_dir)


if __name__ == "__main__":
    main()
