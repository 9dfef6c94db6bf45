"""edge/ is layered as a frame flows: a package imports only packages below it, and no module cycles.

Every ``import`` counts, also those inside functions: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.edge.edge_testing import REPO_ROOT

# Lower numbers sit lower. Packages of one rank are peers and do not import each other.
RANKS = {
    "edge.errors": 0, "edge.redact": 0.5, "edge.fields": 0.5,
    "edge.sources": 1, "edge.model": 1,
    "edge.detect": 2,
    "edge.track": 3,
    "edge.sinks": 4,
    "edge.service": 5,
    "edge.settings": 6, "edge.bench": 6,
    "edge.cli": 7,
}


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def edge_imports(root: Path) -> dict[str, set[str]]:
    """Module -> the edge modules it imports (``from edge.x import y`` counts ``edge.x.y`` when that is a module)."""
    files = {module_name(root, path): path for path in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        found: set[str] = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base for alias in node.names]
            else:
                continue
            found |= {t for t in targets if t.split(".")[0] == root.name and t in files and t != name}
        graph[name] = found
    return graph


def layer_of(module: str) -> str | None:
    """The ranked package holding ``module``: the longest prefix in RANKS."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in RANKS:
            return prefix
    return None


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    problems = []
    for module, targets in sorted(graph.items()):
        if module == "edge":
            continue
        layer = layer_of(module)
        if layer is None:
            problems.append(f"{module} belongs to no layer: give its package a rank in RANKS")
            continue
        for target in sorted(targets):
            other = layer_of(target)
            if other is None or other == layer:
                continue
            if RANKS[other] >= RANKS[layer]:
                problems.append(f"{module} (rank {RANKS[layer]}) imports {target} (rank {RANKS[other]})")
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_a_higher_or_peer_layer():
    assert layer_violations(edge_imports(REPO_ROOT / "edge")) == []


def test_no_import_cycles():
    assert cycles(edge_imports(REPO_ROOT / "edge")) == []


@pytest.mark.parametrize("source, problem", [
    ({"sources/__init__.py": "from edge.sources import opencv\n", "sources/opencv.py": "from edge.sources import base\n",
      "sources/base.py": "import edge.sources\n"}, "cycle"),
    ({"detect/__init__.py": "", "detect/detector.py": "from edge.sinks.saved import x\n",
      "sinks/__init__.py": "", "sinks/saved.py": ""}, "edge.detect.detector (rank 2) imports edge.sinks.saved (rank 4)"),
    ({"sources/__init__.py": "", "sources/base.py": "def f():\n    from edge.model import metadata\n",
      "model/__init__.py": "", "model/metadata.py": ""}, "edge.sources.base (rank 1) imports edge.model.metadata (rank 1)"),
    ({"gadgets.py": "x = 1\n"}, "edge.gadgets belongs to no layer"),
])
def test_the_checks_catch_what_they_are_for(tmp_path, source, problem):
    root = tmp_path / "edge"
    for rel, text in {"__init__.py": "", **source}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    graph = edge_imports(root)
    found = [" ".join(c) for c in cycles(graph)] if problem == "cycle" else layer_violations(graph)
    assert found and (problem == "cycle" or any(problem in line for line in found)), found
