"""The reproducibility section: environments (versions, git commit, hardware) and resolved config.

    entry = reproducibility_entry(Path("runs/quickstart"), "quickstart-reproducibility")

Reads ``environment.json`` (written by :func:`recbias.runs.write_environment`) of the run, or of
every ``seed-*/<method>`` member of a comparison, and the resolved ``config.toml`` (a run) or
``compare.toml`` (a comparison), shown verbatim. The section starts collapsed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from recbias.report.document import Code, Entry
from recbias.report.inputs import read_json, read_toml_text
from recbias.report.sections import Section, Table

ENV_COLUMNS = [
    "run",
    "recorded (UTC)",
    "git commit",
    "dirty",
    "python",
    "torch",
    "platform",
    "CPUs",
    "CUDA",
    "memory GB",
    "seed",
]


def environment_files(run_dir: Path) -> dict[str, Path]:
    """Label → environment.json of the run, or of each comparison member (``seed-0/sft``)."""
    if (run_dir / "environment.json").is_file():
        return {run_dir.name: run_dir / "environment.json"}
    return {
        f"{p.parent.parent.name}/{p.parent.name}": p
        for p in sorted(run_dir.glob("seed-*/*/environment.json"))
    }


def _get(doc: Any, *keys: str) -> Any:
    for key in keys:
        doc = doc.get(key) if isinstance(doc, Mapping) else None
    return doc


def _env_row(label: str, env: Any) -> list[Any]:
    commit = _get(env, "git", "commit")
    return [
        label,
        _get(env, "time_utc"),
        commit[:12] if isinstance(commit, str) else None,
        _get(env, "git", "dirty"),
        _get(env, "python"),
        _get(env, "packages", "torch"),
        _get(env, "hardware", "platform"),
        _get(env, "hardware", "cpu_count"),
        _get(env, "hardware", "cuda"),
        _get(env, "hardware", "memory_gb"),
        _get(env, "seed"),
    ]


def _package_table(envs: dict[str, Any]) -> Table | None:
    names = list(dict.fromkeys(n for e in envs.values() for n in (_get(e, "packages") or {})))
    if not names:
        return None
    rows = [[n, *(_get(e, "packages", n) for e in envs.values())] for n in names]
    caption = "Package versions recorded with each run (— = not installed)."
    return Table("packages", caption, ["package", *envs], rows)


def _config_code(run_dir: Path) -> list[Code]:
    for name in ("config.toml", "compare.toml"):
        path = run_dir / name
        if path.is_file():
            text, _ = read_toml_text(path)
            return [
                Code(f"Resolved configuration ({name}); rerun with it to reproduce.", text, "toml")
            ]
    return []


def reproducibility_entry(run_dir: Path, anchor: str) -> Entry | None:
    """The collapsed reproducibility section of a run directory, or None if nothing is recorded."""
    envs = {label: read_json(path) for label, path in environment_files(run_dir).items()}
    section = Section("reproducibility", "Reproducibility")
    if envs:
        rows = [_env_row(label, env) for label, env in envs.items()]
        caption = "Environment of each run: versions, git commit (dirty = uncommitted changes)."
        section.tables.append(Table("environment", caption, ENV_COLUMNS, rows))
        packages = _package_table(envs)
        section.tables += [packages] if packages else []
    code = _config_code(run_dir)
    if not section.tables and not code:
        return None
    section.summary = "How the results were produced: software, hardware and the exact config."
    return Entry(anchor, section, run_dir, code=code, collapsed=True)
