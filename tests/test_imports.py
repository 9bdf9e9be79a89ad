"""Imports flow one way: no cycles in bridge/ and harness/ (deferred imports inside functions included),
bridge never imports harness, and neither ever imports the test tree.

The module graph is read with ``ast`` (nothing is imported). Every ``import`` / ``from ... import``
statement counts, at module level or inside a function, except those under ``if TYPE_CHECKING:``
(they never run). A module that calls ``importlib.import_module`` also depends on each module whose
dotted name (``a.b``) appears in it as a string constant (``harness.cli``'s ``COMMANDS``, the lazy exports of
``harness.probes``), so a command module importing ``harness.cli`` back is a cycle too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bridge", "harness")


def module_files(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under ``root/<package>``."""
    out: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node, less the bodies of ``if TYPE_CHECKING:`` (their ``else`` branches do run)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def imported_names(path: Path, module: str) -> tuple[set[str], set[str]]:
    """Dotted names ``module`` (at ``path``) imports at run time, deferred imports included, and the string
    constants of a module that calls ``importlib.import_module`` (empty otherwise)."""
    tree = ast.parse(path.read_text("utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    dynamic = False
    constants: set[str] = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            names.update(f"{base}.{alias.name}" for alias in node.names)  # a submodule, or a name of ``base``
        elif isinstance(node, ast.Attribute) and node.attr == "import_module":
            dynamic = True
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "." in node.value:
            constants.add(node.value)  # a dotted module name (a bare "bridge" is more often a resource anchor)
    return names, (constants if dynamic else set())


def import_graph(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    """Module -> the modules of ``packages`` it imports (a name resolves to its longest known module).

    Parent packages that an import runs implicitly are not edges (every submodule would otherwise
    form a cycle with an ``__init__`` that imports it).
    """
    files = module_files(root, packages)

    def resolve(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        names, constants = imported_names(path, module)
        targets = {resolve(n) for n in names if n.split(".")[0] in packages} | (constants & files.keys())
        graph[module] = {t for t in targets if t and t != module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (``[a, b, ..., a]``), or None when the graph is acyclic."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_bridge_and_harness_have_no_import_cycles():
    graph = import_graph()
    assert len(graph) > 100 and graph["harness.matrix"], "the graph should cover every module"
    cycle = find_cycle(graph)
    assert cycle is None, (
        f"import cycle {' -> '.join(cycle or [])}: move what both modules need into a module both import "
        "(as harness.agreement, harness.probes.prepared, harness.exitcodes do)")


def test_the_product_never_imports_the_test_tree():
    offenders = sorted(
        f"{module} imports {name}"
        for module, path in module_files(ROOT, PACKAGES).items()
        for name in imported_names(path, module)[0]
        if name == "tests" or name.startswith("tests.")
    )
    assert offenders == [], f"{offenders}: fixtures the product needs ship inside the package"


def test_bridge_never_imports_harness():
    graph = import_graph()
    offenders = sorted(f"{m} -> {t}" for m, ts in graph.items() if m.startswith("bridge") for t in ts
                       if t.startswith("harness"))
    assert offenders == []


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


@pytest.mark.parametrize("a_imports_b", [
    "from pkg import b\n",
    "def f():\n    from pkg.b import thing\n    return thing\n",  # deferred
    "def f():\n    from . import b\n",  # relative, deferred
    "import importlib\nMODULES = {'b': 'pkg.b'}\ndef f():\n    return importlib.import_module(MODULES['b'])\n",
])
def test_cycles_are_found_through_every_kind_of_import(tmp_path, a_imports_b):
    root = _tree(tmp_path, {"pkg/__init__.py": "", "pkg/a.py": a_imports_b, "pkg/b.py": "import pkg.a\n"})
    assert find_cycle(import_graph(root, ("pkg",))) in (["pkg.a", "pkg.b", "pkg.a"], ["pkg.b", "pkg.a", "pkg.b"])


def test_type_checking_imports_do_not_count(tmp_path):
    root = _tree(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\n",
        "pkg/b.py": "import pkg.a\n",
    })
    assert find_cycle(import_graph(root, ("pkg",))) is None
