"""The swergio aggregator component's I/O: socket loop, reconnects, state file.

All decisions about messages are
:class:`~ensemble_agg.protocol.component.AggregatorProtocol`'s, those about
messages it could not send included (what waits for a reconnect, what an
unsent ``CONTRIBUTION`` or an unsaved GET means); this module moves frames
between it and the socket, keeps time, and writes the state file.

Theory of operation
-------------------
One thread runs :meth:`AggregatorComponent.run`: it polls the socket with a
short timeout, hands each frame to the protocol inside one exception
boundary (a bug in our own code is logged with its traceback and counted,
never fatal), sends what the protocol returns, and between reads checks the
stop flag, the straggler deadline, the state file and the stats timer.  A
lost connection is retried with capped, jittered exponential backoff; a
connection that dies within a few seconds of being made counts as a failed
attempt, so a server that accepts and closes at once is not hammered.  The
protocol's state (the open round and the tally) is untouched by reconnects.
A message that could not be sent goes to the protocol
(:meth:`~ensemble_agg.protocol.component.AggregatorProtocol.hold`), whose
outbox this loop sends after the reconnect; at stop it hands back what is
still there (``return_unsent``).  A GET's reply goes out only after the
state file was written, or marked by ``reply_not_saved`` if that failed.

With ``settings.http`` the component also owns a
:class:`~ensemble_agg.observe.ClientRecorder` (the protocol tells it about
messages, this loop about the link, the state file and bugs) and an
:class:`~ensemble_agg.observe.HttpEndpoint` serving its snapshots from a
thread of its own, started before the first connection and stopped at exit.
The loop publishes a snapshot at most every half second, and at once when
the connection state changes.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from ..core.aggregator import Aggregator
from ..errors import ServerUnreachable
from ..observe import ClientRecorder, HttpEndpoint
from ..protocol.component import AggregatorProtocol, Counters, Outgoing, Rooms
from ..protocol.messages import may_concern_aggregator
from .client import ConnectionLost, TunedClient
from .settings import Settings
from .state_file import StateFileError, load_tally, remove_tally, save_tally

__all__ = ["AggregatorComponent", "HttpBindError", "ServerUnreachable", "Settings"]

logger = logging.getLogger(__name__)

#: Backoff between connection attempts: first delay and cap, in seconds.
BACKOFF_FIRST, BACKOFF_CAP = 0.1, 5.0
#: A connection lost sooner than this after it was made counts as a failure.
STABLE_AFTER = 2.0
#: Longest the loop sleeps in one poll, so stop requests are seen quickly.
POLL_INTERVAL = 0.1
#: The state file is at most this far behind the tally (a GET is written at once).
SAVE_EVERY = 0.1
#: Per-model labels of --http's metrics without --model-ids or --max-ids.
HTTP_MODEL_LABELS = 64


class HttpBindError(OSError):
    """``--http``'s address cannot be listened on; ``str()`` says which and why."""


