"""Check what `pip install` installed: nothing heavy (no torch, CUDA libraries or triton).

    pip install --report report.json .
    python scripts/check_install.py report.json

Reads pip's installation report (``--report``, JSON, pip >= 23) and exits 1 naming every heavy
package it installed. Standard library only, so it runs with any interpreter.
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("path", type=Path, help="pip's --report JSON")
    return check(parser.parse_args(argv).path)


if __name__ == "__main__":
    sys.exit(main())
