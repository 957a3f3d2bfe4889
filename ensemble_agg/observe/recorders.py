"""Sans-I/O recorders: what agg-client and agg-server did, as counters and a snapshot.

Rules for this module: no sockets, threads, clocks or logging.  Time enters
only as the ``now`` argument of the calls that need it (the caller's clock,
in seconds), so everything is tested on a fake clock.

Theory of operation
-------------------
The loop calls a recorder's methods as things happen, in its own thread;
they run per frame, so each is a few attribute updates and at most two dict
lookups.  Every peer-controlled key (model id, room, drop reason, action)
goes through a bounded label table: the first ``max_ids`` distinct keys (or
exactly the ids the caller lists) get their own label, every later one is
counted under the single label ``"other"``, so a flood of fresh ids costs no
memory.  Per-model windows (lateness) are ``deque(maxlen=...)`` and the
rounds-per-second history is a fixed ring of one-second buckets.

Reading happens elsewhere: :meth:`publish` builds a new plain dict (numbers,
strings, lists, dicts; ``json.dumps`` takes it as is) and swaps it into one
attribute.  The HTTP thread reads that attribute with :meth:`latest` and never
sees a half-built snapshot, and never takes a lock on the loop's hot path.
A published dict is never changed afterwards.  The loop calls
:meth:`maybe_publish` on each tick; it publishes at most every
``publish_interval`` seconds.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import deque
from collections.abc import Hashable, Iterable, Mapping
from typing import Any

from ..util.text import preview

__all__ = [
    "CONNECTION_STATES",
    "DIRECT",
    "LATENCY_BUCKETS",
    "OTHER",
    "ClientRecorder",
    "ServerRecorder",
    "quantile",
]

#: The label that every key past a label cap is counted under.
OTHER = "other"
#: agg-client's connection states, in the order a start goes through them;
#: ``"connected"`` means connected, registered and in its rooms.
CONNECTION_STATES = ("starting", "connecting", "connected", "disconnected", "stopping")
#: Upper bounds (seconds) of the round-latency histogram's buckets; the last
#: bucket (``+Inf``) is implicit.  From half a millisecond (a local round) to
#: ten seconds (a straggler deadline).
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
# Labels are shown in metrics and on the page; a 2 MB id is cut.
_LABEL_CHARS = 80
_MAX_REASONS = 32
_MAX_ACTIONS = 64


def _label_text(key: object) -> str:
    if type(key) is str:
        text = key if len(key) <= _LABEL_CHARS else key[: _LABEL_CHARS - 3] + "..."
    else:
        text = preview(key, _LABEL_CHARS)
    # JSON lets a peer send a lone surrogate ("\\ud800"), which no encoder
    # takes: shown escaped, so /metrics and the page can always be written.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def quantile(ordered: list[float], q: float) -> float:
    """The `q`-quantile of sorted values, interpolating linearly between ranks.

    The same definition as ``numpy.quantile``'s default (``"linear"``).

    Parameters
    ----------
    ordered : list of float
        Sorted ascending, not empty.
    q : float
        In ``[0, 1]``.

    Examples
    --------
    >>> quantile([1.0, 2.0, 3.0, 4.0], 0.5)
    2.5
    >>> quantile([0.0, 10.0], 0.95)
    9.5
    """
    if not ordered:
        raise ValueError("quantile of no values")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be in [0, 1], got {q!r}")
    pos = (len(ordered) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _check_count(value: object, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {preview(value)}")
    return value


def _check_interval(value: object, name: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"{name} must be a finite number >= 0, got {preview(value)}")
    return float(value)


class _CappedCounts:
    """Counts by label, at most ``cap`` labels plus ``"other"``."""

    __slots__ = ("cap", "counts")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.counts: dict[str, int] = {}

    def add(self, key: object, n: int = 1) -> None:
        label = key if type(key) is str and len(key) <= _LABEL_CHARS else None
        label = label if label is not None else _label_text(key)
        counts = self.counts
        if label in counts:
            counts[label] += n
        elif len(counts) < self.cap:
            counts[label] = n
        else:
            counts[OTHER] = counts.get(OTHER, 0) + n

    def copy(self) -> dict[str, int]:
        return dict(self.counts)


class _RateRing:
    """Events per one-second bucket over the last ``seconds`` seconds."""

    __slots__ = ("counts", "seconds", "stamps")

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds
        self.stamps = [-1] * seconds
        self.counts = [0] * seconds

    def add(self, now: float) -> None:
        second = math.floor(now)
        i = second % self.seconds
        if self.stamps[i] != second:
            self.stamps[i] = second
            self.counts[i] = 0
        self.counts[i] += 1

    def history(self, now: float) -> list[int]:
        """Counts of the last ``seconds`` whole seconds, oldest first, ending at ``now``."""
        last = math.floor(now)
        out = []
        for second in range(last - self.seconds + 1, last + 1):
            i = second % self.seconds
            out.append(self.counts[i] if self.stamps[i] == second else 0)
        return out


class _Publisher:
    """The snapshot swap shared by both recorders."""

    def __init__(self, publish_interval: float) -> None:
        self.publish_interval = _check_interval(publish_interval, "publish_interval")
        self._published: dict[str, Any] | None = None
        self._published_at: float | None = None
        self._first_now: float | None = None
        self._now = 0.0

    def snapshot(self, now: float | None = None) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError

    def _saw(self, now: float) -> None:
        self._now = now
        if self._first_now is None:
            self._first_now = now

    def due(self, now: float) -> bool:
        """True if the last snapshot is ``publish_interval`` old (or there is none)."""
        then = self._published_at
        return then is None or now - then >= self.publish_interval or now < then

    def publish(self, now: float) -> dict[str, Any]:
        """Build a snapshot at ``now`` and make it the one :meth:`latest` returns."""
        snap = self.snapshot(now)
        self._published_at = now
        self._published = snap  # one reference swap: readers see old or new
        return snap

    def maybe_publish(self, now: float) -> bool:
        """Publish if :meth:`due`; call it on every tick of the loop."""
        if self.due(now):
            self.publish(now)
            return True
        return False

    def latest(self) -> dict[str, Any] | None:
        """The last published snapshot, or ``None``; safe from any thread."""
        return self._published


class _Model:
    __slots__ = (
        "label",
        "last_missed",
        "lateness",
        "missed",
        "since_get",
        "start",
        "submissions",
    )

    def __init__(self, label: str, window: int) -> None:
        self.label = label
        self.submissions = 0
        self.lateness: deque[float] = deque(maxlen=window)
        self.start = 0.0  # summed contribution since start
        self.since_get = 0.0  # ... since the last GET
        self.missed = 0  # early-closed rounds this model was missing from
        self.last_missed = -1  # the round count at the latest miss


class ClientRecorder(_Publisher):
    """What agg-client's loop did: rounds, submissions, drops, models, connection.

    Sans-I/O: the loop calls these methods with its own clock and publishes
    a snapshot (see :meth:`maybe_publish`) that the HTTP endpoint serves.

    Parameters
    ----------
    model_ids : iterable of hashable, optional
        If given, exactly these ids get a label of their own (submissions
        from any other id count as ``"other"``).  Default: the first
        `max_ids` ids seen.
    max_ids : int, optional
        Cap on per-model labels without `model_ids`.  Default 64.
    window : int, optional
        Submissions per model kept for the lateness median and p95.
        Default 256.
    rate_seconds : int, optional
        Seconds of rounds-per-second history.  Default 300.
    straggler_factor, straggler_min : float, optional
        A model is a straggler if its median lateness is above
        `straggler_factor` times the median of all models' medians and above
        `straggler_min` seconds, or if it was missing from an early-closed
        round in the last `straggler_rounds` rounds.  Defaults 3, 0.005 s.
    straggler_rounds : int, optional
        Default 20.
    publish_interval : float, optional
        Minimum seconds between two snapshots from :meth:`maybe_publish`.
        Default 0.5.

    Examples
    --------
    >>> rec = ClientRecorder()
    >>> rec.connection("connected")
    >>> rec.submission("a", now=10.0)
    >>> rec.submission("b", now=10.2)
    >>> rec.round_done(10.25, action=1, contributions={"a": 0.75, "b": 0.25})
    >>> snap = rec.publish(10.5)
    >>> snap["counters"]["rounds"], snap["health"]
    (1, {'ok': True, 'reason': 'connected'})
    >>> [(m["model"], m["share"]["start"], m["lateness"]["median"]) for m in snap["models"]]
    [('a', 0.75, 0.0), ('b', 0.25, 0.2)]
    """

    def __init__(
        self,
        *,
        model_ids: Iterable[Hashable] | None = None,
        max_ids: int = 64,
        window: int = 256,
        rate_seconds: int = 300,
        straggler_factor: float = 3.0,
        straggler_min: float = 0.005,
        straggler_rounds: int = 20,
        publish_interval: float = 0.5,
    ) -> None:
        super().__init__(publish_interval)
        self.max_ids = _check_count(max_ids, "max_ids")
        self.window = _check_count(window, "window")
        self.straggler_factor = _check_interval(straggler_factor, "straggler_factor")
        self.straggler_min = _check_interval(straggler_min, "straggler_min")
        self.straggler_rounds = _check_count(straggler_rounds, "straggler_rounds", 0)
        self._rate = _RateRing(_check_count(rate_seconds, "rate_seconds"))
        # id -> _Model; several ids share the OTHER model past the cap.
        self._by_id: dict[Hashable, _Model] = {}
        self._models: dict[str, _Model] = {}
        self._other = _Model(OTHER, self.window)
        self._closed = model_ids is not None
        if model_ids is not None:
            ids = list(model_ids)
            if isinstance(model_ids, (str, bytes)):
                raise ValueError("model_ids must be a collection of ids, not a string")
            for key in ids:
                self._admit(key, force=True)
        self._round_first: float | None = None
        self._latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self._latency_sum = 0.0
        self._actions = _CappedCounts(_MAX_ACTIONS)
        self._dropped = _CappedCounts(_MAX_REASONS)
        self._state = "starting"
        self.rounds = 0
        self.actions_sent = 0
        self.submissions = 0
        self.skipped_frames = 0
        self.reconnects = 0
        self.internal_errors = 0
        self.gets = 0
        self.early_closes = 0
        self.discarded_rounds = 0
        self.state_saves_ok = 0
        self.state_saves_failed = 0

    # -- labels ------------------------------------------------------------

    def _admit(self, key: Hashable, force: bool = False) -> _Model:
        if not force and (self._closed or len(self._models) >= self.max_ids):
            # Not cached: a flood of fresh ids must not grow _by_id.
            return self._other
        label = _label_text(key)
        model = self._models.get(label)
        if model is None:  # two ids with one label (cut, or 1 and "1") share it
            model = self._models[label] = _Model(label, self.window)
        self._by_id[key] = model
        return model

    def _model(self, key: Hashable) -> _Model:
        model = self._by_id.get(key)
        return model if model is not None else self._admit(key)

    # -- events, called by the loop -----------------------------------------

    def submission(self, model_id: Hashable, now: float) -> None:
        """One accepted LOGITS submission from `model_id` at `now`.

        Its lateness is the time since the open round's first submission
        (0 for the first).  Call it only for submissions the aggregator
        stored; a dropped one is a :meth:`drop`.
        """
        self._now = now
        if self._first_now is None:
            self._first_now = now
        self.submissions += 1
        model = self._by_id.get(model_id)
        if model is None:
            model = self._admit(model_id)
        model.submissions += 1
        first = self._round_first
        if first is None:
            self._round_first = now
            model.lateness.append(0.0)
        else:
            model.lateness.append(now - first)

    def round_done(
        self,
        now: float,
        action: int,
        contributions: Mapping[Hashable, float],
        *,
        sent: bool = True,
    ) -> None:
        """A round was aggregated at `now` into `action`; `sent` if its ACTION went out.

        `contributions` is the round's ``RoundResult.contribution`` (model id
        to share, summing to 1).  Full and early-closed rounds alike; the
        latency is from the round's first :meth:`submission` to `now`.
        """
        # Convert first, so that a bad value raises before anything changes.
        shares = [(self._model(k), float(v)) for k, v in contributions.items()]
        self._saw(now)
        self.rounds += 1
        if sent:
            self.actions_sent += 1
        first = self._round_first
        self._round_first = None
        if first is not None:
            latency = max(0.0, now - first)
            self._latency_counts[bisect_left(LATENCY_BUCKETS, latency)] += 1
            self._latency_sum += latency
        self._actions.add(str(action) if type(action) is int else action)
        for model, share in shares:
            model.start += share
            model.since_get += share
        self._rate.add(now)

    def early_close(
        self, now: float, missing_models: Iterable[Hashable], *, discarded: bool = False
    ) -> None:
        """A round was closed at `now` by the step timeout without `missing_models`.

        Call it besides :meth:`round_done` for a round that was aggregated;
        with ``discarded=True`` (it could not be aggregated, no ACTION) it
        also ends the round.
        """
        missing = [self._model(k) for k in missing_models]
        self._saw(now)
        self.early_closes += 1
        for model in missing:
            model.missed += 1
            model.last_missed = self.rounds
        if discarded:
            self.discarded_rounds += 1
            self._round_first = None

    def drop(self, reason: str) -> None:
        """A message dropped; `reason` is a short category (e.g. ``"malformed"``)."""
        if type(reason) is not str:
            raise TypeError(f"reason must be a str, got {type(reason).__name__}")
        self._dropped.add(reason)

    def skipped_frame(self) -> None:
        """A frame over ``--max-frame-bytes`` was skipped."""
        self.skipped_frames += 1

    def reconnect(self) -> None:
        """The loop reconnected to the swergio server."""
        self.reconnects += 1

    def internal_error(self) -> None:
        """A bug surfaced in the loop (counted, logged by the loop)."""
        self.internal_errors += 1

    def get_served(self) -> None:
        """A ``CMD: GET`` was answered: the since-GET shares start again."""
        self.gets += 1
        for model in self._models.values():
            model.since_get = 0.0
        self._other.since_get = 0.0

    def state_save(self, ok: bool) -> None:
        """The state file was written (`ok`) or writing it failed."""
        if ok:
            self.state_saves_ok += 1
        else:
            self.state_saves_failed += 1

    def connection(self, state: str) -> None:
        """The connection is now in `state`, one of :data:`CONNECTION_STATES`."""
        if state not in CONNECTION_STATES:
            raise ValueError(
                f"unknown connection state {preview(state)}; expected one of "
                + ", ".join(CONNECTION_STATES)
            )
        self._state = state

    # -- reading -----------------------------------------------------------

    @property
    def state(self) -> str:
        """The connection state last given to :meth:`connection`."""
        return self._state

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        """Everything recorded, as a new plain dict (see the module docstring).

        `now` (default: the latest time any call gave) ends the rate history.
        """
        now = self._now if now is None else now
        models = list(self._models.values())
        if self._other.submissions or self._other.start or self._other.missed:
            models.append(self._other)
        total_start = math.fsum(m.start for m in models)
        total_get = math.fsum(m.since_get for m in models)
        late: list[tuple[_Model, float | None, float | None, int]] = []
        for m in models:
            ordered = sorted(m.lateness)
            if ordered:
                late.append(
                    (m, quantile(ordered, 0.5), quantile(ordered, 0.95), len(ordered))
                )
            else:
                late.append((m, None, None, 0))
        medians = sorted(
            med for m, med, _, _ in late if med is not None and m is not self._other
        )
        reference = quantile(medians, 0.5) if medians else 0.0
        rows: list[dict[str, Any]] = []
        for m, median, p95, n in late:
            slow = (
                median is not None
                and median > self.straggler_min
                and median > self.straggler_factor * reference
            )
            recent_miss = (
                m.missed and self.rounds - m.last_missed < self.straggler_rounds
            )
            rows.append(
                {
                    "model": m.label,
                    "submissions": m.submissions,
                    "contribution": {"start": m.start, "since_get": m.since_get},
                    "share": {
                        "start": m.start / total_start if total_start else 0.0,
                        "since_get": m.since_get / total_get if total_get else 0.0,
                    },
                    "lateness": {"median": median, "p95": p95, "n": n},
                    "missed": m.missed,
                    "straggler": bool(slow or recent_miss),
                }
            )
        rows.sort(key=lambda r: (-r["share"]["start"], r["model"]))
        cumulative = []
        running = 0
        for bound, count in zip(
            [*LATENCY_BUCKETS, math.inf], self._latency_counts, strict=True
        ):
            running += count
            cumulative.append([bound if math.isfinite(bound) else "+Inf", running])
        history = self._rate.history(now)
        last_minute = history[-60:]
        ok = self._state == "connected"
        return {
            "kind": "agg-client",
            "time": now,
            "uptime": now - self._first_now if self._first_now is not None else 0.0,
            "health": {
                "ok": ok,
                "reason": "connected" if ok else f"not connected ({self._state})",
            },
            "connection": self._state,
            "counters": {
                "rounds": self.rounds,
                "actions_sent": self.actions_sent,
                "submissions": self.submissions,
                "skipped_frames": self.skipped_frames,
                "reconnects": self.reconnects,
                "internal_errors": self.internal_errors,
                "gets": self.gets,
                "early_closes": self.early_closes,
                "discarded_rounds": self.discarded_rounds,
            },
            "dropped": self._dropped.copy(),
            "state_saves": {
                "ok": self.state_saves_ok,
                "error": self.state_saves_failed,
            },
            "round_latency": {
                "buckets": cumulative,
                "count": running,
                "sum": self._latency_sum,
            },
            "actions": self._actions.copy(),
            "rate": {
                "bucket_seconds": 1,
                "rounds": history,
                "per_second_1m": sum(last_minute) / len(last_minute),
            },
            "models": rows,
            "labels": {
                "max_ids": self.max_ids,
                "listed": self._closed,
                "other_submissions": self._other.submissions,
            },
        }


class _Room:
    __slots__ = ("bytes_in", "bytes_out", "frames_in", "frames_out")

    def __init__(self) -> None:
        self.frames_in = self.frames_out = self.bytes_in = self.bytes_out = 0


#: The room label of a frame addressed with ``TO`` only (a direct message).
DIRECT = "(direct)"


class ServerRecorder(_Publisher):
    """What agg-server's loop did: clients, rooms, frames and bytes, slow readers.

    Counters are recorded per event (:meth:`frame_in`, :meth:`frame_out`,
    ...); the gauges the router already holds (clients, names, rooms and
    their members, queued bytes) are handed over with :meth:`set_state` just
    before a publish, so nothing is kept twice::

        if recorder.due(now):
            recorder.set_state(clients=..., registered_names=..., ...)
            recorder.publish(now)

    Parameters
    ----------
    max_rooms : int, optional
        Rooms with a label of their own; frames to later rooms count as
        ``"other"``, and only the `max_rooms` fullest rooms are listed with
        their members.  Default 64.
    max_readers : int, optional
        Slowest readers listed.  Default 10.
    publish_interval : float, optional
        As in :class:`ClientRecorder`.

    Examples
    --------
    >>> rec = ServerRecorder()
    >>> rec.frame_in("logits", 120)
    >>> rec.frame_out("logits", 120, copies=3)
    >>> rec.set_state(clients=4, registered_names=4, room_members={"logits": 4},
    ...               queue_bytes=0, slowest_readers=[("env", 0)])
    >>> snap = rec.publish(1.0)
    >>> snap["totals"], snap["health"]["ok"]
    ({'frames_in': 1, 'frames_out': 3, 'bytes_in': 120, 'bytes_out': 360}, True)
    """

    def __init__(
        self,
        *,
        max_rooms: int = 64,
        max_readers: int = 10,
        publish_interval: float = 0.5,
    ) -> None:
        super().__init__(publish_interval)
        self.max_rooms = _check_count(max_rooms, "max_rooms")
        self.max_readers = _check_count(max_readers, "max_readers")
        self._rooms: dict[object, _Room] = {}
        self._other = _Room()
        self._dropped = _CappedCounts(_MAX_REASONS)
        self.slow_consumer_disconnects = 0
        self.accepting = True
        self._clients = 0
        self._names = 0
        self._members: list[tuple[str, int]] = []
        self._room_count = 0
        self._queue_bytes = 0
        self._readers: list[dict[str, Any]] = []

    def _room(self, room: object) -> _Room:
        stats = self._rooms.get(room)
        if stats is not None:
            return stats
        if len(self._rooms) >= self.max_rooms:
            return self._other  # not cached: fresh room names cost no memory
        try:
            stats = self._rooms[room] = _Room()
        except TypeError:  # an unhashable TO_ROOM from a peer
            return self._other
        return stats

    def frame_in(self, room: object, nbytes: int) -> None:
        """A frame of `nbytes` (header included) arrived for `room` (``None``: direct)."""
        stats = self._room(room)
        stats.frames_in += 1
        stats.bytes_in += nbytes

    def frame_out(self, room: object, nbytes: int, copies: int = 1) -> None:
        """A frame of `nbytes` was queued to `copies` members of `room`."""
        stats = self._room(room)
        stats.frames_out += copies
        stats.bytes_out += nbytes * copies

    def slow_consumer_disconnect(self) -> None:
        """A client that stopped reading was disconnected."""
        self.slow_consumer_disconnects += 1

    def drop(self, reason: str) -> None:
        """A frame dropped; `reason` is a short category."""
        if type(reason) is not str:
            raise TypeError(f"reason must be a str, got {type(reason).__name__}")
        self._dropped.add(reason)

    def set_accepting(self, accepting: bool, now: float | None = None) -> None:
        """Whether the listening socket accepts connections (the health check)."""
        self.accepting = bool(accepting)
        if now is not None:
            self._saw(now)

    def set_state(
        self,
        *,
        clients: int,
        registered_names: int,
        room_members: Mapping[object, int],
        queue_bytes: int,
        slowest_readers: Iterable[tuple[object, int]] = (),
    ) -> None:
        """The router's gauges now; kept until the next call.

        `room_members` maps room to member count; `slowest_readers` are
        ``(name, queued bytes)`` pairs in any order.
        """
        by_label: dict[str, int] = {}
        for room, n in room_members.items():
            label = _room_label(room)
            by_label[label] = by_label.get(label, 0) + int(n)
        members = sorted(by_label.items(), key=lambda pair: (-pair[1], pair[0]))
        if len(members) > self.max_rooms:
            rest = sum(n for _, n in members[self.max_rooms :])
            members = [*members[: self.max_rooms], (OTHER, rest)]
        readers = sorted(
            ((int(q), _label_text(name)) for name, q in slowest_readers),
            key=lambda pair: (-pair[0], pair[1]),
        )[: self.max_readers]
        self._room_count = len(room_members)
        self._clients = int(clients)
        self._names = int(registered_names)
        self._members = members
        self._queue_bytes = int(queue_bytes)
        self._readers = [{"name": name, "queue_bytes": q} for q, name in readers]

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        """Everything recorded, as a new plain dict."""
        now = self._now if now is None else now
        self._saw(now)
        merged: dict[str, dict[str, Any]] = {}
        # Two rooms whose names cut to one label are one row (labels are unique).
        for label, stats in [
            *((_room_label(r), st) for r, st in self._rooms.items()),
            (OTHER, self._other),
        ]:
            row = merged.setdefault(
                label,
                {
                    "room": label,
                    "frames_in": 0,
                    "frames_out": 0,
                    "bytes_in": 0,
                    "bytes_out": 0,
                },
            )
            row["frames_in"] += stats.frames_in
            row["frames_out"] += stats.frames_out
            row["bytes_in"] += stats.bytes_in
            row["bytes_out"] += stats.bytes_out
        rooms = [r for r in merged.values() if r["frames_in"] or r["frames_out"]]
        rooms.sort(key=lambda r: (-r["frames_in"], r["room"]))
        totals = {
            key: sum(r[key] for r in rooms)
            for key in ("frames_in", "frames_out", "bytes_in", "bytes_out")
        }
        return {
            "kind": "agg-server",
            "time": now,
            "uptime": now - self._first_now if self._first_now is not None else 0.0,
            "health": {
                "ok": self.accepting,
                "reason": "accepting"
                if self.accepting
                else "not accepting connections",
            },
            "clients": self._clients,
            "registered_names": self._names,
            "rooms": self._room_count,
            "room_members": [{"room": r, "members": n} for r, n in self._members],
            "queue_bytes": self._queue_bytes,
            "slow_consumer_disconnects": self.slow_consumer_disconnects,
            "dropped": self._dropped.copy(),
            "totals": totals,
            "traffic": rooms,
            "slowest_readers": [dict(r) for r in self._readers],
        }


def _room_label(room: object) -> str:
    return DIRECT if room is None else _label_text(room)
