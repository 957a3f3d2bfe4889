"""swergio's wire format, without sockets: frames in a byte stream.

A swergio frame is a header of ``header_length`` bytes (the body's byte
length as ASCII digits, left-aligned, space-padded) followed by the body, a
JSON object encoded with ``encoding``.  :class:`FrameDecoder` turns a byte
stream into frames and never blocks or reads a socket itself: the caller
feeds it whatever ``recv`` returned.  What a decoded message means is
``messages.py``'s business.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, NamedTuple

from ..util.text import preview

__all__ = ["LAZY_ABOVE", "Frame", "FrameDecoder", "encode_frame"]


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
    valid JSON or not a JSON object.  (A named tuple: one is built per
    message, and a frozen dataclass costs several times more to build.)
    """

    message: dict[str, Any] | None
    error: str | None = None


#: Bodies longer than this are checked before they are parsed: skipped if
#: the decoder's ``wanted`` test says they cannot matter, refused if they
#: are built of more containers than a message of numbers could be.
LAZY_ABOVE = 1 << 16
#: The first byte of a swergio body (``json.dumps`` of an object).
_OPENERS = frozenset(b"{")
#: A large body may hold at most one ``{`` or ``[`` per this many bytes: a
#: decoded container costs 56 to 64 bytes of memory, so a body of empty
#: objects would take some 30 times its size to decode.
BYTES_PER_CONTAINER = 16


