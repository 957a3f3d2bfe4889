"""Tests of ensemble_agg.transport.client against real swergio servers and clients."""

from __future__ import annotations

import contextlib
import socket
import struct
import time

import pytest
from swergio import Client

import ensemble_agg.transport.client as client_module
from ensemble_agg.protocol.framing import encode_frame
from ensemble_agg.transport import ConnectionLost, TunedClient, tune_client
from ensemble_agg.transport.server import AggServer

from ..swergio_helpers import ServerProcess, data, frame, raw_frame


@pytest.fixture
def server_in_thread():
    server = AggServer("127.0.0.1", 0, enable_logging=False)
    server.serve_in_thread()
    yield server
    server.stop()
    assert server.wait_stopped(5)


@pytest.fixture
def stock():
    s = ServerProcess().start()
    yield s
    s.kill()


def _deliver(sender, receiver: TunedClient, room: str, **fields) -> dict:
    """Send into ``room`` until ``receiver`` gets it (a join may take effect late)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        sender.send(data(room, **fields))
        with contextlib.suppress(AssertionError):
            return _next_in(receiver, room, timeout=0.3)
    raise AssertionError(f"nothing delivered in {room!r}")


def _next_in(client: TunedClient, room: str, timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for f in client.poll(0.05):
            if f.message and f.message.get("TO_ROOM") == room:
                return f.message
    raise AssertionError(f"nothing in {room!r}")


def test_tuned_client_talks_to_stock_server_and_stock_client(stock):
    tuned_c = TunedClient("tuned", "127.0.0.1", stock.port)
    plain = Client("plain", "127.0.0.1", stock.port)
    plain.client.settimeout(0.3)  # receive() gives False on a timeout
    plain.join_room("r")
    tuned_c.join_room("r")
    deadline, msg = time.monotonic() + 10, False
    while not msg and time.monotonic() < deadline:
        tuned_c.send(data("r", X=1))  # again until the joins have taken effect
        msg = plain.receive()
        while msg is not False and msg.get("TO_ROOM") != "r":
            msg = plain.receive()
    assert msg and msg["X"] == 1 and msg["SENT_BY"] == "tuned"
    assert _deliver(plain, tuned_c, "r", Y=2)["Y"] == 2
    tuned_c.close()
    plain.close()


def test_tuned_sockets_have_nodelay(server_in_thread):
    c = TunedClient("a", *server_in_thread.address)
    assert c.client.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    plain = tune_client(Client("b", *server_in_thread.address))
    assert plain.client.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    c.close()
    plain.close()


def test_poll_waits_in_one_recv_that_times_out_in_the_kernel(server_in_thread):
    c = TunedClient("a", *server_in_thread.address)
    c.poll(0.2)  # the REGISTER/JOINROOM echo, if any
    # A blocking socket: no Python timeout, so no poll() before each recv.
    assert c.client.gettimeout() is None
    for timeout in (0.05, 0.05, 0.12):
        recvs = c.io.recvs
        started = time.monotonic()
        assert c.poll(timeout) == []
        assert timeout * 0.9 <= time.monotonic() - started < timeout + 2.0
        assert c.io.recvs == recvs + 1  # one call per wait, timeout or not
        sec, usec = struct.unpack(
            "@ll", c.client.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16)
        )
        # (the kernel keeps it in clock ticks: a few ms off)
        assert sec + usec / 1e6 == pytest.approx(timeout, abs=0.011)
    # A timeout of 0 does not wait, and an empty socket is not a lost link.
    started = time.monotonic()
    assert c.poll(0) == []
    assert time.monotonic() - started < 1.0
    # A Python timeout set from outside is undone; poll's own timeout rules.
    c.client.settimeout(30)
    started = time.monotonic()
    assert c.poll(0.05) == []
    assert time.monotonic() - started < 10
    assert c.client.gettimeout() is None
    c.close()


def test_poll_still_delivers_and_sends_still_go_out(server_in_thread):
    a = TunedClient("a", *server_in_thread.address)
    b = TunedClient("b", *server_in_thread.address)
    b.join_room("r")
    for i in range(3):  # one wait per frame, each frame delivered whole
        assert _deliver(a, b, "r", N=i)["N"] == i
    a.close()
    b.close()


def _on_socketpair(client: TunedClient) -> socket.socket:
    """Re-point ``client`` at one end of a socket pair; return the other end.

    agg-server never forwards a bad frame, so the client's side of one
    is tested by writing the frames ourselves.
    """
    mine, theirs = socket.socketpair()
    client.client.close()
    client.client = mine
    return theirs


def test_receive_skips_bad_frames_instead_of_closing(server_in_thread):
    c = TunedClient("reader", *server_in_thread.address)
    peer = _on_socketpair(c)
    peer.sendall(
        raw_frame(b"{bad") + raw_frame(b"[1]") + frame({"TO_ROOM": "r", "OK": 1})
    )
    assert c.receive() == {"TO_ROOM": "r", "OK": 1}
    peer.close()
    assert c.receive() is False  # the connection ended: False, as in swergio


def test_half_closed_mid_frame_ends_instead_of_spinning(server_in_thread):
    c = TunedClient("reader", *server_in_thread.address)
    peer = _on_socketpair(c)
    peer.sendall(b"100       {partial")
    peer.shutdown(socket.SHUT_WR)
    started = time.monotonic()
    with pytest.raises(ConnectionLost, match="middle of a frame"):
        for _ in range(10):
            c.poll(1.0)
    assert time.monotonic() - started < 2.0
    peer.close()


def test_reconnect_rejoins_rooms(server_in_thread):
    c = TunedClient("x", *server_in_thread.address)
    c.join_room("r1")
    c.join_room("r2")
    c.reconnect()
    assert c.rooms == {"_command", "r1", "r2"}
    other = TunedClient("y", *server_in_thread.address)
    assert _deliver(other, c, "r2", Z=3)["Z"] == 3
    c.close()
    other.close()


def test_tuned_clients_through_agg_server(server_in_thread):
    a = TunedClient("a", *server_in_thread.address)
    b = TunedClient("b", *server_in_thread.address)
    b.join_room("room")
    assert _deliver(a, b, "room", V=1)["SENT_BY"] == "a"
    a.send({"ID": "d", "TYPE": "DATA/CUSTOM", "TO": "b", "V": 2})
    deadline = time.monotonic() + 5
    got = None
    while got is None and time.monotonic() < deadline:
        for f in b.poll(0.05):
            if f.message and f.message.get("TO") == "b":
                got = f.message
    assert got and got["V"] == 2
    # a bad message does not cost the sender its connection
    a.send(data("no-such-room", V=3))
    a.send(data("room", V=4))
    assert _next_in(b, "room")["V"] == 4
    a.close()
    b.close()


def test_a_full_read_then_a_quiet_socket_is_not_a_lost_link(monkeypatch):
    # poll() reads on while a read fills its whole buffer; when the rest of a
    # large frame is slow to come, that extra read finds nothing, which must
    # not count as a broken connection (it did: TimeoutError from CPython).
    # A small read size makes "a read that fills its buffer" certain.
    monkeypatch.setattr(client_module, "_RECV_SIZE", 4096)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = TunedClient("c", *listener.getsockname()[:2])
        peer, _ = listener.accept()
        with peer:
            wire = encode_frame(data("r", PAD="x" * (1 << 19)), "utf-8", 10)
            peer.sendall(wire[:8192])  # two full reads of the client's
            time.sleep(0.3)  # let it all arrive before the client reads
            assert client.poll(0.1) == []
            peer.sendall(wire[8192:])
            deadline = time.monotonic() + 10
            frames = []
            while not frames and time.monotonic() < deadline:
                frames = client.poll(0.2)
            assert [f.message["PAD"][:3] for f in frames] == ["xxx"]
            client.client.close()
