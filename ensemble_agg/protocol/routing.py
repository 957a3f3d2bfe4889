"""swergio's server routing as a state machine, without sockets.

:class:`Router` holds what ``swergio.Server`` keeps (registered names, rooms
and their members) and decides, for each decoded message from a connection,
which connections get which frame.  The caller owns the sockets: it assigns
each connection an integer id, feeds :meth:`Router.route` the messages its
frame decoder produced and writes the returned frames.  Nothing here reads a
clock, a socket or the logging configuration.

Theory of operation (swergio 0.0.2's ``server.py``, kept for everything stock
clients rely on):

- ``COMMAND/REGISTER`` names the connection (again: renames it);
  ``COMMAND/JOINROOM`` adds it to ``ROOM`` (creating the room);
  ``COMMAND/LEAVEROOM`` removes it and deletes a room left empty;
  ``COMMAND/DISCONNECT`` ends the connection and is routed nowhere.
- Then every message (commands included) is routed: ``SENT_BY`` is set to the
  sender's registered name if absent; with ``TO_ROOM`` it goes to every
  member of that room except the sender; with ``TO`` to every connection
  registered under that name, the sender included; with both, to both (a
  connection that is in the room and has the name gets it twice).
- ``DATA/FORWARD`` and ``DATA/GRADIENT`` messages are also copied, wrapped in
  a ``LOG/MESSAGES`` message, to every member of the ``_logging`` room.
- A connection that goes away leaves every room; rooms stay (only LEAVEROOM
  deletes them).

Where swergio drops the *sender's* connection (a message without ``TYPE``,
an unknown ``TO_ROOM``, a REGISTER without ``NAME``, anything before
REGISTER), the router drops only that message and says why in
:attr:`Routing.problem`.  The reserved rooms ``_command`` and ``_logging``
are never deleted (swergio deletes them when they empty, after which every
REGISTER fails), and the number of rooms is capped.

Identities are bounded: a ``NAME`` longer than ``max_name_chars`` (the server
stamps it as ``SENT_BY`` on every message its connection sends, so a long one
multiplies every frame), a new room's name longer than ``max_room_chars`` and
a JOINROOM past ``max_rooms_per_conn`` rooms are refused: the message is
dropped and the state is left as it was (an unregistered connection stays
unregistered).  :attr:`Routing.refused` tells such a refusal from other drops.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Hashable
from typing import Any, NamedTuple

from ..util.text import preview
from .framing import LONG_VALUE, Outline, encode_frame
from .message_types import (
    COMMAND_DISCONNECT,
    COMMAND_JOINROOM,
    COMMAND_LEAVEROOM,
    COMMAND_REGISTER,
    LOG_MESSAGES,
    LOGGED_TYPES,
)

__all__ = ["RESERVED_ROOMS", "Router", "Routing"]

#: Rooms that always exist, as in swergio.
RESERVED_ROOMS = ("_command", "_logging")

#: Default longest string accepted as a new room's name (stock clients use
#: short ones; a hostile one could otherwise park megabytes per room).
MAX_ROOM_NAME = 256
#: Default longest ``NAME`` accepted by REGISTER, in characters (of its JSON
#: text when it is not a string).
MAX_NAME = 256
#: Default most rooms one connection may be in, the reserved ones included.
MAX_ROOMS_PER_CONN = 256


class Routing(NamedTuple):
    """What to do with one message.

    ``deliveries`` pairs a list of connection ids with the frame (header and
    body, one buffer) each of them must be sent; a connection may appear
    more than once.  ``close`` is set when the sender asked to disconnect.
    ``problem`` says why the message (or part of it) was dropped;
    ``refused`` is set when that was an identity limit (a name, a room name,
    rooms per connection).
    """

    deliveries: list[tuple[list[int], bytes]]
    close: bool = False
    problem: str | None = None
    refused: bool = False


def _dropped(problem: str) -> Routing:
    return Routing([], problem=problem)


def _refused(problem: str) -> Routing:
    return Routing([], problem=problem, refused=True)


def _length(value: object) -> int:
    """Characters of ``value`` (of its JSON text when it is not a string)."""
    if isinstance(value, str):
        return len(value)
    try:
        return len(json.dumps(value))
    except (TypeError, ValueError, RecursionError):  # LONG_VALUE, or not encodable
        return 1 << 62


def _name_key(value: object) -> Hashable:
    """A hashable stand-in for a JSON value: equal exactly when the values are.

    swergio matches ``TO`` against names with ``==``; lists become tuples and
    objects frozensets of their items, so a dict lookup gives the same
    answer (``1 == 1.0 == True`` hash alike too).  ``RecursionError`` for a
    value nested too deeply to walk.
    """
    if isinstance(value, list):
        return tuple(_name_key(v) for v in value)
    if isinstance(value, dict):
        return frozenset((k, _name_key(v)) for k, v in value.items())
    assert isinstance(value, Hashable)
    return value


def _room_key(value: object) -> tuple[bool, Hashable]:
    """``(True, value)`` if ``value`` can name a room, else ``(False, None)``.

    JSON gives str, int, float, bool, None, list or dict; swergio keeps rooms
    in a dict, so the last two fail there with ``TypeError``.
    """
    if isinstance(value, (list, dict)) or value is LONG_VALUE:
        return False, None
    assert isinstance(value, Hashable)
    return True, value


class Router:
    """swergio's room and name routing for a set of connections.

    Parameters
    ----------
    encoding, header_length : str, int
        The swergio ``format`` and header length, used to encode frames.
    overwrite_sent_by : bool
        Set ``SENT_BY`` to the sender's registered name even when the message
        carries one (swergio keeps the sender's value: any client can claim
        to be another).  Default off, for parity.
    enable_logging : bool
        Copy ``DATA/FORWARD`` and ``DATA/GRADIENT`` messages to ``_logging``,
        as swergio's ``enable_logging=True``.
    max_rooms : int
        Most rooms kept at once.  A JOINROOM that would create one more first
        frees the rooms nobody is in; if none is free, it is dropped.
    max_name_chars : int
        Longest ``NAME`` a REGISTER may give (characters; of its JSON text if
        it is not a string).  Longer: refused, the old name (or none) kept.
    max_room_chars : int
        Longest name of a room a JOINROOM may create.  Longer: refused.
    max_rooms_per_conn : int
        Most rooms one connection may be in (``_command`` included).  A
        JOINROOM past it is refused.
    new_id : callable, optional
        Returns the ``ID`` of a ``_logging`` copy (default: a random hex UUID).

    Examples
    --------
    >>> r = Router("utf-8", 10)
    >>> for conn, name in ((1, "a"), (2, "b")):
    ...     r.connect(conn)
    ...     _ = r.route(conn, {"TYPE": "COMMAND/REGISTER", "NAME": name})
    ...     _ = r.route(conn, {"TYPE": "COMMAND/JOINROOM", "ROOM": "chat"})
    >>> r.route(1, {"TYPE": "DATA/CUSTOM", "TO_ROOM": "chat", "X": 1}).deliveries
    [([2], b'66        {"TYPE": "DATA/CUSTOM", "TO_ROOM": "chat", "X": 1, "SENT_BY": "a"}')]
    >>> r.route(1, {"TYPE": "DATA/CUSTOM", "TO_ROOM": "nowhere"}).problem
    "unknown TO_ROOM 'nowhere'"
    """

    def __init__(
        self,
        encoding: str = "utf-8",
        header_length: int = 10,
        *,
        overwrite_sent_by: bool = False,
        enable_logging: bool = True,
        max_rooms: int = 10_000,
        max_name_chars: int = MAX_NAME,
        max_room_chars: int = MAX_ROOM_NAME,
        max_rooms_per_conn: int = MAX_ROOMS_PER_CONN,
        new_id: Callable[[], str] | None = None,
    ) -> None:
        self.encoding = encoding
        self.header_length = header_length
        self.overwrite_sent_by = overwrite_sent_by
        self.enable_logging = enable_logging
        self.max_rooms = max_rooms
        self.max_name_chars = max_name_chars
        self.max_room_chars = max_room_chars
        self.max_rooms_per_conn = max_rooms_per_conn
        self._new_id = new_id or (lambda: uuid.uuid4().hex)
        self._connected: set[int] = set()
        # name by connection; a connection is absent until it REGISTERs
        self._names: dict[int, Any] = {}
        # connections by name (its _name_key), so TO costs its recipients only
        self._named: dict[Hashable, dict[int, None]] = {}
        # members as dicts (ordered sets), so delivery order is reproducible
        self._rooms: dict[Hashable, dict[int, None]] = {r: {} for r in RESERVED_ROOMS}
        self._joined: dict[int, set[Hashable]] = {}

    # -- connections -------------------------------------------------------------------

    def connect(self, conn: int) -> None:
        """Start tracking a new connection ``conn`` (unregistered, in no room)."""
        if conn in self._connected:
            raise ValueError(f"connection {conn} is already connected")
        self._connected.add(conn)
        self._joined[conn] = set()

    def disconnect(self, conn: int) -> None:
        """Forget ``conn``: its name and its room memberships.  Idempotent."""
        self._connected.discard(conn)
        if conn in self._names:
            self._unname(conn)
        for room in self._joined.pop(conn, ()):
            members = self._rooms.get(room)
            if members is not None:
                members.pop(conn, None)

    # -- read-only views ---------------------------------------------------------------

    @property
    def connections(self) -> int:
        """Number of connections."""
        return len(self._connected)

    @property
    def room_count(self) -> int:
        """Number of rooms, the reserved ones included."""
        return len(self._rooms)

    def registered(self, conn: int) -> bool:
        """True once ``conn`` has registered a name (any, ``None`` included)."""
        return conn in self._names

    def name_of(self, conn: int) -> Any:
        """``conn``'s registered name, or ``None`` before it registered."""
        return self._names.get(conn)

    def member_counts(self) -> dict[Hashable, int]:
        """Members per room, the reserved rooms included (for ``--http``)."""
        return {room: len(members) for room, members in self._rooms.items()}

    def members(self, room: Hashable) -> list[int]:
        """The connections in ``room`` (empty if there is no such room)."""
        return list(self._rooms.get(room, ()))

    # -- routing -----------------------------------------------------------------------

    def route(self, conn: int, message: dict[str, Any]) -> Routing:
        """Apply one decoded message from ``conn``; return where it goes.

        ``message`` may be changed (``SENT_BY`` is set in it).  The state
        changes a command makes (a name, a membership) happen even when the
        message is then undeliverable, as in swergio.
        """
        return self._route(conn, message, None)

    def route_outline(self, conn: int, outline: Outline) -> Routing:
        """Apply one large message from ``conn``, given as its :class:`Outline`.

        Routes as :meth:`route` would the decoded message, and the frames
        are the same bytes for a body that ``json.dumps`` wrote (what every
        swergio client sends): the body is copied with ``SENT_BY`` set in
        its text, never decoded and encoded again.  (A body written another
        way keeps its spacing and escapes; it decodes to the same message.)

        Examples
        --------
        >>> from ensemble_agg.protocol.framing import outline_at_once
        >>> r = Router("utf-8", 10)
        >>> for conn, name in ((1, "a"), (2, "b")):
        ...     r.connect(conn)
        ...     _ = r.route(conn, {"TYPE": "COMMAND/REGISTER", "NAME": name})
        >>> body = b'{"TYPE": "DATA/CUSTOM", "TO": "b", "X": [1, 2]}'
        >>> r.route_outline(1, outline_at_once(body, "utf-8")).deliveries
        [([2], b'63        {"TYPE": "DATA/CUSTOM", "TO": "b", "X": [1, 2], "SENT_BY": "a"}')]
        """
        return self._route(conn, dict(outline.fields), outline)

    def _route(
        self, conn: int, message: dict[str, Any], outline: Outline | None
    ) -> Routing:
        if conn not in self._connected:
            raise ValueError(f"connection {conn} is not connected")
        if "TYPE" not in message:
            return _dropped("no TYPE")
        kind = message["TYPE"]
        if kind == COMMAND_DISCONNECT:
            return Routing([], close=True)
        if kind == COMMAND_REGISTER:
            if "NAME" not in message:
                return _dropped("REGISTER without NAME")
            name = message["NAME"]
            if _length(name) > self.max_name_chars:
                return _refused(
                    f"REGISTER with a {_length(name)}-character NAME; the limit "
                    f"is {self.max_name_chars} (--max-name-chars)"
                )
            try:
                key = _name_key(name)
            except RecursionError:
                return _dropped("REGISTER with a NAME nested too deeply")
            if conn in self._names:
                self._unname(conn)
            self._names[conn] = name
            self._named.setdefault(key, {})[conn] = None
        elif conn not in self._names:
            return _dropped(f"{preview(kind)} before REGISTER")
        elif kind == COMMAND_JOINROOM or kind == COMMAND_LEAVEROOM:
            refusal = self._membership(conn, kind, message)
            if refusal is not None:
                return refusal
        return self._broadcast(conn, message, outline)

    def _unname(self, conn: int) -> None:
        key = _name_key(self._names.pop(conn))
        holders = self._named[key]
        del holders[conn]
        if not holders:
            del self._named[key]

    def _membership(
        self, conn: int, kind: str, message: dict[str, Any]
    ) -> Routing | None:
        if "ROOM" not in message:
            return _dropped(f"{kind} without ROOM")
        usable, room = _room_key(message["ROOM"])
        if not usable:
            return _dropped(
                f"{kind} with ROOM {preview(message['ROOM'])}; expected a string"
            )
        members = self._rooms.get(room)
        if kind == COMMAND_LEAVEROOM:
            if members is None:
                return _dropped(f"LEAVEROOM of unknown room {preview(room)}")
            if conn in members:
                del members[conn]
                self._joined[conn].discard(room)
                if not members and room not in RESERVED_ROOMS:
                    del self._rooms[room]
            return None
        joined = self._joined[conn]
        if room not in joined and len(joined) >= self.max_rooms_per_conn:
            return _refused(
                f"JOINROOM {preview(room)}: already in {len(joined)} rooms, the "
                f"limit (--max-rooms-per-client)"
            )
        if members is None:
            if isinstance(room, str) and len(room) > self.max_room_chars:
                return _refused(
                    f"JOINROOM with a {len(room)}-character room name; the limit "
                    f"is {self.max_room_chars} (--max-room-chars)"
                )
            if len(self._rooms) >= self.max_rooms:
                self._free_empty_rooms()
                if len(self._rooms) >= self.max_rooms:
                    return _dropped(
                        f"JOINROOM {preview(room)}: {self.max_rooms} rooms exist"
                    )
            members = self._rooms[room] = {}
        members[conn] = None
        self._joined[conn].add(room)
        return None

    def _free_empty_rooms(self) -> None:
        empty = [r for r, m in self._rooms.items() if not m and r not in RESERVED_ROOMS]
        for room in empty:
            del self._rooms[room]

    def _broadcast(
        self, conn: int, message: dict[str, Any], outline: Outline | None
    ) -> Routing:
        targets: list[int] = []
        if "TO_ROOM" in message:
            usable, room = _room_key(message["TO_ROOM"])
            members = self._rooms.get(room) if usable else None
            if members is None:
                # swergio fails here, before TO and the _logging copy
                return _dropped(f"unknown TO_ROOM {preview(message['TO_ROOM'])}")
            targets = [m for m in members if m != conn]
        if "TO" in message:
            to = message["TO"]
            if to is not LONG_VALUE:  # (no name is that long)
                try:
                    targets += self._named.get(_name_key(to), ())
                except RecursionError:
                    pass  # nested deeper than any name could be
        logging_members = (
            list(self._rooms["_logging"])
            if self.enable_logging and message["TYPE"] in LOGGED_TYPES
            else []
        )
        if not targets and not logging_members:
            return Routing([])
        stamp = "SENT_BY" not in message or self.overwrite_sent_by
        if stamp:
            message["SENT_BY"] = self._names[conn]
        deliveries = []
        try:
            if outline is None:
                if targets:
                    deliveries.append((targets, self._encode(message)))
                if logging_members:
                    log = self._log_message(message)
                    deliveries.append((logging_members, self._encode(log)))
            else:
                body = self._stamped(outline, message["SENT_BY"] if stamp else None)
                if targets:
                    deliveries.append((targets, self._frame(body)))
                if logging_members:
                    # json.dumps of the log message, with the body inside
                    head = json.dumps(self._log_message(0))
                    assert head.endswith("0}")
                    log_body = [head[:-2].encode(self.encoding), *body, b"}"]
                    deliveries.append((logging_members, self._frame(log_body)))
        except (ValueError, RecursionError) as exc:
            return _dropped(f"cannot be encoded again: {preview(str(exc), 120)}")
        return Routing(deliveries)

    def _log_message(self, message: object) -> dict[str, Any]:
        return {
            "ID": self._new_id(),
            "TO_ROOM": "_logging",
            "TYPE": LOG_MESSAGES,
            "MESSAGE": message,
        }

    def _encode(self, message: dict[str, Any]) -> bytes:
        return encode_frame(message, self.encoding, self.header_length)

    def _frame(self, pieces: list[bytes | memoryview]) -> bytes:
        """One frame of the body ``pieces`` (joined with a single copy)."""
        size = sum(len(p) for p in pieces)
        header = f"{size:<{self.header_length}}".encode(self.encoding)
        if len(header) != self.header_length:
            raise ValueError(
                f"a body of {size} bytes does not fit a {self.header_length}-byte "
                f"header"
            )
        return b"".join([header, *pieces])

    def _stamped(self, outline: Outline, sent_by: Any) -> list[bytes | memoryview]:
        """The body with ``SENT_BY`` set to ``sent_by`` (None: as it is).

        As ``json.dumps`` writes a dict whose ``SENT_BY`` was set: in place
        if the body has one, else last.  Pieces of the body's own bytes where
        they are one per character (ASCII, what ``json.dumps`` writes), so a
        large body is copied once, into the frame.
        """
        text, end, spans = outline.text, outline.end, outline.sent_by
        raw: bytes | memoryview = memoryview(outline.body)
        if len(raw) != len(text):  # characters of several bytes: cut the text
            raw = text.encode(self.encoding)
            # One pass over the text for every offset: encoding ``text[:a]``
            # per span would cost the body's size per SENT_BY key.
            if sent_by is None:
                spans = ()
            offset = {0: 0}
            last = 0
            for cut in sorted({end, *(c for span in spans for c in span)}):
                offset[cut] = offset[last] + len(text[last:cut].encode(self.encoding))
                last = cut
            end = offset[end]
            spans = tuple((offset[a], offset[b]) for a, b in spans)
        if sent_by is None:
            return [raw[:end]]
        value = json.dumps(sent_by).encode(self.encoding)
        if not spans:
            return [raw[: end - 1], b', "SENT_BY": ' + value + b"}"]
        pieces: list[bytes | memoryview] = []
        at = 0
        for start, stop in spans:
            pieces += (raw[at:start], value)
            at = stop
        pieces.append(raw[at:end])
        return pieces
