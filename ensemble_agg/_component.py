"""The swergio aggregator component: wiring, loop, reconnects, state file.

This module is the I/O shell around :class:`ensemble_agg.Aggregator`.  It
holds no aggregation logic: it turns wire messages into
:meth:`~ensemble_agg.Aggregator.submit` calls (through the two handlers of
the original component, registered on a swergio ``Client`` with ``Trigger``
and ``MESSAGE_TYPE``) and results back into messages.

Theory of operation
-------------------
One thread runs :meth:`AggregatorComponent.run`: it polls the socket with a
short timeout, dispatches each frame, and between frames checks the stop
flag, the straggler deadline and the stats timer.  Peer mistakes are
:class:`~ensemble_agg._wire.BadMessage` (or the aggregator's
``ValueError``/``TypeError``, converted at the one place that calls it):
logged as one WARNING with sender and reason, counted, dropped.  A lost
connection is retried with capped exponential backoff; the aggregator's
state (the open round and the tally) is untouched by it, and messages that
could not be sent are sent again after the reconnect.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swergio import MESSAGE_TYPE, Trigger

from ._aggregator import Aggregator, UnknownModelError
from ._state_file import StateFileError, load_tally, save_tally
from ._wire import BadMessage, Frame, parse_command, parse_submission, sender_of
from .swergio_shim import ConnectionLost, TunedClient

__all__ = ["AggregatorComponent", "ServerUnreachable", "Settings"]

logger = logging.getLogger("ensemble_agg.agg_client")

#: Backoff between connection attempts: first delay and cap, in seconds.
BACKOFF_FIRST, BACKOFF_CAP = 0.1, 5.0
#: Longest the loop sleeps in one poll, so stop requests are seen quickly.
POLL_INTERVAL = 0.1
#: Outgoing messages kept for resending after a reconnect.
OUTBOX_LIMIT = 1000


class ServerUnreachable(ConnectionError):
    """The server could not be reached within ``connect_timeout``."""


@dataclass
class Settings:
    """Everything ``agg-client`` can be told; defaults are the original's."""

    server: str
    port: int = 8080
    name: str = "aggregation"
    models: int = 20
    format: str = "utf-8"
    header_length: int = 10
    logits_room: str = "logits"
    action_room: str = "action"
    evolution_room: str = "evolution"
    rule: str = "sum"
    temperature: float = 1.0
    seed: int | None = None
    step_timeout: float | None = None
    state_file: Path | None = None
    connect_timeout: float | None = None
    max_actions: int = 4096
    model_ids: list[str] | None = None
    max_ids: int | None = None
    stats_interval: float = 60.0
    max_frame_bytes: int = 64 << 20

    def id_cap(self) -> int | None:
        """The cap on distinct ids tracked: none if ``model_ids`` restricts them."""
        if self.model_ids is not None:
            return None
        return self.max_ids if self.max_ids is not None else max(1024, 4 * self.models)


@dataclass
class Counters:
    """What the stats line reports."""

    rounds: int = 0
    early: int = 0
    dropped: int = 0
    reconnects: int = 0
    gets: int = 0
    since: float = field(default_factory=time.monotonic)  # of the last stats line
    rounds_then: int = 0  # rounds at the last stats line


