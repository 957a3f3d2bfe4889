"""The core sits below the dask backend: neither imports the other's way up."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "ensemble_agg"
CORE = sorted((PACKAGE / "core").glob("*.py"))


def package_imports(path: Path) -> set[str]:
    """The ``ensemble_agg`` sub-packages or modules that ``path`` imports, anywhere."""
    tree = ast.parse(path.read_text())
    depth = len(path.relative_to(PACKAGE).parts) - 1  # 1 inside core/, 0 at the top
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                parts = (node.module or "").split(".")
                if parts[0] == "ensemble_agg" and len(parts) > 1:
                    found.add(parts[1])
            elif node.level > depth:  # relative, out of its own sub-package
                found.add((node.module or "").split(".")[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "ensemble_agg" and len(parts) > 1:
                    found.add(parts[1])
    return found


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.name)
def test_core_imports_only_errors_and_util(path):
    assert package_imports(path) <= {"errors", "util"}


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.name)
def test_core_never_imports_dask(path):
    names = {
        alias.name.split(".")[0]
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.level == 0
    }
    assert "dask" not in names and "distributed" not in names


def test_dask_backend_builds_on_the_core_only():
    assert package_imports(PACKAGE / "dask_backend.py") <= {"core", "errors", "util"}


def test_errors_import_nothing_from_the_package():
    assert package_imports(PACKAGE / "errors.py") == set()
