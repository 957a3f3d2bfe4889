#!/usr/bin/env python3
"""A swarm of unmodified swergio components under swergio.Server and agg-server.

    python benchmarks/swarm.py           # full run, a few minutes
    python benchmarks/swarm.py --smoke   # a few seconds per scenario; for CI

Every component is a stock ``swergio.Client`` as in ``examples/tutorial``:
models (a small linear policy each, five per process, each listening on its
own thread) answer every observation with LOGITS and every ``CMD GET`` with
their WEIGHTS; the environment steps CartPole on every ACTION; the evolution
component sends GET every few seconds, collects WEIGHTS and CONTRIBUTION,
and sends SET with all weights.  ``agg-client`` aggregates.  Only the server
changes between runs; seeds are the same.

Scenarios: 20 models (target: agg-server >= 4x the steps/s of swergio.Server),
100 models (fan-out; reported), and 20 models plus one member of every room
that never reads (target: within 20% of the healthy run; the stock server
stops).  For agg-server: CPU per routed frame and peak RSS.  Prints a table
and writes ``swarm.json`` to ``--out`` (default ``benchmarks/results``).
Nothing here asserts anything.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from _net import HOST, free_port, machine, wait_port

HERE = Path(__file__).resolve().parent
MODELS_PER_PROCESS = 5

STOCK_SERVER = (
    "import sys; from swergio import Server; "
    "Server('127.0.0.1', int(sys.argv[1]), 'utf-8', 10).start()"
)

CONFIGS = {
    "full": dict(
        warmup=3.0, seconds=12.0, get_every=3.0, models=20, fanout=100,
        frozen_seconds=20.0, params=1000, fanout_params=100,
    ),
    "smoke": dict(
        warmup=0.5, seconds=1.0, get_every=0.5, models=4, fanout=10,
        frozen_seconds=1.0, params=100, fanout_params=10,
    ),
}  # fmt: skip


# -- the components (each runs in its own process: ``swarm.py _role ...``) -------------


def _msg(room: str, **fields: Any) -> dict[str, Any]:
    return {"ID": uuid.uuid4().hex, "TYPE": "DATA/CUSTOM", "TO_ROOM": room, **fields}


def role_models(port: int, first: int, count: int, n_params: int) -> None:
    """``count`` tutorial models, each a stock Client listening on a thread.

    Each also answers GET with ``n_params`` floats of "weights".
    """
    import numpy as np
    from swergio import MESSAGE_TYPE, Client, Trigger

    custom = MESSAGE_TYPE.DATA.CUSTOM
    for i in range(first, first + count):
        rng = np.random.default_rng(i)
        weights = rng.normal(scale=5.0, size=(2, 4))
        params = rng.normal(size=n_params).round(6).tolist()
        component_id = f"model-{i:03d}"

        def act(msg, weights=weights, component_id=component_id):
            if "OBSERVATION" not in msg:
                return None
            logits = weights @ np.asarray(msg["OBSERVATION"])
            return {
                "LOGITS": logits.tolist(),
                "COMPONENT_ID": component_id,
                "DETERMINISTIC": False,
            }

        def evolve(msg, params=params, component_id=component_id):
            if msg.get("CMD") != "GET":
                return None  # SET, and the other models' WEIGHTS
            return {"WEIGHTS": {component_id: params}}

        client = Client(component_id, HOST, port, "utf-8", 10)
        client.add_eventHandler(
            act, custom, responseRooms="logits", trigger=Trigger(custom, "observation")
        )
        client.add_eventHandler(
            evolve,
            custom,
            responseRooms="evolution",
            trigger=Trigger(custom, "evolution"),
        )
        threading.Thread(target=client.listen, daemon=True).start()
    print("ready", flush=True)
    while True:
        time.sleep(3600)


def role_environment(port: int, warmup: float, seconds: float, stall: float) -> None:
    """Step CartPole on every ACTION; print steps/s in the window after ``warmup``."""
    import numpy as np
    from swergio import Client

    client = Client("environment", HOST, port, "utf-8", 10)
    client.join_room("action")
    client.client.settimeout(stall)  # receive() returns False after this long
    rng = np.random.default_rng(0)
    state = rng.uniform(-0.05, 0.05, size=4)
    started = time.monotonic()
    window = (started + warmup, started + warmup + seconds)
    done_at: list[float] = []
    stalled_at = None
    while time.monotonic() < window[1]:
        client.send(_msg("observation", OBSERVATION=state.tolist()))
        msg = client.receive()
        while msg is not False and "ACTION" not in msg:
            msg = client.receive()
        if (
            msg is False
        ):  # nothing for ``stall`` seconds: the last step is when it stopped
            stalled_at = (done_at[-1] if done_at else started) - started
            break
        done_at.append(time.monotonic())
        state = _cartpole(state, msg["ACTION"][0])
        if abs(state[0]) > 2.4 or abs(state[2]) > 0.2095:
            state = rng.uniform(-0.05, 0.05, size=4)
    in_window = sum(window[0] <= t < window[1] for t in done_at)
    print(json.dumps({"steps_per_s": in_window / seconds, "steps": len(done_at),
                      "stalled_at": stalled_at}), flush=True)  # fmt: skip


def _cartpole(state, action):
    import numpy as np

    _, x_dot, theta, theta_dot = state
    force = 10.0 if action == 1 else -10.0
    cos, sin = math.cos(theta), math.sin(theta)
    temp = (force + 0.05 * theta_dot**2 * sin) / 1.1
    theta_acc = (9.8 * sin - cos * temp) / (0.5 * (4 / 3 - 0.1 * cos**2 / 1.1))
    x_acc = temp - 0.05 * theta_acc * cos / 1.1
    return state + 0.02 * np.array([x_dot, x_acc, theta_dot, theta_acc])


def role_evolution(port: int, models: int, every: float) -> None:
    """GET every ``every`` s, collect WEIGHTS and CONTRIBUTION, SET all weights."""
    from swergio import Client

    client = Client("evolution", HOST, port, "utf-8", 10)
    client.join_room("evolution")
    client.client.settimeout(1.0)
    while True:
        time.sleep(every)
        client.send(_msg("evolution", CMD="GET"))
        weights: dict[str, Any] = {}
        contribution = None
        deadline = time.monotonic() + 30
        while (contribution is None or len(weights) < models) and (
            time.monotonic() < deadline
        ):
            msg = client.receive()
            if msg is False:
                continue  # a timeout: keep waiting until the deadline
            if "CONTRIBUTION" in msg:
                contribution = msg["CONTRIBUTION"]
            elif "WEIGHTS" in msg and "CMD" not in msg:
                weights.update(msg["WEIGHTS"])
        client.send(_msg("evolution", CMD="SET", WEIGHTS=weights))
        print(f"generation {len(weights)} {contribution is not None}", flush=True)


# -- orchestration -------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[float, float]:
    """(CPU seconds, peak RSS in MB) of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    status = Path(f"/proc/{pid}/status").read_text()
    hwm = next(ln for ln in status.splitlines() if ln.startswith("VmHWM"))
    return cpu, int(hwm.split()[1]) / 1024


