"""Option values from text: the converters both commands' options share.

Each takes the text of a flag or an environment variable and returns the
value or raises ``ValueError`` with what is wrong (argparse adds the option's
name and the text).  ``settings`` (agg-client) and ``cli.agg_server`` use
them, so neither command's options depend on the other's.
"""

from __future__ import annotations

import codecs
import math

from ..observe.http import parse_address

__all__ = [
    "LOG_LEVELS",
    "encoding",
    "http_address",
    "nonnegative_float",
    "port",
    "positive_float",
    "positive_int",
]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def positive_int(text: str) -> int:
    """An int >= 1."""
    value = int(text)
    if value < 1:
        raise ValueError("must be >= 1")
    return value


def port(text: str) -> int:
    """A TCP port, 0..65535."""
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError("must be 0..65535")
    return value


def positive_float(text: str) -> float:
    """A finite float > 0."""
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise ValueError("must be a finite number > 0")
    return value


def nonnegative_float(text: str) -> float:
    """A finite float >= 0."""
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError("must be a finite number >= 0")
    return value


def encoding(text: str) -> str:
    """A text encoding in which swergio's ASCII headers are their own bytes.

    The one check of ``--format`` for both commands.
    """
    try:
        codec = codecs.lookup(text)
        probe = "0123456789 {}".encode(codec.name)
    except (LookupError, UnicodeError):
        raise ValueError("unknown encoding: not a text encoding Python knows") from None
    if probe != b"0123456789 {}":
        raise ValueError(
            "swergio's headers need an ASCII-compatible encoding (utf-8, latin-1, ...)"
        )
    return text


def http_address(text: str) -> tuple[str, int]:
    """``[HOST:]PORT`` for ``--http`` (both commands); HOST defaults to 127.0.0.1.

    Examples
    --------
    >>> http_address("9464"), http_address("0.0.0.0:9464")
    (('127.0.0.1', 9464), ('0.0.0.0', 9464))
    """
    try:
        return parse_address(text)
    except ValueError as exc:  # argparse names the option and the value already
        why = str(exc).rpartition(": ")[2]
        raise ValueError(
            f"{why} (expected [HOST:]PORT, e.g. 9464 or 127.0.0.1:9464)"
        ) from None
