"""swergio transport that does not stall: a tuned Client, a tuned Server, a helper.

swergio's stock ``Client.send`` writes a frame's header and body with two
``send()`` calls on a socket without ``TCP_NODELAY``; the stock ``Server``
does the same with two ``sendall()`` calls.  Nagle's algorithm then holds
the body back until the header is acknowledged, and the peer's delayed ACK
makes that about 40 ms per hop.  The classes here write each frame with one
``sendall`` on ``TCP_NODELAY`` sockets.  The bytes on the wire are exactly
swergio's, so tuned and stock components mix freely.

- :class:`TunedClient`: a drop-in ``swergio.Client`` subclass that also reads
  robustly (a bad frame is logged and skipped instead of closing the
  connection; a peer that closes mid-frame ends the read instead of spinning),
  waits with one system call per wake-up, and reconnects.
- :func:`tune_client`: the latency fix for a stock client you already have.
- :class:`TunedServer`: a ``swergio.Server`` subclass with the same routing,
  one write per frame, ``TCP_NODELAY``, logging instead of ``print``, and a
  :meth:`~TunedServer.stop` method.

Examples
--------
>>> import time
>>> from ensemble_agg.transport import TunedClient, TunedServer
>>> server = TunedServer("127.0.0.1", 0)
>>> _ = server.serve_in_thread()
>>> host, port = server.address
>>> a = TunedClient("a", host, port)
>>> b = TunedClient("b", host, port)
>>> b.join_room("chat")
>>> deadline = time.monotonic() + 5
>>> chat = []
>>> while not chat and time.monotonic() < deadline:
...     # Joins take effect asynchronously (one server thread per client):
...     # send again until b receives it.
...     a.send({"ID": "1", "TYPE": "DATA/CUSTOM", "TO_ROOM": "chat", "TEXT": "hi"})
...     frames = b.poll(0.2)  # also returns the REGISTER/JOINROOM traffic
...     chat = [f.message for f in frames if f.message.get("TO_ROOM") == "chat"]
>>> chat[0]["TEXT"], chat[0]["SENT_BY"]
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

from swergio import MESSAGE_TYPE, Client, Server

from ..protocol.framing import Frame, FrameDecoder, encode_frame

__all__ = ["ConnectionLost", "IOCounters", "TunedClient", "TunedServer", "tune_client"]

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


class ConnectionLost(ConnectionError):
    """The connection to the swergio server ended or its framing broke.

    ``frames`` holds the good frames read before the connection was lost;
    the caller handles them as usual.
    """

    def __init__(self, message: str, frames: list[Frame] | None = None) -> None:
        super().__init__(message)
        self.frames: list[Frame] = frames if frames is not None else []


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
    >>> from ensemble_agg.transport import TunedServer, tune_client
    >>> server = TunedServer("127.0.0.1", 0)
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
        Frames with a longer body are skipped unread (logged).  Default 64 MiB.
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
                except (BlockingIOError, InterruptedError):
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
                logger.warning("%s: dropped a frame: %s", self.name, frame.error)

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Send DISCONNECT if the link is up (waiting at most `timeout`), then close."""
        try:
            if not self.broken:
                self.send(
                    {
                        "ID": uuid.uuid4().hex,
                        "TYPE": MESSAGE_TYPE.COMMAND.DISCONNECT.id,
                        "TO_ROOM": "_command",
                    },
                    timeout=timeout,
                )
        except OSError:
            pass
        finally:
            self.client.close()


