"""Real swergio servers, clients and agg-client processes for the tests.

Every process started here is stopped by PID when its test ends, every wait
is bounded, and everything binds 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from swergio import Client

HOST = "127.0.0.1"
JOIN_SETTLE = 0.25  # seconds
STOCK_SERVER = (
    "import sys; from swergio import Server; "
    "Server('127.0.0.1', int(sys.argv[1]), 'utf-8', 10).start()"
)
TUNED_SERVER = (
    "import sys, time; from ensemble_agg.swergio_shim import TunedServer; "
    "s = TunedServer('127.0.0.1', int(sys.argv[1]), enable_logging=False); "
    "s.start()"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.02):
    """Poll ``predicate`` until it returns something truthy, or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _connectable(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=0.2).close()
        return True
    except OSError:
        return False


class ServerProcess:
    """A swergio server in a subprocess (stock by default)."""

    def __init__(self, port: int | None = None, tuned: bool = False) -> None:
        self.port = port or free_port()
        self.tuned = tuned
        self.proc: subprocess.Popen | None = None

    def start(self) -> ServerProcess:
        code = TUNED_SERVER if self.tuned else STOCK_SERVER
        # The stock server prints a line per message: to /dev/null, never a pipe.
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: _connectable(self.port), 10, f"server on port {self.port}")
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


class AggProcess:
    """``agg-client`` in a subprocess, its log in a file."""

    def __init__(self, port: int, tmp: Path, *args: str, env: dict | None = None):
        self.log_path = tmp / f"agg-{uuid.uuid4().hex[:8]}.log"
        self._log = open(self.log_path, "w")
        cmd = [
            sys.executable,
            "-m",
            "ensemble_agg",
            "--server",
            HOST,
            "--port",
            str(port),
        ]
        self.proc = subprocess.Popen(
            [*cmd, *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def wait_log(self, text: str, timeout: float = 10.0, count: int = 1) -> str:
        return wait_for(
            lambda: self.log.count(text) >= count and self.log,
            timeout,
            f"{text!r} in the agg-client log:\n{self.log[-3000:]}",
        )

    def rss_kb(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(
            next(
                line for line in status.splitlines() if line.startswith("VmRSS")
            ).split()[1]
        )

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._log.close()


def frame(message: dict, header_length: int = 10) -> bytes:
    body = json.dumps(message).encode()
    return f"{len(body):<{header_length}}".encode() + body


def raw_frame(body: bytes, header_length: int = 10) -> bytes:
    return f"{len(body):<{header_length}}".encode() + body


def data(room: str, **fields) -> dict:
    return {"ID": uuid.uuid4().hex, "TYPE": "DATA/CUSTOM", "TO_ROOM": room, **fields}


class RawPeer:
    """A hand-made swergio peer on a plain socket, for frames swergio won't send."""

    def __init__(self, port: int, name: str, rooms: tuple[str, ...] = ()) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.send(
            {
                "ID": uuid.uuid4().hex,
                "TYPE": "COMMAND/REGISTER",
                "NAME": name,
                "TO_ROOM": "_command",
            }
        )
        for room in ("_command", *rooms):
            self.send(
                {
                    "ID": uuid.uuid4().hex,
                    "TYPE": "COMMAND/JOINROOM",
                    "ROOM": room,
                    "TO_ROOM": "_command",
                }
            )
        self._buf = b""

    def send(self, message: dict) -> None:
        self.sock.sendall(frame(message))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_until(self, predicate, timeout: float = 10.0) -> dict:
        """Read messages until ``predicate(msg)`` holds; return that message."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while len(self._buf) >= 10:
                n = int(self._buf[:10])
                if len(self._buf) < 10 + n:
                    break
                body, self._buf = self._buf[10 : 10 + n], self._buf[10 + n :]
                with contextlib.suppress(ValueError):
                    msg = json.loads(body)
                    if isinstance(msg, dict) and predicate(msg):
                        return msg
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(1 << 16)
            except TimeoutError:
                break
            if not chunk:
                raise AssertionError("server closed the connection")
            self._buf += chunk
        raise AssertionError(f"no matching message within {timeout} s")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def stock_client(port: int, name: str) -> Client:
    """An unmodified swergio Client, with a bounded receive."""
    client = Client(name, HOST, port, "utf-8", 10)
    client.client.settimeout(10)
    return client
