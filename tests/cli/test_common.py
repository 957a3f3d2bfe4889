"""Tests of ensemble_agg.cli.common: what agg-client and agg-server share."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from ensemble_agg.cli import agg_client, agg_server, common
from ensemble_agg.transport.server import SERVER_MAX_FRAME_BYTES
from ensemble_agg.transport.settings import CLIENT_MAX_FRAME_BYTES

CLI = Path(common.__file__).parent


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.module or ""
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    } | {a.name for node in ast.walk(tree) if isinstance(node, ast.Import)
         for a in node.names}  # fmt: skip


@pytest.mark.parametrize(
    ("command", "other"), [("agg_client", "agg_server"), ("agg_server", "agg_client")]
)
def test_neither_command_imports_the_other(command, other):
    imported = _imports(CLI / f"{command}.py")
    assert "common" in imported
    assert not any(other in name for name in imported), imported


def _refusal(build_parser, value: str, capsys) -> str:
    with pytest.raises(SystemExit) as info:
        build_parser({}).parse_args(["--format", value])
    assert info.value.code == common.EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()[-1]
    prog, sep, reason = err.partition(": error: ")
    assert sep and prog in ("agg-client", "agg-server")
    return reason


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("klingon", "unknown encoding"),
        ("utf-16", "ASCII-compatible"),  # Python knows it; swergio's headers break
        ("rot13", "unknown encoding"),  # a codec, but not a text encoding
    ],
)
def test_both_commands_refuse_the_same_encoding_the_same_way(value, words, capsys):
    client = _refusal(agg_client.build_parser, value, capsys)
    server = _refusal(agg_server.build_parser, value, capsys)
    assert client == server
    assert words in client and client.startswith(f"argument --format: '{value}': ")


def test_both_commands_accept_ascii_compatible_encodings():
    for value in ("utf-8", "latin-1", "ascii"):
        assert (
            agg_client.build_parser({}).parse_args(["--format", value]).format == value
        )
        assert (
            agg_server.build_parser({}).parse_args(["--format", value]).format == value
        )


def test_each_command_has_its_own_frame_limit_default():
    assert CLIENT_MAX_FRAME_BYTES == 1 << 20  # agg-client never reads a SET
    assert SERVER_MAX_FRAME_BYTES == 64 << 20  # agg-server routes them
    assert agg_server.build_parser({}).parse_args([]).max_frame_bytes == (
        SERVER_MAX_FRAME_BYTES
    )


def test_exit_codes_are_the_documented_ones():
    assert (common.EXIT_OK, common.EXIT_UNREACHABLE, common.EXIT_USAGE) == (0, 1, 2)
    assert (common.EXIT_STATE_FILE, common.EXIT_INTERNAL) == (3, 4)
    assert common.EXIT_CANNOT_BIND == 3
    assert agg_client.EXIT_USAGE == agg_server.EXIT_USAGE == common.EXIT_USAGE


def test_both_commands_refuse_a_bad_encoding_from_the_environment():
    for module, var in (("ensemble_agg", "AGG_FORMAT"),
                        ("ensemble_agg.server_cli", "AGG_SERVER_FORMAT")):  # fmt: skip
        result = subprocess.run(
            [sys.executable, "-m", module],
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": "/usr/bin:/bin", var: "utf-16"},
        )
        assert result.returncode == common.EXIT_USAGE
        assert f"environment variable {var}: 'utf-16': swergio's headers" in (
            result.stderr
        )
