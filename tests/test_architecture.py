"""The floor plan of ``src/recbias``: no import cycle, and every import goes to the same or a
lower layer (docs/design.md draws the same picture, a paragraph per layer).

Imports are read with ``ast`` from every module, function-level and ``TYPE_CHECKING`` imports
included: a lazy import still couples two modules. ``from pkg import name`` counts as an import
of ``pkg.name`` when that is a module, else of ``pkg``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Package (or top-level module) → layer. An import may go to its own layer or a lower one.
LAYERS: dict[str, int] = {
    # 0 core: errors, file writes, typed configs, run directories, processes, recommendation lists
    "recbias": 0,
    "recbias.errors": 0,
    "recbias.fsutil": 0,
    "recbias.config_rules": 0,
    "recbias.config": 0,
    "recbias.domain": 0,
    "recbias.assets": 0,
    "recbias.runs": 0,
    "recbias.distributed": 0,
    "recbias.recs": 0,
    "recbias.hardware": 0,
    "recbias.run_marker": 0,
    # 1 rendering: report sections, tables, figures, HTML (imports only the core)
    "recbias.report": 1,
    # 2-7 the LLM data path: data → prompts → lm → decoding → objectives → train
    "recbias.data": 2,
    "recbias.prompts": 3,
    "recbias.lm": 4,
    "recbias.decoding": 5,
    "recbias.objectives": 6,
    "recbias.train": 7,
    # 8 measuring: ranking/fairness/concentration metrics, prediction files, metric tables
    "recbias.metrics": 8,
    "recbias.evaluation": 8,
    # 9-10 item-ID recommenders beside the LLM line: generative (semantic IDs), baselines + LOO
    "recbias.genrec": 9,
    "recbias.baselines": 10,
    "recbias.sidllm": 10,
    # 11 the assembled LLM recommender and its pipeline; probes and simulation beside it
    "recbias.llmrec": 11,
    "recbias.probes": 11,
    "recbias.simulate": 11,
    # 12-13 analyses of finished runs
    "recbias.diagnostics": 12,
    "recbias.audit": 13,
    "recbias.compare": 14,
    # 14 recipes and entry points
    "recbias.workflow": 14,
    "recbias.configdoc": 14,
    "recbias.doctor": 14,
    "recbias.cli": 14,
}


def module_files() -> dict[str, Path]:
    out = {}
    for path in (SRC / "recbias").rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = module_files()


def _resolve(name: str) -> str | None:
    """The closest module that ``name`` (a module or a name inside one) belongs to."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(name: str, path: Path) -> set[str]:
    """The recbias modules that module ``name`` imports (at any depth of its code)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names
            ]
        else:
            continue
        found |= {m for t in targets if t.startswith("recbias") and (m := _resolve(t))}
    found.discard(name)
    return found


GRAPH = {name: imports_of(name, path) for name, path in MODULES.items()}


def layer_of(module: str) -> tuple[str, int]:
    if module == "recbias":
        return module, LAYERS[module]
    parts = module.split(".")
    for n in range(len(parts), 1, -1):
        key = ".".join(parts[:n])
        if key in LAYERS:
            return key, LAYERS[key]
    raise KeyError(module)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycles_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_every_module_has_a_layer():
    missing = sorted(m for m in MODULES if not _has_layer(m))
    assert not missing, f"add these packages to LAYERS: {missing}"


def _has_layer(module: str) -> bool:
    try:
        layer_of(module)
    except KeyError:
        return False
    return True


def test_no_import_cycle_between_modules():
    assert cycles(GRAPH) == []


def test_no_import_cycle_between_packages():
    packages: dict[str, set[str]] = {}
    for module, targets in GRAPH.items():
        src = layer_of(module)[0]
        packages.setdefault(src, set()).update(
            layer_of(t)[0] for t in targets if layer_of(t)[0] != src
        )
    assert cycles(packages) == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_to_the_same_or_a_lower_layer(module):
    own, rank = layer_of(module)
    upward = sorted(
        f"{t} ({layer_of(t)[0]}, layer {layer_of(t)[1]})"
        for t in GRAPH[module]
        if layer_of(t)[1] > rank
    )
    assert not upward, f"{module} ({own}, layer {rank}) imports a higher layer: {upward}"
