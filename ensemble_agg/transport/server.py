"""agg-server's socket loop: swergio routing without Nagle stalls or shared locks.

One thread runs a ``selectors`` loop over non-blocking sockets; the routing
decisions are :class:`~ensemble_agg.protocol.routing.Router`'s.  Why it is faster
than ``swergio.Server`` with unmodified clients:

- A stock client writes a frame's header and body with two ``send()`` calls
  and Nagle's algorithm: the body waits until the header is acknowledged.
  Here ``TCP_QUICKACK`` is re-armed after every ``recv`` (Linux clears it
  after each ACK), so the header is acknowledged at once.
- Frames go out with one write each (several small queued frames share
  one ``sendmsg``) on ``TCP_NODELAY`` sockets, so no hop waits for an ACK.

Why a stock client never sees half a header from it: swergio's
``Client.receive`` reads a header with a single ``recv(header_length)``, so
a header split across two arrivals desynchronises it for good (it then
closes).  A non-blocking write can stop anywhere when the socket buffer is
full.  So every write starts with a frame's first byte (or continues the one
frame a previous write cut short), is flagged ``MSG_EOR`` so the kernel
starts a new segment for it instead of appending to an unsent one, and
holds several frames only while they fit in one segment (the MSS): the
kernel takes such a write whole or not at all, and a longer frame is cut,
if at all, after its first segment, never inside its header.

Why it does not stall: every connection has its own bounded outbound queue,
flushed when the socket can take more.  A client that stops reading fills
only its own queue and is disconnected (and logged) when the queue passes
``max_queue_bytes``; everyone else keeps flowing.  A bad message is dropped
with a rate-limited warning; the sender keeps its connection.
"""

from __future__ import annotations

import collections
import itertools
import logging
import selectors
import socket
import threading
import time

from ..protocol.framing import Frame, FrameDecoder
from ..protocol.routing import Router
from ..util.text import preview

__all__ = ["DEFAULT_MAX_FRAME_BYTES", "AggServer"]

logger = logging.getLogger(__name__)

#: Default cap on one frame's body: evolution ``SET`` frames carry every
#: model's weights and reach tens of MB.
DEFAULT_MAX_FRAME_BYTES = 64 << 20
_RECV_SIZE = 1 << 18
# Buffers per sendmsg: well under every platform's IOV_MAX.
_IOV_BATCH = 64
# Segment size to assume where TCP_MAXSEG cannot be read (the IPv4 minimum).
_MIN_MSS = 536
_ACCEPT_BATCH = 64
# Longest wait in select(): bounds how late a paused accept resumes.
_MAX_WAIT = 1.0
_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)
_EOR: int = getattr(socket, "MSG_EOR", 0)

_LISTENER = "listener"
_WAKER = "waker"


class _Throttle:
    """Log at most ``burst`` warnings per ``period`` seconds, then a summary."""

    def __init__(self, burst: int = 20, period: float = 10.0) -> None:
        self.burst = burst
        self.period = period
        self._window = -float("inf")
        self._count = 0
        self._suppressed = 0

    def warning(self, now: float, msg: str, *args: object) -> None:
        self.tick(now)
        self._count += 1
        if self._count <= self.burst:
            logger.warning(msg, *args)
        else:
            self._suppressed += 1

    def tick(self, now: float) -> None:
        if now - self._window < self.period:
            return
        if self._suppressed:
            logger.warning(
                "%d more warnings like the above were not logged in the last %.0f s",
                self._suppressed,
                self.period,
            )
        self._window, self._count, self._suppressed = now, 0, 0


class _Conn:
    __slots__ = (
        "batch_limit",
        "closed",
        "decoder",
        "id",
        "out",
        "out_bytes",
        "peer",
        "sock",
        "writing",
    )

    def __init__(
        self, conn_id: int, sock: socket.socket, peer: str, decoder: FrameDecoder
    ):
        self.id = conn_id
        self.sock = sock
        try:
            mss = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
        except OSError:  # pragma: no cover - platform without TCP_MAXSEG
            mss = _MIN_MSS
        # Most bytes of whole frames one write may hold: they fit one segment
        # (TCP options take some of the MSS).
        self.batch_limit = max(_MIN_MSS, mss) - 64
        self.peer = peer
        self.decoder = decoder
        self.out: collections.deque[bytes | memoryview] = collections.deque()
        self.out_bytes = 0
        self.writing = False  # registered for EVENT_WRITE
        self.closed = False


