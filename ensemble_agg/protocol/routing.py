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
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Hashable
from typing import Any, NamedTuple

from ..util.text import preview
from .framing import encode_frame
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

#: Longest string accepted as a new room's name (stock clients use short ones;
#: a hostile one could otherwise park megabytes per room).
MAX_ROOM_NAME = 1024


class Routing(NamedTuple):
    """What to do with one message.

    ``deliveries`` pairs a list of connection ids with the frame (header and
    body, one buffer) each of them must be sent; a connection may appear
    more than once.  ``close`` is set when the sender asked to disconnect.
    ``problem`` says why the message (or part of it) was dropped.
    """

    deliveries: list[tuple[list[int], bytes]]
    close: bool = False
    problem: str | None = None


def _dropped(problem: str) -> Routing:
    return Routing([], problem=problem)


def _room_key(value: object) -> tuple[bool, Hashable]:
    """``(True, value)`` if ``value`` can name a room, else ``(False, None)``.

    JSON gives str, int, float, bool, None, list or dict; swergio keeps rooms
    in a dict, so the last two fail there with ``TypeError``.
    """
    if isinstance(value, (list, dict)):
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
        new_id: Callable[[], str] | None = None,
    ) -> None:
        self.encoding = encoding
        self.header_length = header_length
        self.overwrite_sent_by = overwrite_sent_by
        self.enable_logging = enable_logging
        self.max_rooms = max_rooms
        self._new_id = new_id or (lambda: uuid.uuid4().hex)
        self._connected: set[int] = set()
        # name by connection; a connection is absent until it REGISTERs
        self._names: dict[int, Any] = {}
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
        self._names.pop(conn, None)
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

    def name_of(self, conn: int) -> Any:
        """``conn``'s registered name, or ``None`` before it registered."""
        return self._names.get(conn)

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
            self._names[conn] = message["NAME"]
        elif conn not in self._names:
            return _dropped(f"{preview(kind)} before REGISTER")
        elif kind == COMMAND_JOINROOM or kind == COMMAND_LEAVEROOM:
            problem = self._membership(conn, kind, message)
            if problem is not None:
                return _dropped(problem)
        return self._broadcast(conn, message)

    def _membership(self, conn: int, kind: str, message: dict[str, Any]) -> str | None:
        if "ROOM" not in message:
            return f"{kind} without ROOM"
        usable, room = _room_key(message["ROOM"])
        if not usable:
            return f"{kind} with ROOM {preview(message['ROOM'])}; expected a string"
        members = self._rooms.get(room)
        if kind == COMMAND_LEAVEROOM:
            if members is None:
                return f"LEAVEROOM of unknown room {preview(room)}"
            if conn in members:
                del members[conn]
                self._joined[conn].discard(room)
                if not members and room not in RESERVED_ROOMS:
                    del self._rooms[room]
            return None
        if members is None:
            if isinstance(room, str) and len(room) > MAX_ROOM_NAME:
                return f"JOINROOM with a {len(room)}-character room name"
            if len(self._rooms) >= self.max_rooms:
                self._free_empty_rooms()
                if len(self._rooms) >= self.max_rooms:
                    return f"JOINROOM {preview(room)}: {self.max_rooms} rooms exist"
            members = self._rooms[room] = {}
        members[conn] = None
        self._joined[conn].add(room)
        return None

    def _free_empty_rooms(self) -> None:
        empty = [r for r, m in self._rooms.items() if not m and r not in RESERVED_ROOMS]
        for room in empty:
            del self._rooms[room]

    def _broadcast(self, conn: int, message: dict[str, Any]) -> Routing:
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
            targets += [c for c, name in self._names.items() if name == to]
        logging_members = (
            list(self._rooms["_logging"])
            if self.enable_logging and message["TYPE"] in LOGGED_TYPES
            else []
        )
        if not targets and not logging_members:
            return Routing([])
        if "SENT_BY" not in message or self.overwrite_sent_by:
            message["SENT_BY"] = self._names[conn]
        deliveries = []
        try:
            if targets:
                deliveries.append((targets, self._encode(message)))
            if logging_members:
                log = {
                    "ID": self._new_id(),
                    "TO_ROOM": "_logging",
                    "TYPE": LOG_MESSAGES,
                    "MESSAGE": message,
                }
                deliveries.append((logging_members, self._encode(log)))
        except (ValueError, RecursionError) as exc:
            return _dropped(f"cannot be encoded again: {preview(str(exc), 120)}")
        return Routing(deliveries)

    def _encode(self, message: dict[str, Any]) -> bytes:
        return encode_frame(message, self.encoding, self.header_length)
