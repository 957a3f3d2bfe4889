"""Real swergio servers, clients and agg-client processes for the tests.

Every process started here is stopped by PID when its test ends, every wait
is bounded, and everything binds 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
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


def agg_server_command(port: int, *args: str) -> list[str]:
    """The ``agg-server`` command line (``python -m``, so no PATH is needed)."""
    return [sys.executable, "-m", "ensemble_agg.server_cli", "--host", HOST,
            "--port", str(port), "--log-level", "WARNING", *args]  # fmt: skip


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
    """A swergio server in a subprocess: stock swergio, or agg-server with ``args``."""

    def __init__(self, port: int | None = None, *args: str, agg: bool = False) -> None:
        self.port = port or free_port()
        self.agg = agg
        self.args = args
        self.proc: subprocess.Popen | None = None
        self.log = None

    def start(self) -> ServerProcess:
        self.launch()
        wait_for(lambda: _connectable(self.port), 10, f"server on port {self.port}")
        return self

    def launch(self) -> None:
        """Start the process; it may not be listening yet."""
        if self.agg:
            cmd = agg_server_command(self.port, *self.args)
        else:
            cmd = [sys.executable, "-u", "-c", STOCK_SERVER, str(self.port)]
        # The stock server prints a line per message: to a file, never a pipe.
        # agg-server logs problems to stderr; keep them for a failing test.
        self.log = tempfile.NamedTemporaryFile("w+", suffix=".server.log", delete=False)
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)

    def read_log(self) -> str:
        assert self.log is not None
        with open(self.log.name) as f:
            return f.read()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        if self.log is not None:
            self.log.seek(0)
            text = self.log.read()
            if text:  # shown by pytest only when the test failed
                print(f"--- server log ---\n{text[-6000:]}")
            self.log.close()
            os.unlink(self.log.name)
            self.log = None


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
        """SIGTERM (so the log ends with the final stats line), then SIGKILL."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
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
    """A hand-made swergio peer on a plain socket, for frames swergio won't send.

    The constructor returns once the server routes messages of every room in
    ``rooms`` to this peer: swergio acknowledges nothing, the server handles
    each client on its own thread, and a join has been seen to take effect
    only after other clients' later messages were routed.  So a second
    connection sends a probe into each room until this peer receives it.
    """

    def __init__(self, port: int, name: str, rooms: tuple[str, ...] = ()) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = b""
        self._prober: socket.socket | None = None
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
        if rooms:
            self._await_membership(port, rooms)
        else:
            time.sleep(JOIN_SETTLE)  # let the REGISTER be processed

    def _await_membership(self, port: int, rooms: tuple[str, ...]) -> None:
        prober = socket.create_connection((HOST, port), timeout=10)
        prober.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        prober.sendall(
            frame(
                {
                    "ID": "p",
                    "TYPE": "COMMAND/REGISTER",
                    "NAME": "probe",
                    "TO_ROOM": "_command",
                }
            )
        )
        try:
            for room in rooms:
                token = uuid.uuid4().hex
                deadline = time.monotonic() + 10
                while True:
                    prober.sendall(frame(data(room, PROBE=token)))
                    try:
                        self.read_until(
                            lambda m, t=token: m.get("PROBE") == t,
                            timeout=0.2,
                            keep_others=True,
                        )
                        break
                    except AssertionError:
                        if time.monotonic() > deadline:
                            raise AssertionError(
                                f"never joined room {room!r}"
                            ) from None
        finally:
            # Not closed until this peer closes: the stock server drops the
            # *sender* of any message it fails to deliver, so a client that
            # leaves while others broadcast costs them their connection.
            self._prober = prober

    def send(self, message: dict) -> None:
        self.sock.sendall(frame(message))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_until(
        self, predicate, timeout: float = 10.0, keep_others: bool = False
    ) -> dict:
        """Read messages until ``predicate(msg)`` holds; return that message.

        Messages before it are dropped, or with ``keep_others`` kept for the
        next call.
        """
        deadline = time.monotonic() + timeout
        kept = b""
        try:
            while time.monotonic() < deadline:
                while len(self._buf) >= 10:
                    n = int(self._buf[:10])
                    if len(self._buf) < 10 + n:
                        break
                    raw, self._buf = self._buf[: 10 + n], self._buf[10 + n :]
                    msg = None
                    with contextlib.suppress(ValueError):
                        msg = json.loads(raw[10:])
                    if isinstance(msg, dict) and predicate(msg):
                        return msg
                    if keep_others:
                        kept += raw
                self.sock.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    chunk = self.sock.recv(1 << 16)
                except TimeoutError:
                    break
                if not chunk:
                    raise AssertionError("server closed the connection")
                self._buf += chunk
            raise AssertionError(f"no matching message within {timeout} s")
        finally:
            self._buf = kept + self._buf

    def close(self) -> None:
        for sock in (self.sock, self._prober):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()


def stock_client(port: int, name: str) -> Client:
    """An unmodified swergio Client, with a bounded receive."""
    client = Client(name, HOST, port, "utf-8", 10)
    client.client.settimeout(10)
    return client


MODELS = [f"m{i:02d}" for i in range(20)]


def logits_msg(model: str, logits, deterministic: bool = False) -> dict:
    return data(
        "logits", LOGITS=logits, COMPONENT_ID=model, DETERMINISTIC=deterministic
    )


def round_logits(r: int, i: int) -> list[float]:
    return [math.sin(r + i), math.cos(r * i)]


def await_logits_membership(port: int, proc: AggProcess) -> RawPeer:
    """Return once the server routes the logits room to agg-client.

    A join can take effect late (see RawPeer), so an empty LOGITS from a
    probe id is sent until agg-client logs dropping it.  The probe peer is
    returned, to be closed when the test ends (see RawPeer on why not now).
    """
    probe = RawPeer(port, "probe")
    probe_id = f"probe-{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + 10
    while repr(probe_id) not in proc.log:
        if time.monotonic() > deadline:
            raise AssertionError(f"agg-client never joined logits:\n{proc.log}")
        probe.send(logits_msg(probe_id, []))
        time.sleep(0.1)
    return probe
