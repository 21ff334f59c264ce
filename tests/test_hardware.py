"""dtype = "auto": the pure decision, the CPU-flag reader, the matmul probe, and where the resolved
dtype is used and recorded."""

from __future__ import annotations

import logging

import pytest
import torch

from recbias import hardware
from recbias.doctor import dtype_report
from recbias.hardware import Probe, cpu_flags, decide_dtype, resolve_dtype
from recbias.lm import loading

AMX = {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}
AVX2 = {"sse4_2", "avx", "avx2", "fma"}


@pytest.mark.parametrize(
    ("kind", "flags", "ratio", "cuda_bf16", "expected"),
    [
        ("cuda", set(), 0.0, True, "bf16"),  # an H100/H200/A100
        ("cuda", set(), 0.0, False, "fp32"),  # a V100/T4: no bf16
        ("cpu", AMX, 2.4, False, "bf16"),  # Sapphire Rapids: AMX, bf16 2.4x faster
        ("cpu", {"avx512_bf16"}, 1.0, False, "bf16"),  # AVX512-BF16 only, as fast as fp32
        ("cpu", AMX, 0.7, False, "bf16"),  # native, measured a little slower: noise, not fallback
        ("cpu", AMX, 0.2, False, "fp32"),  # flags say native, the probe finds the fallback
        ("cpu", AVX2, 0.01, False, "fp32"),  # AVX2 only: scalar bf16 fallback
        ("cpu", AVX2, 3.0, False, "fp32"),  # no native flag: never bf16, whatever was measured
        ("mps", AMX, 5.0, True, "fp32"),  # other backends: fp32
    ],
)
def test_decide_dtype_hand_cases(kind, flags, ratio, cuda_bf16, expected):
    assert decide_dtype(kind, flags, ratio, cuda_bf16) == expected


def test_cpu_flags_reads_the_first_flags_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nmodel name\t: X\nflags\t\t: fpu avx2 amx_bf16\n\n"
        "processor\t: 1\nflags\t\t: fpu\n"
    )
    assert cpu_flags(info) == frozenset({"fpu", "avx2", "amx_bf16"})
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_matmul_probe_measures_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    rate = hardware.matmul_gflops(torch.float32, torch.device("cpu"), seconds=0.005)
    assert rate > 0.1
    assert torch.equal(torch.rand(3), expected)


def test_interleaved_probe_measures_every_dtype():
    rates = hardware.matmul_rates([torch.float32, torch.bfloat16], torch.device("cpu"), 0.01)
    assert len(rates) == 2 and all(r > 0.1 for r in rates)


def test_probe_runs_once_per_device(monkeypatch):
    calls = []

    def fake(device):
        calls.append(str(device))
        return Probe(str(device), 100.0, 250.0, ("amx_bf16",), False)

    monkeypatch.setattr(hardware, "_PROBES", {})
    monkeypatch.setattr(hardware, "_measure", fake)
    assert hardware.probe("cpu") is hardware.probe(torch.device("cpu"))
    assert calls == ["cpu"]
    assert hardware.probes_record()["cpu"]["auto"] == "bf16"
    assert hardware.probes_record()["cpu"]["bf16_ratio"] == 2.5


def test_real_probe_on_this_cpu_is_consistent_with_the_decision(monkeypatch):
    monkeypatch.setattr(hardware, "_PROBES", {})
    found = hardware.probe("cpu")
    assert found.fp32_gflops > 0 and found.bf16_gflops > 0
    flags = set(found.native_bf16_flags)
    assert found.auto == decide_dtype("cpu", flags, found.bf16_ratio, False)
    assert resolve_dtype("auto", "cpu") == found.auto


def _fake_cpu(monkeypatch, bf16_gflops: float, flags=("amx_bf16",)) -> None:
    monkeypatch.setattr(hardware, "_PROBES", {"cpu": Probe("cpu", 50.0, bf16_gflops, flags, False)})


def test_fp32_is_never_probed(monkeypatch):
    monkeypatch.setattr(hardware, "_PROBES", {})
    monkeypatch.setattr(hardware, "_measure", lambda d: pytest.fail("probed"))
    assert resolve_dtype("fp32", "cpu") == "fp32"
    assert hardware.probes_record() == {}


def test_auto_on_a_slow_bf16_cpu_is_fp32_and_explicit_bf16_warns(monkeypatch, caplog):
    _fake_cpu(monkeypatch, 0.5, flags=())
    hardware._warn_slow_bf16.cache_clear()
    assert resolve_dtype("auto", "cpu") == "fp32"
    with caplog.at_level(logging.WARNING, logger="recbias.hardware"):
        assert resolve_dtype("bf16", "cpu") == "bf16"
    assert "0.5 GFLOP/s against 50.0 in fp32 (0.01x)" in caplog.text


