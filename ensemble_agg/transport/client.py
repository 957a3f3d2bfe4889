"""swergio's client side without stalls: a tuned Client and a helper.

swergio's stock ``Client.send`` writes a frame's header and body with two
``send()`` calls on a socket without ``TCP_NODELAY``; the stock ``Server``
does the same with two ``sendall()`` calls.  Nagle's algorithm then holds
the body back until the header is acknowledged, and the peer's delayed ACK
makes that about 40 ms per hop.  The client here writes each frame with one
``sendall`` on a ``TCP_NODELAY`` socket.  The bytes on the wire are exactly
swergio's, so tuned and stock components mix freely.  The server side is
agg-server (:class:`~ensemble_agg.transport.server.AggServer`), which
removes the stall for stock clients too.

- :class:`TunedClient`: a drop-in ``swergio.Client`` subclass that also reads
  robustly (a bad frame is logged and skipped instead of closing the
  connection; a peer that closes mid-frame ends the read instead of spinning),
  waits with one system call per wake-up, and reconnects.
- :func:`tune_client`: the latency fix for a stock client you already have.

Examples
--------
>>> from ensemble_agg.transport import TunedClient
>>> from ensemble_agg.transport.server import AggServer
>>> server = AggServer("127.0.0.1", 0)
>>> _ = server.serve_in_thread()
>>> host, port = server.address
>>> a = TunedClient("a", host, port)
>>> b = TunedClient("b", host, port)
>>> b.join_room("chat")
>>> def first(client, wanted):  # at most 50 polls of 0.1 s
...     for _ in range(50):
...         for f in client.poll(0.1):
...             if wanted(f.message):
...                 return f.message
>>> # agg-server handles a connection's frames in order: once b's message
>>> # to itself is back, its join has taken effect.
>>> b.send({"ID": "sync", "TYPE": "DATA/CUSTOM", "TO": "b"})
>>> first(b, lambda m: m.get("ID") == "sync")["SENT_BY"]
'b'
>>> a.send({"ID": "1", "TYPE": "DATA/CUSTOM", "TO_ROOM": "chat", "TEXT": "hi"})
>>> chat = first(b, lambda m: m.get("TO_ROOM") == "chat")  # after a's REGISTER...
>>> chat["TEXT"], chat["SENT_BY"]
('hi', 'a')
>>> a.close(); b.close(); server.stop()
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import select
import socket
import struct
import threading
import time
import types
import uuid
from collections.abc import Callable
from typing import Any

from swergio import Client

from ..errors import ConnectionLost
from ..protocol.framing import Frame, FrameDecoder, encode_frame
from ..protocol.message_types import (
    COMMAND_DISCONNECT,
)
from ..util.ratelimit import RateLimiter

__all__ = ["ConnectionLost", "IOCounters", "TunedClient", "tune_client"]

logger = logging.getLogger(__name__)

#: How long a send may make no progress before the link counts as dead.
SEND_TIMEOUT = 10.0
#: How often a blocked send looks at the stop flag.
SEND_SLICE = 0.1
#: How long :meth:`TunedClient.close` waits to send DISCONNECT.
CLOSE_TIMEOUT = 0.5
#: Default cap on one frame's body; longer frames are skipped unread.
DEFAULT_MAX_BODY = 64 << 20


@dataclasses.dataclass
class IOCounters:
    """What a :class:`TunedClient` did on its sockets."""

    recvs: int = 0
    sends: int = 0
    wakeups: int = 0
    frames: int = 0

    @property
    def frames_per_wakeup(self) -> float:
        """Frames decoded per read that returned any."""
        return self.frames / self.wakeups if self.wakeups else 0.0


def _nodelay(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _send_frame(self: Client, message: dict[str, Any]) -> None:
    self.client.sendall(encode_frame(message, self.format, self.header_length))


_RECV_SIZE = 1 << 18
_RECV_BURST = 64  # reads per poll() at most, each of them decoded
# struct timeval, as SO_RCVTIMEO takes it on Linux.
_TIMEVAL = struct.Struct("@ll")


def _recv_timeout(sock: socket.socket, timeout: float | None) -> None:
    """Make a blocking ``recv`` give up after ``timeout`` seconds (SO_RCVTIMEO).

    The wait happens inside the one system call (``EAGAIN`` when it ends),
    where a Python socket timeout costs a ``poll`` before every call.
    ``None`` waits for ever; a positive ``timeout`` is at least 1 us, since 0
    would also mean for ever.
    """
    if timeout is None:
        seconds, micros = 0, 0
    else:
        seconds, micros = divmod(max(1, round(timeout * 1e6)), 1_000_000)
    sock.setsockopt(
        socket.SOL_SOCKET, socket.SO_RCVTIMEO, _TIMEVAL.pack(seconds, micros)
    )


def tune_client(client: Client) -> Client:
    """Remove the Nagle stall from an existing stock ``swergio.Client``.

    Sets ``TCP_NODELAY`` on its socket and makes its ``send`` write each
    frame with one ``sendall``.  The wire format is unchanged.

    Parameters
    ----------
    client : swergio.Client
        A connected client; it is changed in place.

    Returns
    -------
    swergio.Client
        The same client, for chaining.

    Examples
    --------
    >>> from swergio import Client
    >>> from ensemble_agg.transport import tune_client
    >>> from ensemble_agg.transport.server import AggServer
    >>> server = AggServer("127.0.0.1", 0)
    >>> _ = server.serve_in_thread()
    >>> client = tune_client(Client("env", *server.address))
    >>> client.send({"ID": "1", "TYPE": "DATA/CUSTOM", "TO_ROOM": "_command"})
    >>> client.close(); server.stop()
    """
    _nodelay(client.client)
    client.send = types.MethodType(_send_frame, client)
    return client


class TunedClient(Client):
    """A ``swergio.Client`` that writes one frame per ``sendall`` and reads robustly.

    Parameters are those of ``swergio.Client`` (``name, server, port,
    format, header_length, **kwargs``), plus:

    max_body : int, optional
        Frames with a longer body are skipped unread (counted in :attr:`skipped`).  Default 64 MiB.
    connect_timeout : float, optional
        Timeout of one connection attempt, in seconds.  Default 5.

    Notes
    -----
    Differences from the stock client, all on the reading side: a frame that
    is not valid JSON or not a JSON object is logged and skipped (the stock
    ``receive`` returns ``False`` and ``listen`` then closes the connection);
    a peer that closes in the middle of a frame ends the read (the stock
    loop spins on ``recv() == b''``); :meth:`poll` reads with a timeout; and
    :meth:`reconnect` opens a new connection, registers and joins the same
    rooms again.
    """

    client: socket.socket
    rooms: set[str]

    def __init__(
        self,
        name: str,
        server: str,
        port: int,
        format: str = "utf-8",
        header_length: int = 10,
        *,
        max_body: int = DEFAULT_MAX_BODY,
        connect_timeout: float = 5.0,
        wanted: Callable[[bytes], bool] | None = None,
        stop: threading.Event | None = None,
        **kwargs: Any,
    ) -> None:
        self.max_body = max_body
        self.connect_timeout = connect_timeout
        self.wanted = wanted
        self.stop = stop
        self.broken = False  # a send stopped mid-frame: the stream is unusable
        #: Socket calls and wake-ups since construction, for the stats line
        #: and the benchmarks: ``recv`` and ``send`` calls, and ``poll``
        #: calls that returned at least one frame, with the frames they did.
        self.io = IOCounters()
        # A peer sending bad frames costs a few log lines, not one per frame.
        self._warnings = RateLimiter(logger, burst=20, period=10.0)
        self._frames: collections.deque[Frame] = collections.deque()
        self._decoder = FrameDecoder(format, header_length, max_body, wanted=wanted)
        self._skipped_before = 0
        # The receive timeout (SO_RCVTIMEO) that socket has now, so that it
        # is set only when a caller asks for another one.
        self._recv_timeout: float | None = None
        self._timed_socket: socket.socket | None = None
        super().__init__(name, server, port, format, header_length, **kwargs)

    @property
    def skipped(self) -> int:
        """Frames passed by unread since construction (too large, or not wanted)."""
        return self._skipped_before + self._decoder.skipped

    def connect(self, server: str, port: int) -> socket.socket:
        """Open a ``TCP_NODELAY`` connection to the server."""
        sock = socket.create_connection((server, port), timeout=self.connect_timeout)
        try:
            _nodelay(sock)
            # A blocking socket whose reads time out in the kernel: one
            # system call per wait (see poll).
            sock.settimeout(None)
        except OSError:
            sock.close()
            raise
        self._timed_socket = None
        self._skipped_before += self._decoder.skipped
        self._decoder = FrameDecoder(
            self.format, self.header_length, self.max_body, wanted=self.wanted
        )
        self._frames.clear()
        self.broken = False
        return sock

    def send(self, message: dict[str, Any], timeout: float = SEND_TIMEOUT) -> None:
        """Send ``message`` as one frame.

        Waits at most `timeout` seconds for a peer that does not read, and
        gives up at once when :attr:`stop` is set; either raises
        :class:`ConnectionLost` and marks the connection :attr:`broken` if
        part of the frame went out.
        """
        if self.broken:
            raise ConnectionLost("the connection broke during an earlier send")
        data = encode_frame(message, self.format, self.header_length)
        sock = self.client
        if sock.gettimeout() is not None:  # a caller set a Python timeout on it
            sock.settimeout(None)
        view = memoryview(data)
        sent = 0
        deadline = None
        writable = select.poll()
        writable.register(sock, select.POLLOUT)
        while sent < len(data):
            self.io.sends += 1
            # Ask first, as CPython does for a socket with a timeout: with
            # sends that hit a full buffer, Linux grows the send buffer more
            # for a peer that does not read (measured: 2.7 MB of ACTIONs
            # before a send stalls, against 1.7 MB).  One call per send.
            if writable.poll(0):
                try:
                    sent += sock.send(
                        view[sent:] if sent else data, socket.MSG_DONTWAIT
                    )
                    continue
                except (BlockingIOError, InterruptedError):
                    pass
            now = time.monotonic()
            if deadline is None:
                deadline = now + timeout
            stopped = self.stop is not None and self.stop.is_set()
            if stopped or now >= deadline:
                self.broken = self.broken or sent > 0
                why = "stop requested" if stopped else f"no progress for {timeout:g} s"
                raise ConnectionLost(f"send abandoned ({why})")
            # Short slices, so a stop request is seen while a peer does not read.
            writable.poll(SEND_SLICE * 1000)

    def reconnect(self) -> None:
        """Connect again, register and join the rooms this client had joined."""
        try:
            self.client.close()
        except OSError:  # pragma: no cover - closing a dead socket
            pass
        rooms = set(self.rooms)
        self.client = self.connect(self.server, self.port)
        self.rooms = set()
        self.register()
        for room in sorted(rooms):
            self.join_room(room)

    def poll(self, timeout: float | None) -> list[Frame]:
        """Return the frames that arrive within ``timeout`` seconds (maybe none).

        Raises :class:`ConnectionLost` if the server closed the connection or
        the stream's framing broke; its ``frames`` are the good frames read
        before that.  ``timeout=None`` waits for data.
        """
        if self._frames:
            queued = list(self._frames)
            self._frames.clear()
            return queued
        sock = self.client
        # One blocking recv that times out in the kernel (SO_RCVTIMEO): one
        # system call per wake-up, the floor.  (A Python socket timeout
        # would poll() before every recv.)  Only a full buffer suggests more
        # is queued and is followed by non-blocking reads, a bounded number
        # so a fast sender cannot keep this call from returning.
        if sock.gettimeout() is not None:  # a caller set a Python timeout on it
            sock.settimeout(None)
        flags = 0
        if timeout is not None and timeout <= 0:
            flags = socket.MSG_DONTWAIT
        elif timeout != self._recv_timeout or sock is not self._timed_socket:
            try:
                _recv_timeout(sock, timeout)
            except OSError as exc:
                raise ConnectionLost(f"receive failed: {exc}") from exc
            self._recv_timeout, self._timed_socket = timeout, sock
        io = self.io
        io.recvs += 1
        try:
            data = sock.recv(_RECV_SIZE, flags)
        except (BlockingIOError, InterruptedError):  # the timeout ran out
            return []
        except OSError as exc:
            raise ConnectionLost(f"receive failed: {exc}") from exc
        frames: list[Frame] = []
        for burst in range(_RECV_BURST):
            if burst:
                io.recvs += 1
                try:
                    data = sock.recv(_RECV_SIZE, socket.MSG_DONTWAIT)
                except (BlockingIOError, InterruptedError, TimeoutError):
                    # Nothing more queued yet: the end of this burst, not a
                    # lost link (TimeoutError too, should a Python timeout be
                    # set on the socket behind our back).
                    break
                except OSError as exc:
                    raise ConnectionLost(f"receive failed: {exc}", frames) from exc
            if not data:
                where = " in the middle of a frame" if self._decoder.mid_frame else ""
                raise ConnectionLost(f"the server closed the connection{where}", frames)
            frames += self._decoder.feed(data)
            if len(data) < _RECV_SIZE:
                break
        if frames:
            io.wakeups += 1
            io.frames += len(frames)
        return frames

    def receive(self) -> dict[str, Any] | bool:
        """Return the next message, or ``False`` once the connection has ended.

        Bad frames are logged and skipped, unlike the stock client.
        """
        while True:
            try:
                frames = self.poll(None)
            except ConnectionLost as exc:
                logger.info("%s: %s", self.name, exc)
                frames = exc.frames
                if not any(f.message is not None for f in frames):
                    return False
            for i, frame in enumerate(frames):
                if frame.message is not None:
                    self._frames.extend(frames[i + 1 :])
                    return frame.message
                self._warnings.log(
                    time.monotonic(),
                    "dropped frame",
                    "%s: dropped a frame: %s",
                    self.name,
                    frame.error,
                )

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Send DISCONNECT if the link is up (waiting at most `timeout`), then close."""
        try:
            if not self.broken:
                self.send(
                    {
                        "ID": uuid.uuid4().hex,
                        "TYPE": COMMAND_DISCONNECT,
                        "TO_ROOM": "_command",
                    },
                    timeout=timeout,
                )
        except OSError:
            pass
        finally:
            self.client.close()
