"""agg-client against hostile peers and servers, end to end.

Each test names the item of the hostile-input review it covers.  agg-client
runs in a subprocess against a real swergio server on 127.0.0.1, or against
a hand-made server socket where the test needs a server that misbehaves.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import socket
import stat
import threading
import time
from pathlib import Path

import pytest

from ..swergio_helpers import (
    HOST,
    MODELS,
    RawPeer,
    data,
    frame,
    logits_msg,
    raw_frame,
    round_logits,
    wait_for,
)


def _round(peer: RawPeer, env: RawPeer, r: int, models=MODELS) -> dict:
    for i, model in enumerate(models):
        peer.send(logits_msg(model, round_logits(r, i)))
    return env.read_until(lambda m: "ACTION" in m, timeout=15)


def _vm_hwm_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(x for x in status.splitlines() if x.startswith("VmHWM"))
    return int(line.split()[1])


# -- items 1 and 2: values that crash the math or the encoder ------------------


def test_huge_integers_and_deep_nesting_are_dropped_not_fatal(server, agg):
    proc = agg(server.port, "--step-timeout", "5")
    peer = RawPeer(server.port, "models")
    env = RawPeer(server.port, "environment", rooms=("action",))
    # item 1: a 310-digit integer, and values that fit a float but whose sum
    # does not, submitted before the rest of the round
    peer.send_raw(
        raw_frame(
            json.dumps(logits_msg(MODELS[0], [0.0, 0.0]))
            .replace("[0.0, 0.0]", "[" + "9" * 310 + ", 1]")
            .encode()
        )
    )
    peer.send(logits_msg(MODELS[1], [-(2**63), 10**308]))
    for i, model in enumerate(MODELS):
        if i != 1:
            peer.send(logits_msg(model, round_logits(0, i)))
    msg = env.read_until(lambda m: "ACTION" in m, timeout=15)
    assert msg["ACTION"][0] in (0, 1)
    # item 2: a ROOT_ID of 990 nested lists; then a frame of 100,000 '['
    deep = "[" * 990 + "]" * 990
    body = json.dumps(logits_msg(MODELS[0], [0.1, 0.2])).replace(
        '"ID"', f'"ROOT_ID": {deep}, "ID"'
    )
    peer.send_raw(raw_frame(body.encode()))
    peer.send_raw(raw_frame(b"[" * 100_000))  # the stock server forwards it as is
    for i, model in enumerate(MODELS[1:], start=1):
        peer.send(logits_msg(model, round_logits(1, i)))
    msg = env.read_until(lambda m: "ACTION" in m, timeout=15)
    assert "ROOT_ID" not in msg
    log = proc.log
    assert "too large for a float" in log
    assert "Traceback" not in log and proc.proc.poll() is None


def test_huge_integer_with_step_timeout_early_close(server, agg):
    proc = agg(server.port, "--step-timeout", "0.3")
    peer = RawPeer(server.port, "models")
    env = RawPeer(server.port, "environment", rooms=("action",))
    peer.send(logits_msg(MODELS[0], [0.5, 0.25]))
    peer.send_raw(
        raw_frame(
            json.dumps(logits_msg(MODELS[1], [0.0, 0.0]))
            .replace("[0.0, 0.0]", "[1, " + "9" * 400 + "]")
            .encode()
        )
    )
    msg = env.read_until(lambda m: "ACTION" in m, timeout=10)  # closed early
    assert msg["ACTION"][0] in (0, 1)
    proc.wait_log("closed a round after")
    assert "Traceback" not in proc.log and proc.proc.poll() is None


# -- items 3, 4, 5 and 8: large frames, framing, memory, failed resends------------------------


# The stock server needs minutes to route a frame of tens of MB (it joins
# the chunks it reads one by one): these tests route through agg-server.


def test_24_mb_evolution_set_passes_and_rounds_go_on(agg_server, agg):
    server = agg_server
    proc = agg(server.port)
    peer = RawPeer(server.port, "models")
    env = RawPeer(server.port, "environment", rooms=("action",))
    evo = RawPeer(server.port, "evolution", rooms=("evolution",))
    weights = {m: [0.123456789012] * 75_000 for m in MODELS}  # ~24 MB of JSON
    big = frame(data("evolution", CMD="SET", WEIGHTS=weights))
    assert len(big) > 24e6
    evo.sock.settimeout(60)
    hwm_before = _vm_hwm_kb(proc.proc.pid)
    for r in range(3):
        evo.send_raw(big)
        assert _round(peer, env, r)["ACTION"][0] in (0, 1)
    evo.send(data("evolution", CMD="GET"))
    tally = evo.read_until(lambda m: "CONTRIBUTION" in m, timeout=30)["CONTRIBUTION"]
    assert sorted(tally) == MODELS
    growth_mb = (_vm_hwm_kb(proc.proc.pid) - hwm_before) / 1024
    assert growth_mb < 10, growth_mb  # passed by unread, never buffered
    warnings = [x for x in proc.log.splitlines() if "WARNING" in x and "probe" not in x]
    assert warnings == []


def test_frames_up_to_the_limit_keep_the_stream_in_step(agg_server, agg):
    # 24 MB frames under a 32 MiB limit are read whole, then passed by.
    server = agg_server
    proc = agg(server.port, "--max-frame-bytes", str(32 << 20))
    peer = RawPeer(server.port, "models")
    env = RawPeer(server.port, "environment", rooms=("action",))
    evo = RawPeer(server.port, "evolution", rooms=("evolution",))
    big = frame(data("evolution", CMD="SET", WEIGHTS=[0.5] * 4_000_000))
    evo.sock.settimeout(60)
    for r in range(2):
        evo.send_raw(big)
        assert _round(peer, env, r)["ACTION"][0] in (0, 1)
    assert proc.proc.poll() is None


def test_transport_reads_past_64_chunks_without_losing_one():
    # item 4: a read burst is bounded (64 reads of 256 KiB), and the last read
    # of a burst used to be dropped, so frames over ~16 MB broke the stream.
    from ensemble_agg.transport import TunedClient

    with _RawServer() as srv:
        client = TunedClient("t", HOST, srv.port, max_body=32 << 20)
        conn = srv.accept()
        big = frame(data("evolution", CMD="SET", WEIGHTS=[0.5] * 5_000_000))
        assert len(big) > 16 << 20
        pusher = threading.Thread(
            target=_send_quietly, args=(conn, big * 2 + frame({"N": 1})), daemon=True
        )
        pusher.start()
        got: list = []
        deadline = time.monotonic() + 30
        while not any(f.message == {"N": 1} for f in got):
            assert time.monotonic() < deadline, got
            got += client.poll(0.2)
        assert [f.message.get("CMD", "N") for f in got] == ["SET", "SET", "N"]
        client.close()


@pytest.mark.parametrize("limit", [None, 20 << 20])
def test_memory_per_frame_is_bounded(agg, limit):
    # item 8: a 15 MB frame of {} and a slowly delivered 57 MB frame, pushed
    # straight at agg-client by a hand-made server.  With the default limit
    # (1 MiB) both pass by unread; under a raised limit the frame of {} is
    # refused before it is decoded, and the 57 MB one passes by unread.
    args = () if limit is None else ("--max-frame-bytes", str(limit))
    with _RawServer() as srv:
        proc = agg(srv.port, "--models", "1", *args, wait=False)
        conn = srv.accept()
        proc.wait_log("connected to")
        hwm_before = _vm_hwm_kb(proc.proc.pid)
        empties = b'{"TO_ROOM": "logits", "TYPE": "DATA/CUSTOM", "LOGITS": ['
        empties += b"{}," * 5_000_000 + b"{}]}"
        conn.sendall(raw_frame(empties))
        slow = frame(logits_msg("slow", [0.25] * 14_000_000))  # ~57 MB
        for i in range(0, len(slow), 4 << 20):
            conn.sendall(slow[i : i + (4 << 20)])
            time.sleep(0.05)
        conn.sendall(frame(logits_msg("m00", [1.0, 0.0], True)))
        assert srv.read_frames(conn, lambda m: "ACTION" in m, 30)["ACTION"] == [0]
        growth_mb = (_vm_hwm_kb(proc.proc.pid) - hwm_before) / 1024
        frame_mb = len(empties) / 2**20
        # a few copies of a frame's bytes at most (it was 54 x its size)
        assert growth_mb < (5 if limit is None else 3 * frame_mb), growth_mb
        if limit is not None:
            assert "objects and lists; refused unparsed" in proc.log
        assert proc.proc.poll() is None


def test_bytes_out_of_step_lose_nothing_before_or_after(agg):
    # item 5: 1000 valid one-model rounds, a header that is not a length, and
    # 1000 more, in one write from a hand-made server: every round counts,
    # the stream reads on from the next frame, and nothing reconnects.
    with _RawServer() as srv:
        proc = agg(srv.port, "--models", "1", wait=False)
        conn = srv.accept()
        proc.wait_log("connected to")
        rounds = b"".join(
            frame(logits_msg("m00", [0.0, 3.0], True)) for _ in range(1000)
        )
        conn.sendall(rounds + b"abcdefghij{}" + rounds)
        proc.wait_log("lost the frame boundaries")
        actions = []
        deadline = time.monotonic() + 20
        while len(actions) < 2000 and time.monotonic() < deadline:
            actions += [m for m in _frames_after(conn, 0.2) if "ACTION" in m]
        assert len(actions) == 2000
        log = _stats(proc)
        assert "rounds=2000" in log and "reconnects=0" in log
        assert "Traceback" not in log


def test_failed_resends_after_a_reconnect_are_retried(agg):
    # item 3: a server that stops reading makes agg-client's sends time out,
    # so its ACTIONs wait for the reconnect; the next connections are reset
    # while it registers and re-sends them (a send fails there); the
    # connection after that gets them.  Nothing escapes, nothing is lost
    # but what the reset connections swallowed.
    with _RawServer(rcvbuf=4096) as srv:
        proc = agg(srv.port, "--models", "1", wait=False)
        stuck = srv.accept()  # never read from
        proc.wait_log("connected to")
        burst = b"".join(
            frame(logits_msg("m00", [0.0, 3.0], True)) for _ in range(20_000)
        )
        threading.Thread(target=_send_quietly, args=(stuck, burst), daemon=True).start()
        proc.wait_log("connection to", timeout=30)  # its send gave up: lost
        _reset(stuck)
        for _ in range(2):
            _reset(srv.accept())
        conn = srv.accept()
        # Whether the reset connections swallowed the waiting ACTIONs or a
        # send failed on them is the kernel's timing; either way agg-client
        # goes on, and a new round on this connection gets its ACTION.
        conn.sendall(frame(logits_msg("m00", [3.0, 0.0], True)))
        actions = []
        deadline = time.monotonic() + 20
        while [0] not in actions and time.monotonic() < deadline:
            actions += [m["ACTION"] for m in _frames_after(conn, 0.2) if "ACTION" in m]
        assert [0] in actions
        log = _stats(proc)
        assert "Traceback" not in log and "internal_errors=0" in log
        assert int(re.findall(r"rounds=(\d+)", log)[-1]) > 1


def test_cut_short_headers_through_the_stock_server_cannot_stop_the_rounds(server, agg):
    # items 4 and 5, as a review found them: the stock server reads a header
    # with one recv(10) and forwards it as read when the message (or the one
    # before, which it reuses when a body does not decode) has SENT_BY.  A
    # header cut to "9" then reads as a 9 GB length, and one cut to "71" as
    # not a length at all.  Rounds must go on, with a warning, no reconnect.
    proc = agg(server.port)
    peer = RawPeer(server.port, "models")
    env = RawPeer(server.port, "environment", rooms=("action",))
    attacker = RawPeer(server.port, "attacker")
    attacker.send(data("logits", SENT_BY="x", NOTE="primes the reused fields"))
    for first, rest in ((b"9", b"099999999"), (b"71", b"x" * 71)):
        attacker.send_raw(first)
        time.sleep(0.3)  # the server's recv(10) returns the short header
        attacker.send_raw(rest)
        for r in range(3):
            assert _round(peer, env, r)["ACTION"][0] in (0, 1)
    log = _stats(proc)
    assert "reconnects=0" in log and "Traceback" not in log
    assert "lost the frame boundaries" in log or "starts inside it" in log


_PENDING: dict[socket.socket, bytes] = {}  # partial frames between reads


def _frames_after(conn: socket.socket, timeout: float) -> list[dict]:
    """The whole frames that arrive on ``conn`` within ``timeout``."""
    conn.settimeout(timeout)
    buf = _PENDING.get(conn, b"")
    try:
        chunk = conn.recv(1 << 20)
    except TimeoutError:
        chunk = b""
    out, _PENDING[conn] = _split_frames(buf + chunk)
    return out


def _stats(proc) -> str:
    proc.signal(signal.SIGTERM)
    proc.proc.wait(10)
    return proc.log


# -- item 6: a GET whose clearing cannot be written --------------------------------


def test_get_while_writes_fail_cannot_double_count(server, agg, tmp_path):
    state = tmp_path / "tally.json"
    proc = agg(server.port, "--state-file", str(state))
    peer = RawPeer(server.port, "models")
    env = RawPeer(server.port, "environment", rooms=("action",))
    evo = RawPeer(server.port, "evolution", rooms=("evolution",))
    for r in range(3):
        _round(peer, env, r)
    wait_for(
        lambda: sum(json.loads(state.read_text())["contributions"].values()) > 2.9,
        5,
        "the tally on disk",
    )
    # From now on every write of more than 16 bytes fails with EFBIG, as a full
    # disk fails them: a real failure of write(), no mock.
    resource.prlimit(proc.proc.pid, resource.RLIMIT_FSIZE, (16, 16))
    evo.send(data("evolution", CMD="GET"))
    reply = evo.read_until(lambda m: "CONTRIBUTION" in m)
    assert abs(sum(reply["CONTRIBUTION"].values()) - 3) < 1e-9
    # the stale tally is gone from disk, so a restart cannot count it again
    assert not state.exists() or reply.get("STATE_SAVED") is False
    # (The log says "cannot write state file" too, but under this limit the
    # log file cannot be written either.)
    proc.signal(signal.SIGKILL)
    proc.proc.wait(5)
    proc2 = agg(server.port, "--state-file", str(state))
    evo.send(data("evolution", CMD="GET"))
    assert evo.read_until(lambda m: "CONTRIBUTION" in m)["CONTRIBUTION"] == {}
    assert proc2.proc.poll() is None


# -- item 7: a server that accepts and closes at once ---------------------------


def test_accept_and_close_server_is_not_hammered(agg):
    with _RawServer() as srv:
        proc = agg(srv.port, wait=False)
        accepted = 0
        deadline = time.monotonic() + 5
        srv.sock.settimeout(0.2)
        while time.monotonic() < deadline:
            try:
                conn, _ = srv.sock.accept()
            except TimeoutError:
                continue
            accepted += 1
            conn.close()
        assert accepted <= 15, accepted
        assert proc.log.count("\n") < 60
        assert proc.proc.poll() is None


# -- item 9: peer strings in logs ---------------------------------------------------


def test_peer_values_are_cut_in_logs_and_floods_rate_limited(server, agg):
    proc = agg(server.port, "--stats-interval", "0.5")
    peer = RawPeer(server.port, "models")
    # (under the 1 MiB frame limit, so these are read and logged)
    peer.send(logits_msg("m00", "x") | {"SENT_BY": "S" * 900_000})
    peer.send(logits_msg("m00", [1.0]) | {"TYPE": "T" * 100_000})
    for i in range(2_000):
        peer.send(logits_msg(f"m{i}", []))

    def dropped() -> int:
        counts = re.findall(r"dropped=(\d+)", proc.log)
        return int(counts[-1]) if counts else 0

    wait_for(lambda: dropped() >= 2_002, 30, "2,002 drops in the stats line")
    log = proc.log
    assert "'SSSSSSSS" in log and "'TTTTTTTT" in log
    assert max(len(line) for line in log.splitlines()) < 1000
    suppressed = int(log.rsplit("warnings_suppressed=", 1)[1].split()[0])
    assert suppressed > 1000
    assert log.count("dropped a message") < 200


# -- items 10 and 11: the state file ----------------------------------------------


def test_state_file_write_does_not_follow_a_planted_symlink(server, agg, tmp_path):
    state = tmp_path / "tally.json"
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    for pid in range(os.getpid(), os.getpid() + 2000):  # the old predictable names
        (tmp_path / f".tally.json.{pid}.tmp").symlink_to(victim)
    proc = agg(server.port, "--state-file", str(state))
    peer = RawPeer(server.port, "models")
    env = RawPeer(server.port, "environment", rooms=("action",))
    _round(peer, env, 0)
    wait_for(lambda: json.loads(state.read_text())["contributions"], 5, "a save")
    assert victim.read_text() == "precious"
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert not state.is_symlink()
    assert proc.proc.poll() is None


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (
            b'{"format": "ensemble-agg-tally", "version": 1, "contributions": {"a": '
            + b"9" * 401
            + b"}}",
            "contribution of 'a'",
        ),
        (b"\xff\xfe not utf-8", "not UTF-8"),
        (b"[" * 100_000, "not valid JSON"),
    ],
)
def test_bad_state_file_exits_3_naming_it(server, agg, tmp_path, content, words):
    state = tmp_path / "tally.json"
    state.write_bytes(content)
    proc = agg(server.port, "--state-file", str(state), wait=False)
    assert proc.proc.wait(10) == 3
    lines = proc.log.strip().splitlines()
    assert len(lines) == 1 and str(state) in lines[0] and words in lines[0], lines
    assert state.read_bytes() == content


def test_state_file_that_is_a_directory_or_fifo_exits_3(server, agg, tmp_path):
    for kind in ("dir", "fifo"):
        state = tmp_path / f"tally-{kind}"
        state.mkdir() if kind == "dir" else os.mkfifo(state)
        proc = agg(server.port, "--state-file", str(state), wait=False)
        assert proc.proc.wait(10) == 3
        assert "not a regular file" in proc.log


# -- item 12: signals in every state ------------------------------------------------


def test_sigterm_while_a_send_is_blocked_exits_0_quickly_with_tally_saved(
    agg, tmp_path
):
    state = tmp_path / "tally.json"
    with _RawServer(rcvbuf=4096) as srv:
        proc = agg(srv.port, "--models", "1", "--state-file", str(state), wait=False)
        conn = srv.accept()  # never read from again: agg-client's sends block
        proc.wait_log("connected to")
        # 10,000 rounds, a GET (its reply cannot be sent either), 10,000 more
        rounds = [
            frame(logits_msg("m00", [0.0, float(i % 3)], True)) for i in range(10_000)
        ]
        burst = (
            b"".join(rounds) + frame(data("evolution", CMD="GET")) + b"".join(rounds)
        )
        threading.Thread(target=_send_quietly, args=(conn, burst), daemon=True).start()
        # The server reads nothing: once agg-client's send queue holds more
        # than a socket buffer, its next send blocks.
        wait_for(lambda: _tx_queued(srv.port) > 64_000, 20, "a full send queue")
        time.sleep(0.5)
        started = time.monotonic()
        proc.signal(signal.SIGTERM)
        assert proc.proc.wait(10) == 0
        assert time.monotonic() - started < 5
        saved = json.loads(state.read_text())["contributions"].get("m00", 0.0)
        assert "stopped by SIGTERM" in proc.log
        # Every aggregated round is on disk, or in a CONTRIBUTION that went
        # out: a GET reply that could not be sent went back into the tally.
        aggregated = int(re.findall(r"rounds=(\d+)", proc.log)[-1])
        delivered = sum(
            sum(m["CONTRIBUTION"].values())
            for m in _frames_in(conn)
            if "CONTRIBUTION" in m
        )
        assert aggregated > 0
        assert abs(saved + delivered - aggregated) < 1e-6, (
            saved,
            delivered,
            aggregated,
        )


def test_sighup_is_a_clean_stop(server, agg):
    proc = agg(server.port)
    proc.signal(signal.SIGHUP)
    assert proc.proc.wait(5) == 0
    assert "stopped by SIGHUP" in proc.log


# -- item 13: spoofing ---------------------------------------------------------------


def test_width_poisoning_with_actions_and_unlisted_ids(server, agg):
    proc = agg(server.port, "--actions", "2", "--step-timeout", "2")
    peer = RawPeer(server.port, "models")
    env = RawPeer(server.port, "environment", rooms=("action",))
    rogue = RawPeer(server.port, "rogue")
    rogue.send(logits_msg("rogue", [5.0]))  # one action: would fix the width
    assert _round(peer, env, 0)["ACTION"][0] in (0, 1)
    proc.wait_log("takes 2 actions")
    rogue.close()

    proc2 = agg(server.port, "--model-ids", ",".join(MODELS), "--name", "agg2")
    rogue = RawPeer(server.port, "rogue")
    rogue.send(logits_msg("rogue", [5.0, 1.0]))
    msg = _round(peer, env, 1)
    assert msg["ACTION"][0] in (0, 1)
    # (messages from different connections reach agg-client in any order)
    proc2.wait_log("'rogue' is not one of the 20 known model ids")


# -- helpers ----------------------------------------------------------------------------


class _RawServer:
    """A listening socket on 127.0.0.1 that a test drives by hand."""

    def __init__(self, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf is not None:  # inherited by accepted sockets
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind((HOST, 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []

    def __enter__(self) -> _RawServer:
        return self

    def __exit__(self, *exc: object) -> None:
        for conn in self.conns:
            conn.close()
        self.sock.close()

    def accept(self, timeout: float = 20) -> socket.socket:
        self.sock.settimeout(timeout)
        conn, _ = self.sock.accept()
        self.conns.append(conn)
        return conn

    @staticmethod
    def read_frames(conn: socket.socket, predicate, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        buf = b""
        while time.monotonic() < deadline:
            conn.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = conn.recv(1 << 16)
            except TimeoutError:
                break
            if not chunk:
                break
            buf += chunk
            while len(buf) >= 10 and len(buf) >= 10 + int(buf[:10]):
                n = int(buf[:10])
                msg = json.loads(buf[10 : 10 + n])
                buf = buf[10 + n :]
                if predicate(msg):
                    return msg
        raise AssertionError("no matching frame")


def _reset(conn: socket.socket) -> None:
    """Close with a TCP reset: the peer's next send fails at once."""
    conn.setsockopt(
        socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
    )
    conn.close()


def _send_quietly(conn: socket.socket, data: bytes) -> None:
    try:
        conn.settimeout(30)
        conn.sendall(data)
    except OSError:
        pass


def _frames_in(conn: socket.socket) -> list[dict]:
    """Every whole frame already waiting in ``conn``'s receive buffer."""
    conn.setblocking(False)
    buf = b""
    while True:
        try:
            chunk = conn.recv(1 << 20)
        except (BlockingIOError, OSError):
            break
        if not chunk:
            break
        buf += chunk
    return _split_frames(buf)[0]


def _split_frames(buf: bytes) -> tuple[list[dict], bytes]:
    """The whole frames at the start of ``buf``, and the bytes after them."""
    out = []
    while len(buf) >= 10 and len(buf) >= 10 + int(buf[:10]):
        n = int(buf[:10])
        out.append(json.loads(buf[10 : 10 + n]))
        buf = buf[10 + n :]
    return out, buf


def _tx_queued(port: int) -> int:
    """Bytes queued to send on connections to 127.0.0.1:``port`` (/proc/net/tcp)."""
    total = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[2].split(":")[1], 16) == port:
            total += int(fields[4].split(":")[0], 16)
    return total
