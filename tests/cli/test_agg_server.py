"""Tests of the agg-server command (``ensemble_agg.cli.agg_server``): options,
environment variables, exit statuses, the installed script.

What the server does on the wire is tested in ``tests/transport/test_server.py``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ensemble_agg.cli.agg_server import EXIT_CANNOT_BIND

from ..swergio_helpers import HOST, agg_server_command


def test_cannot_bind_exits_with_its_own_status_and_one_line():
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            agg_server_command(port),
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == EXIT_CANNOT_BIND == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"agg-server: cannot listen on {HOST}:{port}: ")


def test_cli_help_version_and_env(capsys, monkeypatch):
    from ensemble_agg import __version__
    from ensemble_agg.cli.agg_server import build_parser, main

    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for word in ("--max-frame-bytes", "AGG_SERVER_PORT", "exit status", "3 if"):
        assert word in out
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"agg-server {__version__}"
    args = build_parser(
        {"AGG_SERVER_PORT": "9000", "AGG_SERVER_OVERWRITE_SENT_BY": "yes"}
    )
    parsed = args.parse_args([])
    assert parsed.port == 9000 and parsed.overwrite_sent_by is True
    assert args.parse_args(["--port", "9001"]).port == 9001
    defaults = build_parser({}).parse_args([])
    assert (defaults.port, defaults.format, defaults.header_length) == (
        8080,
        "utf-8",
        10,
    )
    assert defaults.overwrite_sent_by is False


@pytest.mark.parametrize(
    ("argv", "env", "words"),
    [
        (["--port", "70000"], {}, "must be 0..65535"),
        (["--format", "klingon"], {}, "unknown encoding"),
        (["--max-frame-bytes", "0"], {}, "must be >= 1"),
        (["--log-level", "loud"], {}, "invalid choice"),
        ([], {"AGG_SERVER_OVERWRITE_SENT_BY": "maybe"}, "AGG_SERVER_OVERWRITE_SENT_BY"),
        ([], {"AGG_SERVER_PORT": "x"}, "AGG_SERVER_PORT"),
    ],
)
def test_cli_usage_errors_exit_2(argv, env, words):
    result = subprocess.run(
        [sys.executable, "-m", "ensemble_agg.server_cli", *argv],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **env},
    )
    assert result.returncode == 2
    assert words in result.stderr


def test_installed_command_runs():
    script = Path(sys.executable).parent / "agg-server"
    if not script.exists():
        pytest.skip("agg-server is not installed beside this Python")
    result = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0 and result.stdout.startswith("agg-server ")
