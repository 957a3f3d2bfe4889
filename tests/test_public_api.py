"""The public surface: declared once in ``ensemble_agg/__init__.py``, documented
at the paths users import from, and light to import."""

from __future__ import annotations

import builtins
import importlib
import inspect
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import ensemble_agg
from ensemble_agg import errors

ROOT = Path(__file__).resolve().parent.parent
API_RST = ROOT / "docs" / "api.rst"

#: The documented paths may start only so: the package root, the transport
#: package, and the demonstration environment.
PUBLIC_PATH = re.compile(
    r"ensemble_agg(\.[A-Za-z]\w*)?"
    r"|ensemble_agg\.transport(\.[A-Za-z]\w*)?"
    r"|ensemble_agg\.demo\.CartPole"
)


def resolve(path: str) -> object:
    """Import ``path`` (``package.module.Name.attr``) the way a user would."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for name in parts[i:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(path)


# -- ensemble_agg.__all__ ----------------------------------------------------


def test_all_names_import_from_the_root():
    namespace: dict[str, object] = {}
    exec("from ensemble_agg import *", namespace)
    assert set(ensemble_agg.__all__) <= set(namespace)
    assert len(set(ensemble_agg.__all__)) == len(ensemble_agg.__all__)


def test_all_is_complete():
    """Every public non-module attribute of the package is declared."""
    public = {
        name
        for name, value in vars(ensemble_agg).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public <= set(ensemble_agg.__all__)


def test_docstring_lists_every_name():
    doc = ensemble_agg.__doc__
    assert doc is not None
    for name in ensemble_agg.__all__:
        assert re.search(rf"^{re.escape(name)}$", doc, re.MULTILINE), name


def test_every_error_is_exported():
    for name in errors.__all__:
        assert getattr(ensemble_agg, name) is getattr(errors, name)
        assert name in ensemble_agg.__all__


# RoundResult is a type alias, documented by a ``data`` directive in api.rst.
@pytest.mark.parametrize(
    "name", sorted(set(ensemble_agg.__all__) - {"__version__", "RoundResult"})
)
def test_public_names_have_docstrings(name):
    obj = getattr(ensemble_agg, name)
    assert inspect.getdoc(obj), name


# -- docs/api.rst -------------------------------------------------------------

DIRECTIVE = re.compile(
    r"^\.\. (?:py:)?(module|currentmodule|automodule|autoclass|autofunction|"
    r"autoexception|autodata|data|function|class)::\s*(\S+)"
    r"((?:\n {3,}\S.*)*)",
    re.MULTILINE,
)


def documented() -> list[tuple[str, str, list[str]]]:
    """``(directive, full path, members)`` for each target in docs/api.rst."""
    current = ""
    found = []
    for match in DIRECTIVE.finditer(API_RST.read_text()):
        kind, target, options = match.groups()
        if kind in ("module", "currentmodule"):
            current = target
            continue
        path = target if target.startswith("ensemble_agg") else f"{current}.{target}"
        members: list[str] = []
        listed = re.search(r":members:(.*(?:\n {13}.*)*)", options)
        if listed:
            members = [m.strip() for m in listed.group(1).split(",") if m.strip()]
        found.append((kind, path, members))
        if kind == "automodule":
            current = target  # Sphinx does the same
    return found


DOCUMENTED = documented()


def test_the_api_page_documents_the_surface():
    paths = {path for _, path, _ in DOCUMENTED}
    for name in set(ensemble_agg.__all__) - {"__version__", "ConnectionLost"}:
        assert f"ensemble_agg.{name}" in paths, name
    # ConnectionLost is documented once, with the transport that raises it.
    assert "ensemble_agg.transport.ConnectionLost" in paths


@pytest.mark.parametrize(
    ("kind", "path", "members"), DOCUMENTED, ids=[p for _, p, _ in DOCUMENTED]
)
def test_documented_targets_import_from_public_paths(kind, path, members):
    assert PUBLIC_PATH.fullmatch(path), f"{path} is not a public path"
    obj = resolve(path)
    if kind == "automodule":
        assert isinstance(obj, types.ModuleType)
    for member in members:
        assert hasattr(obj, member), f"{path}.{member}"


# -- what `import ensemble_agg` costs ---------------------------------------------


def test_import_loads_no_swergio_socket_scipy_or_dask():
    code = (
        "import sys, ensemble_agg\n"
        "heavy = ('swergio', 'socket', 'scipy', 'dask')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "[]"


# -- the errors' hierarchy ----------------------------------------------------------


def drawn_hierarchy() -> list[tuple[str, str]]:
    """``(class, parent)`` pairs from the tree in ``errors.__doc__``.

    The tree is the indented literal block after ``::``; a name in brackets
    is a built-in, every other name a class of ``ensemble_agg.errors``.
    """
    assert errors.__doc__ is not None
    block = errors.__doc__.split("::\n", 1)[1]
    pairs = []
    stack: list[tuple[int, str]] = []
    for line in block.splitlines()[1:]:
        if not line.strip():
            if stack:
                break  # the end of the literal block
            continue
        indent = len(line) - len(line.lstrip())
        name = line.split()[0]
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if stack:
            pairs.append((name, stack[-1][1]))
        stack.append((indent, name))
    return pairs


def test_errors_hierarchy_is_as_drawn():
    pairs = drawn_hierarchy()
    drawn = {name for name, _ in pairs}
    classes = {
        name
        for name in errors.__all__
        if issubclass(getattr(errors, name), BaseException)
    }
    assert drawn == classes  # every error and warning is in the tree, once
    assert len(pairs) == len(drawn)
    for name, parent in pairs:
        if parent.startswith("["):
            base = getattr(builtins, parent.strip("[]"))
        else:
            base = getattr(errors, parent)
        assert getattr(errors, name).__bases__ == (base,), name


def test_connection_lost_carries_frames():
    lost = errors.ConnectionLost("peer closed", ["frame"])
    assert lost.frames == ["frame"] and str(lost) == "peer closed"
    assert errors.ConnectionLost("peer closed").frames == []
    from ensemble_agg.transport import ConnectionLost

    assert ConnectionLost is errors.ConnectionLost


def test_unknown_model_error_carries_its_reason():
    exc = errors.UnknownModelError("no", errors.IdRejection.CAP)
    assert exc.reason is errors.IdRejection.CAP and isinstance(exc, ValueError)
