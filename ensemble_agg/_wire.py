"""swergio's wire format and message checks, without sockets.

A swergio frame is a header of ``header_length`` bytes (the body's byte
length as ASCII digits, left-aligned, space-padded) followed by the body, a
JSON object encoded with ``encoding``.  :class:`FrameDecoder` turns a byte
stream into frames and never blocks or reads a socket itself: the caller
feeds it whatever ``recv`` returned.  :func:`parse_submission` and
:func:`parse_command` are the edge where a peer's message becomes trusted
data; they raise :class:`BadMessage` (the peer's fault) and nothing else.
"""

from __future__ import annotations

import codecs
import json
import math
from collections.abc import Iterator
from typing import Any, NamedTuple

from ._validation import preview

__all__ = [
    "BadMessage",
    "Frame",
    "FrameDecoder",
    "FramingError",
    "Submission",
    "encode_frame",
    "parse_command",
    "parse_submission",
    "sender_of",
]

#: Longest model id accepted off the wire, in characters.
MAX_ID_LENGTH = 256


class BadMessage(ValueError):
    """A peer's message that cannot be used; ``str()`` says why."""


class FramingError(ValueError):
    """The byte stream is out of step (a header that is not a length)."""


def encode_frame(message: dict[str, Any], encoding: str, header_length: int) -> bytes:
    """Encode ``message`` as one swergio frame (header and body together).

    Byte for byte what ``swergio.Client.send`` writes, as one buffer so the
    caller can write it with a single ``sendall``.

    Examples
    --------
    >>> encode_frame({"ACTION": [1]}, "utf-8", 10)
    b'15        {"ACTION": [1]}'
    """
    body = json.dumps(message).encode(encoding)
    header = f"{len(body):<{header_length}}".encode(encoding)
    if len(header) != header_length:
        raise ValueError(
            f"a body of {len(body)} bytes does not fit a {header_length}-byte header"
        )
    return header + body


class Frame(NamedTuple):
    """One frame's outcome: a decoded ``message``, or why it has none.

    ``error`` is set (and ``message`` is ``None``) for a body that is not
    valid JSON or not a JSON object, and for a body longer than the decoder's
    limit, which is skipped unread.  (A named tuple: one is built per
    message, and a frozen dataclass costs several times more to build.)
    """

    message: dict[str, Any] | None
    error: str | None = None
    size: int = 0


