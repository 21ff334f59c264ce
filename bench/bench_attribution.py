"""Feature-ablation attribution vs the plain forward passes it needs.

Attributing n samples with S segments needs n × (S + 1) sequences scored. The baseline runs
exactly those padded sequences (same length-sorted batches, same batch size, same dtype) as plain
forward passes: full sequences, no shared-prefix cache, logits at the last position only (the
cheapest useful forward). Prints both timings and the ratio (target ≤ 2), also for attribution
without prefix sharing; writes ``bench/results/attribution.json``.

    # smoke run (10 samples)
    nice -n 19 .venv/bin/python bench/bench_attribution.py --samples 10
    # the real measurement: 200 samples × 12 segments (task, history, 9 items, first token)
    nice -n 19 .venv/bin/python bench/bench_attribution.py --samples 200 --items 9 --threads 2

Data and model come from a run directory (default ``runs/quickstart``): ``--trained`` uses its
tuned weights, otherwise the base SmolLM2-135M checkpoint it starts from.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from recbias.decoding.kv import model_device
from recbias.diagnostics.attribution import (
    AttributionConfig,
    attribute,
    build_variants,
)
from recbias.fsutil import write_json
from recbias.llmrec import load_run
from recbias.lm.loading import autocast

RESULTS = Path(__file__).parent / "results" / "attribution.json"


def plain_forwards(model, sequences: list[tuple[int, ...]], batch_size: int, dtype: str) -> float:
    """Seconds for right-padded plain forwards of ``sequences`` in length-sorted batches."""
    device = model_device(model)
    order = sorted(sequences, key=len)
    t0 = time.perf_counter()
    with torch.inference_mode(), autocast(dtype, device):
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            width = max(len(s) for s in batch)
            ids = torch.zeros((len(batch), width), dtype=torch.long, device=device)
            mask = torch.zeros_like(ids)
            for row, s in enumerate(batch):
                ids[row, : len(s)] = torch.tensor(s)
                mask[row, : len(s)] = 1
            model(input_ids=ids, attention_mask=mask, logits_to_keep=1)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=Path("runs/quickstart"))
    ap.add_argument("--trained", action="store_true", help="use the run's tuned weights")
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--items", type=int, default=9, help="keep the last N history items")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="bf16")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    _, ds, lm = load_run(args.run, trained=args.trained)
    lm.model.eval()
    samples = ds.split("test").iloc[: args.samples].copy()
    samples["history"] = [list(h)[-args.items :] for h in samples["history"]]
    cfg = AttributionConfig(batch_size=args.batch_size, sample_chunk=64, dtype=args.dtype)
    attribute(lm.model, lm.builder, samples.iloc[:2], ds.titles, cfg)  # warm-up

    t0 = time.perf_counter()
    result = attribute(lm.model, lm.builder, samples, ds.titles, cfg)
    t_attr = time.perf_counter() - t0
    t0 = time.perf_counter()
    no_share = AttributionConfig(**{**cfg.__dict__, "share_prefix": False})
    attribute(lm.model, lm.builder, samples, ds.titles, no_share)
    t_noshare = time.perf_counter() - t0

    sequences = []
    for sid, hist, target in zip(samples.sample_id, samples.history, samples.target, strict=True):
        items = [int(i) for i in hist]
        enc = lm.builder.encode([ds.titles[i] for i in items], items, ds.titles[int(target)])
        sequences += [v.ids for v in build_variants(lm.builder, enc, int(sid), cfg)]
    t_plain = plain_forwards(lm.model, sequences, args.batch_size, args.dtype)

    segments = len(result.table) / len(samples)
    out = {
        "samples": len(samples),
        "segments_per_sample": segments,
        "sequences": len(sequences),
        "attribution_seconds": t_attr,
        "attribution_no_prefix_sharing_seconds": t_noshare,
        "plain_forward_seconds": t_plain,
        "ratio": t_attr / t_plain,
        "ratio_no_prefix_sharing": t_noshare / t_plain,
        "dtype": args.dtype,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
    }
    write_json(RESULTS, out)
    print(f"{len(samples)} samples × {segments:.1f} segments = {len(sequences)} sequences")
    print(f"attribution            {t_attr:8.2f} s")
    print(f"  without prefix reuse {t_noshare:8.2f} s")
    print(f"plain forward passes   {t_plain:8.2f} s")
    print(
        f"ratio {out['ratio']:.2f} (target ≤ 2); without prefix reuse {out['ratio_no_prefix_sharing']:.2f}"
    )


if __name__ == "__main__":
    main()
