"""``agg-client --demo``: its output on a pipe and on a terminal, and ``--models``."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
import sys
import time

import pytest

from ensemble_agg.cli.agg_client import main
from ensemble_agg.demo.swarm import run_demo

HEADER = "ensemble-agg demo:"


def _table_rows(out: str) -> list[str]:
    return re.findall(r"^  model-\d+ ", out, flags=re.M)


def test_models_is_honoured_in_process():
    buf = io.StringIO()
    assert run_demo(models=3, rounds=60, seed=1, out=buf) == 0
    out = buf.getvalue()
    assert out.startswith(f"{HEADER} 3 models,")
    assert "rounds: 60 in" in out
    assert len(_table_rows(out)) == 3
    assert "\r" not in out  # not a terminal: no progress line


def test_too_many_models_is_a_usage_error(capsys):
    assert main(["--demo", "--models", "201"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "agg-client: --models must be 1..200 for the demo, not 201"


def test_on_a_pipe_header_first_one_rate_no_progress():
    # stdout and stderr into one pipe: the order the user would see in a log file
    result = subprocess.run(
        [sys.executable, "-m", "ensemble_agg", "--demo", "--models", "4"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=60,
    )
    out = result.stdout
    assert result.returncode == 0, out[-3000:]
    assert out.startswith(f"{HEADER} 4 models,"), out[:500]
    assert " INFO " not in out  # the component's INFO lines are held back
    assert len(re.findall(r"rounds/s", out)) == 1  # one rate, so nothing disagrees
    assert "\r" not in out
    assert len(_table_rows(out)) == 4


def test_on_a_terminal_a_progress_line_then_the_summary():
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ensemble_agg", "--demo", "--models", "3"],
        stdin=subprocess.DEVNULL,
        stdout=secondary,
        stderr=secondary,
    )
    os.close(secondary)
    chunks = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 0.5)
            if ready:
                try:
                    data = os.read(primary, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        os.close(primary)
    out = b"".join(chunks).decode().replace("\r\n", "\n")  # the terminal's newlines
    assert out.startswith(f"{HEADER} 3 models,")
    assert re.search(r"\r  round \d+/3000, [\d.]+ s, \d+ rounds/s", out)
    summary = out[out.rindex("\r") :]  # the line is wiped before the summary
    assert "rounds: " in summary and "contribution per model" in summary


def test_output_closed_by_its_reader_is_a_quiet_clean_stop():
    # ``agg-client --demo | head -2``: a real pipe whose reader leaves after
    # two lines; the rest of the summary has nowhere to go.
    proc = subprocess.Popen(
        [sys.executable, "-m", "ensemble_agg", "--demo", "--models", "3"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        first = [proc.stdout.readline(), proc.stdout.readline()]
        proc.stdout.close()
        status = proc.wait(timeout=60)
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stderr.close()
    assert first[0].startswith(f"{HEADER} 3 models,")
    assert first[1].startswith("rounds: ")
    assert status == 0, err
    assert "Broken pipe" not in err and "BrokenPipeError" not in err, err


def test_the_time_limit_is_named_when_it_stops_the_demo(monkeypatch):
    from ensemble_agg.demo import swarm

    monkeypatch.setattr(swarm, "TIME_BUDGET", 1.0)
    buf = io.StringIO()
    assert run_demo(models=3, rounds=10**7, seed=1, out=buf) == 0
    line = next(x for x in buf.getvalue().splitlines() if x.startswith("rounds: "))
    assert re.fullmatch(
        r"rounds: \d+ of 10000000 in 1\.\d s \(\d+ rounds/s, observation to "
        r"action\); stopped at the demo's 1 s limit",
        line,
    ), line


def test_a_short_mean_episode_says_why():
    buf = io.StringIO()
    assert run_demo(models=20, rounds=300, seed=None, out=buf) == 0
    out = buf.getvalue()
    mean = float(re.search(r"mean length ([\d.]+) steps", out)[1])
    assert mean < 22  # the default swarm's ensemble, seeded
    assert "shorter than random pushes last, about 22 steps" in out
    assert "not learning" in out


def test_http_prints_the_live_page_url():
    pytest.importorskip("prometheus_client")
    buf = io.StringIO()
    assert run_demo(models=3, rounds=60, seed=1, out=buf, http=("127.0.0.1", 0)) == 0
    line = next(x for x in buf.getvalue().splitlines() if x.startswith("live page:"))
    assert re.fullmatch(
        r"live page: http://127\.0\.0\.1:\d+/ \(metrics at http://127\.0\.0\.1:\d+/"
        r"metrics, while the demo runs\)",
        line,
    ), line