class TunedServer(Server):
    """A ``swergio.Server`` with one write per frame and ``TCP_NODELAY``.

    Routing is swergio's: rooms, ``TO`` direct messages, ``SENT_BY`` added
    by the server, the ``_logging`` room.  What differs: each frame goes out
    with one ``sendall``; accepted sockets use ``TCP_NODELAY``; messages are
    logged (DEBUG) instead of printed; a frame that is not a JSON object is
    dropped with a warning instead of being routed with the previous
    message's header; a member whose socket fails is removed instead of the
    sender being disconnected; and :meth:`stop` ends it.

    Parameters
    ----------
    ip, port, format, header_length, enable_logging
        As for ``swergio.Server``.  ``port=0`` picks a free port; see
        :attr:`address`.
    """

    def __init__(
        self,
        ip: str,
        port: int,
        format: str = "utf-8",
        header_length: int = 10,
        enable_logging: bool = True,
    ) -> None:
        super().__init__(ip, port, format, header_length, enable_logging)
        self._stop = threading.Event()
        self.server.settimeout(0.2)
        # Listen now, so clients may connect as soon as the constructor returns.
        self.server.listen()

    @property
    def address(self) -> tuple[str, int]:
        """The ``(host, port)`` the server is bound to."""
        host, port = self.server.getsockname()[:2]
        return host, port

    def start(self) -> None:
        """Accept clients until :meth:`stop` is called."""
        while not self._stop.is_set():
            try:
                client, addr = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            client.settimeout(None)
            _nodelay(client)
            with self.clients_lock:
                self.clients.add(client)
                self.names[client] = ""
            threading.Thread(
                target=self.handle_client, args=(client, addr), daemon=True
            ).start()

    def serve_in_thread(self) -> threading.Thread:
        """Run :meth:`start` in a daemon thread and return the thread."""
        thread = threading.Thread(target=self.start, name="swergio-server", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        """Stop accepting and close every client connection."""
        self._stop.set()
        self.server.close()
        with self.clients_lock:
            clients = list(self.clients)
        for client in clients:
            try:
                client.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_client(self, client: socket.socket, addr: Any) -> None:
        """Read frames from one client and route them until it leaves."""
        decoder = FrameDecoder(self.format, self.header_length, DEFAULT_MAX_BODY)
        try:
            while True:
                try:
                    data = client.recv(1 << 18)
                except OSError:
                    break
                if not data:
                    break
                for frame in decoder.feed(data):
                    if frame.message is None:
                        logger.warning(
                            "server: frame from %s dropped: %s", addr, frame.error
                        )
                        continue
                    if not self._route(client, frame.message):
                        return
        finally:
            client.close()
            with self.clients_lock:
                self.clients.discard(client)
                for members in self.rooms.values():
                    members.discard(client)
                self.names.pop(client, None)
            logger.debug("server: %s disconnected", addr)

    def _route(self, client: socket.socket, msg: dict[str, Any]) -> bool:
        """Handle one message; return False if the client disconnects."""
        msg_type = MESSAGE_TYPE.by_id(msg.get("TYPE"))
        if msg_type == MESSAGE_TYPE.COMMAND.DISCONNECT:
            return False
        try:
            if msg_type == MESSAGE_TYPE.COMMAND.REGISTER:
                with self.clients_lock:
                    self.names[client] = msg["NAME"]
            elif msg_type == MESSAGE_TYPE.COMMAND.JOINROOM:
                with self.clients_lock:
                    self.rooms.setdefault(msg["ROOM"], set()).add(client)
            elif msg_type == MESSAGE_TYPE.COMMAND.LEAVEROOM:
                with self.clients_lock:
                    members = self.rooms.get(msg["ROOM"], set())
                    members.discard(client)
                    if not members and msg["ROOM"] not in ("_command", "_logging"):
                        self.rooms.pop(msg["ROOM"], None)
            self.broadcast_message(client, b"", "", msg)
        except (KeyError, TypeError) as exc:
            logger.warning("server: message dropped (%s: %s)", type(exc).__name__, exc)
        return True

    def broadcast_message(
        self,
        client: socket.socket,
        message_header: bytes,
        message: str,
        msg_content: dict[str, Any],
    ) -> None:
        """Send ``msg_content`` to its room and ``TO`` recipient, one write each."""
        if "SENT_BY" not in msg_content:
            msg_content["SENT_BY"] = self.names.get(client, "")
        frame = encode_frame(msg_content, self.format, self.header_length)
        with self.clients_lock:
            targets = []
            if "TO_ROOM" in msg_content:
                targets += [
                    c for c in self.rooms[msg_content["TO_ROOM"]] if c is not client
                ]
            if "TO" in msg_content:
                targets += [
                    c for c in self.clients if self.names.get(c) == msg_content["TO"]
                ]
            for other in targets:
                try:
                    other.sendall(frame)
                except OSError:
                    logger.warning(
                        "server: dropping member %r (send failed)",
                        self.names.get(other),
                    )
                    other.close()
            if self.enable_logging and MESSAGE_TYPE.by_id(msg_content["TYPE"]) in (
                MESSAGE_TYPE.DATA.FORWARD,
                MESSAGE_TYPE.DATA.GRADIENT,
            ):
                self.send_message_log(msg_content)

    def send_message_log(self, msg_content: dict[str, Any]) -> None:
        """Copy a message to the ``_logging`` room, as swergio does."""
        log = {
            "ID": uuid.uuid4().hex,
            "TO_ROOM": "_logging",
            "TYPE": MESSAGE_TYPE.LOG.MESSAGE.id,
            "MESSAGE": msg_content,
        }
        frame = encode_frame(log, self.format, self.header_length)
        for member in self.rooms["_logging"]:
            try:
                member.sendall(frame)
            except OSError:
                member.close()
