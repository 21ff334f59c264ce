"""Which compute dtype a run uses: ``dtype = "auto"`` resolved from the hardware, once per process.

torch runs a bf16 matmul on any CPU, but only CPUs with native bf16 instructions (``avx512_bf16`` or
``amx_bf16`` in ``/proc/cpuinfo``) run it fast; elsewhere it falls back to scalar code about 100x
slower than fp32. So ``auto`` means:

* CUDA: bf16 where ``torch.cuda.is_bf16_supported()``, else fp32;
* CPU: bf16 only when the flags say native bf16 *and* a ~50 ms matmul probe confirms that bf16
  is not the slow fallback (at least ``BF16_MIN_RATIO`` = 0.5 of the fp32 rate); else fp32.

The fallback runs at 0.01-0.05x of fp32 and native bf16 at 1-4x, so the 0.5 cut leaves a wide
margin both ways: a busy machine (other jobs stealing the cores for part of the probe) must not
flip the dtype between two runs of the same config, or between the ranks of one run. For the same
reason the probe interleaves its fp32 and bf16 bursts and keeps the best of each: a stall hits
both dtypes alike instead of the one that happened to be measured during it.

The decision (:func:`decide_dtype`) is a pure function of the flags, the measured rates and the
device kind; :func:`probe` measures once per device and process (cached), so every model in a run
gets the same answer. An explicit ``bf16`` on a CPU where it is slow is honoured with a warning that
gives the measured ratio.

    dtype = resolve_dtype("auto", torch.device("cpu"))  # "bf16" or "fp32"
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch

log = logging.getLogger(__name__)

Dtype = Literal["bf16", "fp32"]
#: Values a config's ``dtype`` key accepts.
DTYPE_CHOICES = ("auto", "bf16", "fp32")
#: CPU flags that mean native bf16 arithmetic (AVX512-BF16 dot products, AMX tiles).
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
#: Square matmul size of the probe: on CPU small enough that a scalar bf16 fallback takes ~0.1 s;
#: on a GPU big enough not to measure kernel launches.
PROBE_SIZE = {"cpu": 256, "cuda": 4096}
PROBE_SECONDS = 0.025  # per dtype: the whole probe takes about 50 ms
PROBE_REPEATS = 5
#: bf16/fp32 rate ratio below which a CPU's bf16 counts as the slow fallback.
BF16_MIN_RATIO = 0.5


@dataclass(frozen=True)
class Probe:
    """What was measured on one device: matmul rates and the CPU flags that matter."""

    device: str
    fp32_gflops: float
    bf16_gflops: float
    native_bf16_flags: tuple[str, ...]
    cuda_bf16: bool

    @property
    def bf16_ratio(self) -> float:
        """bf16 rate / fp32 rate (> 1: bf16 is faster)."""
        return self.bf16_gflops / self.fp32_gflops if self.fp32_gflops > 0 else 0.0

    @property
    def auto(self) -> Dtype:
        return decide_dtype(
            self.device.split(":")[0], set(self.native_bf16_flags), self.bf16_ratio, self.cuda_bf16
        )


def decide_dtype(
    device_kind: str, flags: set[str] | frozenset[str], bf16_ratio: float, cuda_bf16: bool
) -> Dtype:
    """What ``auto`` picks: pure in the device kind (``cpu``/``cuda``), the CPU flags, the measured
    bf16/fp32 matmul rate ratio and whether CUDA reports bf16 support."""
    if device_kind == "cuda":
        return "bf16" if cuda_bf16 else "fp32"
    if device_kind != "cpu":
        return "fp32"
    native = bool(NATIVE_BF16_FLAGS & set(flags))
    return "bf16" if native and bf16_ratio >= BF16_MIN_RATIO else "fp32"


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The ``flags`` of the first CPU in ``/proc/cpuinfo`` (empty where there is no such file)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def matmul_gflops(
    dtype: torch.dtype, device: torch.device, seconds: float = PROBE_SECONDS
) -> float:
    """GFLOP/s of a ``PROBE_SIZE[device.type]`` square matmul in ``dtype`` on ``device``: the
    best of ``PROBE_REPEATS`` timed bursts within ~``seconds`` (the best, so that a busy
    machine's stalls do not decide the dtype). Uses its own generator: the global RNG is left
    as it was."""
    return matmul_rates([dtype], device, seconds)[0]


def matmul_rates(
    dtypes: list[torch.dtype], device: torch.device, seconds: float = PROBE_SECONDS
) -> list[float]:
    """:func:`matmul_gflops` of several dtypes with their bursts interleaved (round r times
    every dtype once), so that a stall of the machine hits them alike."""
    n = PROBE_SIZE.get(device.type, 256)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen)
    b = torch.randn(n, n, generator=gen)
    pairs = [(a.to(device=device, dtype=d), b.to(device=device, dtype=d)) for d in dtypes]
    for x, y in pairs:
        x @ y  # warm-up: thread pool, kernel selection, packing buffers
    _sync(device)
    best = [0.0] * len(dtypes)
    for _ in range(PROBE_REPEATS):
        for i, (x, y) in enumerate(pairs):
            best[i] = max(best[i], _burst(x, y, device, seconds / PROBE_REPEATS))
    return best


def _burst(a: torch.Tensor, b: torch.Tensor, device: torch.device, seconds: float) -> float:
    n = a.shape[0]
    count, start = 0, time.perf_counter()
    while count < 1 or time.perf_counter() - start < seconds:
        a @ b
        count += 1
        if device.type == "cuda" and count % 16 == 0:
            _sync(device)
    _sync(device)
    return 2.0 * n**3 * count / (time.perf_counter() - start) / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


_PROBES: dict[str, Probe] = {}


def _measure(device: torch.device) -> Probe:
    try:
        fp32, bf16 = matmul_rates([torch.float32, torch.bfloat16], device)
    except RuntimeError:  # a build or device with no bf16 matmul at all
        fp32, bf16 = matmul_gflops(torch.float32, device), 0.0
    flags = tuple(sorted(NATIVE_BF16_FLAGS & cpu_flags())) if device.type == "cpu" else ()
    cuda_bf16 = device.type == "cuda" and _cuda_native_bf16(device)
    found = Probe(str(device), round(fp32, 1), round(bf16, 1), flags, cuda_bf16)
    log.info("dtype probe on %s: %s", device, found)
    return found


def _cuda_native_bf16(device: torch.device) -> bool:
    """bf16 in hardware (compute capability >= 8.0), not torch's emulation on older GPUs."""
    with torch.cuda.device(device):
        try:
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
        except TypeError:  # a torch without the argument
            return torch.cuda.get_device_capability(device)[0] >= 8


def probe(device: torch.device | str = "cpu") -> Probe:
    """The cached measurement for ``device`` (a CUDA device is measured by its own index)."""
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    key = str(dev)
    if key not in _PROBES:
        _PROBES[key] = _measure(dev)
    return _PROBES[key]


def resolve_dtype(requested: str, device: torch.device | str = "cpu") -> Dtype:
    """``auto`` -> what the hardware runs best; ``bf16``/``fp32`` as asked (``bf16`` on a CPU
    without native bf16 logs a warning with the measured rates)."""
    if requested not in DTYPE_CHOICES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPE_CHOICES)}, got {requested!r}")
    dev = torch.device(device)
    if requested == "fp32":
        return "fp32"
    if dev.type not in ("cpu", "cuda"):  # no probe there: honour bf16, auto = fp32
        return "bf16" if requested == "bf16" else "fp32"
    found = probe(dev)
    if requested == "auto":
        return found.auto
    if found.auto == "fp32":
        _warn_slow_bf16(found)
    return "bf16"


