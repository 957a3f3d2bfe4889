"""The aggregator component's protocol: wire messages in, wire messages out.

No sockets, no clocks, no files: :class:`AggregatorProtocol` is fed decoded
frames with the caller's ``now`` and returns the messages to send, so every
rule of the component (which room, which key, what is dropped and why, when
a straggler round closes, what happens to a message that could not be sent)
is tested in-process, frame by frame.  The socket loop in
``transport/component.py`` only moves bytes, keeps time and writes the state
file.

Theory of operation
-------------------
A frame is one of: undecodable (dropped with a warning); traffic we do not
serve (other rooms, ``_command``, direct messages, and in our rooms any
other of swergio's types, :mod:`~ensemble_agg.protocol.message_types`:
ignored silently, not counted); a ``TYPE`` swergio does not define
(dropped); or a ``DATA/CUSTOM`` message in the logits or the evolution
room.  In the logits room a message with ``LOGITS`` or ``COMPONENT_ID`` is
a submission: ``messages.parse_submission`` checks its shape and converts
and checks its values, and :meth:`ensemble_agg.Aggregator.submit_row` checks
the model id and the width and keeps the round.  In the evolution room
``CMD: GET`` pops the tally.  A peer's mistake is :class:`~ensemble_agg.BadMessage` or the
aggregator's ``ValueError``/``TypeError``, converted here, in one place, into
one rate-limited WARNING; anything else is a bug and goes to the caller's
exception boundary.

Output the caller could not deliver comes back here.  While the link is
down the caller gives each message to :meth:`~AggregatorProtocol.hold`,
which keeps it in the :class:`Outbox` (bounded: the oldest goes first, an
ACTION that old being stale), and sends the outbox after the reconnect.  A GET's reply is the only
copy of the shares it cleared, so a ``CONTRIBUTION`` that is pushed out or
still held at stop goes back into the tally (:meth:`~AggregatorProtocol.unsent`)
and the next GET answers it.  If the caller could not save a GET's cleared
tally, the reply says so (:meth:`~AggregatorProtocol.reply_not_saved`).

Observing: the protocol may hold a :class:`Recorder` (``None`` by default,
and then each event costs one ``if``).  It is told what only the protocol
sees (submissions accepted, rounds, early closes, GETs, drops with a short,
bounded category from :data:`DROP_REASONS`, never the peer's text); the
socket loop tells it the rest.  This module only describes the recorder's
methods; ``ensemble_agg.observe`` implements them.
"""

from __future__ import annotations

import collections
import logging
import uuid
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from ..core.aggregator import Aggregator
from ..errors import IdRejection, UnknownModelError
from ..util.ratelimit import RateLimiter
from ..util.text import preview
from .framing import Frame
from .message_types import DATA_CUSTOM, MESSAGE_TYPES
from .messages import (
    BadMessage,
    parse_command,
    parse_submission,
    propagated,
    sender_of,
)

__all__ = [
    "DROP_REASONS",
    "OUTBOX_LIMIT",
    "AggregatorProtocol",
    "Counters",
    "Outbox",
    "Outgoing",
    "Recorder",
]

logger = logging.getLogger(__name__)


#: The categories a dropped message is counted under (a metric's label
#: values, so a fixed few; the log line has the details).
DROP_REASONS = (
    "undecodable",  # not JSON, or not a JSON object
    "unknown_type",  # a TYPE swergio does not define
    "malformed",  # a submission's keys, or LOGITS not a list of finite numbers
    "bad_logits",  # LOGITS the round refuses (another length than the round's)
    "unknown_model",  # an id --model-ids does not list
    "id_cap",  # a new id past --max-ids
    "bad_command",  # an evolution message whose CMD is not a string
)


class Recorder(Protocol):
    """What the protocol tells an observer (``ensemble_agg.observe.ClientRecorder``)."""

    def submission(self, model_id: Hashable, now: float) -> None: ...

    def round_done(
        self, now: float, action: int, contributions: Mapping[Hashable, float]
    ) -> None: ...

    def early_close(
        self, now: float, missing_models: Iterable[Hashable], *, discarded: bool = False
    ) -> None: ...

    def drop(self, reason: str) -> None: ...

    def get_served(self) -> None: ...


