"""Tests of ensemble_agg.cli.agg_client: options, environment variables, exit codes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from ensemble_agg import __version__
from ensemble_agg.cli.agg_client import build_parser, main


def test_help_and_version_exit_0(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for flag in (
        "--server",
        "--step-timeout",
        "--state-file",
        "--model-ids",
        "--demo",
        "AGG_PORT",
        "exit status",
    ):
        assert flag in out
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"agg-client {__version__}"


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--port", "70000"], "must be 0..65535"),
        (["--models", "0"], "must be >= 1"),
        (["--temperature", "-1"], "finite number > 0"),
        (["--temperature", "nan"], "finite number > 0"),
        (["--step-timeout", "abc"], "not a number"),
        (["--rule", "mean"], "invalid choice"),
        (["--model-ids", ","], "no model ids"),
        (["--model-ids", "@/no/such/file"], "cannot read"),
        (["--bogus"], "unrecognized arguments"),
        (["--weights", "a=1,b"], "'b' is not ID=WEIGHT"),
        (["--weights", "a=-1"], "weight of model 'a' must be finite and non-negative"),
        (["--weights", "a=nan"], "weight of model 'a' must be finite and non-negative"),
        (["--actions", "0"], "must be >= 1"),
        (["--actions", "5000"], "--actions 5000 is more than --max-actions 4096"),
        (["--max-frame-bytes", "x"], "not a number"),
        (["--model-ids", "a,b", "--weights", "c=2"], "--model-ids does not list: c"),
        (
            ["--model-ids", "a", "--weights", "a=0"],
            "every model in --model-ids weight 0",
        ),
    ],
)
def test_usage_errors_exit_2(argv, words, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert words in capsys.readouterr().err


def test_defaults_are_the_originals():
    args = build_parser({}).parse_args([])
    assert (args.port, args.name, args.models, args.format, args.header_length) == (
        8080,
        "aggregation",
        20,
        "utf-8",
        10,
    )
    assert (args.logits_room, args.action_room, args.evolution_room) == (
        "logits",
        "action",
        "evolution",
    )
    assert (args.rule, args.temperature, args.seed, args.step_timeout) == (
        "sum",
        1.0,
        None,
        None,
    )
    assert (args.max_actions, args.stats_interval, args.connect_timeout) == (
        4096,
        60.0,
        None,
    )


def test_environment_variables_set_defaults_and_flags_win(tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_text("# models\na\nb\n\nc\n")
    env = {
        "AGG_PORT": "9001",
        "AGG_STEP_TIMEOUT": "0.25",
        "AGG_RULE": "rank",
        "AGG_MODEL_IDS": f"@{ids}",
        "AGG_LOG_LEVEL": "debug",
    }
    args = build_parser(env).parse_args([])
    assert (args.port, args.step_timeout, args.rule, args.log_level) == (
        9001,
        0.25,
        "rank",
        "DEBUG",
    )
    assert args.model_ids == ["a", "b", "c"]
    assert build_parser(env).parse_args(["--port", "9002"]).port == 9002


def test_weights_actions_and_frame_limit_from_flags_files_and_env(tmp_path):
    weights = tmp_path / "weights.txt"
    weights.write_text("# id=weight\nm00=2.5\nm01 = 0\n")
    env = {
        "AGG_WEIGHTS": f"@{weights}",
        "AGG_ACTIONS": "18",
        "AGG_MAX_FRAME_BYTES": "5000000",
    }
    args = build_parser(env).parse_args([])
    assert args.weights == {"m00": 2.5, "m01": 0.0}
    assert (args.actions, args.max_frame_bytes) == (18, 5_000_000)
    args = build_parser(env).parse_args(["--weights", "a=1,b=0.5"])
    assert args.weights == {"a": 1.0, "b": 0.5}


def test_frame_limit_default_grows_with_max_actions():
    from ensemble_agg.transport.settings import Settings

    assert Settings().frame_limit() == 1 << 20
    assert Settings(max_actions=100_000).frame_limit() == 3_200_000
    assert Settings(max_frame_bytes=4096).frame_limit() == 4096


def test_bad_environment_variable_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        build_parser({"AGG_MODELS": "many"})
    assert info.value.code == 2
    assert "AGG_MODELS" in capsys.readouterr().err


def test_max_ids_below_models_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--server", "127.0.0.1", "--models", "5", "--max-ids", "2"])
    assert info.value.code == 2
    assert "--max-ids must be at least --models (5), got 2" in capsys.readouterr().err


def test_installed_command_and_module_agree():
    # The script pip put beside this interpreter, and python -m ensemble_agg.
    script = Path(sys.executable).with_name("agg-client")
    assert script.exists(), f"agg-client is not installed beside {sys.executable}"
    outputs = [
        subprocess.run(
            command, capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
        for command in (
            [str(script), "--version"],
            [sys.executable, "-m", "ensemble_agg", "--version"],
        )
    ]
    assert outputs == [f"agg-client {__version__}"] * 2


def test_demo_runs_by_itself_in_under_30_s():
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "ensemble_agg", "--demo", "--log-level", "WARNING"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-3000:]
    assert elapsed < 30
    out = result.stdout
    assert "rounds/s" in out and "contribution per model" in out
    assert "action histogram" in out
    assert out.count("model-") >= 20
    assert "Traceback" not in result.stderr


def test_http_from_flag_or_environment_host_defaults_to_localhost(capsys):
    from ensemble_agg.cli import agg_client, agg_server

    client = agg_client.build_parser({"AGG_HTTP": "9464"})
    assert client.parse_args([]).http == ("127.0.0.1", 9464)
    assert client.parse_args(["--http", "[::1]:1"]).http == ("::1", 1)
    assert agg_client.build_parser({}).parse_args([]).http is None
    server = agg_server.build_parser({"AGG_SERVER_HTTP": "0.0.0.0:9465"})
    assert server.parse_args([]).http == ("0.0.0.0", 9465)
    with pytest.raises(SystemExit) as exc:
        client.parse_args(["--http", "localhost:http"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "agg-client: error: argument --http: 'localhost:http': the port must be a "
        "number from 0 to 65535 (expected [HOST:]PORT, e.g. 9464 or 127.0.0.1:9464)"
    )