def test_invalid_dtype_is_refused():
    with pytest.raises(ValueError, match="one of auto, bf16, fp32"):
        resolve_dtype("fp16", "cpu")


@pytest.mark.parametrize(("bf16_gflops", "enabled"), [(200.0, True), (0.5, False)])
def test_autocast_auto_follows_the_probe(monkeypatch, bf16_gflops, enabled):
    _fake_cpu(monkeypatch, bf16_gflops)
    with loading.autocast("auto", "cpu"):
        out = torch.ones(4, 4) @ torch.ones(4, 4)
    assert out.dtype == (torch.bfloat16 if enabled else torch.float32)
    with loading.autocast("fp32", "cpu"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_model_config_defaults_to_auto_and_resolves_in_place(monkeypatch):
    cfg = loading.ModelConfig()
    assert cfg.dtype == "auto"
    _fake_cpu(monkeypatch, 200.0)
    assert loading.resolve_dtype(cfg, torch.device("cpu")) == "bf16"
    assert cfg.dtype == "bf16"


def test_accelerate_mixed_precision_that_disagrees_is_named(monkeypatch, caplog):
    _fake_cpu(monkeypatch, 200.0)  # auto -> bf16
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    with caplog.at_level(logging.WARNING):
        assert loading.resolve_dtype(loading.ModelConfig(), torch.device("cpu")) == "bf16"
    assert not caplog.records
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")
    with caplog.at_level(logging.WARNING):
        loading.resolve_dtype(loading.ModelConfig(), torch.device("cpu"))
    assert "--mixed_precision fp16 is not read: model.dtype decides (bf16 here)" in caplog.text


def test_every_model_config_defaults_to_auto():
    from recbias.baselines.gru4rec import GRU4RecConfig
    from recbias.baselines.sasrec import SASRecConfig
    from recbias.diagnostics.attribution import AttributionConfig
    from recbias.genrec.config import GenRecConfig

    for cfg in (GRU4RecConfig(), SASRecConfig(), GenRecConfig(), AttributionConfig()):
        assert cfg.dtype == "auto", type(cfg).__name__
    GRU4RecConfig().validate()


def test_doctor_says_plainly_when_bf16_would_be_slow(monkeypatch):
    _fake_cpu(monkeypatch, 0.5, flags=())
    lines = dict(dtype_report(torch.device("cpu")))
    assert lines["cpu matmul fp32 (256x256)"] == "50.0 GFLOP/s"
    assert lines["cpu matmul bf16 (256x256)"] == "0.5 GFLOP/s (0.01x fp32)"
    assert lines["dtype auto on cpu"].startswith("fp32 — bf16 would be SLOW here (0.01x fp32)")


def test_doctor_on_a_native_bf16_cpu(monkeypatch):
    _fake_cpu(monkeypatch, 120.0)
    assert dict(dtype_report(torch.device("cpu")))["dtype auto on cpu"].startswith("bf16")


def test_probe_models_record_the_resolved_dtype(monkeypatch):
    from recbias.probes.config import ProbeModelConfig
    from recbias.probes.runner import _resolve_dtype

    _fake_cpu(monkeypatch, 200.0)
    sasrec = ProbeModelConfig(kind="sasrec")
    assert _resolve_dtype(sasrec) == "bf16" and sasrec.sasrec.dtype == "bf16"
    genrec = ProbeModelConfig(kind="genrec", genrec={"d_model": 16, "dtype": "fp32"})
    assert _resolve_dtype(genrec) == "fp32" and genrec.genrec["dtype"] == "fp32"
    genrec = ProbeModelConfig(kind="genrec", genrec={"d_model": 16})
    assert _resolve_dtype(genrec) == "bf16" and genrec.genrec["dtype"] == "bf16"
    assert _resolve_dtype(ProbeModelConfig(kind="none")) is None


def test_quick_doctor_sees_a_converted_model_without_hashing_it(tmp_path, monkeypatch):
    from recbias import doctor
    from recbias.lm import embedded

    monkeypatch.setenv("RECBIAS_CACHE", str(tmp_path))
    ckpt = embedded.checkpoint_dir(tmp_path)
    assert doctor._asset_line(doctor._model_status(tmp_path, verify=False)).startswith("absent")
    ckpt.mkdir(parents=True)
    (ckpt / embedded.MANIFEST).write_text("{}")  # no weights: a full check would fail to verify
    line = doctor._asset_line(doctor._model_status(tmp_path, verify=False))
    assert line.startswith("present —"), line
