"""Run directories and the environment record saved with every result."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import random
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recbias.config import Config, spec
from recbias.errors import RecbiasError
from recbias.fsutil import write_json

PACKAGES = [
    "recbias",
    "torch",
    "transformers",
    "tokenizers",
    "peft",
    "accelerate",
    "gguf",
    "numpy",
    "pandas",
    "pyarrow",
    "scikit-learn",
    "safetensors",
]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_threads(threads: int | None) -> int:
    n = threads or os.cpu_count() or 1
    torch.set_num_threads(n)
    return n


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit(path: Path | None = None) -> dict[str, Any]:
    where = path or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": sha, "dirty": bool(dirty)}


def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    try:
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def environment(seed: int, dtype: str | None = None, parallel: str | None = None) -> dict[str, Any]:
    """Versions, commit, hardware and seed; ``dtype``: the run's resolved compute dtype, with the
    matmul probes behind ``auto`` (:mod:`recbias.hardware`) that this process ran; the number of
    processes and, for training, how they share it (``parallel``: none, ddp or fsdp)."""
    from recbias import distributed
    from recbias.hardware import probes_record

    extra = {} if parallel is None else {"parallel": parallel}
    return {
        "time_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "packages": package_versions(),
        "git": git_commit(),
        "hardware": hardware(),
        "seed": seed,
        "dtype": dtype,
        "dtype_probes": probes_record(),
        "processes": distributed.rank_and_world()[1],
        **extra,
    }


def new_run_dir(output_dir: Path, name: str, run_dir: Path | None, resume: bool) -> Path:
    """The run's directory: given, or ``output_dir/name-YYYYmmdd-HHMMSS``."""
    if resume:
        if run_dir is None or not Path(run_dir).is_dir():
            raise RecbiasError("--resume needs --run-dir pointing at the run to resume")
        return Path(run_dir)
    if run_dir is None:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = Path(output_dir) / f"{name}-{stamp}"
    run_dir = Path(run_dir)
    if run_dir.exists() and any(run_dir.iterdir()):
        raise RecbiasError(
            f"run directory '{run_dir}' already exists and is not empty (use --resume)"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def write_environment(
    run_dir: Path, seed: int, dtype: str | None = None, parallel: str | None = None
) -> None:
    write_json(run_dir / "environment.json", environment(seed, dtype, parallel))


@dataclass
class FinishConfig(Config):
    """What ``recbias run`` / ``recbias genrec`` do after evaluating: an audit, then the report
    (run by :mod:`recbias.workflow`, which also resolves and checks the audit settings)."""

    audit: bool = field(
        default=False, metadata={"help": "audit the finished run (recbias audit) into RUN/audit/"}
    )
    audit_config: str | None = field(
        default=None,
        metadata=spec(
            "audit settings (configs/audit.toml format); unset = the defaults", path=True
        ),
    )
    audit_set: list[str] = field(
        default_factory=list,
        metadata={"help": "overrides of the audit settings, e.g. ['attribution_samples=50']"},
    )
    report: bool = field(
        default=True,
        metadata={"help": "write RUN/report/ (HTML, Markdown, CSV, LaTeX) of the run"},
    )
