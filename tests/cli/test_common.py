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


def _stderr_with(module: str, env: dict[str, str], *args: str) -> tuple[int, str]:
    result = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **env},
    )
    return result.returncode, result.stderr


def test_agg_client_warns_of_an_unknown_variable_with_the_nearest_name():
    # Port 1 refuses at once, so the command ends after its connect timeout.
    env = {"AGG_PORTT": "1", "AGG_SERVER": "127.0.0.1", "AGG_PORT": "1",
           "AGG_CONNECT_TIMEOUT": "0.2", "AGG_STEP_TIMOUT": "2"}  # fmt: skip
    status, err = _stderr_with("ensemble_agg", env)
    assert status == common.EXIT_UNREACHABLE
    lines = err.splitlines()
    assert (
        "agg-client: warning: environment variable AGG_PORTT is not one of "
        "agg-client's, ignored; did you mean AGG_PORT?"
    ) in lines
    assert any("AGG_STEP_TIMOUT" in x and "AGG_STEP_TIMEOUT?" in x for x in lines)
    # the variables it does read are no typos
    assert not any("AGG_SERVER " in x or "AGG_PORT " in x for x in lines), err


def test_agg_client_says_agg_server_variables_are_agg_servers():
    env = {"AGG_SERVER_PORT": "9", "AGG_SERVER_HOSTT": "x", "AGG_SERVER": "127.0.0.1",
           "AGG_PORT": "1", "AGG_CONNECT_TIMEOUT": "0.2"}  # fmt: skip
    status, err = _stderr_with("ensemble_agg", env)
    assert status == common.EXIT_UNREACHABLE
    lines = [x for x in err.splitlines() if "AGG_SERVER_" in x]
    assert lines == [
        "agg-client: note: AGG_SERVER_HOSTT is for agg-server (its variables are "
        "AGG_SERVER_*), ignored by agg-client",
        "agg-client: note: AGG_SERVER_PORT is for agg-server (its variables are "
        "AGG_SERVER_*), ignored by agg-client; agg-client's own is AGG_PORT",
    ]
    assert "warning" not in err.split("cannot reach")[0].replace("WARNING", "")


def test_agg_server_warns_of_its_own_typos_and_leaves_agg_client_variables():
    # An address that cannot be listened on: exit 3 at once, after the warnings.
    env = {"AGG_SERVER_PROT": "1", "AGG_PORT": "9", "AGG_SERVER": "x",
           "AGG_SERVER_HOST": "256.0.0.1"}  # fmt: skip
    status, err = _stderr_with("ensemble_agg.server_cli", env)
    assert status == common.EXIT_CANNOT_BIND
    lines = err.splitlines()
    assert lines[0] == (
        "agg-server: warning: environment variable AGG_SERVER_PROT is not one of "
        "agg-server's, ignored; did you mean AGG_SERVER_PORT?"
    )
    assert lines[1].startswith("agg-server: cannot listen"), err
    assert len(lines) == 2, err


def test_no_warning_when_every_variable_is_known():
    status, err = _stderr_with(
        "ensemble_agg", {"AGG_MODELS": "2", "AGG_SEED": "1"}, "--demo"
    )
    assert status == 0
    assert "environment variable" not in err and "note:" not in err, err
