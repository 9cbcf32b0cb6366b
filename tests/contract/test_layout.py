"""The house's floors, read from the imports (ast, no import executed).

``python -m pytest tests/contract/test_layout.py -q`` checks them; the module's ``import_graph``
prints who imports whom when run as ``python tests/contract/test_layout.py``.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("parley", "schemas", "adapters", "streams", "projections", "egress")
# what each package may import (beside itself and the standard library / third parties)
FLOORS = {
    "schemas": set(),
    "parley": {"schemas"},  # the foundation, parley.app excluded
    "adapters": {"parley", "schemas", "streams", "egress"},  # identity and thread keys (sealing), window rules
    "streams": {"parley", "schemas"},
    "projections": {"parley", "schemas", "streams", "egress"},  # KPI arithmetic, window rules
    "egress": {"parley", "schemas"},
}


def modules() -> Iterator[tuple[str, Path]]:
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            yield ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"), path


def imports_of(path: Path, name: str) -> set[str]:
    """The project modules a file imports at run time (absolute, relative and function-level
    imports; not those under ``if TYPE_CHECKING:``, which only annotations read)."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and _is_type_checking(block.test)
                   for stmt in block.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import module` or a name in pkg
            found.add(base)
    return {m for m in found if m.split(".")[0] in PACKAGES}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def import_graph() -> dict[str, set[str]]:
    known = dict(modules())
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        resolved = set()
        for m in imports_of(path, name):
            while m and m not in known:  # `from a.b import name`: the module is a.b
                m = m.rpartition(".")[0]
            if m and m != name:
                resolved.add(m)
        graph[name] = resolved
    return graph


def floor(module: str) -> str:
    return "parley.app" if module.startswith("parley.app") else module.split(".")[0]


def test_every_package_imports_only_the_floors_below_it() -> None:
    wrong = sorted(f"{m} -> {t}" for m, targets in import_graph().items() for t in targets
                   if floor(m) != "parley.app" and floor(t) != floor(m) and floor(t) not in FLOORS[floor(m)])
    assert wrong == []


def test_the_foundation_imports_no_process() -> None:
    graph = import_graph()
    assert any(floor(m) == "parley" for m in graph)  # the check below has something to look at
    up = sorted(f"{m} -> {t}" for m, ts in graph.items() if floor(m) == "parley" for t in ts
                if floor(t) in {"adapters", "streams", "projections", "egress", "parley.app"})
    assert up == []


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        m = stack.pop()
                        on.discard(m)
                        component.append(m)
                        if m == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_cycles_finds_a_cycle_and_no_false_one() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_between_modules() -> None:
    graph = {m: {t for t in ts if not graph_is_package_init(m, t)} for m, ts in import_graph().items()}
    assert cycles(graph) == []


def graph_is_package_init(module: str, target: str) -> bool:
    """A package's ``__init__`` re-exporting from its own modules is not a cycle of meaning."""
    return module.startswith(target + ".")


if __name__ == "__main__":
    for name, targets in sorted(import_graph().items()):
        if targets:
            print(name, "->", ", ".join(sorted(targets)), file=sys.stdout)
