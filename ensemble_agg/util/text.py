"""Plain-text helpers for error messages and log lines; any layer may use them.

A peer controls most of what ends up in our messages (ids, room names,
values), so everything is shown through :func:`preview`, which is bounded in
size and safe for any value JSON can produce.
"""

from __future__ import annotations

import reprlib

__all__ = ["label", "preview"]

_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = 60


def preview(value: object, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters for a message or a log line.

    Safe for anything a peer can send: a 2 MB string is cut before it is
    copied, deep nesting is shown to three levels, and an integer too long to
    print is described by its size.

    Examples
    --------
    >>> preview("x" * 10**6, limit=12)
    "'xxxxxxxx..."
    >>> preview(10**5000)
    '<an integer of 16610 bits>'
    """
    if isinstance(value, int) and value.bit_length() > 192:
        return f"<an integer of {value.bit_length()} bits>"
    try:
        text = _REPR.repr(value)
    except (ValueError, RecursionError):  # e.g. an int past Python's digit limit
        text = f"<a {type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def label(value: object) -> str:
    """``repr(value)`` for a message, cheap for the usual short string id."""
    if type(value) is str and len(value) <= 60:
        return repr(value)
    return preview(value)
