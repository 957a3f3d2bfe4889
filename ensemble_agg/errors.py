"""The project's exceptions and warnings, in one place.

Every error and warning that ensemble-agg raises on purpose is defined here
and re-exported from the package root, so ``except ensemble_agg.BadMessage``
never needs a private path.  This module imports nothing from the rest of
the package (layer 0), so any layer may raise these.

The hierarchy (built-in bases in brackets)::

    [ValueError]
        UnknownModelError      - an Aggregator refuses a model id (.reason: IdRejection)
        BadMessage             - a peer's swergio message that cannot be used
    [ConnectionError]
        ConnectionLost         - the link to the swergio server ended (.frames)
        ServerUnreachable      - no server within agg-client's connect timeout
    [Exception]
        StateFileError         - the state file cannot be read or written
    [UserWarning]
        SingleModelBatchWarning - aggregate got n steps of one model each

The built-in bases are part of the contract: bad input is a ``ValueError``
(as the interface promises for every check), and a lost or refused
connection is a ``ConnectionError`` (an ``OSError``), as socket code expects.
"""

from __future__ import annotations

import enum
from typing import Any

__all__ = [
    "BadMessage",
    "ConnectionLost",
    "IdRejection",
    "ServerUnreachable",
    "SingleModelBatchWarning",
    "StateFileError",
    "UnknownModelError",
]


class IdRejection(enum.StrEnum):
    """Why :class:`~ensemble_agg.Aggregator` refused a model id."""

    #: ``model_ids`` was given and the id is not in it.
    UNLISTED = "unknown"
    #: The ``max_ids`` cap on distinct ids is reached.
    CAP = "cap"


class UnknownModelError(ValueError):
    """A submission from a model id the aggregator will not track.

    ``reason`` is an :class:`IdRejection`: :attr:`IdRejection.UNLISTED` when
    ``model_ids`` was given and the id is not in it, :attr:`IdRejection.CAP`
    when the ``max_ids`` cap on distinct ids is reached.
    """

    def __init__(self, message: str, reason: IdRejection) -> None:
        super().__init__(message)
        self.reason = reason


class BadMessage(ValueError):
    """A peer's message that cannot be used; ``str()`` says why."""


class ConnectionLost(ConnectionError):
    """The connection to the swergio server ended or its framing broke.

    ``frames`` holds the good frames (``ensemble_agg.protocol.framing.Frame``)
    read before the connection was lost; the caller handles them as usual.
    """

    def __init__(self, message: str, frames: list[Any] | None = None) -> None:
        super().__init__(message)
        self.frames: list[Any] = frames if frames is not None else []


class ServerUnreachable(ConnectionError):
    """The server could not be reached within ``connect_timeout``."""


class StateFileError(Exception):
    """The state file cannot be read or written; ``str()`` says which and why."""


class SingleModelBatchWarning(UserWarning):
    """``aggregate`` got shape ``(n, 1, n_actions)``: ``n`` one-model steps.

    That is what a stack of ``n`` policies' ``(1, n_actions)`` outputs looks
    like, which is almost always meant as one step of ``n`` models.
    """
