"""A small HTTP/1.1 endpoint on its own thread: ``/metrics``, ``/healthz``, ``/status``, ``/``.

One thread runs one ``selectors`` loop over the listening socket and every
connection; no thread per connection, nothing blocks.  The command's own loop
is never called from here: the endpoint only calls ``snapshot()``, which
returns the dict the loop last published (a reference read), so a slow or
hostile HTTP client cannot delay a round or a routed frame.

Limits against hostile clients (all per connection unless said):

- the request line and headers together at most ``max_header_bytes``
  (else ``431`` and close); no request bodies (a GET with one is ``400``);
- a complete request within ``request_timeout`` of its first byte, or of the
  accept (slowloris): else the connection is closed;
- an idle keep-alive connection is closed after ``idle_timeout``;
- a response must make progress within ``write_timeout``; while one is being
  written the connection is not read, so its buffers hold one request and one
  response at most (a response is bounded because the snapshot is);
- at most ``max_connections`` at once: a new connection evicts the oldest
  idle one (or, if none is idle, the one whose request started first), so a
  crowd of idle sockets cannot lock a health check out.
"""

from __future__ import annotations

import json
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from ..util.ratelimit import RateLimiter
from ..util.text import preview

__all__ = ["HttpEndpoint", "parse_address"]

logger = logging.getLogger(__name__)

KINDS = ("agg-client", "agg-server")
_ALLOWED = "GET, HEAD"
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}
_TEXT = "text/plain; charset=utf-8"


def parse_address(text: str, option: str = "--http") -> tuple[str, int]:
    """Split ``[HOST:]PORT`` into ``(host, port)``; HOST defaults to 127.0.0.1.

    An IPv6 host goes in brackets (``[::1]:9100``).  Port 0 asks the kernel
    for a free port.

    Raises
    ------
    ValueError
        With a usage-error text naming `option`, the expected form and what
        is wrong.

    Examples
    --------
    >>> parse_address("9100")
    ('127.0.0.1', 9100)
    >>> parse_address("0.0.0.0:9100")
    ('0.0.0.0', 9100)
    >>> parse_address("[::1]:9100")
    ('::1', 9100)
    >>> parse_address("localhost:http")
    Traceback (most recent call last):
    ...
    ValueError: --http expects [HOST:]PORT (e.g. 9100 or 127.0.0.1:9100), got 'localhost:http': the port must be a number from 0 to 65535
    """  # noqa: E501
    if not isinstance(text, str):
        raise TypeError(f"{option} expects a string, got {type(text).__name__}")

    def fail(why: str) -> ValueError:
        return ValueError(
            f"{option} expects [HOST:]PORT (e.g. 9100 or 127.0.0.1:9100), "
            f"got {preview(text)}: {why}"
        )

    value = text.strip()
    if value.startswith("["):
        host, sep, port = value[1:].partition("]:")
        if not sep or not host:
            raise fail("an IPv6 host is written [HOST]:PORT")
    elif value.count(":") == 1:
        host, _, port = value.partition(":")
        host = host or "127.0.0.1"
    elif ":" in value:
        raise fail("an IPv6 host must be in brackets, e.g. [::1]:9100")
    else:
        host, port = "127.0.0.1", value
    if not port.isascii() or not port.isdigit() or int(port) > 65535:
        raise fail("the port must be a number from 0 to 65535")
    if any(c.isspace() for c in host):
        raise fail("the host has a space in it")
    return host, int(port)


class _Conn:
    __slots__ = (
        "addr",
        "close_after",
        "deadline",
        "inbuf",
        "last_active",
        "lingering",
        "opened",
        "out",
        "reading",
        "sock",
        "started",
    )

    def __init__(self, sock: socket.socket, addr: Any, now: float, timeout: float):
        self.sock = sock
        self.addr = addr
        self.inbuf = bytearray()
        self.out = memoryview(b"")
        self.opened = now
        self.last_active = now
        self.started: float | None = now  # the accept starts the first request's clock
        self.deadline = now + timeout
        self.close_after = False
        self.lingering = False
        self.reading = True

    @property
    def idle(self) -> bool:
        return not self.inbuf and not self.out


class _BadRequest(Exception):
    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status


