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

Why one hostile peer cannot take the rest down (docs/security.rst has the
attacks): names, room names and rooms per connection are bounded (the
router refuses more); bytes of unfinished frames and bytes queued for
sending are each under one budget across all connections, and past one the
largest holder is disconnected; a connection must register within
``register_timeout`` and finish each frame within ``frame_timeout`` of its
header; connections are capped below the descriptor limit, and at the cap
the oldest unregistered one makes room.  A body over 64 KiB is never decoded
whole: its outline (the few fields routing reads, and a check that it is a
JSON object) is built a slice at a time between other work, and the frames
sent are its text with ``SENT_BY`` set, the bytes ``json.dumps`` would give.
Per-connection log lines are rate-limited by kind, with a summary.

Observing (``agg-server --http``): given a
:class:`~ensemble_agg.observe.ServerRecorder`, the loop counts each routed
frame in and out by room and each drop by category, and at most every
``publish_interval`` hands it the gauges it already keeps (clients, names,
room members, queued bytes, slowest readers) and publishes a snapshot.
Without one, each frame costs one ``if``.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import resource
import selectors
import socket
import threading
import time
from collections.abc import Generator, Iterable

from ..observe.recorders import ServerRecorder
from ..protocol.framing import LAZY_ABOVE, Frame, FrameDecoder, Outline, outline_body
from ..protocol.routing import (
    MAX_NAME,
    MAX_ROOM_NAME,
    MAX_ROOMS_PER_CONN,
    Router,
    Routing,
)
from ..util.ratelimit import RateLimiter
from ..util.text import preview

__all__ = [
    "DEFAULT_FRAME_TIMEOUT",
    "DEFAULT_MAX_BUFFERED_BYTES",
    "DEFAULT_MAX_QUEUED_BYTES",
    "DEFAULT_REGISTER_TIMEOUT",
    "SERVER_MAX_FRAME_BYTES",
    "AggServer",
    "default_max_clients",
]

logger = logging.getLogger(__name__)

#: Default cap on one frame's body: evolution ``SET`` frames carry every
#: model's weights and reach tens of MB.
SERVER_MAX_FRAME_BYTES = 64 << 20
#: Default budget for bytes of frames not yet complete, all connections
#: together (two frames of the default size; a 1 GB edge box).
DEFAULT_MAX_BUFFERED_BYTES = 128 << 20
#: Default budget for bytes waiting to be sent, all connections together
#: (a frame sent to many clients counts once).
DEFAULT_MAX_QUEUED_BYTES = 256 << 20
#: Default seconds a new connection has to send a complete REGISTER frame.
DEFAULT_REGISTER_TIMEOUT = 10.0
#: Default seconds a frame may take to arrive once its header has.
DEFAULT_FRAME_TIMEOUT = 60.0
# Descriptors kept free below RLIMIT_NOFILE: the listener, the waker, the
# selector, log files, and what a library may open.
_FD_HEADROOM = 64
# How often deadlines are checked, in seconds.
_CHECK_EVERY = 0.25
# Most time a loop pass spends outlining large bodies before serving sockets.
_OUTLINE_SLICE = 0.01
# Most time a loop pass spends routing frames before it takes in the rest
# as bytes only (they are routed next pass).
_ROUTE_SLICE = 0.01
# Most frames routed from one connection per loop pass; the rest of what it
# sent waits as undecoded bytes (counted in the buffered budget) and its
# socket is not read until they are routed.
_FRAMES_PER_PASS = 64
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


#: What the rate limiter's summary line calls the lines of each kind.
_KINDS = {
    "default": "warnings like the above",
    "dropped": "dropped messages",
    "refused": "refused names, rooms and joins",
    "closed": "connections closed mid-frame, reset or failed",
    "timeout": "connections closed for missing a deadline",
    "shed": "connections shed or refused at the connection cap",
    "budget": "connections dropped over a memory budget",
    "accept": "failed accepts",
}


