"""Soak agg-client with valid rounds, hostile frames and 24 MB evolution messages.

A swergio server (agg-server: the stock one needs minutes to route one
24 MB frame) and agg-client run in subprocesses on 127.0.0.1.  This
process drives 20 models (pipelined rounds), an environment that reads every
ACTION, an evolution component that sends a 24 MB ``SET`` and a ``GET``
every few seconds, and a hostile peer that sends a bad frame between rounds.
At the end it reports rounds, ACTIONs received, the component's own counters,
peak RSS and CPU time.

Usage::

    python benchmarks/soak.py              # 10 minutes
    python benchmarks/soak.py --seconds 60
    python benchmarks/soak.py --smoke      # 10 seconds, for CI
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ensemble_agg.protocol.framing import encode_frame

HOST = "127.0.0.1"
N_MODELS = 20


def server_command(port: int) -> list[str]:
    """agg-server on 127.0.0.1:``port``, logging errors only."""
    return [sys.executable, "-m", "ensemble_agg.server_cli", "--host", HOST,
            "--port", str(port), "--log-level", "ERROR"]  # fmt: skip


def frame(message: dict) -> bytes:
    return encode_frame(message, "utf-8", 10)


def raw(body: bytes) -> bytes:
    return f"{len(body):<10}".encode() + body


def msg(room: str, **fields: object) -> dict:
    return {"ID": os.urandom(8).hex(), "TYPE": "DATA/CUSTOM", "TO_ROOM": room, **fields}


def hostile_frames() -> list[bytes]:
    """Bad frames of the kinds the hostile-input tests cover."""
    deep = "[" * 900 + "]" * 900
    return [
        raw(
            b'{"TO_ROOM": "logits", "TYPE": "DATA/CUSTOM", "COMPONENT_ID": "x", '
            b'"LOGITS": [' + b"9" * 310 + b", 1]}"
        ),
        frame(msg("logits", COMPONENT_ID="x", LOGITS=[-(2**63), 10**308, 1e16])),
        raw(
            json.dumps(msg("logits", COMPONENT_ID="m00", LOGITS=[0.1, 0.2]))
            .replace('"ID"', f'"ROOT_ID": {deep}, "ID"')
            .encode()
        ),
        raw(b"[" * 100_000),
        raw(b"{not json"),
        raw(b"\xff\xfe"),
        frame(msg("logits", COMPONENT_ID="x", LOGITS="abc")),
        frame(msg("logits", COMPONENT_ID=7, LOGITS=[0.1, 0.2])),
        frame(msg("logits", COMPONENT_ID="x", LOGITS=[float("nan"), 0.0])),
        frame(msg("logits", COMPONENT_ID="y" * 10_000, LOGITS=[0.1, 0.2])),
        frame(
            msg("logits", COMPONENT_ID="x", LOGITS=[0.1, 0.2], SENT_BY="S" * 100_000)
        ),
        frame(msg("evolution", CMD=["GET"])),
        frame({"ID": "x", "TO_ROOM": "logits", "TYPE": "DATA/NOPE", "LOGITS": [1]}),
        raw(
            b'{"TO_ROOM": "logits", "TYPE": "DATA/CUSTOM", "LOGITS": ['
            + b"{}," * 300_000
            + b"{}]}"
        ),
    ]


class Peer:
    """A raw swergio peer: register, join rooms, send frames, read frames."""

    def __init__(self, port: int, name: str, rooms: tuple[str, ...] = ()) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(
            frame(
                {
                    "ID": "r",
                    "TYPE": "COMMAND/REGISTER",
                    "NAME": name,
                    "TO_ROOM": "_command",
                }
            )
        )
        for room in ("_command", *rooms):
            self.sock.sendall(
                frame(
                    {
                        "ID": "j",
                        "TYPE": "COMMAND/JOINROOM",
                        "ROOM": room,
                        "TO_ROOM": "_command",
                    }
                )
            )
        self.buf = b""

    def messages(self, timeout: float) -> list[dict]:
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(1 << 20)
        except TimeoutError:
            return []
        if not chunk:
            raise ConnectionError("server closed")
        self.buf += chunk
        out = []
        while len(self.buf) >= 10:
            n = int(self.buf[:10])
            if len(self.buf) < 10 + n:
                break
            body, self.buf = self.buf[10 : 10 + n], self.buf[10 + n :]
            try:
                out.append(json.loads(body))
            except ValueError:
                pass
        return out


def _proc_stats(pid: int) -> tuple[float, int]:
    """(CPU seconds, peak RSS in KB) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    status = Path(f"/proc/{pid}/status").read_text()
    hwm = int(next(x for x in status.splitlines() if x.startswith("VmHWM")).split()[1])
    return cpu, hwm


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def run(seconds: float, evolution_every: float, big_mb: float) -> dict:
    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="agg-soak-"))
    server = subprocess.Popen(server_command(port))
    log = open(tmp / "agg.log", "w+")
    agg = None
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((HOST, port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        agg = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ensemble_agg",
                "--server",
                HOST,
                "--port",
                str(port),
                "--models",
                str(N_MODELS),
                "--stats-interval",
                "5",
                "--actions",
                "2",
                "--state-file",
                str(tmp / "tally.json"),
                "--model-ids",
                ",".join(f"m{i:02d}" for i in range(N_MODELS)),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        time.sleep(1.5)
        models = Peer(port, "models")
        env = Peer(port, "environment", ("action",))
        evo = Peer(port, "evolution", ("evolution",))
        bad = Peer(port, "hostile")
        time.sleep(0.5)
        hostile = hostile_frames()
        weights = {
            f"m{i:02d}": [0.123456789012] * int(big_mb * 1e6 / 15 / N_MODELS)
            for i in range(N_MODELS)
        }
        big = frame(msg("evolution", CMD="SET", WEIGHTS=weights))
        counts = {"actions": 0, "contributions": 0, "big": 0, "hostile": 0}
        stop = threading.Event()

        def read_actions() -> None:
            while not stop.is_set():
                for m in env.messages(0.2):
                    if "ACTION" in m:
                        counts["actions"] += 1

        def read_evolution() -> None:
            # Always reading: the room also carries the hostile peer's frames,
            # and a member that stops reading stalls its server thread.
            while not stop.is_set():
                for m in evo.messages(0.2):
                    if "CONTRIBUTION" in m:
                        counts["contributions"] += 1

        def evolution() -> None:
            while not stop.wait(evolution_every):
                evo.sock.sendall(big)
                counts["big"] += 1
                evo.sock.sendall(frame(msg("evolution", CMD="GET")))

        threads = [
            threading.Thread(target=f, daemon=True)
            for f in (read_actions, read_evolution, evolution)
        ]
        for t in threads:
            t.start()
        rng = random.Random(0)
        started = time.monotonic()
        cpu0, _ = _proc_stats(agg.pid)
        r = 0
        while time.monotonic() - started < seconds:
            # Keep at most 50 rounds in flight, like an environment would.
            while r - counts["actions"] > 50 and time.monotonic() - started < seconds:
                time.sleep(0.001)
            batch = b"".join(
                frame(
                    msg(
                        "logits",
                        COMPONENT_ID=f"m{i:02d}",
                        LOGITS=[math.sin(r + i), math.cos(r * i)],
                    )
                )
                for i in range(N_MODELS)
            )
            models.sock.sendall(batch)
            if r % 10 == 0:
                bad.sock.sendall(rng.choice(hostile))
                counts["hostile"] += 1
            r += 1
        elapsed = time.monotonic() - started
        time.sleep(2)
        cpu1, hwm = _proc_stats(agg.pid)
        stop.set()
        for t in threads:
            t.join(5)
        agg.send_signal(signal.SIGTERM)
        agg.wait(10)
        log.seek(0)
        text = log.read()
        stats = re.findall(r"stats: (.*)", text)[-1]
        return {
            "seconds": round(elapsed, 1),
            "rounds_sent": r,
            "actions_received": counts["actions"],
            "rounds_per_s": round(counts["actions"] / elapsed, 1),
            "hostile_frames": counts["hostile"],
            "evolution_steps_24mb": counts["big"],
            "contribution_replies": counts["contributions"],
            "agg_client_stats": stats,
            "agg_client_peak_rss_mb": round(hwm / 1024, 1),
            "agg_client_cpu_s": round(cpu1 - cpu0, 1),
            "agg_client_cpu_us_per_round": round(
                (cpu1 - cpu0) / max(counts["actions"], 1) * 1e6, 1
            ),
            "tracebacks": text.count("Traceback"),
            "exit_status": agg.returncode,
        }
    finally:
        for p in (agg, server):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(10)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--evolution-every", type=float, default=10.0)
    parser.add_argument("--big-mb", type=float, default=24.0)
    parser.add_argument("--smoke", action="store_true", help="10 s, 2 MB evolution")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.evolution_every, args.big_mb = 10.0, 3.0, 2.0
    result = run(args.seconds, args.evolution_every, args.big_mb)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(result, indent=2))
    for key, value in result.items():
        print(f"{key:32} {value}")
    if result["tracebacks"] or result["exit_status"] != 0:
        sys.exit("agg-client failed during the soak")
    if result["actions_received"] < 0.99 * result["rounds_sent"]:
        sys.exit("rounds were lost")


if __name__ == "__main__":
    main()