class FrameDecoder:
    """Split a byte stream into swergio frames.

    Parameters
    ----------
    encoding : str
        The swergio ``format`` (body and header encoding).
    header_length : int
        The swergio header length.
    max_body : int
        Bodies longer than this are skipped without being buffered (and
        counted in :attr:`skipped`), so a peer cannot make the decoder hold
        more than about ``max_body`` bytes.
    wanted : callable, optional
        ``wanted(body) -> bool`` for bodies over 64 KiB: ``False`` skips the
        body unparsed (counted in :attr:`skipped`).  Default: parse all.

    Notes
    -----
    Headers are read as swergio reads them, ``int(header.decode(encoding))``,
    so any header the swergio server accepted and forwarded keeps the stream
    in step here too.  Memory: a frame is held once while it arrives; a body
    is decoded only when complete, and a large body only if it is not denser
    in ``{`` and ``[`` than one per 16 bytes (a message of numbers is far
    sparser), which bounds decoding to a small multiple of the body's size.

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

    def __init__(
        self,
        encoding: str,
        header_length: int,
        max_body: int,
        *,
        wanted: Callable[[bytes], bool] | None = None,
    ) -> None:
        self.encoding = encoding
        self.header_length = header_length
        self.max_body = max_body
        self.wanted = wanted
        #: Frames passed by unparsed: over ``max_body`` or not ``wanted``.
        self.skipped = 0
        #: Times the stream was found out of step and read on from the next frame.
        self.resyncs = 0
        self._buf = bytearray()
        self._skip = 0  # bytes of an oversized body still to discard
        self._tail = b""  # the last bytes discarded, to find a frame start in
        self._claimed = 0  # the length an oversized header claimed
        self._lost = False  # out of step, looking for the next frame
        # A header (a digit, then digits or spaces) and a body starting like
        # a JSON object: where a frame can start.  Real JSON bodies never hold
        # ten digits and spaces followed by "{" outside their strings.
        self._frame_start = re.compile(rb"[0-9][0-9 ]{%d}\{" % (header_length - 1))

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete frame."""
        return len(self._buf)

    @property
    def mid_frame(self) -> bool:
        """True if the stream stopped inside a frame."""
        return bool(self._buf) or self._skip > 0

    def feed(self, data: bytes) -> list[Frame]:
        """Add ``data``; return every frame it completes.

        A header that is not a length, or an oversized frame whose body does
        not start like a JSON object, means the stream is out of step (the
        swergio server forwards some headers as it read them, cut short): the
        decoder returns one error frame and reads on from the next place
        where a header followed by ``{`` starts.  Frames before it are kept.
        So is a frame that starts inside the bytes an oversized one claims.
        """
        frames: list[Frame] = []
        if self._skip:
            data = self._read_skipped(data, frames)
            if not data:
                return frames
        buf = self._buf
        buf += data
        h = self.header_length
        start = 0
        while len(buf) - start >= h:
            if self._lost:
                found = self._resync(buf, start)
                if found is None:
                    # Keep what could be the start of the next header.
                    start = max(start, len(buf) - h)
                    break
                start = found
            length = self._length(bytes(buf[start : start + h]))
            if length > self.max_body:
                after = self._read_oversized(buf, start, length, frames)
            elif length >= 0:
                after = self._read_body(buf, start, length, frames)
            else:
                after = self._out_of_step(buf, start, frames)
            if after is None:
                break  # the frame is not all here yet
            start = after
        del buf[:start]
        if not buf and buf.__sizeof__() > 1 << 20:
            self._buf = bytearray()  # give a large frame's buffer back
        return frames

    # -- the readers ---------------------------------------------------------
    # The decoder is in one of three states, each with its reader, each
    # small enough to fuzz alone:
    # - skipping an oversized body (``_skip`` > 0): ``_read_skipped``;
    # - lost, out of step (``_lost``): ``_resync`` finds where a frame can
    #   start, and the frame readers below check that it does;
    # - in step: the header's length picks ``_read_body`` (at most
    #   ``max_body``), ``_read_oversized`` or ``_out_of_step`` (no length).
    # The frame readers return where the next frame starts, or None to wait,
    # with the buffer kept from ``start``, for more bytes.

    def _read_skipped(self, data: bytes, frames: list[Frame]) -> bytes:
        """Discard what is left of an oversized body; return the bytes after it."""
        n = min(self._skip, len(data))
        # (with the tail of the last read: a frame start may straddle reads)
        window = self._tail + data[:n]
        found = self._frame_start.search(window)
        if found is not None:
            # A frame starts inside the bytes of an oversized one: its
            # length was forged (a cut-short header), not a real frame's.
            frames.append(Frame(None, self._forged()))
            self._skip = 0
            self._tail = b""
            return window[found.start() :] + data[n:]
        self._skip -= n
        self._tail = window[-self.header_length :] if self._skip else b""
        return data[n:]

    def _resync(self, buf: bytearray, start: int) -> int | None:
        """Out of step: where a frame can start, at ``start`` or after; None if nowhere."""
        found = self._frame_start.search(buf, start)
        return None if found is None else found.start()

    def _read_oversized(
        self, buf: bytearray, start: int, length: int, frames: list[Frame]
    ) -> int | None:
        """A header claiming more than ``max_body``: pass its body by unread."""
        body_start = start + self.header_length
        have = len(buf)
        if body_start == have:
            return None  # the body's first byte decides; wait for it
        # Not read, so not checked by decoding: trust its length only if its
        # body starts as swergio's do.
        if buf[body_start] not in _OPENERS:
            return self._out_of_step(buf, start, frames)
        self._lost = False
        self._claimed = length
        inside = self._frame_start.search(
            buf, body_start, min(have, body_start + length)
        )
        if inside is not None:
            frames.append(Frame(None, self._forged()))
            return inside.start()
        self.skipped += 1
        self._skip = max(0, length - (have - body_start))
        self._tail = bytes(buf[max(body_start, have - self.header_length) : have])
        return min(have, body_start + length)

    def _read_body(
        self, buf: bytearray, start: int, length: int, frames: list[Frame]
    ) -> int | None:
        """A frame of ``length`` bytes (at most ``max_body``): decode it when complete."""
        h = self.header_length
        body_start = start + h
        end = body_start + length
        have = len(buf)
        if length and body_start == have:
            return None  # the body's first byte decides; wait for it
        if not length or buf[body_start] not in _OPENERS:
            # Not an object: a real frame (the stock server forwards
            # undecodable ones), unless another frame starts inside the bytes
            # it claims: then this header is out of step.  (Until the frame
            # is complete, only its first bytes are searched, where a
            # cut-short header's frame would be: searching all of a growing
            # frame at every read would cost the square of its size.)
            limit = end + h if end <= have else start + 4 * h
            inside = self._frame_start.search(buf, start + 1, min(have, limit))
            if inside is not None and inside.start() < end:
                return self._out_of_step(buf, start, frames)
        if end > have:
            return None
        self._lost = False
        frame = self._decode(bytes(memoryview(buf)[body_start:end]))
        if frame is not None:
            frames.append(frame)
        return end

    def _out_of_step(self, buf: bytearray, start: int, frames: list[Frame]) -> int:
        """The header at ``start`` is no frame's: say so once, then look further on."""
        if not self._lost:
            self._lost = True
            self.resyncs += 1
            header = preview(bytes(buf[start : start + self.header_length]))
            frames.append(
                Frame(
                    None,
                    f"lost the frame boundaries at header {header}; "
                    f"reading on from the next frame",
                )
            )
        return start + 1

    def _forged(self) -> str:
        self.resyncs += 1
        return (
            f"a header claimed a frame of {self._claimed} bytes, but another frame "
            f"starts inside it; reading on from there"
        )

    def _length(self, header: bytes) -> int:
        """The body length in ``header``, read as swergio reads it; -1 if none."""
        try:
            return int(header)  # ASCII digits and spaces: the usual case
        except ValueError:
            pass
        try:
            return int(header.decode(self.encoding))
        except (UnicodeDecodeError, ValueError):
            return -1

    def _decode(self, body: bytes) -> Frame | None:
        if len(body) > LAZY_ABOVE:
            if self.wanted is not None and not self.wanted(body):
                self.skipped += 1
                return None
            containers = body.count(b"{") + body.count(b"[")
            if containers * BYTES_PER_CONTAINER > len(body):
                return Frame(
                    None,
                    f"a frame of {len(body)} bytes holds {containers} objects and "
                    f"lists; refused unparsed (more than one per "
                    f"{BYTES_PER_CONTAINER} bytes)",
                )
        try:
            text = body.decode(self.encoding)
        except UnicodeDecodeError as exc:
            return Frame(None, f"the frame is not valid JSON ({exc})")
        try:
            # raw_decode skips json.loads' encoding detection and whitespace
            # handling, about half its cost on a small message; anything
            # unusual (surrounding whitespace, errors) goes through json.loads.
            message, end = _raw_decode(text)
        except (ValueError, RecursionError):
            end = -1
        if end != len(text):
            try:
                message = json.loads(text)
            except ValueError as exc:
                return Frame(None, f"the frame is not valid JSON ({exc})")
            except RecursionError:
                return Frame(None, "the frame is nested too deeply to decode")
        if type(message) is not dict:
            kind = _json_kind(message)
            return Frame(None, f"the frame is a JSON {kind}, not an object")
        return Frame(message, None)


_raw_decode = json.JSONDecoder().raw_decode


def _json_kind(value: object) -> str:
    names = {list: "list", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")
