"""Every import of the house points down (DESIGN.md's picture) and no module imports itself round a circle.

Imports are read with ``ast`` from every module of ``src/deleverage`` — top-level, inside functions and
under ``TYPE_CHECKING`` alike: an import that only the type checker runs is still an arrow in the design.
One exception: the body of a module-level ``__getattr__`` (PEP 562), the shim that keeps a moved name's old
import path working (``service.state.Service`` → ``service.core``) — the module never runs it itself, so it
is an alias for callers, not a dependency of the module.
A package's ``__init__`` counts as the package; ``from deleverage.x import y`` is an arrow to ``x.y``
when that is a module, else to ``x``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "deleverage"

# Lower number = lower layer; a module may import its own layer (other packages of it too, without a
# circle) and every layer below, never one above.
LAYERS = {
    "errors": 0,
    "core": 1,
    "config": 1,
    "outputs": 1,  # output directories: errors only (and the package version)
    "data": 2,
    "venues": 3,
    "execution": 3,
    "safeguards": 3,
    "engine": 4,
    "report": 5,
    "lab": 6,
    "service": 6,
    "testing": 7,
    "api": 7,  # the notebook API: drives the lab like the CLI does
    "cli": 7,
    "__main__": 8,
    "__init__": 9,
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _resolve(name: str, known: set[str]) -> str | None:
    """The longest known module that ``name`` is or lies inside (None outside the package)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def _imports(path: Path, here: str, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    out: set[str] = set()
    tree.body = [n for n in tree.body if not (isinstance(n, ast.FunctionDef) and n.name == "__getattr__")]
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for target in targets:
            resolved = _resolve(target, known)
            if resolved is not None and resolved.startswith("deleverage") and resolved != here:
                out.add(resolved)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(path, name, known) for name, path in modules.items()}


def _layer(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    if top not in LAYERS:
        raise AssertionError(f"{module}: package {top!r} has no layer in LAYERS (add it to DESIGN.md's picture)")
    return LAYERS[top]


def _is_package_init(module: str, modules: dict[str, Path]) -> bool:
    return modules[module].name == "__init__.py"


def test_every_import_points_down() -> None:
    modules = _modules()
    upward = []
    for module, targets in _graph().items():
        if module == "deleverage":
            continue
        for target in targets:
            if target == "deleverage":
                continue
            if _layer(target) > _layer(module):
                upward.append(f"{module} → {target}")
    assert not upward, "imports pointing up a layer:\n" + "\n".join(sorted(upward))
    assert modules  # the walk found the package


def test_no_import_circles() -> None:
    graph = _graph()
    modules = _modules()
    # a package __init__ re-exports its children: the child → package arrow is not a circle unless the
    # child imports the package itself for a name the package defines
    edges = {m: {t for t in ts if not (_is_package_init(t, modules) and m.startswith(t + "."))}
             for m, ts in graph.items()}
    colour: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[str] = []

    def visit(node: str) -> None:
        colour[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if colour.get(nxt, 0) == 0:
                visit(nxt)
            elif colour.get(nxt) == 1:
                cycles.append(" → ".join([*stack[stack.index(nxt):], nxt]))
        stack.pop()
        colour[node] = 2

    for node in sorted(edges):
        if colour.get(node, 0) == 0:
            visit(node)
    assert not cycles, "import circles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("old, new", [
    ("deleverage.engine.policy", "deleverage.config.policy"),
    ("deleverage.engine.events", "deleverage.config.events"),
])
def test_moved_modules_keep_their_names(old: str, new: str) -> None:
    import importlib

    before, after = importlib.import_module(old), importlib.import_module(new)
    for name in before.__all__:
        assert getattr(before, name) is getattr(after, name), name


def test_the_checker_sees_an_upward_arrow(tmp_path: Path) -> None:
    """The walk is not vacuous: a fake core module importing the engine is reported."""
    fake = tmp_path / "mod.py"
    fake.write_text("def f():\n    from deleverage.engine.engine import LiquidationEngine\n", encoding="utf-8")
    known = set(_modules())
    found = _imports(fake, "deleverage.core.fake", known)
    assert "deleverage.engine.engine" in found
    assert _layer("deleverage.engine.engine") > _layer("deleverage.core.fake")