class _Refused(BadMessage):
    """A peer's submission the aggregator refused, with its drop category."""

    def __init__(self, text: str, category: str) -> None:
        super().__init__(text)
        self.category = category


@dataclass
class Counters:
    """What the stats line reports, all since start."""

    rounds: int = 0
    early: int = 0
    discarded: int = 0
    dropped: int = 0
    gets: int = 0
    reconnects: int = 0
    internal_errors: int = 0


class Outgoing(NamedTuple):
    """A message to send; ``clears_tally`` if it answers a GET.

    A GET's reply must not go out before the cleared tally is on disk: the
    caller saves the state file first and, if that fails, sends
    :meth:`AggregatorProtocol.reply_not_saved`'s message instead.
    """

    message: dict[str, Any]
    clears_tally: bool = False


#: Messages kept for resending after a reconnect.
OUTBOX_LIMIT = 1000


class Outbox:
    """Messages that wait for a reconnect: at most ``limit``, oldest out first.

    The socket loop keeps here what it could not send, and after a reconnect
    sends from the front (:meth:`first`, then :meth:`sent`) until it is
    empty.  When it is full, :meth:`keep` pushes out the oldest message and
    returns it: ACTIONs that old are stale, and what losing a message means
    (a ``CONTRIBUTION`` goes back into the tally) is the protocol's call,
    :meth:`AggregatorProtocol.hold`.

    Examples
    --------
    >>> box = Outbox(limit=2)
    >>> [box.keep({"ACTION": [i]}) for i in range(3)]
    [None, None, {'ACTION': [0]}]
    >>> box.first(), len(box)
    ({'ACTION': [1]}, 2)
    """

    def __init__(self, limit: int = OUTBOX_LIMIT) -> None:
        if limit < 1:
            raise ValueError(f"an outbox holds at least 1 message, not {limit}")
        self.limit = limit
        #: Set by the owner once it has said that the outbox overflowed;
        #: cleared when the outbox empties, so the next overflow is said too.
        self.warned = False
        self._queue: collections.deque[dict[str, Any]] = collections.deque()

    def __len__(self) -> int:
        return len(self._queue)

    def keep(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """Queue ``message``; return the oldest one if it had to make room."""
        oldest = None
        if len(self._queue) >= self.limit:
            oldest = self._queue.popleft()
        self._queue.append(message)
        return oldest

    def first(self) -> dict[str, Any]:
        """The oldest message, still queued until :meth:`sent` says it went."""
        return self._queue[0]

    def sent(self) -> None:
        """Forget the oldest message: it was sent."""
        self._queue.popleft()
        if not self._queue:
            self.warned = False

    def take_all(self) -> list[dict[str, Any]]:
        """Empty the outbox; return what it held, oldest first."""
        taken = list(self._queue)
        self._queue.clear()
        self.warned = False
        return taken


@dataclass(frozen=True)
class Rooms:
    """The component's name and rooms (the original's defaults)."""

    name: str = "aggregation"
    logits: str = "logits"
    action: str = "action"
    evolution: str = "evolution"


class AggregatorProtocol:
    """The original component's two handlers, on an :class:`~ensemble_agg.Aggregator`.

    Parameters
    ----------
    aggregator : Aggregator
        Holds the round and the tally.
    rooms : Rooms
        Name and rooms.
    max_actions : int
        Longer ``LOGITS`` are dropped as malformed.
    step_timeout : float, optional
        Close a round that has waited this long (see :meth:`tick`).
    outbox_limit : int
        Most messages :attr:`outbox` keeps for the reconnect.
    recorder : Recorder, optional
        Told of submissions, rounds, early closes, GETs and drops (for
        ``--http``); default none.

    Examples
    --------
    >>> from ensemble_agg import Aggregator
    >>> from ensemble_agg.protocol.framing import Frame
    >>> proto = AggregatorProtocol(Aggregator(1), Rooms(), max_actions=16)
    >>> out = proto.handle_frame(
    ...     Frame({"TYPE": "DATA/CUSTOM", "TO_ROOM": "logits", "LOGITS": [0, 1],
    ...            "COMPONENT_ID": "m", "DETERMINISTIC": True, "ROOT_ID": "r1"}),
    ...     now=0.0,
    ... )
    >>> msg = out[0].message
    >>> msg["ACTION"], msg["TO_ROOM"], msg["ROOT_ID"], msg["SENT_BY"]
    ([1], 'action', 'r1', 'aggregation')
    """

    def __init__(
        self,
        aggregator: Aggregator,
        rooms: Rooms,
        *,
        max_actions: int,
        step_timeout: float | None = None,
        outbox_limit: int = OUTBOX_LIMIT,
        recorder: Recorder | None = None,
    ) -> None:
        self.aggregator = aggregator
        self.rooms = rooms
        self.max_actions = max_actions
        self.step_timeout = step_timeout
        self.counters = Counters()
        # At most 50 lines of dropped messages per 10 s, however fast a peer floods.
        self.warnings = RateLimiter(logger, burst=50, period=10.0)
        #: What the caller could not send yet (see :meth:`hold`).
        self.outbox = Outbox(outbox_limit)
        #: True when the tally changed since the caller last saved it.
        self.dirty = False
        self._cap_warned = False
        #: The observer, or None (``--http`` off).
        self.recorder = recorder

    # -- input -------------------------------------------------------------

    def handle_frame(self, frame: Frame, now: float) -> list[Outgoing]:
        """Handle one decoded frame; return the messages to send."""
        message = frame.message
        if message is None:
            self._drop(
                f"{frame.error}",
                "an unknown sender (undecodable frame)",
                now,
                "undecodable",
            )
            return []
        room = message.get("TO_ROOM")
        rooms = self.rooms
        if type(room) is not str or (room != rooms.logits and room != rooms.evolution):
            return []  # _command traffic, other rooms, direct messages
        kind = message.get("TYPE")
        if kind != DATA_CUSTOM:
            # swergio's other types are someone else's traffic; a TYPE swergio
            # does not know is a malformed message.
            if type(kind) is not str or kind not in MESSAGE_TYPES:
                self._drop(
                    f"unknown TYPE {preview(kind)} in room {room!r}",
                    sender_of(message),
                    now,
                    "unknown_type",
                )
            return []
        out: list[Outgoing] = []
        try:
            if room == rooms.logits:
                out += self._submission(message, now)
            if room == rooms.evolution:
                out += self._command(message)
        except BadMessage as exc:
            if isinstance(exc, _Refused):
                category = exc.category
            else:
                category = "malformed" if room == rooms.logits else "bad_command"
            self._drop(f"{exc} (room {room!r})", sender_of(message), now, category)
        return out

    def tick(self, now: float) -> list[Outgoing]:
        """Close the open round if it has waited ``step_timeout``; see ``expire``."""
        self.warnings.tick(now)
        if self.step_timeout is None:
            return []
        expiry = self.aggregator.expire(now, self.step_timeout)
        if expiry is None:
            return []
        recorder = self.recorder
        if recorder is not None:
            if expiry.result is not None:
                result = expiry.result
                recorder.round_done(now, result.action, result.contribution)
            recorder.early_close(now, expiry.missing, discarded=expiry.result is None)
        if expiry.result is None:
            self.counters.discarded += 1
            logger.warning(
                "step timeout: a round with %d models could not be aggregated and "
                "was discarded (%s); ids %s",
                len(expiry.present),
                expiry.error,
                _ids(expiry.present),
            )
            return []
        self.counters.rounds += 1
        self.counters.early += 1
        self.dirty = True
        logger.warning(
            "step timeout: closed a round after %.3g s with %d of %d models; "
            "missing: %s",
            self.step_timeout,
            len(expiry.present),
            self.aggregator.n_models,
            _ids(expiry.missing) if expiry.missing else "(ids not known yet)",
        )
        return [Outgoing(self._reply(None, self.rooms.action, expiry.result.action))]

    # -- the two handlers --------------------------------------------------

    def _submission(self, message: dict[str, Any], now: float) -> list[Outgoing]:
        sub = parse_submission(message, self.max_actions)
        if sub is None:
            return []
        try:
            result = self.aggregator.submit_row(
                sub.model_id, sub.logits, sub.deterministic, now
            )
        except UnknownModelError as exc:
            if exc.reason is not IdRejection.CAP:
                raise _Refused(str(exc), "unknown_model") from None
            self.counters.dropped += 1
            if self.recorder is not None:
                self.recorder.drop("id_cap")
            if not self._cap_warned:  # one line, not one per message of a flood
                self._cap_warned = True
                logger.warning(
                    "dropping messages from new model ids: %s (further drops are "
                    "counted in the stats line)",
                    exc,
                )
            return []
        except (ValueError, TypeError) as exc:
            raise _Refused(str(exc), "bad_logits") from None
        recorder = self.recorder
        if recorder is not None:
            recorder.submission(sub.model_id, now)
            if result is not None:
                recorder.round_done(now, result.action, result.contribution)
        if result is None:
            return []
        self.counters.rounds += 1
        self.dirty = True
        return [Outgoing(self._reply(message, self.rooms.action, result.action))]

    def _command(self, message: dict[str, Any]) -> list[Outgoing]:
        if parse_command(message) != "GET":
            return []
        tally: dict[Hashable, float] = self.aggregator.pop_contributions()
        for model_id in self.aggregator.pending:  # seen, but no round finished yet
            tally.setdefault(model_id, 0.0)
        self._cap_warned = False
        self.counters.gets += 1
        if self.recorder is not None:
            self.recorder.get_served()
        self.dirty = True
        reply = self._message(message, self.rooms.evolution, {"CONTRIBUTION": tally})
        return [Outgoing(reply, clears_tally=True)]

    # -- what the caller could not deliver ----------------------------------

    def reply_not_saved(self, message: dict[str, Any]) -> dict[str, Any]:
        """Mark a GET's reply: its cleared tally is not on disk.

        The caller sends this instead when saving the state file failed, so
        the evolution component knows a restart could not restore the tally.
        """
        message["STATE_SAVED"] = False
        return message

    def hold(self, message: dict[str, Any]) -> None:
        """Keep ``message`` in :attr:`outbox` until the link is back.

        If the outbox is full its oldest message goes: an ACTION that old is
        stale (said once per overflow), a ``CONTRIBUTION`` goes back into the
        tally (:meth:`unsent`), so no share is ever lost.
        """
        outbox = self.outbox
        oldest = outbox.keep(message)
        if oldest is None:
            return
        self.unsent(oldest)
        if "CONTRIBUTION" not in oldest and not outbox.warned:
            outbox.warned = True
            logger.warning(
                "more than %d messages wait for the reconnect; the oldest "
                "ACTIONs are dropped (stale by now)",
                outbox.limit,
            )

    def unsent(self, message: dict[str, Any]) -> None:
        """``message`` will never be sent: return a ``CONTRIBUTION`` to the tally.

        A GET's reply is the only copy of the shares it cleared, so the next
        GET answers them instead.  Any other message is simply gone.
        """
        tally = message.get("CONTRIBUTION")
        if isinstance(tally, dict) and tally:
            self.aggregator.add_contributions(tally)
            self.dirty = True
            logger.warning(
                "a CONTRIBUTION reply for %d models was never sent; its shares "
                "are back in the tally for the next GET",
                len(tally),
            )

    def return_unsent(self) -> None:
        """Give up on everything in :attr:`outbox` (at stop); see :meth:`unsent`."""
        for message in self.outbox.take_all():
            self.unsent(message)

    # -- output ------------------------------------------------------------

    def _reply(self, request: dict[str, Any] | None, room: str, action: int) -> dict:
        return self._message(request, room, {"ACTION": [action]})

    def _message(
        self, request: dict[str, Any] | None, room: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """``body`` as swergio's EventHandler and Client would send it."""
        body["ID"] = uuid.uuid4().hex
        body["TYPE"] = DATA_CUSTOM
        body["TO_ROOM"] = room
        if request is not None:
            for key in ("ROOT_ID", "MODEL_STATUS"):
                if key in request and propagated(request[key]):
                    body[key] = request[key]
        body["SENT_BY"] = self.rooms.name
        return body

    def _drop(self, reason: str, sender: str, now: float, category: str) -> None:
        self.counters.dropped += 1
        if self.recorder is not None:
            self.recorder.drop(category)
        self.warnings.log(
            now, "dropped a message", "dropped a message from %s: %s", sender, reason
        )


def _ids(ids: tuple[Hashable, ...], limit: int = 10) -> str:
    shown = ", ".join(map(preview, ids[:limit]))
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")
