"""The embedded default dataset: ML-100K in RecBole atomic format, taken from the recbole wheel.

The PyPI wheel ``recbole==1.2.1`` ships ``recbole/dataset_example/ml-100k/ml-100k.{inter,item}``.
:func:`ensure_ml100k` fetches the wheel once through :mod:`recbias.assets` (pip download, no
install, no dependencies, sha256-checked), extracts just those two files into
``<cache>/assets/ml-100k/`` and checks their sha256 too. Set ``RECBIAS_ML100K_DIR`` (or
``source.path``) to use local copies of the two files instead.

Quirks of the data: item 267 is junk (title and year "unkonwn"); 1,682 items; 22 titles are shared
by several items (most are the same film listed twice with the same year); genres live in
``class:token_seq``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from recbias.assets import RECBOLE, extract_member, fetch_wheel, wheel_path
from recbias.errors import DataError
from recbias.fsutil import sha256_file

log = logging.getLogger(__name__)

MEMBER_DIR = "recbole/dataset_example/ml-100k"
#: sha256 of the two extracted files.
FILE_SHA256 = {
    "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
    "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
}
ENV_DIR = "RECBIAS_ML100K_DIR"


def local_ml100k_dir() -> Path | None:
    """The directory named by ``$RECBIAS_ML100K_DIR``, if set."""
    value = os.environ.get(ENV_DIR)
    return Path(value).expanduser().resolve() if value else None


def asset_dir(cache_dir: str | Path) -> Path:
    """Where the extracted files live in the cache."""
    return Path(cache_dir) / "assets" / "ml-100k"


def ensure_ml100k(cache_dir: str | Path) -> Path:
    """Return a directory holding verified ``ml-100k.inter`` and ``ml-100k.item``.

    Uses ``$RECBIAS_ML100K_DIR`` when set (files used as they are, not checksum-verified), else the
    cache, downloading and extracting the recbole wheel on first use.
    """
    local = local_ml100k_dir()
    if local is not None:
        _require_files(local, f"${ENV_DIR}")
        return local
    target = asset_dir(cache_dir)
    if _files_verified(target):
        return target
    _extract(fetch_wheel(RECBOLE, Path(cache_dir)), target)
    return target


def ml100k_status(cache_dir: str | Path) -> dict[str, Any]:
    """Report for ``doctor``: where the files are, whether present and checksum-verified."""
    local = local_ml100k_dir()
    directory = local if local is not None else asset_dir(cache_dir)
    present = all((directory / name).is_file() for name in FILE_SHA256)
    wheel = wheel_path(RECBOLE, Path(cache_dir))
    return {
        "path": str(directory),
        "source": ENV_DIR if local is not None else "recbole wheel",
        "present": present,
        "verified": present and _files_verified(directory),
        "wheel_present": wheel.is_file(),
    }


def _require_files(directory: Path, origin: str) -> None:
    missing = [name for name in FILE_SHA256 if not (directory / name).is_file()]
    if missing:
        raise DataError(f"{directory} ({origin}): missing {', '.join(missing)}")


def _files_verified(directory: Path) -> bool:
    return all(
        (directory / name).is_file() and sha256_file(directory / name) == digest
        for name, digest in FILE_SHA256.items()
    )


def _extract(wheel: Path, target: Path) -> None:
    for name, digest in FILE_SHA256.items():
        dest = extract_member(wheel, f"{MEMBER_DIR}/{name}", target / name)
        actual = sha256_file(dest)
        if actual != digest:
            dest.unlink()
            raise DataError(f"{wheel}: {name} has sha256 {actual}, expected {digest}")
    log.info("extracted ML-100K into %s", target)
