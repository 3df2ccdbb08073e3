"""Imports point down: no cycles among ``ptc_mcp``'s modules, and the core never imports the bench or emulators.

Read from the source (``ast``), so a lazy import inside a function counts as much as one at the top. Imports
under ``if TYPE_CHECKING:`` are left out: they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import ptc_mcp

PACKAGE = Path(ptc_mcp.__file__).parent
TOP = ("ptc_mcp.bench", "ptc_mcp.emulators")
"""Built on the core; nothing below them may import them."""
FACES = ("ptc_mcp.cli", "ptc_mcp.__main__")
"""The command line wires every part together, bench and emulators included."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    found: list[ast.AST] = []
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            pending.extend(node.orelse)
            continue
        found.append(node)
        pending.extend(ast.iter_child_nodes(node))
    return found


def imports_of(name: str) -> set[str]:
    """The ``ptc_mcp`` modules that module ``name`` imports (``from pkg import sub`` names the submodule)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in MODULES)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                target = f"{base}.{alias.name}"
                found.add(target if target in MODULES else base)
    return {target for target in found if target in MODULES and target != name}


GRAPH = {name: imports_of(name) for name in MODULES}


def part_of(name: str) -> str:
    """The top-level part a module belongs to: ``ptc_mcp.sandboxes.docker.launch`` → ``ptc_mcp.sandboxes``."""
    return ".".join(name.split(".")[:2])


PARTS = {
    part: {part_of(target) for name, targets in GRAPH.items() if part_of(name) == part for target in targets} - {part}
    for part in {part_of(name) for name in GRAPH}
}
"""The graph between ``ptc_mcp``'s packages and top-level modules."""


def _cycles(graph: dict[str, set[str]] = GRAPH) -> list[list[str]]:
    """Every strongly connected set of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            members = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                members.append(member)
                if member == node:
                    break
            if len(members) > 1:
                cycles.append(sorted(members))

    for name in graph:
        if name not in index:
            visit(name)
    return cycles


def test_the_graph_is_read() -> None:
    assert "ptc_mcp.executor" in GRAPH["ptc_mcp.app"]
    assert "ptc_mcp.bench.scripted" in GRAPH["ptc_mcp.bench.tokens"]
    assert "ptc_mcp.emulators.usage" in GRAPH["ptc_mcp.emulators.bedrock"]  # a lazy import inside a function
    assert "ptc_mcp.sandboxes" in PARTS["ptc_mcp.executor"] and "ptc_mcp.executor" in PARTS["ptc_mcp.remote"]


def test_no_import_cycles() -> None:
    assert _cycles() == []


def test_no_cycles_between_packages() -> None:
    """A package is a layer: ``remote/`` is built on the core and the core never imports it, and so on."""
    assert _cycles(PARTS) == []


def test_the_core_does_not_import_the_bench_or_emulators() -> None:
    upward = {
        (name, target)
        for name, targets in GRAPH.items()
        if not name.startswith(TOP) and name not in FACES
        for target in targets
        if target.startswith(TOP)
    }
    assert upward == set()


def test_emulators_do_not_import_the_bench() -> None:
    upward = {
        (name, target)
        for name, targets in GRAPH.items()
        if name.startswith("ptc_mcp.emulators")
        for target in targets
        if target.startswith("ptc_mcp.bench")
    }
    assert upward == set()