def bf16_enabled(dtype: str, device: torch.device | str) -> bool:
    """Whether ``dtype`` (``auto``/``bf16``/``fp32``) means bf16 autocast on ``device``."""
    return dtype != "fp32" and resolve_dtype(dtype, device) == "bf16"


def autocast(dtype: str, device: torch.device | str) -> torch.autocast:
    """bf16 autocast on ``device`` where :func:`bf16_enabled`, else a disabled (no-op) one."""
    device = torch.device(device)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16_enabled(dtype, device))


@functools.cache
def _warn_slow_bf16(found: Probe) -> None:
    log.warning(
        "dtype = bf16 on %s, where bf16 matmuls run at %.1f GFLOP/s against %.1f in fp32 "
        "(%.2fx); dtype = auto would use fp32",
        found.device,
        found.bf16_gflops,
        found.fp32_gflops,
        found.bf16_ratio,
    )


def device_for(name: str) -> torch.device:
    """A config's ``device`` key as a torch device (``auto``: cuda if available, else cpu)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def probes_record() -> dict[str, Any]:
    """Every probe this process ran, for ``environment.json``."""
    return {
        device: {**asdict(found), "bf16_ratio": round(found.bf16_ratio, 3), "auto": found.auto}
        for device, found in sorted(_PROBES.items())
    }