class AggServer:
    """A swergio server: stock clients' routing, without Nagle stalls or lock-ups.

    Binds and listens in the constructor (``OSError`` if it cannot), like
    ``swergio.Server``; :meth:`start` then serves until :meth:`stop`.

    Parameters
    ----------
    ip, port, format, header_length
        As for ``swergio.Server``.  ``port=0`` picks a free port; see
        :attr:`address`.
    enable_logging : bool
        Copy ``DATA/FORWARD`` and ``DATA/GRADIENT`` messages to the
        ``_logging`` room, as swergio does by default.
    max_frame_bytes : int
        Longer frame bodies are skipped unread (and logged); the stream stays
        in step.
    max_queue_bytes : int, optional
        A client whose unsent frames pass this many bytes is disconnected.
        Default: twice ``max_frame_bytes``.
    stats_interval : float
        Log one INFO line of counters this often, in seconds; 0 turns it off.
    overwrite_sent_by : bool
        Set ``SENT_BY`` to the sender's registered name even when the message
        has one.  Off by default, as in swergio.

    Examples
    --------
    >>> import time
    >>> from swergio import Client
    >>> server = AggServer("127.0.0.1", 0)
    >>> _ = server.serve_in_thread()
    >>> a, b = Client("a", *server.address), Client("b", *server.address)
    >>> b.join_room("chat")
    >>> time.sleep(0.2)  # let the server handle b's JOINROOM
    >>> a.send({"ID": "1", "TYPE": "DATA/CUSTOM", "TO_ROOM": "chat", "X": 1})
    >>> msg = b.receive()
    >>> while msg.get("TO_ROOM") != "chat":  # first a's REGISTER and JOINROOM
    ...     msg = b.receive()
    >>> msg["X"], msg["SENT_BY"]
    (1, 'a')
    >>> a.close(); b.close(); server.stop()
    """

    def __init__(
        self,
        ip: str,
        port: int,
        format: str = "utf-8",
        header_length: int = 10,
        *,
        enable_logging: bool = True,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        max_queue_bytes: int | None = None,
        stats_interval: float = 0.0,
        overwrite_sent_by: bool = False,
    ) -> None:
        self.format = format
        self.header_length = header_length
        self.max_frame_bytes = max_frame_bytes
        self.max_queue_bytes = (
            max_queue_bytes if max_queue_bytes is not None else 2 * max_frame_bytes
        )
        self.stats_interval = stats_interval
        self._router = Router(
            format,
            header_length,
            overwrite_sent_by=overwrite_sent_by,
            enable_logging=enable_logging,
        )
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((ip, port))
            listener.listen(128)
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        self._wake_r, self._wake_w = socket.socketpair()
        for s in (self._wake_r, self._wake_w):
            s.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(listener, selectors.EVENT_READ, _LISTENER)
        self._selector.register(self._wake_r, selectors.EVENT_READ, _WAKER)
        self._conns: dict[int, _Conn] = {}
        self._dirty: dict[int, _Conn] = {}
        self._ids = itertools.count(1)
        self._stop = False
        self._stopped = threading.Event()
        self._closed = False
        self._accept_paused_until: float | None = None
        self._throttle = _Throttle()
        self._now = time.monotonic()
        self.counters = dict.fromkeys(
            (
                "connections",
                "frames_in",
                "bytes_in",
                "frames_out",
                "bytes_out",
                "dropped",
                "slow_disconnected",
            ),
            0,
        )

    @property
    def address(self) -> tuple[str, int]:
        """The ``(host, port)`` the server is bound to."""
        host, port = self._listener.getsockname()[:2]
        return host, port

    @property
    def clients(self) -> int:
        """Connections now open."""
        return len(self._conns)

    def stop(self) -> None:
        """Ask the loop to close every connection and return.

        Safe from any thread and from a signal handler: it only sets a flag
        and wakes the loop.
        """
        self._stop = True
        try:
            self._wake_w.send(b"\0")
        except OSError:  # already closed, or the wake-up is already queued
            pass

    def serve_in_thread(self) -> threading.Thread:
        """Run :meth:`start` in a daemon thread and return the thread."""
        thread = threading.Thread(target=self.start, name="agg-server", daemon=True)
        thread.start()
        return thread

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Wait until :meth:`start` has returned; True if it has."""
        return self._stopped.wait(timeout)

    def start(self) -> None:
        """Serve until :meth:`stop` is called; then close every connection."""
        if self._closed:
            raise RuntimeError("this server was stopped; make a new one")
        host, port = self.address
        logger.info("listening on %s:%d", host, port)
        if _QUICKACK is None:
            logger.warning(
                "TCP_QUICKACK is not available here: stock swergio clients' "
                "frames will wait for delayed ACKs (slower, still correct)"
            )
        try:
            self._loop()
        finally:
            self._shutdown()
            self._stopped.set()

    def _loop(self) -> None:
        last_stats = self._now = time.monotonic()
        last_counts = dict(self.counters)
        select = self._selector.select
        while not self._stop:
            wait = _MAX_WAIT
            if self.stats_interval > 0:
                wait = min(wait, max(0.0, last_stats + self.stats_interval - self._now))
            events = select(wait)
            self._now = time.monotonic()
            for key, mask in events:
                tag = key.data
                if tag is _LISTENER:
                    self._accept()
                elif tag is _WAKER:
                    self._drain_waker()
                else:
                    conn: _Conn = tag
                    if mask & selectors.EVENT_WRITE and not conn.closed:
                        self._flush(conn)
                    if mask & selectors.EVENT_READ and not conn.closed:
                        self._read(conn)
            if self._dirty:
                dirty = list(self._dirty.values())
                self._dirty.clear()
                for conn in dirty:
                    if not conn.closed:
                        self._flush(conn)
            if (
                self._accept_paused_until is not None
                and self._now >= self._accept_paused_until
            ):
                self._accept_paused_until = None
                self._selector.register(self._listener, selectors.EVENT_READ, _LISTENER)
            self._throttle.tick(self._now)
            if (
                self.stats_interval > 0
                and self._now - last_stats >= self.stats_interval
            ):
                self._log_stats(self._now - last_stats, last_counts)
                last_stats, last_counts = self._now, dict(self.counters)

    def _log_stats(self, elapsed: float, before: dict[str, int]) -> None:
        c = self.counters

        def rate(key: str) -> float:
            return (c[key] - before[key]) / elapsed if elapsed > 0 else 0.0

        logger.info(
            "stats: clients=%d rooms=%d frames_in=%.1f/s frames_out=%.1f/s "
            "bytes_in=%.0f/s bytes_out=%.0f/s dropped=%d slow_disconnected=%d",
            len(self._conns),
            self._router.room_count,
            rate("frames_in"),
            rate("frames_out"),
            rate("bytes_in"),
            rate("bytes_out"),
            c["dropped"],
            c["slow_disconnected"],
        )

    # -- connections -------------------------------------------------------------------

    def _accept(self) -> None:
        for _ in range(_ACCEPT_BATCH):
            try:
                sock, addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                # Out of file descriptors, say: the listener stays readable, so
                # stop watching it for a moment instead of spinning.
                self._throttle.warning(
                    self._now, "cannot accept a connection (%s); pausing 0.5 s", exc
                )
                self._selector.unregister(self._listener)
                self._accept_paused_until = self._now + 0.5
                return
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if _QUICKACK is not None:
                    sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
            except OSError:  # the peer is already gone
                sock.close()
                continue
            conn = _Conn(
                next(self._ids),
                sock,
                f"{addr[0]}:{addr[1]}",
                FrameDecoder(self.format, self.header_length, self.max_frame_bytes),
            )
            self._conns[conn.id] = conn
            self._router.connect(conn.id)
            self._selector.register(sock, selectors.EVENT_READ, conn)
            self.counters["connections"] += 1
            logger.debug("%s connected", conn.peer)

    def _who(self, conn: _Conn) -> str:
        name = self._router.name_of(conn.id)
        if name is None:
            return f"unregistered client at {conn.peer}"
        return f"{preview(name)} at {conn.peer}"

    def _close(self, conn: _Conn, reason: str, level: int = logging.DEBUG) -> None:
        if conn.closed:
            return
        logger.log(level, "%s %s", self._who(conn), reason)
        conn.closed = True
        try:
            self._selector.unregister(conn.sock)
        except (KeyError, ValueError):  # pragma: no cover - never registered
            pass
        conn.sock.close()
        self._router.disconnect(conn.id)
        self._conns.pop(conn.id, None)
        self._dirty.pop(conn.id, None)
        conn.out.clear()
        conn.out_bytes = 0

    def _drain_waker(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def _shutdown(self) -> None:
        for conn in list(self._conns.values()):
            self._close(conn, "closed: the server is stopping", logging.DEBUG)
        self._selector.close()
        self._listener.close()
        self._wake_r.close()
        self._wake_w.close()
        self._closed = True
        logger.info(
            "stopped; totals: %s",
            " ".join(f"{key}={value}" for key, value in self.counters.items()),
        )

    # -- reading -----------------------------------------------------------------------

    def _read(self, conn: _Conn) -> None:
        sock = conn.sock
        try:
            data = sock.recv(_RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._close(conn, f"dropped: receive failed ({exc})", logging.INFO)
            return
        if _QUICKACK is not None:
            try:  # acknowledge the next segment at once (Linux clears this per ACK)
                sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
            except OSError:
                pass
        if not data:
            if conn.decoder.mid_frame:
                self._close(
                    conn,
                    "closed the connection in the middle of a frame",
                    logging.WARNING,
                )
            else:
                self._close(conn, "disconnected")
            return
        self.counters["bytes_in"] += len(data)
        # Bytes out of step come back as one error frame (dropped with a
        # warning); the decoder reads on from the next frame.
        skipped = conn.decoder.skipped
        for frame in conn.decoder.feed(data):
            self._handle(conn, frame)
            if conn.closed:
                return
        if conn.decoder.skipped > skipped:  # too large to route: passed by unread
            self._drop(
                conn,
                f"a frame over the {conn.decoder.max_body}-byte limit "
                f"(--max-frame-bytes); skipped unread",
            )

    def _handle(self, conn: _Conn, frame: Frame) -> None:
        self.counters["frames_in"] += 1
        message = frame.message
        if message is None:
            self._drop(conn, frame.error or "bad frame")
            return
        routing = self._router.route(conn.id, message)
        if routing.problem is not None:
            self._drop(conn, routing.problem)
        conns = self._conns
        for targets, payload in routing.deliveries:
            for target in targets:
                other = conns.get(target)
                if other is not None:
                    self._enqueue(other, payload)
        if routing.close:
            self._close(conn, "disconnected (DISCONNECT)")

    def _drop(self, conn: _Conn, problem: str) -> None:
        self.counters["dropped"] += 1
        self._throttle.warning(
            self._now, "dropped a message from %s: %s", self._who(conn), problem[:300]
        )

    # -- writing -----------------------------------------------------------------------

    def _enqueue(self, conn: _Conn, payload: bytes) -> None:
        conn.out.append(payload)
        conn.out_bytes += len(payload)
        self.counters["frames_out"] += 1
        if conn.out_bytes > self.max_queue_bytes:
            self.counters["slow_disconnected"] += 1
            self._close(
                conn,
                f"dropped: {conn.out_bytes} bytes wait to be sent to it, over the "
                f"{self.max_queue_bytes}-byte limit (it does not read)",
                logging.WARNING,
            )
            return
        if not conn.writing:
            # Flushed once per loop pass: frames routed to it meanwhile share a write.
            self._dirty[conn.id] = conn

    def _flush(self, conn: _Conn) -> None:
        out = conn.out
        if len(out) == 1 and not conn.writing:
            # The common case when frames come one at a time: one whole
            # frame, a socket that had room.  One send, nothing to batch.
            buf = out[0]
            if type(buf) is bytes:
                try:
                    sent = conn.sock.send(buf, _EOR)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                except OSError as exc:
                    self._close(conn, f"dropped: send failed ({exc})", logging.INFO)
                    return
                self.counters["bytes_out"] += sent
                conn.out_bytes -= sent
                if sent == len(buf):
                    out.clear()
                    return
                if sent:  # cut after its first segment: the rest goes alone
                    out[0] = memoryview(buf)[sent:]
                self._want_write(conn, True)
                return
        while out:
            batch = self._next_write(conn)
            try:
                sent = conn.sock.sendmsg(batch, (), _EOR)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self._close(conn, f"dropped: send failed ({exc})", logging.INFO)
                return
            self.counters["bytes_out"] += sent
            conn.out_bytes -= sent
            full = True
            for buf in batch:
                size = len(buf)
                if sent >= size:
                    out.popleft()
                    sent -= size
                else:
                    out[0] = memoryview(buf)[sent:]
                    full = False
                    break
            if not full:
                break  # the socket takes no more now
        self._want_write(conn, bool(out))

    @staticmethod
    def _next_write(conn: _Conn) -> list[bytes | memoryview]:
        """The buffers of the next write (see the module docstring for why)."""
        first = conn.out[0]
        if type(first) is memoryview:  # the rest of a frame: one write on its own
            return [first]
        batch: list[bytes | memoryview] = [first]
        size = len(first)
        for buf in itertools.islice(conn.out, 1, _IOV_BATCH):
            size += len(buf)
            if size > conn.batch_limit:
                break
            batch.append(buf)
        return batch

    def _want_write(self, conn: _Conn, want: bool) -> None:
        if want == conn.writing:
            return
        conn.writing = want
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if want else 0)
        self._selector.modify(conn.sock, events, conn)
