"""Start the whole tutorial ensemble on 127.0.0.1 and stop it again.

    python run_all.py [ROUNDS]

Starts ``agg-server``, ``agg-client``, the models, the evolution component
(three GETs, one every quarter of the rounds) and the environment as
separate processes (as you would on separate machines), waits for the
environment and the evolution component to finish, then stops everything by
PID.  It prints the evolution component's and the environment's lines; the
other components log only warnings.
"""

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROUNDS = sys.argv[1] if len(sys.argv) > 1 else "200"

with socket.socket() as s:  # a free port on this machine
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
env = {**os.environ, "TUTORIAL_PORT": str(port), "TUTORIAL_SERVER": "127.0.0.1"}
models = int(env.get("TUTORIAL_MODELS", "5"))


def start(*args, stdout=None):
    return subprocess.Popen(
        [sys.executable, *args], cwd=HERE, env=env, stdout=stdout, text=True
    )


def copy_lines(stream):
    for line in stream:
        print(line, end="", flush=True)


# agg-server in place of server.py (swergio's Server, which also works here).
procs = [
    start(
        "-m",
        "ensemble_agg.server_cli",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "WARNING",
    )
]
try:
    time.sleep(1.0)
    procs.append(
        start(
            "-m",
            "ensemble_agg",
            "--server",
            "127.0.0.1",
            "--port",
            str(port),
            "--models",
            str(models),
            "--step-timeout",
            "1.0",
            "--log-level",
            "WARNING",
        )
    )
    procs += [start("model.py", str(i)) for i in range(models)]
    time.sleep(2.0)  # every model connected and in its rooms before the first step
    every = max(1, int(ROUNDS) // 4)
    evolution = start("evolution.py", "3", str(every), stdout=subprocess.PIPE)
    procs.append(evolution)
    # Its first line says it is in the action room: it will count every step.
    print(evolution.stdout.readline(), end="", flush=True)
    copier = threading.Thread(target=copy_lines, args=(evolution.stdout,))
    copier.start()
    environment = start("environment.py", ROUNDS)
    procs.append(environment)
    code = environment.wait(timeout=300) or evolution.wait(timeout=60)
    copier.join(timeout=10)  # its last lines out before this exits
finally:
    for p in reversed(procs):  # the server last, so nobody sees it vanish
        if p.poll() is None:
            p.terminate()
        p.wait(timeout=10)
sys.exit(code)
