"""The import graph of the project's packages: no cycle, the service needs no training code, layers point down.

The graph is read from the source with ``ast`` (nothing is imported), counting imports inside functions too: a
cycle hidden in a function is still a cycle. ``from package import name`` counts as an import of the submodule
``package.name`` when there is one, else of the package.
"""

from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("custbase", "features", "training", "serving")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@lru_cache(maxsize=1)
def import_graph() -> dict[str, set[str]]:
    """``module -> modules of PACKAGES it imports`` (anywhere in its source)."""
    files = {_module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        is_package = path.name == "__init__.py"
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = module.split(".")
                    base = base[: len(base) - node.level + (1 if is_package else 0)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                names = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in files else source for alias in node.names]
            else:
                continue
            for name in names:
                # the longest known module the name starts with (``import a.b.c`` imports a.b.c)
                while name and name not in files:
                    name = name.rpartition(".")[0]
                if name and name != module:
                    targets.add(name)
        graph[module] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (``[a, b, ..., a]``) of ``graph``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_the_graph_reader_sees_imports_inside_functions_and_finds_a_planted_cycle():
    graph = import_graph()
    assert "training.registry" in graph["training.train"]  # imported at module level
    assert "training.jobs" in graph["custbase.cli"]  # imported inside the train command
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_between_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def _service_training_imports(start: str) -> list[str]:
    return sorted(m for m in reachable(import_graph(), start) if m.split(".")[0] == "training")


def test_the_service_imports_no_training_module():
    found = _service_training_imports("serving.service")
    assert found == [], f"serving.service imports (transitively) {', '.join(found)}"


def _runtime_modules() -> list[str]:
    return sorted(m for m in import_graph() if m == "serving.runtime" or m.startswith("serving.runtime."))


@pytest.mark.parametrize("module", _runtime_modules())
def test_the_runtime_needs_no_training_module(module):
    found = _service_training_imports(module)
    assert found == [], f"{module} imports (transitively) {', '.join(found)}"


def _direct_imports(prefix: str) -> dict[str, set[str]]:
    return {m: targets for m, targets in import_graph().items() if m == prefix or m.startswith(prefix + ".")}


@pytest.mark.parametrize(("layer", "forbidden"), [
    ("custbase.config", ("features", "training", "serving")),
    ("features", ("training", "serving")),
    ("serving.runtime", ("training",)),
])
def test_each_layer_imports_only_the_layers_below_it(layer, forbidden):
    wrong = sorted(f"{m} -> {t}" for m, targets in _direct_imports(layer).items() for t in targets
                   if t.split(".")[0] in forbidden)
    assert wrong == [], f"{layer} must not import {', '.join(forbidden)}: " + "; ".join(wrong)