def default_max_clients() -> int:
    """Connections to allow: the descriptor limit less some headroom.

    Examples
    --------
    >>> default_max_clients() >= 1
    True
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 16
    return max(1, soft - _FD_HEADROOM if soft > 2 * _FD_HEADROOM else soft // 2)


class _Conn:
    __slots__ = (
        "backlog",
        "batch_limit",
        "closed",
        "decoder",
        "events",
        "frame_since",
        "held",
        "id",
        "job",
        "job_bytes",
        "job_since",
        "out",
        "out_bytes",
        "peer",
        "since",
        "sock",
        "writing",
    )

    def __init__(
        self,
        conn_id: int,
        sock: socket.socket,
        peer: str,
        decoder: FrameDecoder,
        now: float = 0.0,
    ):
        self.id = conn_id
        self.since = now  # accepted at
        self.frame_since: float | None = None  # the unfinished frame's start
        self.held = 0  # bytes counted against the buffered budget
        self.events = selectors.EVENT_READ  # what the selector watches
        # A large body being outlined, and the frames that came after it.
        self.job: Generator[None, None, Outline] | None = None
        self.job_bytes = 0
        self.job_since = 0.0
        self.backlog: collections.deque[Frame] = collections.deque()
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
    max_name_chars, max_room_chars, max_rooms_per_client : int
        Identity limits (see :class:`~ensemble_agg.protocol.routing.Router`):
        a REGISTER or JOINROOM over one is dropped with a warning; the
        connection stays (unregistered, if it was: then the registration
        deadline closes it).
    max_buffered_bytes : int
        Budget for bytes of frames not yet complete (and large bodies being
        checked), all connections together; past it, the connection holding
        most is disconnected until the total fits.
    max_queued_bytes : int
        Budget for bytes waiting to be sent, all connections together (a
        frame queued for many clients counts once); past it, the client with
        most waiting is disconnected as a slow consumer until it fits.
    register_timeout : float
        Seconds a new connection has to register; 0 turns the deadline off.
    frame_timeout : float
        Seconds a frame may take to arrive once its first bytes have; 0 turns
        the deadline off.
    max_clients : int, optional
        Most connections at once.  At the cap a new connection closes the
        oldest unregistered one, or is closed itself if every connection has
        registered.  Default: the descriptor limit (``RLIMIT_NOFILE``) less
        64.

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
        max_frame_bytes: int = SERVER_MAX_FRAME_BYTES,
        max_queue_bytes: int | None = None,
        stats_interval: float = 0.0,
        overwrite_sent_by: bool = False,
        max_name_chars: int = MAX_NAME,
        max_room_chars: int = MAX_ROOM_NAME,
        max_rooms_per_client: int = MAX_ROOMS_PER_CONN,
        max_buffered_bytes: int = DEFAULT_MAX_BUFFERED_BYTES,
        max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES,
        register_timeout: float = DEFAULT_REGISTER_TIMEOUT,
        frame_timeout: float = DEFAULT_FRAME_TIMEOUT,
        max_clients: int | None = None,
        recorder: ServerRecorder | None = None,
    ) -> None:
        self.format = format
        #: Told of frames, drops and gauges (``--http``), or None.
        self.recorder = recorder
        self.header_length = header_length
        self.max_frame_bytes = max_frame_bytes
        self.max_queue_bytes = (
            max_queue_bytes if max_queue_bytes is not None else 2 * max_frame_bytes
        )
        self.stats_interval = stats_interval
        self.max_buffered_bytes = max_buffered_bytes
        self.max_queued_bytes = max_queued_bytes
        self.register_timeout = register_timeout
        self.frame_timeout = frame_timeout
        self.max_clients = (
            max_clients if max_clients is not None else default_max_clients()
        )
        self._router = Router(
            format,
            header_length,
            overwrite_sent_by=overwrite_sent_by,
            enable_logging=enable_logging,
            max_name_chars=max_name_chars,
            max_room_chars=max_room_chars,
            max_rooms_per_conn=max_rooms_per_client,
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
        # Not yet registered, oldest first (dicts keep insertion order).
        self._unregistered: dict[int, _Conn] = {}
        # Inside a frame (a deadline runs), and outlining a large body.
        self._mid_frame: dict[int, _Conn] = {}
        self._jobs: dict[int, _Conn] = {}
        # Whose decoder holds frames not yet routed (see _FRAMES_PER_PASS).
        self._ready: dict[int, _Conn] = {}
        self._fresh: dict[int, _Conn] = {}  # as _ready, not yet served
        self._pass_ends = 0.0  # when this loop pass stops routing (monotonic)
        self._buffered = 0  # bytes held for unfinished frames, all connections
        self._queued = 0  # bytes waiting to be sent, each buffer counted once
        # id(buffer) -> [its size, queues holding it]: a frame sent to many
        # clients is one object in memory, so it counts once.
        self._shared: dict[int, list[int]] = {}
        self._ids = itertools.count(1)
        self._stop = False
        self._stopped = threading.Event()
        self._closed = False
        self._accept_paused_until: float | None = None
        # Warnings per kind of problem, so a flood costs a few lines.
        self._throttle = RateLimiter(logger, burst=20, period=10.0, descriptions=_KINDS)
        self._now = time.monotonic()
        self._next_check = self._now
        self.counters = dict.fromkeys(
            (
                "connections",
                "frames_in",
                "bytes_in",
                "frames_out",
                "bytes_out",
                "dropped",
                "slow_disconnected",
                "refused",
                "register_timeouts",
                "frame_timeouts",
                "shed",
                "turned_away",
                "over_buffer_budget",
                "over_queue_budget",
                "large_outlined",
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
        logger.info("listening on %s:%d (at most %d clients)", host, port,
                    self.max_clients)  # fmt: skip
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
        if self.recorder is not None:
            self._publish(self.recorder)  # /healthz answers from the start
        last_counts = dict(self.counters)
        select = self._selector.select
        while not self._stop:
            wait = _MAX_WAIT
            if self.stats_interval > 0:
                wait = min(wait, max(0.0, last_stats + self.stats_interval - self._now))
            if self._jobs or self._ready or self._fresh:
                wait = 0.0  # work in hand: only poll the sockets
            events = select(wait)
            self._now = time.monotonic()
            self._pass_ends = self._now + _ROUTE_SLICE
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
            if self._ready or self._fresh:
                self._route_ready()
            if self._jobs:
                self._outline_some()
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
            if self._now >= self._next_check:
                self._next_check = self._now + _CHECK_EVERY
                self._check_deadlines()
            self._throttle.tick(self._now)
            if self.recorder is not None and self.recorder.due(self._now):
                self._publish(self.recorder)
            if (
                self.stats_interval > 0
                and self._now - last_stats >= self.stats_interval
            ):
                self._log_stats(self._now - last_stats, last_counts)
                last_stats, last_counts = self._now, dict(self.counters)

    def _publish(self, recorder: ServerRecorder) -> None:
        """Hand the recorder the gauges kept here, and publish a snapshot."""
        readers = heapq.nlargest(
            recorder.max_readers,
            (c for c in self._conns.values() if c.out_bytes),
            key=lambda c: c.out_bytes,
        )
        recorder.set_state(
            clients=len(self._conns),
            registered_names=len(self._conns) - len(self._unregistered),
            # the reserved rooms exist from the start; only rooms in use count
            room_members={
                room: n for room, n in self._router.member_counts().items() if n
            },
            queue_bytes=self._queued,
            slowest_readers=[(self._who(c), c.out_bytes) for c in readers],
        )
        recorder.slow_consumer_disconnects = self.counters["slow_disconnected"]
        recorder.set_accepting(self._accept_paused_until is None and not self._stop)
        recorder.publish(self._now)

    def _log_stats(self, elapsed: float, before: dict[str, int]) -> None:
        c = self.counters

        def rate(key: str) -> float:
            return (c[key] - before[key]) / elapsed if elapsed > 0 else 0.0

        logger.info(
            "stats: clients=%d unregistered=%d rooms=%d frames_in=%.1f/s "
            "frames_out=%.1f/s bytes_in=%.0f/s bytes_out=%.0f/s buffered=%d "
            "queued=%d dropped=%d refused=%d slow_disconnected=%d "
            "register_timeouts=%d frame_timeouts=%d shed=%d turned_away=%d "
            "over_buffer_budget=%d over_queue_budget=%d warnings_suppressed=%d",
            len(self._conns),
            len(self._unregistered),
            self._router.room_count,
            rate("frames_in"),
            rate("frames_out"),
            rate("bytes_in"),
            rate("bytes_out"),
            self._buffered,
            self._queued,
            c["dropped"],
            c["refused"],
            c["slow_disconnected"],
            c["register_timeouts"],
            c["frame_timeouts"],
            c["shed"],
            c["turned_away"],
            c["over_buffer_budget"],
            c["over_queue_budget"],
            self._throttle.suppressed,
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
                # Out of file descriptors, say: make room if an unregistered
                # connection can go; else stop watching the listener for a
                # moment (it stays readable) instead of spinning.
                if self._shed_one():
                    continue
                self._throttle.log(
                    self._now,
                    "accept",
                    "cannot accept a connection (%s); pausing 0.5 s",
                    exc,
                )
                self._selector.unregister(self._listener)
                self._accept_paused_until = self._now + 0.5
                return
            peer = f"{addr[0]}:{addr[1]}"
            if len(self._conns) >= self.max_clients and not self._shed_one():
                self.counters["turned_away"] += 1
                self._throttle.log(
                    self._now,
                    "shed",
                    "turned away %s: %d clients, all registered, the limit "
                    "(--max-clients)",
                    peer,
                    len(self._conns),
                )
                sock.close()
                continue
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
                peer,
                FrameDecoder(
                    self.format,
                    self.header_length,
                    self.max_frame_bytes,
                    raw_above=LAZY_ABOVE,
                ),
                self._now,
            )
            self._conns[conn.id] = conn
            self._unregistered[conn.id] = conn
            self._router.connect(conn.id)
            self._selector.register(sock, selectors.EVENT_READ, conn)
            self.counters["connections"] += 1
            logger.debug("%s connected", conn.peer)

    def _shed_one(self) -> bool:
        """Close the oldest unregistered connection to make room; False if none."""
        for conn in self._unregistered.values():
            self.counters["shed"] += 1
            self._close(
                conn,
                f"closed after {self._now - conn.since:.1f} s unregistered, to "
                f"make room (--max-clients {self.max_clients})",
                logging.WARNING,
                kind="shed",
            )
            return True
        return False

    def _check_deadlines(self) -> None:
        now = self._now
        if self.register_timeout > 0:
            expired = now - self.register_timeout
            late = itertools.takewhile(
                lambda c: c.since <= expired, self._unregistered.values()
            )
            for conn in list(late):
                self.counters["register_timeouts"] += 1
                self._close(
                    conn,
                    f"closed: no REGISTER within {self.register_timeout:g} s "
                    f"(--register-timeout)",
                    logging.WARNING,
                    kind="timeout",
                )
        if self.frame_timeout > 0:
            expired = now - self.frame_timeout
            for conn in [c for c in self._jobs.values() if c.job_since <= expired]:
                # a body built to be slow to check: drop it, keep the peer
                self.counters["frame_timeouts"] += 1
                size = conn.job_bytes
                self._end_job(conn)
                self._drop(
                    conn,
                    f"a {size}-byte frame still not checked after "
                    f"{self.frame_timeout:g} s (--frame-timeout); dropped",
                    "timeout",
                )
                self._take(conn, ())
                self._account(conn)
            for conn in list(self._mid_frame.values()):
                if (
                    conn.frame_since is not None
                    and conn.frame_since <= expired
                    and not self._busy(conn)  # the wait is ours, not the peer's
                ):
                    self.counters["frame_timeouts"] += 1
                    self._close(
                        conn,
                        f"closed: a frame took over {self.frame_timeout:g} s to "
                        f"arrive (--frame-timeout); {conn.decoder.buffered} bytes "
                        f"of it came",
                        logging.WARNING,
                        kind="timeout",
                    )

    def _who(self, conn: _Conn) -> str:
        if not self._router.registered(conn.id):
            return f"unregistered client at {conn.peer}"
        return f"{preview(self._router.name_of(conn.id))} at {conn.peer}"

    def _close(
        self,
        conn: _Conn,
        reason: str,
        level: int = logging.DEBUG,
        kind: str = "closed",
    ) -> None:
        if conn.closed:
            return
        if level >= logging.INFO:
            self._throttle.log(
                self._now, kind, "%s %s", self._who(conn), reason, level=level
            )
        else:
            logger.log(level, "%s %s", self._who(conn), reason)
        conn.closed = True
        if conn.events:
            self._selector.unregister(conn.sock)
            conn.events = 0
        conn.sock.close()
        self._router.disconnect(conn.id)
        for table in (self._conns, self._dirty, self._unregistered, self._mid_frame,
                      self._jobs, self._ready, self._fresh):  # fmt: skip
            table.pop(conn.id, None)
        self._buffered -= conn.held
        conn.held = 0
        conn.job = None
        conn.backlog.clear()
        for buf in conn.out:
            self._release(buf)
        conn.out.clear()
        conn.out_bytes = 0

    def _watch(self, conn: _Conn) -> None:
        """Watch ``conn`` for reading unless a large body of it is being
        outlined or frames it sent wait to be routed (the kernel's buffer
        then holds what comes next), and for writing if it has frames to
        send."""
        busy = self._busy(conn)
        events = (0 if busy else selectors.EVENT_READ) | (
            selectors.EVENT_WRITE if conn.writing else 0
        )
        if events == conn.events:
            return
        if not conn.events:
            self._selector.register(conn.sock, events, conn)
        elif not events:
            self._selector.unregister(conn.sock)
        else:
            self._selector.modify(conn.sock, events, conn)
        conn.events = events

    def _busy(self, conn: _Conn) -> bool:
        """True if what ``conn`` sent is still being checked or routed."""
        return conn.job is not None or conn.id in self._ready or conn.id in self._fresh

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
        decoder = conn.decoder
        if not data:
            if decoder.mid_frame:
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
        self._decode(conn, data)

    def _decode(self, conn: _Conn, data: bytes) -> None:
        """Feed ``data`` to ``conn``'s decoder and route what it completes,
        at most :data:`_FRAMES_PER_PASS` frames; the rest waits in
        :attr:`_ready` for the next pass."""
        decoder = conn.decoder
        skipped = decoder.skipped
        # Past this pass's time for routing, the bytes are only taken in:
        # a select() that wakes with a hundred readable sockets holding
        # frames that are slow to decode would otherwise hold everyone.
        limit = _FRAMES_PER_PASS if time.monotonic() < self._pass_ends else 0
        frames = decoder.feed(data, limit)
        if not decoder.more:
            self._ready.pop(conn.id, None)
            self._fresh.pop(conn.id, None)
        elif data:
            self._fresh[conn.id] = conn
        else:
            self._ready[conn.id] = conn
        if decoder.mid_frame:
            # a new frame started, or the wait for its rest starts now that
            # this server has routed what came before it
            if frames or conn.frame_since is None or not data:
                conn.frame_since = self._now
                self._mid_frame[conn.id] = conn
        elif conn.frame_since is not None:
            conn.frame_since = None
            del self._mid_frame[conn.id]
        self._take(conn, frames)
        if conn.closed:
            return
        if decoder.skipped > skipped:  # too large to route: passed by unread
            self._drop(
                conn,
                f"a frame over the {decoder.max_body}-byte limit "
                f"(--max-frame-bytes); skipped unread",
                category="oversized",
            )
        self._account(conn)

    def _route_ready(self) -> None:
        """Route the next frames of the connections that have some waiting
        (not one whose large body is still being outlined), in turns, until
        this pass's time for routing is spent."""
        # Bytes just read go first: a peer that sends a little now and then
        # is not kept waiting behind the turns of those that sent much.
        ready, fresh = self._ready, self._fresh
        for conn in [*fresh.values(), *ready.values()]:
            if time.monotonic() >= self._pass_ends:
                break
            if conn.job is None and not conn.closed:
                fresh.pop(conn.id, None)
                ready.pop(conn.id, None)
                self._decode(conn, b"")  # back in ready, at its end, if more

    def _take(self, conn: _Conn, frames: Iterable[Frame]) -> None:
        """Handle ``frames`` in order; a large body starts an outline, and
        the frames after it wait in the backlog until it is routed."""
        backlog = conn.backlog
        backlog.extend(frames)
        while backlog and conn.job is None and not conn.closed:
            frame = backlog.popleft()
            if frame.body is None:
                self._handle(conn, frame)
            else:
                self.counters["frames_in"] += 1
                self.counters["large_outlined"] += 1
                conn.job = outline_body(frame.body, self.format)
                conn.job_bytes = len(frame.body)
                conn.job_since = self._now
                self._jobs[conn.id] = conn
        if not conn.closed:
            self._watch(conn)

    def _outline_some(self) -> None:
        """Advance the large bodies' outlines, one step (a few KiB) at a
        time in turn, for about ``_OUTLINE_SLICE`` s."""
        clock = time.monotonic
        stop = clock() + _OUTLINE_SLICE
        jobs = self._jobs
        while jobs and clock() < stop:
            conn = next(iter(jobs.values()))
            jobs[conn.id] = jobs.pop(conn.id)  # to the back: turns, not FIFO
            job = conn.job
            assert job is not None
            try:
                next(job)
                continue
            except StopIteration as done:
                routing = self._router.route_outline(conn.id, done.value)
                if self.recorder is not None:
                    self._record(done.value.fields.get("TO_ROOM"), routing)
            except ValueError as exc:
                routing = Routing([], problem=str(exc))
            self._end_job(conn)
            self._deliver(conn, routing)
            if not conn.closed:
                self._take(conn, ())
                self._account(conn)
        self._now = clock()

    def _end_job(self, conn: _Conn) -> None:
        conn.job = None
        conn.job_bytes = 0
        del self._jobs[conn.id]

    def _account(self, conn: _Conn) -> None:
        """Count ``conn``'s unfinished bytes; over the budget, drop the largest."""
        held = conn.decoder.buffered + conn.job_bytes
        self._buffered += held - conn.held
        conn.held = held
        while self._buffered > self.max_buffered_bytes:
            largest = max(self._conns.values(), key=lambda c: c.held)
            if not largest.held:  # pragma: no cover - the total says otherwise
                break
            self.counters["over_buffer_budget"] += 1
            self._close(
                largest,
                f"dropped: it holds {largest.held} bytes of unfinished frames, the "
                f"most while all hold {self._buffered}, over the "
                f"{self.max_buffered_bytes}-byte budget (--max-buffered-bytes)",
                logging.WARNING,
                kind="budget",
            )

    def _handle(self, conn: _Conn, frame: Frame) -> None:
        self.counters["frames_in"] += 1
        message = frame.message
        if message is None:
            self._drop(conn, frame.error or "bad frame", category="undecodable")
            return
        routing = self._router.route(conn.id, message)
        if self.recorder is not None:
            self._record(message.get("TO_ROOM"), routing)
        self._deliver(conn, routing)

    def _record(self, room: object, routing: Routing) -> None:
        """Count one routed frame in, and its copies out, under ``room``."""
        recorder = self.recorder
        assert recorder is not None
        nbytes = copies = 0
        for targets, payload in routing.deliveries:
            nbytes = len(payload)  # the frame as sent: header and body
            copies += len(targets)
        recorder.frame_in(room, nbytes)
        if copies:
            recorder.frame_out(room, nbytes, copies)

    def _deliver(self, conn: _Conn, routing: Routing) -> None:
        if routing.problem is not None:
            if routing.refused:
                self.counters["refused"] += 1
            self._drop(
                conn,
                routing.problem,
                "refused" if routing.refused else "dropped",
                category="refused" if routing.refused else "unroutable",
            )
        # (a REGISTER names the connection even when it cannot be delivered)
        if conn.id in self._unregistered and self._router.registered(conn.id):
            del self._unregistered[conn.id]
        conns = self._conns
        for targets, payload in routing.deliveries:
            for target in targets:
                other = conns.get(target)
                if other is not None:
                    self._enqueue(other, payload)
        if self._queued > self.max_queued_bytes:
            self._over_queue_budget()
        if routing.close:
            self._close(conn, "disconnected (DISCONNECT)")

    def _drop(
        self,
        conn: _Conn,
        problem: str,
        kind: str = "dropped",
        *,
        category: str = "unroutable",
    ) -> None:
        self.counters["dropped"] += 1
        if self.recorder is not None:
            self.recorder.drop(category)
        self._throttle.log(
            self._now,
            kind,
            "dropped a message from %s: %s",
            self._who(conn),
            problem[:300],
        )

    # -- writing -----------------------------------------------------------------------

    def _enqueue(self, conn: _Conn, payload: bytes) -> None:
        conn.out.append(payload)
        conn.out_bytes += len(payload)
        entry = self._shared.get(id(payload))
        if entry is None:
            self._shared[id(payload)] = [len(payload), 1]
            self._queued += len(payload)
        else:
            entry[1] += 1
        self.counters["frames_out"] += 1
        if conn.out_bytes > self.max_queue_bytes:
            self.counters["slow_disconnected"] += 1
            self._close(
                conn,
                f"dropped: {conn.out_bytes} bytes wait to be sent to it, over the "
                f"{self.max_queue_bytes}-byte limit per client (--max-queue-bytes; "
                f"it reads slower than frames come for it)",
                logging.WARNING,
                kind="budget",
            )
            return
        if not conn.writing:
            # Flushed once per loop pass: frames routed to it meanwhile share a write.
            self._dirty[conn.id] = conn

    def _release(self, buf: bytes | memoryview) -> None:
        """``buf`` left a queue: uncount it if no other queue holds it."""
        key = id(buf.obj if type(buf) is memoryview else buf)
        entry = self._shared[key]
        entry[1] -= 1
        if not entry[1]:
            del self._shared[key]
            self._queued -= entry[0]

    def _over_queue_budget(self) -> None:
        while self._queued > self.max_queued_bytes:
            largest = max(self._conns.values(), key=lambda c: c.out_bytes)
            if not largest.out_bytes:  # pragma: no cover - the total says otherwise
                break
            self.counters["over_queue_budget"] += 1
            self.counters["slow_disconnected"] += 1
            self._close(
                largest,
                f"dropped: {largest.out_bytes} bytes wait to be sent to it, the "
                f"most while all wait for {self._queued}, over the "
                f"{self.max_queued_bytes}-byte budget (--max-queued-bytes)",
                logging.WARNING,
                kind="budget",
            )

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
                    self._release(out.popleft())
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
        self._watch(conn)
