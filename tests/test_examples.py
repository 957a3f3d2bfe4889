"""The tutorial's example components run together, as the docs show them.

The commands are read from ``docs/tutorial.rst``'s "Run it" block, so the page
and the test cannot drift apart: each runs as its own process, in the page's
order, with agg-server (the page's default) or the stock ``server.py``.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .swergio_helpers import RawPeer, _connectable, free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL = ROOT / "examples" / "tutorial"
BIN = Path(sys.executable).parent  # agg-server and agg-client of this venv


def _run_it_commands() -> list[list[str]]:
    """The shell lines of the tutorial's "7. Run it" block, comments dropped."""
    page = (ROOT / "docs" / "tutorial.rst").read_text(encoding="utf-8")
    section = page[page.index("7. Run it") :]
    block = section[section.index(".. code-block:: sh") :].split("\n\n")[1]
    return [shlex.split(line.split("#")[0]) for line in block.strip().splitlines()]


def _argv(words: list[str], port: int) -> list[str]:
    words = [str(port) if w == "8080" else w for w in words]
    if words[0] == "python":
        return [sys.executable, *words[1:]]
    return [str(BIN / words[0]), *words[1:]]


def test_the_run_it_block_is_what_this_test_runs():
    commands = [c[:2] for c in _run_it_commands()]
    assert commands[:2] == [["agg-server", "--host"], ["agg-client", "--server"]]
    assert commands[2:] == [["python", "model.py"]] * 5 + [
        ["python", "evolution.py"],
        ["python", "environment.py"],
    ]


@pytest.mark.parametrize("server", ["agg-server", "server.py"])
def test_tutorial_as_the_page_says(server, tmp_path):
    port = free_port()
    commands = [_argv(c, port) for c in _run_it_commands()]
    steps, gets, every = 200, 3, 50
    if server == "server.py":
        # The stock server stalls ~135 ms a step: fewer steps, same shape.
        commands[0] = [sys.executable, "server.py"]
        steps, every = 40, 10
        commands[-2][-1], commands[-1][-1] = str(every), str(steps)
    env = {**os.environ, "TUTORIAL_PORT": str(port), "TUTORIAL_SERVER": "127.0.0.1"}
    procs: list[subprocess.Popen] = []
    logs = {}

    def start(argv: list[str], name: str) -> subprocess.Popen:
        logs[name] = open(tmp_path / f"{name}.log", "w+")
        proc = subprocess.Popen(
            argv, cwd=TUTORIAL, env=env, stdout=logs[name], stderr=subprocess.STDOUT
        )
        procs.append(proc)
        return proc

    def log(name: str) -> str:
        return (tmp_path / f"{name}.log").read_text()

    try:
        start(commands[0], "server")
        wait_for(lambda: _connectable(port), 30, "the server")
        # Every client sees every other's JOINROOM in _command: the
        # environment starts once the rooms it depends on are all filled.
        watcher = RawPeer(port, "watcher")
        start(commands[1], "agg-client")
        for i, argv in enumerate(commands[2:7]):
            start(argv, f"model-{i}")
        evolution = start(commands[7], "evolution")
        awaited = {("aggregation", "logits"), ("evolution", "action")}
        awaited |= {(f"model-{i}", "observation") for i in range(5)}
        while awaited:
            joined = watcher.read_until(
                lambda m: (
                    m.get("TYPE") == "COMMAND/JOINROOM"
                    and (m.get("SENT_BY"), m.get("ROOM")) in awaited
                ),
                timeout=60,
            )
            awaited.discard((joined["SENT_BY"], joined["ROOM"]))
        environment = start(commands[8], "environment")
        assert environment.wait(timeout=120) == 0, log("environment")
        assert evolution.wait(timeout=60) == 0, log("evolution")
        procs[1].send_signal(signal.SIGINT)  # agg-client: its stats line, exit 0
        assert procs[1].wait(timeout=10) == 0
        watcher.close()
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
            proc.wait(timeout=10)
        for f in logs.values():
            f.close()

    assert re.fullmatch(
        rf"environment: {steps} steps in [\d.]+ s \([\d.]+ steps/s\), \d+ episodes "
        r"finished\n",
        log("environment"),
    ), log("environment")
    lines = log("evolution").splitlines()
    assert lines[0] == (
        f"evolution: waiting for the environment's steps (a GET every {every})"
    )
    assert len(lines) == 1 + gets, lines
    counted = []
    for line in lines[1:]:  # every GET names all five models, none empty
        rounds, ranking = re.fullmatch(r"evolution: (\d+) rounds: (.*)", line).groups()
        counted.append(int(rounds))
        shares = [float(x.split()[1]) for x in ranking.split(", ")]
        assert len(shares) == 5 and abs(sum(shares) - int(rounds)) < 0.5 + 1e-6
    # A GET is sent after `every` ACTIONs, and the environment steps on
    # meanwhile: a reply may count a round or two of the next window, which
    # the next reply then lacks.  The first window and the sum are exact bounds.
    assert counted[0] >= every and min(counted) > 0, counted
    assert gets * every - gets <= sum(counted) <= steps, counted
    assert f"stats: rounds={steps} " in log("agg-client")
    assert f"gets={gets} " in log("agg-client")


def test_run_all_runs_the_same_ensemble():
    result = subprocess.run(
        [sys.executable, "run_all.py", "30"],
        cwd=TUTORIAL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "environment: 30 steps" in result.stdout
    evolution = [
        line for line in result.stdout.splitlines() if line.startswith("evolution:")
    ]
    assert (
        evolution[0] == "evolution: waiting for the environment's steps (a GET every 7)"
    )
    assert len(evolution) == 4 and all(" rounds: " in x for x in evolution[1:])
    assert "Traceback" not in result.stderr
