"""The lab's modules import downwards only: setup builds scenes without knowing the runner."""

from __future__ import annotations

import ast
from pathlib import Path

import deleverage.lab as lab_package

LAB = Path(lab_package.__file__).parent


def _imports(module: str) -> set[str]:
    """Every module a lab file imports, at the top or inside functions or TYPE_CHECKING blocks."""
    tree = ast.parse((LAB / f"{module}.py").read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_setup_does_not_import_the_runner() -> None:
    assert "deleverage.lab.runner" not in _imports("setup")
    assert "deleverage.lab.config" in _imports("setup")


def test_run_config_is_one_class_importable_from_both_places() -> None:
    from deleverage.lab.config import RunConfig as below
    from deleverage.lab.runner import RunConfig as public

    assert below is public
    assert "deleverage.lab.setup" not in _imports("config") and "deleverage.lab.runner" not in _imports("config")
