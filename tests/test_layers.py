"""The package's tree is its architecture: each layer imports only the layers below it.

Read from the source (every import, the ones inside functions included), so
a lazy import cannot hide a dependency the wrong way up.  The layers, from
the bottom, as ``ensemble_agg/__init__.py`` lists them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ensemble_agg"

#: Top-level module or sub-package -> its layer; a module may import only its
#: own unit and units of a lower layer.
LAYER = {
    "errors": 0,
    "util": 0,
    "core": 1,
    "dask_backend": 2,
    "dispatch": 3,
    "__init__": 3.5,  # the package root: the library's public names
    "protocol": 3,
    "observe": 4,  # recorders and the --http endpoint, fed by transport
    "transport": 5,
    "demo": 6,
    "cli": 7,  # agg-client --demo runs the demo
    "server_cli": 8,
    "__main__": 8,
}
#: What may never be imported below a layer, whatever the package says.
FORBIDDEN_BELOW = {
    "socket": 4,  # sockets only in transport and above
    "selectors": 4,
    "threading": 4,
    "swergio": 4,
    "dask": 2,  # dask only in its backend
    "distributed": 2,
    "argparse": 6,  # option parsing only in the commands
    "signal": 7,  # signal handlers only in the commands
    "time": 4,  # no clocks below the I/O loops: callers pass the time
    "random": 4,  # randomness below them only through numpy generators passed in
}


def unit_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def imports(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports, anywhere in it."""
    tree = ast.parse(path.read_text())
    rel = path.relative_to(PACKAGE).with_suffix("")
    package = ["ensemble_agg", *rel.parts[:-1]]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
            else:
                up = package[: len(package) - (node.level - 1)]
                base = ".".join([*up, node.module] if node.module else up)
            found.add(base)
            # "from . import x" and "from .pkg import module" name modules too
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_every_unit_has_a_layer():
    assert {unit_of(p) for p in SOURCES} <= set(LAYER)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_go_down_the_layers(path):
    unit = unit_of(path)
    for name in imports(path):
        parts = name.split(".")
        if parts[0] == "ensemble_agg":
            # the package root itself, or a name in it (its __version__)
            other = parts[1] if len(parts) > 1 and parts[1] in LAYER else "__init__"
            assert other == unit or LAYER[other] < LAYER[unit], (
                f"{path.relative_to(PACKAGE)} (layer {LAYER[unit]}) imports "
                f"{name} (layer {LAYER[other]})"
            )
        elif parts[0] in FORBIDDEN_BELOW:
            assert LAYER[unit] >= FORBIDDEN_BELOW[parts[0]], (
                f"{path.relative_to(PACKAGE)} imports {parts[0]}"
            )


def test_the_package_root_imports_only_the_library():
    names = imports(PACKAGE / "__init__.py")
    units = {n.split(".")[1] for n in names if n.startswith("ensemble_agg.")}
    assert units <= {"core", "dispatch", "errors"}


def test_no_module_imports_a_command_but_the_commands():
    for path in SOURCES:
        if LAYER[unit_of(path)] >= 6:
            continue
        assert not any(
            n.startswith(("ensemble_agg.cli", "ensemble_agg.demo"))
            for n in imports(path)
        ), path


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(["ensemble_agg", *parts])


def test_no_import_cycle_between_modules():
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {
        name: {m for m in imports(path) if m in modules and m != name}
        for name, path in modules.items()
    }
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            pytest.fail(
                "import cycle: " + " -> ".join([*trail[trail.index(name) :], name])
            )
        if name in done:
            return
        for other in sorted(graph[name]):
            visit(other, [*trail, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