class FrameDecoder:
    """Split a byte stream into swergio frames.

    Parameters
    ----------
    encoding : str
        The swergio ``format`` (body and header encoding).
    header_length : int
        The swergio header length.
    max_body : int
        Bodies longer than this are skipped without being buffered, so a
        hostile peer cannot make the decoder hold more than about
        ``max_body`` bytes.

    Examples
    --------
    >>> dec = FrameDecoder("utf-8", 10, max_body=1 << 20)
    >>> data = encode_frame({"A": 1}, "utf-8", 10) + b"6         [1, 2"
    >>> [f.message for f in dec.feed(data[:7])]
    []
    >>> [f.message for f in dec.feed(data[7:])]
    [{'A': 1}]
    >>> [f.error for f in dec.feed(b"]")]
    ['the frame is a JSON list, not an object']
    """

    def __init__(self, encoding: str, header_length: int, max_body: int) -> None:
        self.encoding = encoding
        self.header_length = header_length
        self.max_body = max_body
        self._buf = bytearray()
        self._skip = 0  # bytes of an oversized body still to discard
        # An ASCII header parses with int() straight from bytes.
        self._ascii_header = codecs.lookup(encoding).name in (
            "utf-8",
            "ascii",
            "iso8859-1",
        )

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete frame."""
        return len(self._buf)

    @property
    def mid_frame(self) -> bool:
        """True if the stream stopped inside a frame."""
        return bool(self._buf) or self._skip > 0

    def feed(self, data: bytes) -> Iterator[Frame]:
        """Add ``data``; yield every frame it completes.

        Raises :class:`FramingError` if a header is not a byte length; the
        stream cannot be resynchronised after that.
        """
        if self._skip:
            dropped = min(self._skip, len(data))
            self._skip -= dropped
            data = data[dropped:]
        self._buf += data
        buf = self._buf
        start = 0
        h = self.header_length
        while len(buf) - start >= h:
            header = bytes(buf[start : start + h])
            try:
                length = int(
                    header if self._ascii_header else header.decode(self.encoding)
                )
            except (UnicodeDecodeError, ValueError):
                raise FramingError(
                    f"frame header {header!r} is not a body length"
                ) from None
            if length < 0:
                raise FramingError(f"frame header {header!r} is negative")
            if length > self.max_body:
                available = len(buf) - start - h
                self._skip = max(0, length - available)
                start = min(len(buf), start + h + length)
                yield Frame(
                    None,
                    f"a frame of {length} bytes is over the {self.max_body}-byte "
                    f"limit; skipped unread",
                    length,
                )
                continue
            end = start + h + length
            if end > len(buf):
                break
            body = bytes(buf[start + h : end])
            start = end
            yield self._decode(body)
        del buf[:start]

    def _decode(self, body: bytes) -> Frame:
        try:
            text = body.decode(self.encoding)
        except UnicodeDecodeError as exc:
            return Frame(None, f"the frame is not valid JSON ({exc})", len(body))
        try:
            # raw_decode skips json.loads' encoding detection and whitespace
            # handling, about half its cost on a small message; anything
            # unusual (surrounding whitespace, errors) goes through json.loads.
            message, end = _raw_decode(text)
        except ValueError:
            end = -1
        if end != len(text):
            try:
                message = json.loads(text)
            except ValueError as exc:
                return Frame(None, f"the frame is not valid JSON ({exc})", len(body))
        if type(message) is not dict:
            kind = _json_kind(message)
            return Frame(None, f"the frame is a JSON {kind}, not an object", len(body))
        return Frame(message, None, len(body))


_raw_decode = json.JSONDecoder().raw_decode


def _json_kind(value: object) -> str:
    names = {list: "list", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def sender_of(message: dict[str, Any]) -> str:
    """Who sent ``message``, for a log line (``SENT_BY``, set by the server)."""
    sender = message.get("SENT_BY")
    return repr(sender) if sender is not None else "an unknown sender"


class Submission(NamedTuple):
    """A checked ``LOGITS`` message: model id, logits, deterministic flag."""

    model_id: str
    logits: list[float]
    deterministic: bool


def parse_submission(message: dict[str, Any], max_actions: int) -> Submission | None:
    """Check one logits-room message; return ``None`` if it is not a submission.

    A message with neither ``LOGITS`` nor ``COMPONENT_ID`` is other traffic
    and returns ``None``.  Otherwise both must be there: ``COMPONENT_ID`` a
    non-empty string of at most 256 characters, ``LOGITS`` a non-empty list of
    at most `max_actions` numbers (not booleans), none of them NaN or
    ``+inf``, and ``DETERMINISTIC``, if present, a boolean.  The length is
    checked before the entries, so a huge list is rejected cheaply.

    Examples
    --------
    >>> parse_submission({"LOGITS": [0.1, -2], "COMPONENT_ID": "m1"}, 4096)
    Submission(model_id='m1', logits=[0.1, -2], deterministic=False)
    >>> parse_submission({"LOGITS": [0.1, True], "COMPONENT_ID": "m1"}, 4096)
    Traceback (most recent call last):
    ...
    ensemble_agg._wire.BadMessage: LOGITS[1] of 'm1' is True; expected a number
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
            f"COMPONENT_ID is {type(model_id).__name__} {preview(model_id)}; "
            f"expected a string"
        )
    if not model_id or len(model_id) > MAX_ID_LENGTH:
        raise BadMessage(
            f"COMPONENT_ID has {len(model_id)} characters; expected 1 to {MAX_ID_LENGTH}"
        )
    if not has_logits:
        raise BadMessage(f"COMPONENT_ID {model_id!r} without LOGITS")
    logits = message["LOGITS"]
    if type(logits) is not list:
        raise BadMessage(
            f"LOGITS of {model_id!r} is {type(logits).__name__} {preview(logits)}; "
            f"expected a list of numbers"
        )
    n = len(logits)
    if n == 0:
        raise BadMessage(f"LOGITS of {model_id!r} is empty")
    if n > max_actions:
        raise BadMessage(
            f"LOGITS of {model_id!r} has {n} entries; the limit is {max_actions} "
            f"(--max-actions)"
        )
    for i, value in enumerate(logits):
        kind = type(value)
        if kind is float:
            if value != value or value == math.inf:
                raise BadMessage(
                    f"LOGITS[{i}] of {model_id!r} is {value}; expected a finite "
                    f"number or -Infinity"
                )
        elif kind is not int:
            raise BadMessage(
                f"LOGITS[{i}] of {model_id!r} is {preview(value)}; expected a number"
            )
    det = message.get("DETERMINISTIC", False)
    if type(det) is not bool:
        if det is None:
            det = False
        else:
            raise BadMessage(
                f"DETERMINISTIC of {model_id!r} is {preview(det)}; expected true or false"
            )
    return Submission(model_id, logits, det)


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
