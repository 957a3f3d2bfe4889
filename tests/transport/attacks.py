"""One hostile peer against agg-server: the attacks, as functions that measure.

Each attack starts ``agg-server`` as a subprocess on 127.0.0.1 (at its
defaults unless told otherwise), optionally under a lower ``RLIMIT_NOFILE``,
runs a probe (two registered clients relaying a small message every 20 ms)
and the attack, and returns what the issue's right-hand column asks about:
the probe's worst latency and late messages, whether victims kept their
connections, the server's RSS growth (``VmHWM`` less ``VmRSS`` before),
its log lines, whether a newcomer was served.
``tests/transport/test_server_attacks.py`` runs them at sizes CI affords and
asserts; ``benchmarks/attacks.py`` runs them at the sizes of the attacks as
reported and prints the figures.  Every process is stopped by PID and every
wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
MB = 1 << 20
HEADER = 10
LATE = 1.0  # seconds: a probe message later than this is "late"


def frame(message: dict[str, Any]) -> bytes:
    """One swergio frame, as ``swergio.Client.send`` writes it."""
    body = json.dumps(message).encode()
    return f"{len(body):<{HEADER}}".encode() + body


def short_strings_frame(room: str, size: int) -> bytes:
    """A frame of about ``size`` bytes: a list of two-letter strings."""
    head = json.dumps({"ID": "big", "TYPE": "DATA/CUSTOM", "TO_ROOM": room})[:-1]
    count = max(1, (size - len(head)) // 6)
    body = (head + ', "X": [' + '"ab", ' * (count - 1) + '"ab"]}').encode()
    return f"{len(body):<{HEADER}}".encode() + body


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} for {pid}")


class Server:
    """``agg-server`` in a subprocess, its log in a file; stopped by PID."""

    def __init__(
        self,
        args: Sequence[str] = (),
        *,
        nofile: int | None = None,
        source: str | None = None,
        log_level: str = "INFO",
    ) -> None:
        self.port = _free_port()
        self.log_file = tempfile.NamedTemporaryFile(
            "w+", suffix=".agg-server.log", delete=False
        )
        env = dict(os.environ)
        if source:
            env["PYTHONPATH"] = source + os.pathsep + env.get("PYTHONPATH", "")

        def limit() -> None:  # in the child, before exec
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        cmd = [
            sys.executable,
            "-m",
            "ensemble_agg.server_cli",
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--stats-interval",
            "0",
            "--log-level",
            log_level,
            *args,
        ]
        self.proc = subprocess.Popen(
            cmd,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            env=env,
            # (python -m puts the working directory first on sys.path)
            cwd=source or None,
            preexec_fn=limit,
        )
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError):
                socket.create_connection((HOST, self.port), timeout=0.5).close()
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"agg-server did not start:\n{self.log()}")
            time.sleep(0.05)

    def rss_kb(self) -> int:
        return _status_kb(self.proc.pid, "VmRSS")

    def peak_kb(self) -> int:
        return _status_kb(self.proc.pid, "VmHWM")

    def log(self) -> str:
        return Path(self.log_file.name).read_text()

    def log_lines(self) -> int:
        return len(self.log().splitlines())

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.log_file.close()
        with contextlib.suppress(OSError):
            os.unlink(self.log_file.name)


class Peer:
    """A raw swergio client: registers, joins rooms, sends, reads in a thread.

    The reading thread counts the bytes and frames it receives, keeps the
    messages that ``keep`` accepts, and notes when the server closes.
    """

    def __init__(
        self,
        port: int,
        name: str | None = None,
        rooms: Sequence[str] = (),
        *,
        read: bool = True,
        keep: Callable[[dict[str, Any]], bool] = lambda m: False,
        rcvbuf: int | None = None,
    ) -> None:
        self.sock = socket.socket()
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect((HOST, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.bytes = 0
        self.frames = 0
        self.closed_by_server = False
        self.kept: list[tuple[float, dict[str, Any]]] = []
        self._keep = keep
        self._stop = False
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        if name is not None:
            self.send(
                {
                    "ID": "r",
                    "TYPE": "COMMAND/REGISTER",
                    "NAME": name,
                    "TO_ROOM": "_command",
                }
            )
        for room in rooms:
            self.send(
                {
                    "ID": "j",
                    "TYPE": "COMMAND/JOINROOM",
                    "ROOM": room,
                    "TO_ROOM": "_command",
                }
            )
        if read:
            self._thread = threading.Thread(target=self._read, daemon=True)
            self._thread.start()

    def send(self, message: dict[str, Any]) -> None:
        self.sock.sendall(frame(message))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _read(self) -> None:
        buf = bytearray()
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                data = self.sock.recv(1 << 20)
            except TimeoutError:
                continue
            except OSError:
                data = b""
            if not data:
                self.closed_by_server = not self._stop
                return
            now = time.monotonic()
            self.bytes += len(data)
            buf += data
            while len(buf) >= HEADER:
                length = int(buf[:HEADER])
                if len(buf) < HEADER + length:
                    break
                body = bytes(buf[HEADER : HEADER + length])
                del buf[: HEADER + length]
                self.frames += 1
                if length < 4096:
                    message = json.loads(body)
                    if self._keep(message):
                        with self._lock:
                            self.kept.append((now, message))

    def taken(self) -> list[tuple[float, dict[str, Any]]]:
        with self._lock:
            return list(self.kept)

    def close(self) -> None:
        self._stop = True
        if self._thread is not None:
            self._thread.join(5)
        self.sock.close()


class Probe:
    """Two clients: one sends a small message every 20 ms, the other times it."""

    def __init__(self, port: int, every: float = 0.02) -> None:
        room = f"probe-{uuid.uuid4().hex[:6]}"
        self.rx = Peer(port, "probe-rx", [room], keep=lambda m: "PROBE" in m)
        self.tx = Peer(port, "probe-tx", read=False)
        self.room = room
        self.every = every
        self.sent: dict[int, float] = {}
        # until the first probe arrives, the join may not have taken effect
        deadline = time.monotonic() + 10
        while not self.rx.taken():
            if time.monotonic() > deadline:
                raise RuntimeError("the probe never got through")
            self.tx.send(
                {"ID": "p", "TYPE": "DATA/CUSTOM", "TO_ROOM": room, "PROBE": -1}
            )
            time.sleep(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._send, daemon=True)
        self._thread.start()

    def _send(self) -> None:
        n = 0
        while not self._stop.wait(self.every):
            self.sent[n] = time.monotonic()
            try:
                self.tx.send(
                    {"ID": "p", "TYPE": "DATA/CUSTOM", "TO_ROOM": self.room, "PROBE": n}
                )
            except OSError:
                return
            n += 1

    def stop(self, drain: float = 10.0) -> dict[str, float]:
        """Stop sending; wait up to ``drain`` s for the rest; the figures."""
        self._stop.set()
        self._thread.join(5)
        deadline = time.monotonic() + drain
        while time.monotonic() < deadline:
            got = {m["PROBE"] for _, m in self.rx.taken()}
            if all(n in got for n in self.sent):
                break
            time.sleep(0.05)
        end = time.monotonic()
        arrived = {m["PROBE"]: t for t, m in self.rx.taken() if m["PROBE"] >= 0}
        latencies = [arrived.get(n, end) - t for n, t in self.sent.items()]
        self.rx.close()
        self.tx.close()
        return {
            "probe_worst_s": round(max(latencies, default=0.0), 3),
            "probe_late": sum(x > LATE for x in latencies),
            "probe_lost": sum(n not in arrived for n in self.sent),
        }


@dataclass
class Run:
    """A server and a probe for one attack; ``result`` collects the figures."""

    args: Sequence[str] = ()
    nofile: int | None = None
    source: str | None = None
    probe: bool = True
    keep_log: bool = False  # put the server's log in ``result["log"]``
    result: dict[str, Any] = field(default_factory=dict)
    peers: list[Any] = field(default_factory=list)

    @contextlib.contextmanager
    def start(self) -> Iterator[Server]:
        server = Server(self.args, nofile=self.nofile, source=self.source)
        probe = None
        try:
            probe = Probe(server.port) if self.probe else None
            rss0 = server.rss_kb()
            lines0 = server.log_lines()
            yield server
            if probe is not None:
                self.result.update(probe.stop())
                probe = None
            self.result["rss_growth_mb"] = round((server.peak_kb() - rss0) / 1024, 1)
            self.result["log_lines"] = server.log_lines() - lines0
            if self.keep_log:
                self.result["log"] = server.log()
        finally:
            if probe is not None:
                probe.stop(drain=0)
            for peer in self.peers:
                with contextlib.suppress(OSError):
                    peer.close()
            server.stop()


def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _newcomer_served(port: int, timeout: float) -> float | None:
    """Seconds until a new client that creates and uses a room is served."""
    t0 = time.monotonic()
    room = f"fresh-{uuid.uuid4().hex[:6]}"
    try:
        member = Peer(port, "newcomer", [room], keep=lambda m: "FRESH" in m)
        sender = Peer(port, "newcomer-tx", read=False)
    except OSError:
        return None
    try:
        while time.monotonic() - t0 < timeout:
            with contextlib.suppress(OSError):
                sender.send(
                    {"ID": "n", "TYPE": "DATA/CUSTOM", "TO_ROOM": room, "FRESH": 1}
                )
            if _wait(lambda: bool(member.taken()), 0.25):
                return round(time.monotonic() - t0, 2)
        return None
    finally:
        member.close()
        sender.close()


# -- the attacks ------------------------------------------------------------------------


def long_name(
    run: Run, name_bytes: int, messages: int, readers: int = 1, joins: bool = False
) -> dict[str, Any]:
    """Register under a huge NAME, then send small messages (or JOINROOMs)
    into a room of reading members: what do the members receive?"""
    with run.start() as server:
        room = "victims"
        members = [Peer(server.port, f"member{i}", [room]) for i in range(readers)]
        run.peers += members
        time.sleep(0.3)
        base = [m.bytes for m in members]
        attacker = Peer(server.port, "n" * name_bytes, read=False)
        run.peers.append(attacker)
        sent = 0
        for i in range(messages):
            if joins:
                msg = {
                    "ID": str(i),
                    "TYPE": "COMMAND/JOINROOM",
                    "ROOM": f"j{i}",
                    "TO_ROOM": room,
                }
            else:
                msg = {"ID": str(i), "TYPE": "DATA/CUSTOM", "TO_ROOM": room, "I": i}
            data = frame(msg)
            sent += len(data)
            attacker.send_raw(data)
        time.sleep(2.0)
        received = [m.bytes - b for m, b in zip(members, base, strict=True)]
        run.result.update(
            sent_bytes=sent,
            member_received_bytes=max(received),
            members_disconnected=sum(m.closed_by_server for m in members),
        )
    return run.result


def big_frames(
    run: Run, count: int, size: int, together: bool = False, connections: int = 1
) -> dict[str, Any]:
    """Send ``count`` frames of ``size`` bytes of short strings, from one
    connection, or ``connections`` connections finishing at the same time."""
    with run.start() as server:
        room = "sink"
        senders = [
            Peer(server.port, f"big{i}", [room], read=False) for i in range(connections)
        ]
        run.peers += senders
        data = short_strings_frame(room, size)
        t0 = time.monotonic()
        if together:
            for s in senders:
                s.send_raw(data[:-1])
            for s in senders:
                s.send_raw(data[-1:])
        else:
            for _ in range(count):
                senders[0].send_raw(data)
        run.result["send_s"] = round(time.monotonic() - t0, 2)
        time.sleep(1.0)
    return run.result


def parked(run: Run, connections: int, park: int, announce: int) -> dict[str, Any]:
    """Each connection sends ``park`` bytes of an ``announce``-byte frame and
    waits."""
    with run.start() as server:
        head = f"{announce:<{HEADER}}".encode() + b'{"TYPE": "DATA/CUSTOM", "X": "'
        chunk = b"a" * (1 << 20)
        for i in range(connections):
            peer = Peer(server.port, f"parker{i}", read=False)
            run.peers.append(peer)
            try:
                peer.send_raw(head)
                left = park - len(head)
                while left > 0:
                    peer.send_raw(chunk[: min(left, len(chunk))])
                    left -= len(chunk)
            except OSError:
                pass  # the server dropped it: that is the point
        time.sleep(1.0)
        run.result["parkers_dropped"] = sum(not _still_open(p.sock) for p in run.peers)
    return run.result


def _still_open(sock: socket.socket) -> bool:
    try:
        sock.setblocking(False)
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def non_readers(
    run: Run, clients: int, flood: int, size: int = 1 << 20
) -> dict[str, Any]:
    """``clients`` members that never read, each alone in a flooded room."""
    with run.start() as server:
        stuck = [
            Peer(server.port, f"stuck{i}", [f"room{i}"], read=False, rcvbuf=4096)
            for i in range(clients)
        ]
        run.peers += stuck
        flooder = Peer(server.port, "flooder", read=False)
        run.peers.append(flooder)
        time.sleep(0.3)
        pad = "x" * size
        deadline = time.monotonic() + 60
        with contextlib.suppress(OSError):
            for n in range(flood):
                for i in range(clients):
                    flooder.send(
                        {
                            "ID": str(n),
                            "TYPE": "DATA/CUSTOM",
                            "TO_ROOM": f"room{i}",
                            "PAD": pad,
                        }
                    )
                if time.monotonic() > deadline:
                    break
        time.sleep(1.0)
    return run.result


def many_rooms(run: Run, rooms: int, name_chars: int) -> dict[str, Any]:
    """One connection joins ``rooms`` rooms with long names; is a newcomer
    who creates and uses a room served?"""
    with run.start() as server:
        joiner = Peer(server.port, "joiner", read=False)
        run.peers.append(joiner)
        batch = b"".join(
            frame(
                {
                    "ID": str(i),
                    "TYPE": "COMMAND/JOINROOM",
                    "ROOM": f"{i:08d}".ljust(name_chars, "r"),
                }
            )
            for i in range(rooms)
        )
        joiner.send_raw(batch)
        time.sleep(1.0)
        served = _newcomer_served(server.port, 5.0)
        run.result["newcomer_served_s"] = served if served is not None else "never"
    return run.result


def log_flood(run: Run, mid_frame: int, resets: int) -> dict[str, Any]:
    """Connections that close mid-frame, and registered ones that reset."""
    with run.start() as server:
        port = server.port
        for _ in range(mid_frame):
            with contextlib.suppress(OSError):
                s = socket.create_connection((HOST, port), timeout=5)
                s.sendall(b"100       {partial")
                s.close()
        for i in range(resets):
            with contextlib.suppress(OSError):
                s = socket.create_connection((HOST, port), timeout=5)
                s.sendall(
                    frame({"ID": "r", "TYPE": "COMMAND/REGISTER", "NAME": f"reset{i}"})
                )
                time.sleep(0.002)
                s.sendall(b"100       {part")
                # RST instead of FIN: SO_LINGER with a zero timeout
                s.setsockopt(
                    socket.SOL_SOCKET,
                    socket.SO_LINGER,
                    b"\x01\x00\x00\x00\x00\x00\x00\x00",
                )
                s.close()
        time.sleep(1.5)
    return run.result


def idle_connections(
    run: Run,
    connections: int,
    trickle: float = 0.0,
    wait: float = 15.0,
    hold: float = 0.0,
) -> dict[str, Any]:
    """``connections`` that never register (idle, or trickling a frame one
    byte every ``trickle`` s); is a newcomer served within ``wait`` s?  The
    attack goes on ``hold`` s after that."""
    with run.start() as server:
        socks: list[socket.socket] = []
        for _ in range(connections):
            s = socket.socket()
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                s.connect((HOST, server.port))
            socks.append(s)
        stop = threading.Event()

        def drip() -> None:
            header = b"1000      {"
            at = 0
            while not stop.wait(trickle):
                for s in socks:
                    with contextlib.suppress(OSError):
                        s.send(header[at : at + 1] or b"a")
                at += 1

        # Let every connection through the handshake (past the listen backlog,
        # the kernel retries a SYN after 1 s, then 3 s): up to 8 s.
        poller = select.poll()
        for s in socks:
            poller.register(s, select.POLLOUT)
        pending = len(socks)
        deadline = time.monotonic() + 8
        while pending and time.monotonic() < deadline:
            for fd, _ in poller.poll(100):
                poller.unregister(fd)
                pending -= 1
        run.result["not_connected"] = pending
        dripper = threading.Thread(target=drip, daemon=True)
        if trickle:
            dripper.start()
        time.sleep(0.5)
        try:
            served = _newcomer_served(server.port, wait)
            time.sleep(hold)
        finally:
            stop.set()
            if trickle:
                dripper.join(5)
            for s in socks:
                s.close()
        run.result["newcomer_served_s"] = served if served is not None else "never"
    return run.result


# -- the table ----------------------------------------------------------------------------
