"""Check what `pip install` installed: nothing heavy (no torch, CUDA libraries or triton).

    pip install --report report.json .
    python scripts/check_install.py report.json

Reads pip's installation report (``--report``, JSON, pip >= 23) and exits 1 naming every heavy
package it installed. Standard library only, so it runs with any interpreter.

    python scripts/check_install.py --fake-torch 2.13.0 VENV_SITE_PACKAGES

records an installed torch distribution (metadata only) in a site-packages folder: on a Python for
which no CPU torch wheel can be had, it shows whether pip would leave an installed torch alone.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

HEAVY = re.compile(r"^(torch|torchvision|torchaudio|triton|nvidia-.*|cuda-.*|jax|jaxlib)$")


def installed(report: Path) -> list[tuple[str, str]]:
    data = json.loads(report.read_text())
    return [
        (item["metadata"]["name"].lower().replace("_", "-"), item["metadata"]["version"])
        for item in data.get("install", [])
    ]


def check(report: Path) -> int:
    names = installed(report)
    heavy = [f"{n}=={v}" for n, v in names if HEAVY.match(n)]
    print(f"pip installed {len(names)} packages: " + ", ".join(f"{n}=={v}" for n, v in names))
    if heavy:
        print(f"error: pip installed heavy packages: {', '.join(heavy)}", file=sys.stderr)
        return 1
    print("ok: no torch, CUDA or triton package was installed")
    return 0


def fake_torch(version: str, site_packages: Path) -> int:
    info = site_packages / f"torch-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: torch\nVersion: {version}\n")
    (info / "INSTALLER").write_text("check_install\n")
    (info / "RECORD").write_text("")
    print(f"recorded torch=={version} (metadata only) in {site_packages}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("path", type=Path, help="pip's --report JSON, or a site-packages folder")
    parser.add_argument("--fake-torch", metavar="VERSION", help="record torch metadata in PATH")
    args = parser.parse_args(argv)
    if args.fake_torch:
        return fake_torch(args.fake_torch, args.path)
    return check(args.path)


if __name__ == "__main__":
    sys.exit(main())