class AggregatorComponent:
    """The swergio aggregator: ``LOGITS`` in, ``ACTION`` and ``CONTRIBUTION`` out.

    Parameters
    ----------
    settings : Settings
        Where to connect and how to aggregate.
    stop : threading.Event, optional
        Set it to make :meth:`run` disconnect and return; a signal handler
        or another thread may set it.  A send blocked on a peer that does not
        read gives up as soon as it is set.
    clock : callable, optional
        Monotonic clock in seconds (for tests).

    Raises
    ------
    StateFileError
        If the state file exists but cannot be read, or cannot be written.
    ValueError, TypeError
        For settings the aggregator refuses (e.g. ``max_ids`` below ``models``).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.stop = stop if stop is not None else threading.Event()
        self.clock = clock
        aggregator = Aggregator(
            settings.models,
            rule=settings.rule,
            temperature=settings.temperature,
            rng=settings.seed,
            weights=settings.weights,
            model_ids=settings.model_ids,
            max_ids=settings.id_cap(),
            n_actions=settings.actions,
        )
        #: What --http serves, or None (then the loop records nothing).
        self.recorder: ClientRecorder | None = None
        self.http: HttpEndpoint | None = None
        self._http_started = False
        if settings.http is not None:
            self.recorder = ClientRecorder(
                model_ids=settings.model_ids,
                max_ids=settings.max_ids or max(HTTP_MODEL_LABELS, settings.models),
            )
            host, http_port = settings.http
            self.http = HttpEndpoint(
                host, http_port, self.recorder.latest, "agg-client"
            )
        self.protocol = AggregatorProtocol(
            aggregator,
            Rooms(
                settings.name,
                settings.logits_room,
                settings.action_room,
                settings.evolution_room,
            ),
            max_actions=settings.max_actions,
            step_timeout=settings.step_timeout,
            recorder=self.recorder,
        )
        self.client: TunedClient | None = None
        self._state_error = False
        self._last_save = -float("inf")
        self._link_error: Exception | None = None  # set when the link broke
        self._connected_at = -float("inf")
        self._backoff = BACKOFF_FIRST
        self._stats_since = clock()
        self._rounds_then = 0
        if settings.state_file is not None:
            aggregator.add_contributions(load_tally(settings.state_file))
            # Fail now, at start, if the file cannot be written.
            save_tally(settings.state_file, aggregator.contributions)

    @property
    def aggregator(self) -> Aggregator:
        """The round collector and tally."""
        return self.protocol.aggregator

    @property
    def counters(self) -> Counters:
        """The protocol's counters (rounds, drops, reconnects, ...)."""
        return self.protocol.counters

    # -- the loop ------------------------------------------------------------

    def run(self) -> None:
        """Connect, serve until :attr:`stop` is set, then disconnect.

        Raises :class:`ServerUnreachable` if the first connection fails for
        longer than ``connect_timeout``, and :class:`HttpBindError` if
        ``settings.http`` cannot be listened on.  Nothing a peer sends makes
        it return or raise; state file write failures are logged, not raised.
        """
        self.start_http()
        try:
            self._serve()
        finally:
            self._observe_connection("stopping")
            if self.http is not None:
                self.http.stop()

    def start_http(self) -> str | None:
        """Start ``settings.http``'s endpoint if not yet; return its URL (None: off).

        :meth:`run` calls it; call it before to learn the port of ``:0``.
        Raises :class:`HttpBindError` if the address cannot be listened on.
        """
        http = self.http
        if http is None:
            return None
        if not self._http_started:
            try:
                http.start()
            except OSError as exc:
                raise HttpBindError(
                    f"cannot listen on {http.host}:{http.requested_port} for "
                    f"--http: {exc.strerror or exc}"
                ) from None
            self._http_started = True
            logger.info(
                "serving /metrics, /healthz, /status and the live page on %s",
                self.http_url,
            )
        return self.http_url

    @property
    def http_url(self) -> str | None:
        """The live page's URL once :meth:`start_http` ran, else None."""
        http = self.http
        if http is None or not self._http_started:
            return None
        host = f"[{http.host}]" if ":" in http.host else http.host
        return f"http://{host}:{http.port}/"

    def _serve(self) -> None:
        s = self.settings
        self._observe_connection("connecting")
        if not self._connect(first=True):
            return
        client = self.client
        assert client is not None
        assert s.server is not None
        logger.info(
            "connected to %s:%d as %r; %d models per round, rule %r",
            s.server,
            s.port,
            s.name,
            s.models,
            s.rule,
        )
        next_stats = self.clock() + s.stats_interval if s.stats_interval > 0 else None
        try:
            while not self.stop.is_set():
                try:
                    frames = client.poll(POLL_INTERVAL)
                except ConnectionLost as exc:
                    self._link_error = exc
                    frames = exc.frames
                now = self.clock()
                # Every frame of a batch is handled even if a send failed on
                # the way: failed sends wait in the outbox for the reconnect.
                handle = self.protocol.handle_frame
                for frame in frames:
                    self._guarded(handle, frame, now)
                self._guarded(self.protocol.tick, now)
                recorder = self.recorder
                if recorder is not None:
                    recorder.skipped_frames = client.skipped
                    recorder.maybe_publish(now)
                if self.protocol.dirty and now - self._last_save >= SAVE_EVERY:
                    self._save_state()
                if self._link_error is not None:
                    logger.warning(
                        "connection to %s:%d lost: %s",
                        s.server,
                        s.port,
                        self._link_error,
                    )
                    self._link_error = None
                    self._observe_connection("disconnected")
                    if not self._connect(first=False):
                        break
                    assert self.client is not None
                    client = self.client
                if next_stats is not None and now >= next_stats:
                    self.log_stats()
                    next_stats = now + s.stats_interval
        finally:
            self.protocol.return_unsent()
            if not self._save_state(final=True):
                tally = self.aggregator.contributions
                logger.error(
                    "the tally of %d models (%.6g rounds) could not be saved at stop; "
                    "it is lost unless the state file is fixed and a GET is answered "
                    "before the next stop",
                    len(tally),
                    sum(tally.values()),
                )
            client.close()
            self.log_stats()
            io = client.io
            logger.info(
                "disconnected from %s:%d; socket calls: recv=%d send=%d, "
                "wake-ups with frames=%d, frames=%d",
                s.server,
                s.port,
                io.recvs,
                io.sends,
                io.wakeups,
                io.frames,
            )

    def _guarded(self, step: Callable[..., list[Outgoing]], *args: Any) -> None:
        """Run ``step(*args)`` and send its output; a bug here is logged, not fatal."""
        try:
            for out in step(*args):
                message = out.message
                if out.clears_tally and not self._save_state(durable=True):
                    message = self.protocol.reply_not_saved(message)
                self._send(message)
        except Exception:
            self.counters.internal_errors += 1
            if self.recorder is not None:
                self.recorder.internal_error()
            logger.exception("internal error while handling a message; carrying on")

    def _connect(self, *, first: bool) -> bool:
        """Connect (or reconnect) with backoff; False if stopped meanwhile."""
        s = self.settings
        deadline = None
        if first and s.connect_timeout is not None:
            deadline = self.clock() + s.connect_timeout
        if not first:
            if self.clock() - self._connected_at < STABLE_AFTER:
                # The last connection died young (a server that accepts and
                # closes at once): that was a failed attempt too.
                self._pause(self._backoff)
                self._backoff = min(self._backoff * 2, BACKOFF_CAP)
            else:
                self._backoff = BACKOFF_FIRST
        attempt = 0
        while not self.stop.is_set():
            attempt += 1
            try:
                if self.client is None:
                    self.client = self._make_client()
                else:
                    self.client.reconnect()
                if not first:
                    self._flush_outbox()
            except OSError as exc:
                reason = exc.strerror or str(exc) or type(exc).__name__
                delay = self._backoff
                if deadline is not None and self.clock() + delay > deadline:
                    raise ServerUnreachable(
                        f"cannot reach the swergio server at {s.server}:{s.port} "
                        f"({reason}); gave up after {s.connect_timeout:g} s"
                    ) from None
                if attempt == 1 and first:
                    logger.warning(
                        "cannot reach the swergio server at %s:%d (%s); retrying "
                        "(set the address with --server/--port or AGG_SERVER/"
                        "AGG_PORT, and --connect-timeout to give up)",
                        s.server,
                        s.port,
                        reason,
                    )
                elif attempt <= 3 or attempt % 10 == 0:
                    logger.warning(
                        "%s attempt %d to %s:%d failed (%s); next in about %.1f s",
                        "connection" if first else "reconnection",
                        attempt,
                        s.server,
                        s.port,
                        reason,
                        delay,
                    )
                self._pause(delay)
                self._backoff = min(self._backoff * 2, BACKOFF_CAP)
                continue
            self._connected_at = self.clock()
            self._observe_connection("connected")
            if not first:
                self.counters.reconnects += 1
                if self.recorder is not None:
                    self.recorder.reconnect()
                logger.info(
                    "reconnected to %s:%d (attempt %d); open round and tally kept",
                    s.server,
                    s.port,
                    attempt,
                )
            return True
        return False

    def _observe_connection(self, state: str) -> None:
        """Tell the recorder, and publish at once: /healthz must not lag."""
        if self.recorder is not None:
            self.recorder.connection(state)
            self.recorder.publish(self.clock())

    def _pause(self, delay: float) -> None:
        # Jitter, so that many components restarted together do not retry
        # in lockstep.
        self.stop.wait(delay * random.uniform(0.5, 1.0))

    def _make_client(self) -> TunedClient:
        s = self.settings
        assert s.server is not None  # resolved by the caller
        client = TunedClient(
            s.name,
            s.server,
            s.port,
            s.format,
            s.header_length,
            max_body=s.frame_limit(),
            # Short, so a stop request is honoured quickly even mid-handshake.
            connect_timeout=2.0,
            wanted=may_concern_aggregator,
            stop=self.stop,
        )
        for room in (s.logits_room, s.action_room, s.evolution_room):
            client.join_room(room)
        return client

    # -- output ----------------------------------------------------------------

    def _send(self, message: dict[str, Any]) -> None:
        """Send, or keep ``message`` for after the reconnect if the link is down."""
        assert self.client is not None
        if self._link_error is not None:
            self.protocol.hold(message)
            return
        try:
            self.client.send(message)
        except OSError as exc:
            self.protocol.hold(message)
            self._link_error = exc

    def _flush_outbox(self) -> None:
        """Send what waited for the reconnect; raises ``OSError`` if the link fails again."""
        assert self.client is not None
        outbox = self.protocol.outbox
        while outbox:
            self.client.send(outbox.first())
            outbox.sent()

    # -- the state file --------------------------------------------------------

    def _save_state(self, *, durable: bool = False, final: bool = False) -> bool:
        """Write the tally to the state file, if any; log (not raise) a failure.

        Returns True if the file now holds the tally.  A full disk or a
        vanished directory must not stop the aggregation: the error is logged
        once, and again only after a write succeeded.  If a GET's cleared
        tally (``durable``) cannot be written, the old file is removed so a
        restart cannot count its contributions twice.
        """
        path = self.settings.state_file
        self._last_save = self.clock()
        self.protocol.dirty = False
        if path is None:
            return True
        try:
            save_tally(path, self.aggregator.contributions)
        except StateFileError as exc:
            if self.recorder is not None:
                self.recorder.state_save(False)
            if final:
                logger.error("%s", exc)
            elif not self._state_error:
                logger.error("%s; the tally is kept in memory, writes are retried", exc)
            self._state_error = True
            self.protocol.dirty = True
            if durable:
                return remove_tally(path)
            return False
        if self.recorder is not None:
            self.recorder.state_save(True)
        if self._state_error:
            logger.info("state file %s written again", path)
        self._state_error = False
        return True

    def log_stats(self) -> None:
        """Log the one-line counters summary (INFO); the rate is since the last line."""
        c = self.counters
        now = self.clock()
        elapsed = max(now - self._stats_since, 1e-9)
        rate = (c.rounds - self._rounds_then) / elapsed
        self._stats_since, self._rounds_then = now, c.rounds
        client = self.client
        skipped = client.skipped if client is not None else 0
        per_wakeup = client.io.frames_per_wakeup if client is not None else 0.0
        logger.info(
            "stats: rounds=%d (%.1f/s) early_closed=%d discarded=%d dropped=%d "
            "skipped_frames=%d reconnects=%d gets=%d warnings_suppressed=%d "
            "internal_errors=%d frames_per_wakeup=%.2f",
            c.rounds,
            rate,
            c.early,
            c.discarded,
            c.dropped,
            skipped,
            c.reconnects,
            c.gets,
            self.protocol.warnings.suppressed,
            c.internal_errors,
            per_wakeup,
        )
