"""The aggregator's messages: where a peer's decoded message becomes trusted data.

:func:`parse_submission` and :func:`parse_command` check one message of the
logits or the evolution room and raise :class:`BadMessage` (the peer's
fault) and nothing else.  :func:`may_concern_aggregator` decides from a large
body's bytes, before it is parsed, whether it can matter at all.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from ..core.checks import as_row
from ..errors import BadMessage
from ..util.text import label, preview

__all__ = [
    "MAX_ID_LENGTH",
    "BadMessage",
    "Submission",
    "may_concern_aggregator",
    "parse_command",
    "parse_submission",
    "propagated",
    "sender_of",
]

#: Longest model id accepted off the wire, in characters.
MAX_ID_LENGTH = 256


def sender_of(message: dict[str, Any]) -> str:
    """Who sent ``message``, for a log line (``SENT_BY``, cut to 60 characters)."""
    sender = message.get("SENT_BY")
    return preview(sender) if sender is not None else "an unknown sender"


_GET = re.compile(rb'"CMD"\s*:\s*"GET"')


def may_concern_aggregator(body: bytes) -> bool:
    """False if a body cannot be a submission or a ``CMD: GET``.

    A cheap scan of a large body's bytes, before it is parsed: an evolution
    room's multi-megabyte ``WEIGHTS`` or ``SET`` has neither ``"LOGITS"``,
    ``"COMPONENT_ID"`` nor ``"CMD": "GET"`` in it and is passed by unread.
    (A peer that spells a key with JSON escapes, ``"\\u004cOGITS"``, only
    gets its own message ignored.)

    Examples
    --------
    >>> may_concern_aggregator(b'{"CMD": "SET", "WEIGHTS": [0.5]}')
    False
    >>> may_concern_aggregator(b'{"CMD" : "GET"}')
    True
    """
    return (
        b'"LOGITS"' in body
        or b'"COMPONENT_ID"' in body
        or (b'"CMD"' in body and _GET.search(body) is not None)
    )


def propagated(value: object) -> bool:
    """True if ``value`` may be copied into a reply as ``ROOT_ID``/``MODEL_STATUS``.

    swergio copies these from a request into its reply.  Real peers send a
    hex id and a small int; anything else (deep nesting that cannot be
    encoded again, a megabyte string echoed to a whole room) is not copied.
    """
    kind = type(value)
    if kind is str:
        return len(value) <= MAX_ID_LENGTH  # type: ignore[arg-type]
    if kind is int:
        return -(1 << 63) <= value < 1 << 63  # type: ignore[operator]
    return kind is float or kind is bool or value is None


class Submission(NamedTuple):
    """A checked ``LOGITS`` message: model id, logits as floats, deterministic flag."""

    model_id: str
    logits: list[float]
    deterministic: bool


def parse_submission(message: dict[str, Any], max_actions: int) -> Submission | None:
    """Check one logits-room message; return ``None`` if it is not a submission.

    A message with neither ``LOGITS`` nor ``COMPONENT_ID`` is other traffic
    and returns ``None``.  Otherwise both must be there: ``COMPONENT_ID`` a
    non-empty string of at most 256 characters, ``LOGITS`` a non-empty list of
    at most `max_actions` JSON numbers (not booleans), and
    ``DETERMINISTIC``, if present, a boolean or null (false).  The length is checked before
    the entries, so a huge list is rejected cheaply; then the entries are
    converted to floats and checked (NaN, ``+inf``, an integer too large for
    a float, every action at ``-inf``) by ``as_row``, the same function that
    :meth:`ensemble_agg.Aggregator.submit` uses.

    Examples
    --------
    >>> parse_submission({"LOGITS": [0.1, -2], "COMPONENT_ID": "m1"}, 4096)
    Submission(model_id='m1', logits=[0.1, -2.0], deterministic=False)
    >>> parse_submission({"LOGITS": [0.1, True], "COMPONENT_ID": "m1"}, 4096)
    Traceback (most recent call last):
    ...
    ensemble_agg.errors.BadMessage: LOGITS[1] of 'm1' is True; expected a number
    """
    has_logits = "LOGITS" in message
    has_id = "COMPONENT_ID" in message
    if not has_logits and not has_id:
        return None
    if not has_id:
        raise BadMessage("LOGITS without COMPONENT_ID")
    model_id = message["COMPONENT_ID"]
    if type(model_id) is not str:
        raise BadMessage(
            f"COMPONENT_ID is {type(model_id).__name__} {label(model_id)}; "
            f"expected a string"
        )
    if not model_id or len(model_id) > MAX_ID_LENGTH:
        raise BadMessage(
            f"COMPONENT_ID has {len(model_id)} characters; expected 1 to {MAX_ID_LENGTH}"
        )
    if not has_logits:
        raise BadMessage(f"COMPONENT_ID {label(model_id)} without LOGITS")
    logits = message["LOGITS"]
    if type(logits) is not list:
        raise BadMessage(
            f"LOGITS of {label(model_id)} is {type(logits).__name__} {preview(logits)}; "
            f"expected a list of numbers"
        )
    n = len(logits)
    if n == 0:
        raise BadMessage(f"LOGITS of {label(model_id)} is empty")
    if n > max_actions:
        raise BadMessage(
            f"LOGITS of {label(model_id)} has {n} entries; the limit is {max_actions} "
            f"(--max-actions)"
        )
    for i, value in enumerate(logits):
        kind = type(value)
        if kind is not float and kind is not int:
            raise BadMessage(
                f"LOGITS[{i}] of {label(model_id)} is {preview(value)}; expected a number"
            )
    try:
        row = as_row(logits, f"LOGITS of {label(model_id)}")
    except (TypeError, ValueError) as exc:
        raise BadMessage(str(exc)) from None
    det = message.get("DETERMINISTIC", False)
    if type(det) is not bool:
        if det is None:
            det = False
        else:
            raise BadMessage(
                f"DETERMINISTIC of {label(model_id)} is {preview(det)}; expected true or false"
            )
    return Submission(model_id, row, det)


def parse_command(message: dict[str, Any]) -> str | None:
    """Return the evolution-room ``CMD``, or ``None`` if the message has none.

    Raises :class:`BadMessage` if ``CMD`` is not a string.
    """
    if "CMD" not in message:
        return None
    cmd = message["CMD"]
    if type(cmd) is not str:
        raise BadMessage(
            f"CMD is {type(cmd).__name__} {preview(cmd)}; expected a string"
        )
    return cmd