class Swarm:
    """Start processes, remember their PIDs, stop them all (by PID) at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen] = []

    def start(self, cmd: list[str], name: str) -> subprocess.Popen:
        out = open(self.tmp / f"{name}.out", "w")  # a file, never an unread pipe
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        out.close()
        self.procs.append(proc)
        return proc

    def role(self, name: str, *args: object) -> subprocess.Popen:
        cmd = [sys.executable, str(Path(__file__).resolve()), f"_{name}"]
        return self.start(cmd + [str(a) for a in args], f"{name}-{len(self.procs)}")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def _frozen_member(port: int) -> socket.socket:
    """A member of every busy room that never reads (a hung dashboard, say)."""
    from ensemble_agg.protocol.framing import encode_frame

    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect((HOST, port))
    frames = [{"ID": "r", "TYPE": "COMMAND/REGISTER", "NAME": "frozen",
               "TO_ROOM": "_command"}]  # fmt: skip
    for room in ("_command", "observation", "logits", "action", "evolution"):
        frames.append({"ID": "j", "TYPE": "COMMAND/JOINROOM", "ROOM": room,
                       "TO_ROOM": "_command"})  # fmt: skip
    s.sendall(b"".join(encode_frame(f, "utf-8", 10) for f in frames))
    return s


def _wait_lines(path: Path, text: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().count(text) >= count:
            return
        time.sleep(0.05)
    raise RuntimeError(f"{path.name}: {count} x {text!r} not seen in {timeout} s")


def scenario(
    kind: str, models: int, params: int, frozen: bool, cfg: dict, tmp: Path
) -> dict:
    """Run one swarm under ``kind`` ('stock' or 'agg'); return its figures."""
    port = free_port()
    run_dir = Path(tempfile.mkdtemp(prefix=f"{kind}-{models}-", dir=tmp))
    swarm = Swarm(run_dir)
    frozen_sock = None
    try:
        if kind == "stock":
            server = swarm.start(
                [sys.executable, "-c", STOCK_SERVER, str(port)], "server"
            )
        else:
            server = swarm.start(
                [sys.executable, "-m", "ensemble_agg.server_cli", "--host", HOST,
                 "--port", str(port), "--stats-interval", "0"],
                "server",
            )  # fmt: skip
        wait_port(port)
        swarm.start(
            [sys.executable, "-m", "ensemble_agg", "--server", HOST, "--port",
             str(port), "--models", str(models), "--seed", "0",
             "--stats-interval", "0", "--log-level", "WARNING"],
            "agg-client",
        )  # fmt: skip
        model_procs = [
            swarm.role("models", port, first, min(MODELS_PER_PROCESS, models - first),
                       params)
            for first in range(0, models, MODELS_PER_PROCESS)
        ]  # fmt: skip
        outs = sorted(run_dir.glob("models-*.out"))
        for out in outs:
            _wait_lines(out, "ready", 1, 60)
        if frozen:
            frozen_sock = _frozen_member(port)
        time.sleep(1.0)  # joins take effect asynchronously on the stock server
        evolution = swarm.role("evolution", port, models, cfg["get_every"])
        seconds = cfg["frozen_seconds"] if frozen else cfg["seconds"]
        env = swarm.role("environment", port, cfg["warmup"], seconds, 5.0)
        time.sleep(cfg["warmup"])
        models_cpu = -sum(_proc_stat(p.pid)[0] for p in model_procs)
        env.wait(seconds + 60)
        models_cpu += sum(_proc_stat(p.pid)[0] for p in model_procs)
        env_out = (run_dir / f"environment-{swarm.procs.index(env)}.out").read_text()
        result = json.loads(env_out.strip().splitlines()[-1])
        evo_out = (
            run_dir / f"evolution-{swarm.procs.index(evolution)}.out"
        ).read_text()
        result["generations"] = evo_out.count("generation")
        # the models' own CPU (all processes) per step, over the window
        steps = result["steps_per_s"] * seconds
        result["models_cpu_ms_per_step"] = 1e3 * models_cpu / steps if steps else None
        result["models_cores_busy"] = models_cpu / seconds
        if kind == "agg":
            cpu, peak_mb = _proc_stat(server.pid)
            server.send_signal(signal.SIGTERM)
            server.wait(10)
            log = (run_dir / "server.out").read_text()
            totals = next(ln for ln in log.splitlines() if "stopped; totals" in ln)
            counts = {
                k: int(v) for k, v in (w.split("=") for w in totals.split() if "=" in w)
            }
            result.update(
                server_cpu_s=cpu,
                server_peak_rss_mb=peak_mb,
                frames_in=counts["frames_in"],
                frames_out=counts["frames_out"],
                us_per_frame_in=1e6 * cpu / max(counts["frames_in"], 1),
                us_per_frame_out=1e6 * cpu / max(counts["frames_out"], 1),
                frozen_dropped="'frozen'" in log and "does not read" in log,
            )
        return result
    finally:
        if frozen_sock is not None:
            frozen_sock.close()
        swarm.stop()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    roles = {"_models": role_models, "_environment": role_environment,
             "_evolution": role_evolution}  # fmt: skip
    if argv and argv[0] in roles:
        kinds = {"_models": (int, int, int, int), "_environment": (int, float, float, float),
                 "_evolution": (int, int, float)}[argv[0]]  # fmt: skip
        roles[argv[0]](*(k(a) for k, a in zip(kinds, argv[1:], strict=True)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--smoke", action="store_true", help="seconds; numbers mean little"
    )
    parser.add_argument(
        "--out", type=Path, default=HERE / "results", help="output folder"
    )
    args = parser.parse_args(argv)
    cfg = CONFIGS["smoke" if args.smoke else "full"]
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    runs: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="swarm-") as tmp:
        healthy = (cfg["models"], cfg["params"])
        fanout = (cfg["fanout"], cfg["fanout_params"])
        for label, kind, (models, params), frozen in (
            ("healthy", "stock", healthy, False),
            ("healthy", "agg", healthy, False),
            ("frozen", "agg", healthy, True),
            ("frozen", "stock", healthy, True),
            ("fanout", "stock", fanout, False),
            ("fanout", "agg", fanout, False),
        ):
            key = f"{label}/{kind}"
            runs[key] = scenario(kind, models, params, frozen, cfg, Path(tmp))
            runs[key].update(
                models=models, params_per_model=params, warmup=cfg["warmup"]
            )
            print(f"{key:16} {models:4} models: {runs[key]}", flush=True)
    rows = _rows(runs, cfg)
    _print(rows)
    meta = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "mode": "smoke" if args.smoke else "full",
        "machine": machine(),
        "python": platform.python_version(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    path = args.out / "swarm.json"
    path.write_text(json.dumps({"meta": meta, "runs": runs, "rows": rows}, indent=2))
    print(f"\n{meta['machine']}; {meta['seconds']} s; results in {path}")
    return 0


def _rows(runs: dict[str, dict], cfg: dict) -> list[dict]:
    def rate(key: str) -> float:
        return runs[key]["steps_per_s"]

    def ratio(a: float, b: float) -> float | None:
        return a / b if b else None

    healthy = ratio(rate("healthy/agg"), rate("healthy/stock"))
    fanout = ratio(rate("fanout/agg"), rate("fanout/stock"))
    frozen = ratio(rate("frozen/agg"), rate("healthy/agg"))
    agg = runs["healthy/agg"]
    return [
        dict(figure=f"steps/s, {cfg['models']} models", unit="steps/s",
             stock=rate("healthy/stock"), agg=rate("healthy/agg"), ratio=healthy,
             target=">= 4x", met=healthy is not None and healthy >= 4),
        dict(figure=f"steps/s, {cfg['fanout']} models (fan-out)", unit="steps/s",
             stock=rate("fanout/stock"), agg=rate("fanout/agg"), ratio=fanout,
             target="reported", met=None,
             note="the models' own CPU: {:.2f} and {:.2f} of 2 cores busy".format(
                 runs["fanout/stock"]["models_cores_busy"],
                 runs["fanout/agg"]["models_cores_busy"])),
        dict(figure=f"steps/s, {cfg['models']} models + 1 member not reading",
             unit="steps/s", stock=rate("frozen/stock"), agg=rate("frozen/agg"),
             ratio=frozen, target="agg >= 0.8x its healthy run",
             met=frozen is not None and frozen >= 0.8,
             note=_stalled(runs["frozen/stock"]) + "; ratio = agg frozen / agg healthy"),
        dict(figure=f"agg-server CPU per frame in, {cfg['models']} models", unit="us",
             stock=None, agg=agg["us_per_frame_in"], ratio=None, target="reported",
             met=None, note=f"{agg['us_per_frame_out']:.1f} us per frame delivered"),
        dict(figure=f"agg-server peak RSS, {cfg['fanout']} models", unit="MB",
             stock=None, agg=runs["fanout/agg"]["server_peak_rss_mb"], ratio=None,
             target="reported", met=None),
    ]  # fmt: skip


def _stalled(run: dict) -> str:
    if run["stalled_at"] is None:
        return "the stock server did not stall within the window"
    return (
        f"the stock server stopped every component {run['stalled_at']:.1f} s in "
        f"(after the warm-up's {run['warmup']:.0f} s)"
    )


def _print(rows: list[dict]) -> None:
    def fmt(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, bool):
            return "yes" if v else "NO"
        return f"{v:.3g}" if isinstance(v, float) and abs(v) < 1000 else f"{v:,.0f}"

    widths = (50, 8, 9, 9, 7, 30, 4)
    head = ("figure", "unit", "stock", "agg", "ratio", "target", "met")
    print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    for r in rows:
        cells = (r["figure"], r["unit"], fmt(r["stock"]), fmt(r["agg"]),
                 fmt(r["ratio"]) + ("x" if r["ratio"] else ""), r["target"],
                 fmt(r["met"]))  # fmt: skip
        print("  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)))
        if r.get("note"):
            print(" " * 4 + r["note"])


if __name__ == "__main__":
    sys.exit(main())
