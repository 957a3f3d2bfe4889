"""agg-server against real stock swergio clients and raw sockets.

The differential test runs the same scripted traffic of stock
``swergio.Client`` objects through ``swergio.Server`` and through agg-server
and compares what every client received.  The robustness tests check each
case where the stock server drops a sender, stalls or spins.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import signal
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest
from swergio import Client

from ensemble_agg.transport.server import AggServer

from ..swergio_helpers import (
    HOST,
    RawPeer,
    ServerProcess,
    data,
    frame,
    raw_frame,
    wait_for,
)

# -- the differential routing test ---------------------------------------------------
#
# swergio's Server handles each client on its own thread and takes none of a
# client's frames as given: a connection accepted but not yet registered
# makes any ``TO`` lookup raise ``KeyError`` (``names[other]``), which drops
# the *sender*; a connection that closes early races its own clean-up.  So
# this test never lets the stock server see such a connection: no port probe
# (the server is ready once a registered keeper's message comes back), every
# client acts only after the server acknowledged its REGISTER and joins, and
# no connection closes while anything may still be routed.  Deliveries are
# read as raw bytes, so a slow CPU can delay them but not cut them.


_RANDOM_ID = re.compile(rb'"ID": "[0-9a-f]{32}"')


def _masked(raw: bytes) -> bytes:
    """``raw`` with swergio's random hex IDs (commands, log copies) masked.

    The mask has the same length, so the header still matches the body.
    """
    return _RANDOM_ID.sub(b'"ID": "' + b"*" * 32 + b'"', raw)


class Recorder:
    """A stock swergio Client whose socket a thread reads, frame by frame, raw.

    The stock client sends (REGISTER, JOINROOM, data, DISCONNECT); the
    thread keeps every frame the server wrote to it, byte for byte.  Unlike
    ``Client.receive`` with a timeout, a partial frame waits for the rest.
    """

    def __init__(self, port: int, key: str, name: str) -> None:
        self.key = key
        self.name = name
        self.client = Client(name, HOST, port, "utf-8", 10)
        self.client.client.settimeout(0.2)  # so the thread sees _stop
        self.received: list[bytes] = []
        self._barriers = 0
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        buf = b""
        while not self._stop:
            try:
                chunk = self.client.client.recv(1 << 16)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while len(buf) >= 10 and len(buf) >= 10 + int(buf[:10]):
                end = 10 + int(buf[:10])
                with self._cond:
                    self.received.append(buf[:end])
                    self._cond.notify_all()
                buf = buf[end:]

    def send(self, message: dict) -> None:
        self.client.send(message)

    def barrier(self) -> str:
        """Return once the server has handled everything this client sent.

        A direct message to oneself comes back only after the server handled
        this client's earlier messages (both servers handle a client's frames
        in order), and after every frame written to this client before it.
        Its ID is deterministic, so it compares equal across the two runs;
        it is returned, as every client of the same name receives it too.
        """
        self._barriers += 1
        token = f"barrier-{self.key}-{self._barriers}"
        self.send({"ID": token, "TYPE": "DATA/CUSTOM", "TO": self.name, "BARRIER": 1})
        self.wait_for_id(token)
        return token

    def wait_for_id(self, token: str) -> None:
        """Return once a frame with ``ID`` ``token`` has arrived."""
        needle = f'"ID": "{token}"'.encode()
        with self._cond:
            ok = self._cond.wait_for(
                lambda: any(needle in m for m in self.received), timeout=30
            )
        assert ok, f"{self.key}: {token} not received"

    def close(self) -> None:
        self._stop = True
        self._thread.join(5)
        self.client.close()


def _script(port: int) -> dict[str, collections.Counter]:
    """Scripted traffic of stock clients; return what each client received."""
    clients: dict[str, Recorder] = {}

    # A barrier to a shared name ("dup") reaches its namesakes too, and only
    # its sender waits for it: the others wait for their copies at the end.
    copies: dict[str, list[str]] = collections.defaultdict(list)

    def sync(x: Recorder) -> None:
        namesakes = [y for y in clients.values() if y is not x and y.name == x.name]
        token = x.barrier()
        for y in namesakes:
            copies[y.key].append(token)

    def add(key: str, name: str, *rooms: str) -> Recorder:
        c = clients[key] = Recorder(port, key, name)
        for room in rooms:
            c.client.join_room(room)
        sync(c)  # its REGISTER and joins are done before anyone else acts
        return c

    def msg(n: int, **fields) -> dict:
        return {"ID": f"m{n}", "TYPE": "DATA/CUSTOM", **fields}

    a = add("a", "a", "r1", "r2")
    b = add("b", "b", "r1")
    c = add("c", "c", "r2", "_logging")
    d = add("d", "d", "r1")
    add("dup1", "dup")
    add("dup2", "dup", "r2")
    try:
        a.send(msg(1, TO_ROOM="r1", TEXT="to r1"))
        b.send(msg(2, TO="c", TEXT="direct"))
        c.send(msg(3, TO_ROOM="r2", TO="b", TEXT="room and direct"))
        a.send(msg(4, TO="a", TEXT="to myself"))
        d.send({"ID": "m5", "TYPE": "DATA/FORWARD", "TO_ROOM": "r1", "DATA": [1, 2]})
        b.send(msg(6, TO_ROOM="r1", SENT_BY="mallory"))
        a.send(msg(7, TO_ROOM="r1", TO="b", TEXT="twice for b"))
        a.send({"ID": "m8", "TYPE": "DATA/GRADIENT", "TO": "b", "DATA": [3]})
        c.send(msg(9, TO="dup", TEXT="both dups"))
        b.send({"ID": "m10", "TYPE": "DATA/WHATEVER", "TO_ROOM": "r2"})
        a.send(msg(11, TEXT="no address"))
        b.send(msg(12, TO_ROOM="_command", TEXT="to everyone"))
        for x in clients.values():
            sync(x)
        d.send({"ID": "m13", "TYPE": "COMMAND/LEAVEROOM", "ROOM": "r1",
                "TO_ROOM": "_command"})  # fmt: skip
        sync(d)
        a.send(msg(14, TO_ROOM="r1", TEXT="after d left"))
        b.send({"ID": "m15", "TYPE": "COMMAND/REGISTER", "NAME": "bee",
                "TO_ROOM": "_command"})  # fmt: skip
        b.name = "bee"
        sync(b)
        a.send(msg(16, TO="bee", TEXT="renamed"))
        a.send(msg(17, TO="b", TEXT="old name"))
        for x in clients.values():  # everyone's messages have been routed
            sync(x)
        for x in clients.values():  # and everything written to x arrived
            sync(x)
        for x in clients.values():
            for token in copies[x.key]:
                x.wait_for_id(token)
        return {
            key: collections.Counter(map(_masked, x.received))
            for key, x in clients.items()
        }
    finally:
        # Nothing is routed any more: each DISCONNECT is handled alone.
        for x in clients.values():
            x.close()


class _QuietServer(ServerProcess):
    """A server process that never sees a connection before it is registered.

    ``ServerProcess.start`` waits for the port with a connection it closes at
    once; the stock server may still hold that unregistered connection when
    the first ``TO`` message is routed, and then drops the sender.  Here the
    port is tried until a connection is accepted (refused ones never reach
    the server), and that connection registers, and stays open until the
    server is killed.  The server is ready when a message to itself comes
    back.
    """

    def start(self) -> _QuietServer:
        self.launch()
        self.keeper = wait_for(self._connect, 20, f"server on port {self.port}")
        name = f"keeper-{uuid.uuid4().hex[:8]}"
        # No TO_ROOM and in no room: nothing is routed to or from it but this.
        self.keeper.sendall(
            frame({"ID": "k1", "TYPE": "COMMAND/REGISTER", "NAME": name})
            + frame({"ID": "k2", "TYPE": "DATA/CUSTOM", "TO": name})
        )
        got = b""
        while b'"k2"' not in got:
            chunk = self.keeper.recv(4096)
            assert chunk, "the server closed the keeper's connection"
            got += chunk
        return self

    def _connect(self) -> socket.socket | None:
        try:
            return socket.create_connection((HOST, self.port), timeout=30)
        except OSError:
            return None

    def kill(self) -> None:
        super().kill()
        self.keeper.close()


def test_same_traffic_same_deliveries_as_stock_swergio_server():
    stock = _QuietServer().start()
    try:
        expected = _script(stock.port)
    finally:
        stock.kill()
    ours_proc = _QuietServer(agg=True).start()
    try:
        got = _script(ours_proc.port)
    finally:
        ours_proc.kill()
    # not vacuous: the script exercised every rule on the stock server

    def n(key: str, text: str) -> int:
        return sum(k for m, k in expected[key].items() if text.encode() in m)

    assert n("b", '"m1"') == 1 and n("a", '"m1"') == 0
    assert n("b", '"m7"') == 2
    assert n("c", '"LOG/MESSAGES"') == 2 and n("c", '"m8"') == 1
    assert n("a", '"mallory"') == 1
    assert n("d", '"m14"') == 0 and n("b", '"m16"') == 1 and n("b", '"m17"') == 0
    assert n("dup1", '"m9"') == 1 and n("dup2", '"m9"') == 1
    assert n("a", '"COMMAND/REGISTER"') == 6  # every later client's, and b's rename
    for key in expected:
        assert got[key] == expected[key], key


# -- robustness, against the agg-server command ----------------------------------------


@pytest.fixture
def agg():
    servers: list[ServerProcess] = []

    def start(*args: str) -> ServerProcess:
        s = ServerProcess(None, *args, agg=True).start()
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.kill()


def _sender(port: int, name: str = "sender") -> RawPeer:
    return RawPeer(port, name)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize(
    ("bad", "logged"),
    [
        (frame(data("no-such-room", X=1)), "unknown TO_ROOM 'no-such-room'"),
        (frame({"ID": "1", "TO_ROOM": "r"}), "no TYPE"),
        (raw_frame(b"{not json"), "not valid JSON"),
        (raw_frame(b"[1, 2]"), "JSON list, not an object"),
        (raw_frame(b'"text"'), "JSON string, not an object"),
        (raw_frame(b"\xff\xfe{}"), "not valid JSON"),
        (raw_frame(b""), "not valid JSON"),
        (frame({"TYPE": "COMMAND/JOINROOM", "TO_ROOM": "r"}), "JOINROOM without ROOM"),
    ],
)
def test_bad_message_is_dropped_and_sender_keeps_its_connection(agg, bad, logged):
    server = agg()
    receiver = RawPeer(server.port, "receiver", rooms=("r",))
    sender = _sender(server.port)
    sender.send_raw(bad + frame(data("r", AFTER=1)))
    msg = receiver.read_until(lambda m: m.get("TO_ROOM") == "r" and "PROBE" not in m)
    assert msg["AFTER"] == 1 and msg["SENT_BY"] == "sender"
    wait_for(lambda: logged in server.read_log(), 5, f"{logged!r} in the log")
    assert "dropped a message from 'sender'" in server.read_log()
    receiver.close()
    sender.close()


def test_message_before_register_is_dropped_not_the_connection(agg):
    server = agg()
    receiver = RawPeer(server.port, "receiver", rooms=("r",))
    raw = socket.create_connection((HOST, server.port), timeout=10)
    raw.sendall(frame(data("r", EARLY=1)))
    raw.sendall(frame({"ID": "x", "TYPE": "COMMAND/REGISTER", "NAME": "late"}))
    raw.sendall(frame(data("r", LATE=1)))
    msg = receiver.read_until(lambda m: m.get("TO_ROOM") == "r" and "PROBE" not in m)
    assert msg.get("LATE") == 1 and msg["SENT_BY"] == "late"
    assert "before REGISTER" in server.read_log()
    raw.close()
    receiver.close()


def test_peer_closing_mid_frame_does_not_spin(agg):
    server = agg()
    receiver = RawPeer(server.port, "receiver", rooms=("r",))
    half = _sender(server.port, "half")
    half.send_raw(b"100       {partial")
    half.sock.shutdown(socket.SHUT_WR)
    wait_for(lambda: "middle of a frame" in server.read_log(), 5, "the log line")
    cpu0 = _cpu_seconds(server.proc.pid)
    time.sleep(1.0)
    assert _cpu_seconds(server.proc.pid) - cpu0 < 0.3  # idle, not spinning
    other = _sender(server.port, "other")
    other.send(data("r", STILL=1))
    assert receiver.read_until(lambda m: "STILL" in m)["SENT_BY"] == "other"
    for p in (half, other, receiver):
        p.close()


def test_oversized_frame_is_skipped_and_the_stream_stays_in_step(agg):
    server = agg("--max-frame-bytes", "1000")
    receiver = RawPeer(server.port, "receiver", rooms=("r",))
    sender = _sender(server.port)
    big = frame(data("r", PAD="x" * 5000))
    # one oversized frame in pieces, then a normal one right behind it
    sender.send_raw(big[:300])
    time.sleep(0.1)
    sender.send_raw(big[300:] + frame(data("r", AFTER=1)))
    msg = receiver.read_until(lambda m: m.get("TO_ROOM") == "r" and "PROBE" not in m)
    assert msg == {**msg, "AFTER": 1} and "PAD" not in msg
    assert "over the 1000-byte limit" in server.read_log()
    receiver.close()
    sender.close()


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_large_frame_is_routed_and_an_announced_one_costs_nothing(agg):
    server = agg()
    receiver = RawPeer(server.port, "receiver", rooms=("r",))
    liar = _sender(server.port, "liar")
    before = _rss_kb(server.proc.pid)
    liar.send_raw(b"60000000  {")  # announces 60 MB, sends one byte
    time.sleep(0.3)
    assert _rss_kb(server.proc.pid) - before < 10_000  # nothing preallocated
    # a stock client's 20 MB message (no SENT_BY) reaches a stock client intact
    weights = list(range(2_000_000))
    big_sender = Client("evolution", HOST, server.port)
    reader = Client("model", HOST, server.port)
    reader.join_room("evolution")
    reader.client.settimeout(10)
    receiver.read_until(lambda m: m.get("TYPE") == "COMMAND/JOINROOM")
    time.sleep(0.2)
    big_sender.send(data("evolution", CMD="SET", WEIGHTS=weights))
    msg = reader.receive()
    while msg is not False and msg.get("CMD") != "SET":
        msg = reader.receive()
    assert msg and msg["WEIGHTS"] == weights and msg["SENT_BY"] == "evolution"
    for c in (big_sender, reader):
        c.close()
    liar.close()
    receiver.close()


def test_a_client_that_stops_reading_is_dropped_and_others_keep_flowing(agg):
    # The limit is well above what a busy but reading client lags behind, and
    # the flood well above what the kernel buffers for the stuck one (4 MB).
    server = agg("--max-queue-bytes", "2000000")
    # a member of the room that never reads, with a small receive buffer
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect((HOST, server.port))
    stuck.sendall(
        frame({"ID": "1", "TYPE": "COMMAND/REGISTER", "NAME": "stuck"})
        + frame({"ID": "2", "TYPE": "COMMAND/JOINROOM", "ROOM": "r"})
    )
    reader = RawPeer(server.port, "reader", rooms=("r",))
    sender = _sender(server.port)
    n, pad = 8000, "x" * 1500
    got: list[dict] = []
    thread = threading.Thread(
        target=lambda: got.append(reader.read_until(lambda m: m.get("I") == n - 1, 30))
    )
    thread.start()  # the reader reads while the sender floods
    started = time.monotonic()
    for i in range(n):
        sender.send(data("r", I=i, PAD=pad))
    thread.join(40)
    assert got and got[0]["SENT_BY"] == "sender"
    print(f"{n} x 1.5 kB through, one member stuck: {time.monotonic() - started:.2f} s")
    wait_for(
        lambda: "--max-queue-bytes" in server.read_log(), 10, "the slow client dropped"
    )
    dropped = [ln for ln in server.read_log().splitlines() if "--max-queue-bytes" in ln]
    assert len(dropped) == 1 and "'stuck'" in dropped[0]
    stuck.close()
    reader.close()
    sender.close()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_closes_every_connection_and_exits_0_within_5_s(agg, sig):
    server = agg()
    peers = [RawPeer(server.port, f"p{i}", rooms=("r",)) for i in range(3)]
    stock = Client("stock", HOST, server.port)
    started = time.monotonic()
    os.kill(server.proc.pid, sig)
    assert server.proc.wait(5) == 0
    assert time.monotonic() - started < 5
    for p in peers:
        p.sock.settimeout(5)
        with contextlib.suppress(ConnectionResetError):
            while p.sock.recv(65536):
                pass  # reads the rest, then EOF: the server closed it
        p.close()
    stock.client.close()
    assert "Traceback" not in server.read_log()


def test_overwrite_sent_by_stops_impersonation(agg):
    server = agg("--overwrite-sent-by")
    receiver = RawPeer(server.port, "receiver", rooms=("r",))
    sender = _sender(server.port, "honest")
    sender.send(data("r", SENT_BY="receiver", X=1))
    msg = receiver.read_until(lambda m: m.get("X") == 1)
    assert msg["SENT_BY"] == "honest"
    receiver.close()
    sender.close()


def test_stats_line_and_no_line_per_message(agg):
    server = agg("--log-level", "INFO", "--stats-interval", "0.2")
    receiver = RawPeer(server.port, "receiver", rooms=("r",))
    sender = _sender(server.port)
    for i in range(200):
        sender.send(data("r", I=i))
    receiver.read_until(lambda m: m.get("I") == 199)
    wait_for(lambda: "frames_in=" in server.read_log(), 5, "a stats line")
    log = server.read_log()
    line = next(ln for ln in log.splitlines() if "stats:" in ln)
    for word in ("clients=", "rooms=", "frames_in=", "frames_out=", "bytes_in=",
                 "bytes_out=", "dropped="):  # fmt: skip
        assert word in line
    assert len(log.splitlines()) < 60  # a few lines, not one per message
    receiver.close()
    sender.close()


# -- in-process: socket options, stop ------------------------------------------------


def test_accepted_sockets_have_nodelay_and_the_server_stops_fast():
    server = AggServer(HOST, 0)
    thread = server.serve_in_thread()
    client = Client("a", *server.address)
    wait_for(lambda: server.clients == 1, 5, "the connection")
    (conn,) = server._conns.values()
    assert conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    started = time.monotonic()
    server.stop()
    thread.join(5)
    assert not thread.is_alive() and time.monotonic() - started < 2
    client.client.settimeout(5)
    with contextlib.suppress(ConnectionResetError):
        assert client.client.recv(100) == b""  # closed by the server
    client.client.close()
    with pytest.raises(RuntimeError, match="stopped"):
        server.start()


def test_bytes_out_of_step_are_dropped_and_the_connection_reads_on(agg):
    # A header that is not a length: the frames before it are routed, the
    # bytes up to the next frame are dropped with a warning, and the same
    # connection keeps working (the stream reads on from the next frame).
    server = agg()
    receiver = RawPeer(server.port, "receiver", rooms=("r",))
    sender = _sender(server.port, "breaker")
    sender.send_raw(frame(data("r", FIRST=1)) + b"garbage!! {}")
    assert receiver.read_until(lambda m: "FIRST" in m)["SENT_BY"] == "breaker"
    wait_for(lambda: "lost the frame boundaries" in server.read_log(), 5, "the log")
    sender.send(data("r", AFTER=1))
    assert receiver.read_until(lambda m: "AFTER" in m)["SENT_BY"] == "breaker"
    other = _sender(server.port, "other")
    other.send(data("r", STILL=1))
    assert receiver.read_until(lambda m: "STILL" in m)["SENT_BY"] == "other"
    for p in (sender, other, receiver):
        p.close()


def test_every_write_starts_a_frame_and_several_only_within_one_segment():
    # swergio's client reads a header with one recv(): a write that the kernel
    # cuts short must never end inside a header (see transport/server.py's docstring).
    from ensemble_agg.protocol.framing import FrameDecoder
    from ensemble_agg.transport.server import _Conn

    with socket.socket() as listener:
        listener.bind((HOST, 0))
        listener.listen()
        client = socket.create_connection(listener.getsockname())
        sock, _ = listener.accept()
        conn = _Conn(1, sock, "peer", FrameDecoder("utf-8", 10, 1 << 20))
        small = [frame(data("r", I=i)) for i in range(200)]
        conn.out.extend(small)
        batch = AggServer._next_write(conn)
        assert 1 < len(batch) and sum(map(len, batch)) <= conn.batch_limit
        assert batch == small[: len(batch)]
        conn.out.clear()
        big = frame(data("r", PAD="x" * (2 * conn.batch_limit)))
        conn.out.extend([big, *small])
        assert AggServer._next_write(conn) == [big]  # alone: cut only in its body
        conn.out[0] = memoryview(big)[100:]
        assert AggServer._next_write(conn) == [conn.out[0]]  # the rest, alone
        client.close()
        sock.close()


def test_without_quickack_it_says_once_that_it_runs_slower(monkeypatch, caplog):
    import ensemble_agg.transport.server as server_module

    monkeypatch.setattr(server_module, "_QUICKACK", None)
    server = AggServer(HOST, 0)
    with caplog.at_level("INFO", logger="ensemble_agg.transport.server"):
        server.serve_in_thread()
        a = Client("a", *server.address)
        b = Client("b", *server.address)
        b.join_room("r")
        b.client.settimeout(0.5)  # receive() gives False on a timeout
        deadline, msg = time.monotonic() + 10, None
        while msg is None and time.monotonic() < deadline:
            a.send(data("r", X=1))  # again until b's join has been handled
            got = b.receive()
            while got is not False and got.get("TO_ROOM") != "r":
                got = b.receive()
            msg = got or None
        assert msg is not None and msg["X"] == 1  # still routes
        server.stop()
        assert server.wait_stopped(5)
        a.client.close()
        b.client.close()
    warnings = [r for r in caplog.records if "TCP_QUICKACK" in r.getMessage()]
    assert len(warnings) == 1 and "slower" in warnings[0].getMessage()


def test_peer_strings_are_cut_short_in_log_lines(agg):
    # (names that long are refused by default: allow them, to see them logged)
    server = agg("--max-name-chars", "20000")
    receiver = RawPeer(server.port, "receiver", rooms=("r",))
    sender = _sender(server.port, "n" * 10_000)
    sender.send(data("r" * 10_000, X=1))
    sender.send({"ID": "2", "TYPE": "COMMAND/JOINROOM", "ROOM": ["x" * 10_000]})
    sender.send(data("r", AFTER=1))
    receiver.read_until(lambda m: "AFTER" in m)
    wait_for(lambda: server.read_log().count("dropped a message") >= 2, 5, "two lines")
    lines = [ln for ln in server.read_log().splitlines() if "dropped a message" in ln]
    assert all(len(line) < 400 for line in lines), [len(ln) for ln in lines]
    receiver.close()
    sender.close()


def _read_exactly(sock: socket.socket, n: int, timeout: float = 10.0) -> bytes:
    got = b""
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            got += sock.recv(n - len(got))
    return got


def test_one_frame_to_a_socket_with_room_is_one_send_and_a_cut_one_waits_whole():
    # The paced case's short path in _flush: one whole frame and a socket
    # with room go out in one send; a frame the socket cannot take whole is
    # cut after its first segment and its rest waits for write interest.
    from ensemble_agg.protocol.framing import FrameDecoder
    from ensemble_agg.transport.server import _Conn

    server = AggServer(HOST, 0)
    with socket.socket() as listener:
        listener.bind((HOST, 0))
        listener.listen()
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect(listener.getsockname())
        client.settimeout(0.2)
        sock, _ = listener.accept()
        sock.setblocking(False)
        conn = _Conn(1, sock, "peer", FrameDecoder("utf-8", 10, 1 << 20))
        server._selector.register(sock, 1, conn)  # EVENT_READ, as _accept does
        try:
            small = frame(data("r", I=1))
            server._enqueue(conn, small)
            server._flush(conn)
            assert not conn.out and conn.out_bytes == 0 and not conn.writing
            assert _read_exactly(client, len(small)) == small
            big = frame(data("r", PAD="x" * (8 << 20)))  # more than the buffers hold
            server._enqueue(conn, big)
            server._flush(conn)
            assert conn.writing and len(conn.out) == 1
            assert type(conn.out[0]) is memoryview
            assert conn.out_bytes == len(conn.out[0]) < len(big)
            server._enqueue(conn, small)  # queued behind the rest, not sent now
            got = b""
            deadline = time.monotonic() + 30
            while len(got) < len(big) + len(small) and time.monotonic() < deadline:
                server._flush(conn)
                with contextlib.suppress(TimeoutError):
                    got += client.recv(1 << 20)
            assert got == big + small
            assert not conn.out and conn.out_bytes == 0 and not conn.writing
        finally:
            client.close()
            sock.close()
            server._shutdown()


def test_recorder_counts_rooms_drops_and_gauges():
    """agg-server --http's recorder, in-process: frames by room, drops by reason."""
    from ensemble_agg.observe import ServerRecorder

    from ..swergio_helpers import RawPeer, data, raw_frame, wait_for

    rec = ServerRecorder(publish_interval=0.05)
    server = AggServer("127.0.0.1", 0, enable_logging=False, recorder=rec)
    thread = server.serve_in_thread()
    port = server.address[1]
    a = b = None
    try:
        a = RawPeer(port, "a", rooms=("chat",))
        b = RawPeer(port, "b")
        for i in range(5):
            b.send(data("chat", N=i))
        b.send_raw(raw_frame(b"not json"))
        a.read_until(lambda m: m.get("N") == 4)

        def settled():
            snap = rec.latest()
            rooms = {r["room"]: r for r in snap["traffic"]} if snap else {}
            chat = rooms.get("chat", {})
            done = chat.get("frames_out", 0) >= 5 and snap["dropped"]
            return done and snap

        snap = wait_for(settled, 10, "the chat frames and the drop in a snapshot")
        chat = next(r for r in snap["traffic"] if r["room"] == "chat")
        assert chat["frames_in"] >= 5 and chat["bytes_out"] > 0
        assert snap["dropped"] == {"undecodable": 1}
        assert snap["clients"] >= 2 and snap["registered_names"] >= 2
        assert {"room": "chat", "members": 1} in snap["room_members"]
        assert snap["health"] == {"ok": True, "reason": "accepting"}
    finally:
        for peer in (a, b):
            if peer is not None:
                peer.close()
        server.stop()
        thread.join(10)
