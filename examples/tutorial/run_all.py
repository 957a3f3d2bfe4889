"""Start the whole tutorial ensemble on 127.0.0.1 and stop it again.

    python run_all.py [ROUNDS]

Starts ``agg-server``, ``agg-client``, the models, the environment and the
evolution component as separate processes (as you would on separate
machines), waits for the environment to finish its rounds, then stops
everything by PID.
"""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROUNDS = sys.argv[1] if len(sys.argv) > 1 else "200"

with socket.socket() as s:  # a free port on this machine
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
env = {**os.environ, "TUTORIAL_PORT": str(port), "TUTORIAL_SERVER": "127.0.0.1"}
models = int(env.get("TUTORIAL_MODELS", "5"))


def start(*args, quiet=False):
    out = subprocess.DEVNULL if quiet else None
    return subprocess.Popen([sys.executable, *args], cwd=HERE, env=env, stdout=out)


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
    evolution = start("evolution.py", "2", "1.0")
    environment = start("environment.py", ROUNDS)
    code = environment.wait(timeout=300) or evolution.wait(timeout=60)
finally:
    for p in reversed(procs):  # the server last, so nobody sees it vanish
        p.terminate()
        p.wait(timeout=10)
sys.exit(code)