class HttpEndpoint:
    """Serve a recorder's snapshot over HTTP/1.1 from a thread of its own.

    Parameters
    ----------
    host : str
        Address to bind (only this one); ``"127.0.0.1"`` keeps it local.
    port : int
        Port; 0 picks a free one (see :attr:`port` after :meth:`start`).
    snapshot : callable
        Returns the last published snapshot dict (``recorder.latest``), or
        ``None`` before the first; called from the endpoint's thread, so it
        must only read a reference.
    kind : {"agg-client", "agg-server"}
        Which page to serve.
    max_connections, max_header_bytes : int, optional
        Defaults 32 and 8192.
    request_timeout, idle_timeout, write_timeout : float, optional
        Seconds; defaults 5, 30 and 10.  See the module docstring.

    Examples
    --------
    >>> import urllib.request
    >>> from ensemble_agg.observe import ClientRecorder, HttpEndpoint
    >>> rec = ClientRecorder()
    >>> rec.connection("connected")
    >>> _ = rec.publish(0.0)
    >>> endpoint = HttpEndpoint("127.0.0.1", 0, rec.latest, "agg-client").start()
    >>> url = f"http://127.0.0.1:{endpoint.port}/healthz"
    >>> urllib.request.urlopen(url, timeout=5).read()
    b'ok\\n'
    >>> endpoint.stop()
    """

    def __init__(
        self,
        host: str,
        port: int,
        snapshot: Callable[[], dict[str, Any] | None],
        kind: str,
        *,
        max_connections: int = 32,
        max_header_bytes: int = 8192,
        request_timeout: float = 5.0,
        idle_timeout: float = 30.0,
        write_timeout: float = 10.0,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
        if max_connections < 1 or max_header_bytes < 256:
            raise ValueError("max_connections must be >= 1 and max_header_bytes >= 256")
        self.host = host
        self.requested_port = port
        self.kind = kind
        self.max_connections = max_connections
        self.max_header_bytes = max_header_bytes
        self.request_timeout = request_timeout
        self.idle_timeout = idle_timeout
        self.write_timeout = write_timeout
        self._snapshot = snapshot
        self._metrics: Any = None  # a MetricsRenderer, made on the first scrape
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._conns: dict[int, _Conn] = {}
        self._selector = selectors.DefaultSelector()
        self._status: tuple[object, bytes] | None = None  # the last /status body
        self._accept_paused_until: float | None = None
        self._warnings = RateLimiter(logger, burst=5, period=10.0)

    # -- life cycle --------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._listener is None:
            raise RuntimeError("the endpoint is not started")
        return int(self._listener.getsockname()[1])

    def start(self) -> HttpEndpoint:
        """Bind and listen here (so an address in use raises ``OSError`` now); serve on a thread."""
        if self._thread is not None:
            raise RuntimeError("the endpoint is already started")
        infos = socket.getaddrinfo(
            self.host,
            self.requested_port,
            type=socket.SOCK_STREAM,
            flags=socket.AI_PASSIVE,
        )
        family, kind, proto, _, addr = infos[0]
        listener = socket.socket(family, kind, proto)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(addr)
            listener.listen(128)
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        # stop() writes a byte here to wake the loop out of select()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(listener, selectors.EVENT_READ, "listen")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(
            target=self._run, name=f"{self.kind}-http", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Close every connection and the listener; join the thread within `timeout`."""
        thread = self._thread
        if thread is None:
            return
        self._stopping = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        thread.join(timeout)
        if thread.is_alive():
            logger.warning("the HTTP endpoint's thread did not stop in %.1f s", timeout)
        self._thread = None

    def __enter__(self) -> HttpEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the loop ----------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stopping:
                events = self._selector.select(timeout=0.25)
                now = time.monotonic()
                for key, mask in events:
                    if key.data == "listen":
                        self._accept(now)
                    elif key.data == "wake":
                        try:
                            self._wake_r.recv(64)
                        except OSError:
                            pass
                    else:
                        self._service(key.data, mask, now)
                now = time.monotonic()
                self._sweep(now)
                if (
                    self._accept_paused_until is not None
                    and now >= self._accept_paused_until
                ):
                    self._accept_paused_until = None
                    assert self._listener is not None
                    self._selector.register(
                        self._listener, selectors.EVENT_READ, "listen"
                    )
        except Exception:  # a bug here must not go unnoticed, nor touch the command
            logger.exception("the HTTP endpoint stopped on an internal error")
        finally:
            for conn in list(self._conns.values()):
                self._close(conn)
            self._selector.close()
            if self._listener is not None:
                self._listener.close()
            self._wake_r.close()
            self._wake_w.close()

    def _accept(self, now: float) -> None:
        assert self._listener is not None
        for _ in range(64):  # then let the other connections have a turn
            try:
                sock, addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. EMFILE: leave it in the backlog for now
                # The listener stays readable: stop watching it for a moment
                # instead of spinning, and say so at most a few times.
                self._warnings.log(
                    now, "accept", "HTTP endpoint: accept failed: %s", exc
                )
                self._selector.unregister(self._listener)
                self._accept_paused_until = now + 0.5
                return
            if len(self._conns) >= self.max_connections:
                self._evict()
            sock.setblocking(False)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            conn = _Conn(sock, addr, now, self.request_timeout)
            self._conns[sock.fileno()] = conn
            self._selector.register(sock, selectors.EVENT_READ, conn)

    def _evict(self) -> None:
        conns = list(self._conns.values())
        idle = [c for c in conns if c.idle]
        victim = min(idle or conns, key=lambda c: c.last_active if c.idle else c.opened)
        self._close(victim)

    def _sweep(self, now: float) -> None:
        for conn in [c for c in self._conns.values() if now >= c.deadline]:
            self._close(conn)

    def _close(self, conn: _Conn) -> None:
        if self._conns.pop(conn.sock.fileno(), None) is None:
            return
        try:
            self._selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()

    def _service(self, conn: _Conn, mask: int, now: float) -> None:
        try:
            if mask & selectors.EVENT_READ and conn.reading:
                self._read(conn, now)
            if conn.sock.fileno() in self._conns and conn.out:
                self._write(conn, now)
        except OSError:
            self._close(conn)  # reset by peer and the like: the peer's business

    def _read(self, conn: _Conn, now: float) -> None:
        data = conn.sock.recv(65536)
        if not data:
            self._close(conn)
            return
        if conn.lingering:
            return  # the rest of a request we refused: read and forget
        if conn.started is None:
            conn.started = now
            conn.deadline = now + self.request_timeout
        conn.inbuf += data
        conn.last_active = now
        self._next_request(conn, now)

    def _next_request(self, conn: _Conn, now: float) -> None:
        head = _split_head(conn.inbuf)
        if head is None:
            if len(conn.inbuf) > self.max_header_bytes:
                self._respond(conn, 431, "request headers too large\n", close=True)
            return
        if len(head) > self.max_header_bytes:
            self._respond(conn, 431, "request headers too large\n", close=True)
            return
        conn.started = None
        try:
            method, path, keep_alive = _parse_head(head)
        except _BadRequest as exc:
            self._respond(conn, exc.status, f"{exc}\n", close=True)
            return
        self._route(conn, method, path, keep_alive)

    def _route(self, conn: _Conn, method: str, path: str, keep_alive: bool) -> None:
        head_only = method == "HEAD"
        if method not in ("GET", "HEAD"):
            self._respond(
                conn,
                405,
                f"{method} is not allowed; use GET or HEAD\n",
                close=True,
                headers=[("Allow", _ALLOWED)],
            )
            return
        close = not keep_alive
        try:
            status, ctype, body, extra = self._answer(path)
        except Exception:
            logger.exception("HTTP endpoint: answering %s failed", preview(path))
            status, ctype, body, extra = 500, _TEXT, b"internal error\n", []
        self._respond(
            conn,
            status,
            body,
            ctype=ctype,
            close=close,
            headers=extra,
            head_only=head_only,
        )

    def _answer(self, path: str) -> tuple[int, str, bytes, list[tuple[str, str]]]:
        snap = self._snapshot()
        if path == "/healthz":
            health = (snap or {}).get("health") or {
                "ok": False,
                "reason": "starting: nothing published yet",
            }
            reason = " ".join(str(health.get("reason", "")).split())[:200]
            if health.get("ok"):
                return 200, _TEXT, b"ok\n", []
            return 503, _TEXT, f"{reason or 'unhealthy'}\n".encode(), []
        if path == "/status":
            if snap is None:
                body = {
                    "kind": self.kind,
                    "health": {"ok": False, "reason": "starting"},
                }
                return 503, "application/json", _json(body), []
            if self._status is None or self._status[0] is not snap:
                self._status = (snap, _json(snap))  # once per published snapshot
            return 200, "application/json", self._status[1], []
        if path == "/metrics":
            if self._metrics is None:
                from .metrics import MetricsRenderer

                self._metrics = MetricsRenderer(self._snapshot)
            from .metrics import CONTENT_TYPE

            return 200, CONTENT_TYPE, self._metrics.render(), []
        if path == "/":
            from .page import CONTENT_SECURITY_POLICY, render_page

            csp = [("Content-Security-Policy", CONTENT_SECURITY_POLICY)]
            return 200, "text/html; charset=utf-8", render_page(self.kind), csp
        return 404, _TEXT, b"not found; try /, /metrics, /healthz or /status\n", []

    def _respond(
        self,
        conn: _Conn,
        status: int,
        body: bytes | str,
        *,
        ctype: str = _TEXT,
        close: bool = False,
        headers: list[tuple[str, str]] | None = None,
        head_only: bool = False,
    ) -> None:
        payload = body.encode() if isinstance(body, str) else body
        lines = [
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
            f"Content-Type: {ctype}",
            f"Content-Length: {len(payload)}",
            "Cache-Control: no-store",
            "X-Content-Type-Options: nosniff",
            "Referrer-Policy: no-referrer",
            f"Connection: {'close' if close else 'keep-alive'}",
            *(f"{k}: {v}" for k, v in headers or ()),
        ]
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        conn.out = memoryview(raw if head_only else raw + payload)
        conn.close_after = close
        conn.deadline = time.monotonic() + self.write_timeout
        if conn.reading:  # hold further requests back until this one is out
            conn.reading = False
            self._selector.modify(conn.sock, selectors.EVENT_WRITE, conn)

    def _write(self, conn: _Conn, now: float) -> None:
        try:
            sent = conn.sock.send(conn.out)
        except (BlockingIOError, InterruptedError):
            return
        conn.out = conn.out[sent:]
        if sent:
            conn.last_active = now
            conn.deadline = now + self.write_timeout
        if conn.out:
            return
        if conn.close_after:
            # Half-close and read what the peer still sends (e.g. the body of
            # a refused POST) until it closes or a second passes, so that our
            # answer is not lost to a reset.
            conn.sock.shutdown(socket.SHUT_WR)
            conn.lingering = conn.reading = True
            conn.inbuf.clear()
            conn.deadline = now + 1.0
            self._selector.modify(conn.sock, selectors.EVENT_READ, conn)
            return
        conn.reading = True
        conn.deadline = now + self.idle_timeout
        self._selector.modify(conn.sock, selectors.EVENT_READ, conn)
        if conn.inbuf:  # a pipelined request already read
            # Answered now, written at this connection's next turn of the
            # loop: one answer per connection per turn (others get theirs in
            # between), and no call depth that grows with the pipeline.
            conn.started = now
            conn.deadline = now + self.request_timeout
            self._next_request(conn, now)


def _split_head(buf: bytearray) -> bytes | None:
    """Take the request line and headers off `buf`, or ``None`` if incomplete."""
    crlf = buf.find(b"\r\n\r\n")
    lf = buf.find(b"\n\n")
    ends = [(i, n) for i, n in ((crlf, 4), (lf, 2)) if i >= 0]
    if not ends:
        return None
    end, width = min(ends)
    head = bytes(buf[:end])
    del buf[: end + width]
    return head


def _parse_head(head: bytes) -> tuple[str, str, bool]:
    """``(method, path, keep_alive)`` of a request head; ``_BadRequest`` if malformed."""
    lines = head.decode("latin-1").split("\n")
    parts = lines[0].rstrip("\r").split(" ")
    if len(parts) != 3 or not parts[0].isalpha() or not parts[2].startswith("HTTP/"):
        raise _BadRequest(400, "malformed request line")
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise _BadRequest(505, "only HTTP/1.0 and HTTP/1.1 are served")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.rstrip("\r").partition(":")
        if not sep or not name or name != name.strip():
            raise _BadRequest(400, "malformed header line")
        headers[name.lower()] = value.strip()
    if method in ("GET", "HEAD") and (
        headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
    ):
        raise _BadRequest(400, "a GET or HEAD request has no body")
    connection = headers.get("connection", "").lower()
    if version == "HTTP/1.1":
        keep_alive = "close" not in connection
    else:
        keep_alive = "keep-alive" in connection
    path = target.split("?", 1)[0]
    return method, path, keep_alive


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()