class AggregatorComponent:
    """The swergio aggregator: ``LOGITS`` in, ``ACTION`` and ``CONTRIBUTION`` out.

    Parameters
    ----------
    settings : Settings
        Where to connect and how to aggregate.
    stop : threading.Event, optional
        Set it to make :meth:`run` disconnect and return; a signal handler
        or another thread may set it.
    clock : callable, optional
        Monotonic clock in seconds (for tests).
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
        self.aggregator = Aggregator(
            settings.models,
            rule=settings.rule,
            temperature=settings.temperature,
            rng=settings.seed,
            model_ids=settings.model_ids,
            max_ids=settings.id_cap(),
        )
        self.counters = Counters(since=clock())
        self.client: TunedClient | None = None
        self._outbox: collections.deque[dict[str, Any]] = collections.deque(
            maxlen=OUTBOX_LIMIT
        )
        self._cap_warned = False
        self._state_error = False
        self._send_error: Exception | None = None  # set when the link broke
        self._rooms = {settings.logits_room, settings.evolution_room}
        self._handlers: dict[str, list[Any]] = {}
        if settings.state_file is not None:
            self.aggregator.add_contributions(load_tally(settings.state_file))
            # Fail now, at start, if the file cannot be written.
            save_tally(settings.state_file, self.aggregator.contributions)

    # -- the loop ------------------------------------------------------------

    def run(self) -> None:
        """Connect, serve until :attr:`stop` is set, then disconnect.

        Raises :class:`ServerUnreachable` if the first connection fails for
        longer than ``connect_timeout``.  State file write failures while
        running are logged, not raised.
        """
        s = self.settings
        if not self._connect(first=True):
            return
        assert self.client is not None
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
                timeout = POLL_INTERVAL
                try:
                    frames = self.client.poll(timeout)
                except ConnectionLost as exc:
                    self._send_error = exc
                    frames = []
                # Every frame of a batch is handled even if a send failed on
                # the way: handling only changes state, and failed sends wait
                # in the outbox for the reconnect.
                for frame in frames:
                    self._dispatch(frame)
                self._check_deadline()
                if self._send_error is not None:
                    logger.warning(
                        "connection to %s:%d lost: %s",
                        s.server,
                        s.port,
                        self._send_error,
                    )
                    self._send_error = None
                    if not self._connect(first=False):
                        break
                if next_stats is not None and self.clock() >= next_stats:
                    self.log_stats()
                    next_stats += s.stats_interval
        finally:
            self._save_state()
            self.client.close()
            self.log_stats()
            logger.info("disconnected from %s:%d", s.server, s.port)

    def _connect(self, *, first: bool) -> bool:
        """Connect (or reconnect) with backoff; False if stopped meanwhile."""
        s = self.settings
        deadline = None
        if first and s.connect_timeout is not None:
            deadline = self.clock() + s.connect_timeout
        delay = BACKOFF_FIRST
        attempt = 0
        while not self.stop.is_set():
            attempt += 1
            try:
                if self.client is None:
                    self.client = self._make_client()
                else:
                    self.client.reconnect()
            except OSError as exc:
                reason = exc.strerror or str(exc) or type(exc).__name__
                if deadline is not None and self.clock() + delay > deadline:
                    raise ServerUnreachable(
                        f"cannot reach the swergio server at {s.server}:{s.port} "
                        f"({reason}); gave up after {s.connect_timeout:g} s"
                    ) from None
                logger.warning(
                    "%s attempt %d to %s:%d failed (%s); next in %.1f s",
                    "connection" if first else "reconnection",
                    attempt,
                    s.server,
                    s.port,
                    reason,
                    delay,
                )
                self.stop.wait(delay)
                delay = min(delay * 2, BACKOFF_CAP)
                continue
            if not first:
                self.counters.reconnects += 1
                logger.info(
                    "reconnected to %s:%d (attempt %d); open round and tally kept",
                    s.server,
                    s.port,
                    attempt,
                )
                self._flush_outbox()
            return True
        return False

    def _make_client(self) -> TunedClient:
        s = self.settings
        client = TunedClient(
            s.name,
            s.server,
            s.port,
            s.format,
            s.header_length,
            max_body=s.max_frame_bytes,
            # Short, so a stop request is honoured quickly even mid-handshake.
            connect_timeout=2.0,
        )
        custom = MESSAGE_TYPE.DATA.CUSTOM
        client.add_eventHandler(
            self.aggregate,
            custom,
            responseRooms=s.action_room,
            trigger=Trigger(custom, s.logits_room),
        )
        client.add_eventHandler(
            self.send_contribution,
            custom,
            responseRooms=s.evolution_room,
            trigger=Trigger(custom, s.evolution_room),
        )
        self._handlers = {}
        for handler in client.eventHandlers:
            for room in handler.trigger.rooms:
                self._handlers.setdefault(room, []).append(handler)
        return client

    # -- dispatch ------------------------------------------------------------

    def _dispatch(self, frame: Frame) -> None:
        message = frame.message
        if message is None:
            self._drop(f"{frame.error}", "an unknown sender (undecodable frame)")
            return
        room = message.get("TO_ROOM")
        if type(room) is not str or room not in self._rooms:
            return  # _command traffic, other rooms, direct messages
        kind = message.get("TYPE")
        if kind != MESSAGE_TYPE.DATA.CUSTOM.id:
            if type(kind) is not str or MESSAGE_TYPE.by_id(kind) is None:
                self._drop(
                    f"unknown TYPE {kind!r} in room {room!r}", sender_of(message)
                )
            return
        assert self.client is not None
        # Room and TYPE are what the handlers' Triggers test; they were checked
        # above, so the handler is looked up instead of re-running every
        # Trigger (whose MESSAGE_TYPE lookups cost more than the aggregation).
        for handler in self._handlers[room]:
            try:
                responses = handler.handle(message)
            except BadMessage as exc:
                self._drop(f"{exc} (room {room!r})", sender_of(message))
                continue
            for response in responses or ():
                self._send(self.client.add_propagated_fields(message, response))

    def _drop(self, reason: str, sender: str) -> None:
        self.counters.dropped += 1
        logger.warning("dropped a message from %s: %s", sender, reason)

    def _send(self, message: dict[str, Any]) -> None:
        """Send, or keep ``message`` for after the reconnect if the link is down."""
        assert self.client is not None
        if self._send_error is not None:
            self._outbox.append(message)
            return
        try:
            self.client.send(message)
        except OSError as exc:
            self._outbox.append(message)
            self._send_error = exc

    def _flush_outbox(self) -> None:
        assert self.client is not None
        while self._outbox:
            self.client.send(self._outbox[0])
            self._outbox.popleft()

    # -- the two handlers of the original component ---------------------------

    def aggregate(self, msg: dict[str, Any]) -> dict[str, Any] | None:
        """Handle a logits-room message; return the ACTION when a round completes."""
        sub = parse_submission(msg, self.settings.max_actions)
        if sub is None:
            return None
        try:
            result = self.aggregator.submit(
                sub.model_id, sub.logits, sub.deterministic, now=self.clock()
            )
        except UnknownModelError as exc:
            if exc.reason != "cap":
                raise BadMessage(str(exc)) from None
            self.counters.dropped += 1
            if not self._cap_warned:  # one line, not one per message of a flood
                self._cap_warned = True
                logger.warning(
                    "dropping messages from new model ids: %s (further drops are "
                    "counted in the stats line)",
                    exc,
                )
            return None
        except (ValueError, TypeError) as exc:
            raise BadMessage(str(exc)) from None
        if result is None:
            return None
        self._round_done()
        return {"ACTION": [result.action]}

    def send_contribution(self, msg: dict[str, Any]) -> dict[str, Any] | None:
        """Handle an evolution-room message; answer ``CMD: GET`` with the tally."""
        if parse_command(msg) != "GET":
            return None
        tally = self.aggregator.pop_contributions()
        for model_id in self.aggregator.pending:  # seen, but no round finished yet
            tally.setdefault(model_id, 0.0)
        self._cap_warned = False
        self.counters.gets += 1
        self._save_state()
        # Ids are strings (parse_submission) and shares Python floats
        # (Aggregator): the tally is plain JSON as it is.
        return {"CONTRIBUTION": tally}

    # -- time-driven work ------------------------------------------------------

    def _check_deadline(self) -> None:
        timeout = self.settings.step_timeout
        if timeout is None:
            return
        opened = self.aggregator.round_opened_at
        if opened is None or self.clock() - opened < timeout:
            return
        missing = self.aggregator.missing
        present = len(self.aggregator.pending)
        try:
            result = self.aggregator.close_round()
        except ValueError as exc:
            ids = self.aggregator.discard_round()
            logger.warning(
                "step timeout: round with %d models could not be aggregated and "
                "was discarded (%s); ids %s",
                len(ids),
                exc,
                list(ids),
            )
            return
        assert result is not None
        self.counters.early += 1
        logger.warning(
            "step timeout: closed a round after %.3g s with %d of %d models; "
            "missing: %s",
            timeout,
            present,
            self.settings.models,
            ", ".join(map(repr, missing)) if missing else "(ids not known yet)",
        )
        self._round_done()
        self._send(
            {
                "ID": uuid.uuid4().hex,
                "TYPE": MESSAGE_TYPE.DATA.CUSTOM.id,
                "TO_ROOM": self.settings.action_room,
                "SENT_BY": self.settings.name,
                "ACTION": [result.action],
            }
        )

    def _round_done(self) -> None:
        self.counters.rounds += 1
        self._save_state()

    def _save_state(self) -> None:
        """Write the tally to the state file, if any; log (not raise) a failure.

        A full disk or a vanished directory must not stop the aggregation;
        the error is logged once, and again only after a write succeeded.
        """
        if self.settings.state_file is None:
            return
        try:
            save_tally(self.settings.state_file, self.aggregator.contributions)
        except StateFileError as exc:
            if not self._state_error:
                logger.error("%s; the tally is kept in memory, writes are retried", exc)
            self._state_error = True
        else:
            if self._state_error:
                logger.info("state file %s written again", self.settings.state_file)
            self._state_error = False

    def log_stats(self) -> None:
        """Log the one-line counters summary (INFO); the rate is since the last line."""
        c = self.counters
        now = self.clock()
        elapsed = max(now - c.since, 1e-9)
        rate = (c.rounds - c.rounds_then) / elapsed
        c.since, c.rounds_then = now, c.rounds
        logger.info(
            "stats: rounds=%d (%.1f/s) early_closed=%d dropped=%d reconnects=%d gets=%d",
            c.rounds,
            rate,
            c.early,
            c.dropped,
            c.reconnects,
            c.gets,
        )
