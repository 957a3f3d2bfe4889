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
from collections.abc import Callable, Generator
from typing import Any, NamedTuple

from ..util.text import preview

__all__ = [
    "LAZY_ABOVE",
    "LONG_VALUE",
    "ROUTING_FIELDS",
    "Frame",
    "FrameDecoder",
    "Outline",
    "encode_frame",
    "outline_at_once",
    "outline_body",
]


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
    #: A body over the decoder's ``raw_above``, left undecoded (``message``
    #: and ``error`` are then ``None``): see :func:`outline_body`.
    body: bytes | None = None


#: Bodies longer than this are checked before they are parsed: skipped if
#: the decoder's ``wanted`` test says they cannot matter, refused if they
#: are built of more containers than a message of numbers could be.
LAZY_ABOVE = 1 << 16
#: The first byte of a swergio body (``json.dumps`` of an object).
_OPENERS = frozenset(b"{")
#: What ``json.loads`` skips before a value.
_WHITESPACE = frozenset(b" \t\n\r")
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
    raw_above : int, optional
        Bodies longer than this (that pass the checks above) come back
        undecoded, as ``Frame(None, None, body)``, for the caller to read
        with :func:`outline_body`.  Default: decode all.

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
        raw_above: int | None = None,
    ) -> None:
        self.encoding = encoding
        self.raw_above = raw_above
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
        self._more = False  # feed stopped at max_frames with bytes left
        self._vetted = False  # the frame at the buffer's start: spaces vetted
        # A header (a digit, then digits or spaces) and a body starting like
        # a JSON object: where a frame can start.  Real JSON bodies never hold
        # ten digits and spaces followed by "{" outside their strings.
        self._frame_start = re.compile(rb"[0-9][0-9 ]{%d}\{" % (header_length - 1))

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete frame."""
        return len(self._buf)

    @property
    def more(self) -> bool:
        """True if the last :meth:`feed` stopped at ``max_frames`` (or after an
        undecoded body) with bytes left that may hold more frames."""
        return self._more

    @property
    def mid_frame(self) -> bool:
        """True if the stream stopped inside a frame."""
        return bool(self._buf) or self._skip > 0

    def feed(self, data: bytes, max_frames: int | None = None) -> list[Frame]:
        """Add ``data``; return every frame it completes (or the first ones).

        With ``max_frames``, at most that many frames come back (0: none,
        the bytes are only taken in), and none after an undecoded body
        (``raw_above``): the rest stay in the buffer
        as bytes, undecoded and counted in :attr:`buffered`, and :attr:`more`
        is set until ``feed(b"", max_frames)`` has taken them.  So a caller
        can bound its work per call, and what waits costs its raw size.

        A header that is not a length, or an oversized frame whose body does
        not start like a JSON object, means the stream is out of step (the
        swergio server forwards some headers as it read them, cut short): the
        decoder returns one error frame and reads on from the next place
        where a header followed by ``{`` starts.  Frames before it are kept.
        So is a frame that starts inside the bytes an oversized one claims.
        """
        frames: list[Frame] = []
        self._more = False
        if self._skip:
            data = self._read_skipped(data, frames)
            if not data:
                return frames
        buf = self._buf
        buf += data
        h = self.header_length
        start = 0
        while len(buf) - start >= h:
            if max_frames is not None and (
                len(frames) >= max_frames or (frames and frames[-1].body is not None)
            ):
                self._more = True
                break
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
        # json.loads takes whitespace before the object, and stock swergio
        # delivers such a body; but bytes out of step look alike (a header
        # read a few bytes early ends in the real header's padding), so
        # such a body is vetted as one that is not an object, below.
        first = body_start
        limit = min(have, end, body_start + VET_BYTES)
        while first < limit and buf[first] in _WHITESPACE:
            first += 1
        if first == have < min(end, body_start + VET_BYTES):
            return None  # only whitespace yet: wait for the byte that decides
        spaced = first > body_start and first < end and buf[first] in _OPENERS
        if not length or spaced or buf[body_start] not in _OPENERS:
            # Not an object: a real frame (the stock server forwards
            # undecodable ones), unless another frame starts inside the bytes
            # it claims: then this header is out of step.  (Until the frame
            # is complete, only its first bytes are searched, where a
            # cut-short header's frame would be: searching all of a growing
            # frame at every read would cost the square of its size.)
            limit = end + h if end <= have else start + 4 * h
            inside = self._frame_start.search(buf, start + 1, min(have, limit))
            if spaced and inside is not None and inside.end() - 1 == first:
                # A "frame" whose "{" is this body's: this header read from
                # a byte on.  Either this header came early (bytes out of
                # step, then that frame) or the body starts with spaces; the
                # shorter frame's body, once here, tells which.
                if not self._vetted:
                    verdict = self._vet_spaced(buf, inside.start(), have)
                    if verdict is None:
                        return None
                    if not verdict:
                        return self._out_of_step(buf, start, frames)
                    self._vetted = True
                inside = self._frame_start.search(
                    buf, inside.start() + 1, min(have, limit)
                )
            if inside is not None and inside.start() < end:
                return self._out_of_step(buf, start, frames)
        elif self._broken_object(buf, start, end):
            return self._out_of_step(buf, start, frames)
        if end > have:
            return None
        self._lost = self._vetted = False
        frame = self._decode(bytes(memoryview(buf)[body_start:end]))
        if frame is not None:
            frames.append(frame)
        return end

    def _vet_spaced(self, buf: bytearray, at: int, have: int) -> bool | None:
        """True if the frame a header at ``at`` claims is no JSON object (so
        the header before it, whose body starts with spaces, is the real
        one); False if it is; None until its body is all here."""
        length = self._length(bytes(buf[at : at + self.header_length]))
        body_start = at + self.header_length
        if length < 0:
            return True
        if body_start + length > have:
            return None
        try:
            value = json.loads(bytes(buf[body_start : body_start + length]))
        except (ValueError, RecursionError):
            return True
        return type(value) is not dict

    def _broken_object(self, buf: bytearray, start: int, end: int) -> bool:
        """True if a frame starts inside the first bytes of this ``{`` body and
        those bytes cannot begin a JSON object: the header was out of step.

        (A real body holds a frame-like run of bytes only inside a string, and
        then its first bytes still read as JSON.  Only the first
        :data:`VET_BYTES` are looked at, so a large frame costs no more.)
        """
        h = self.header_length
        body_start = start + h
        window_end = min(len(buf), end, body_start + VET_BYTES)
        inside = self._frame_start.search(buf, body_start + 1, window_end)
        if inside is None:
            return False
        try:
            text = bytes(buf[body_start:window_end]).decode(self.encoding)
        except UnicodeDecodeError as exc:
            # a character cut by the window's end proves nothing
            return exc.start < len(buf[body_start:window_end]) - 4
        return not _could_begin_json(text)

    def _out_of_step(self, buf: bytearray, start: int, frames: list[Frame]) -> int:
        """The header at ``start`` is no frame's: say so once, then look further on."""
        self._vetted = False
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
            if self.raw_above is not None and len(body) > self.raw_above:
                return Frame(None, None, body)
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

#: Bytes at the start of a ``{`` body checked for a frame start inside them.
VET_BYTES = 256
_NUMBER_TAIL = re.compile(r"-?[0-9]*\.?[0-9]*(?:[eE][-+]?[0-9]*)?")
_LITERALS = ("true", "false", "null", "NaN", "Infinity", "-Infinity")


def _could_begin_json(text: str) -> bool:
    """True if ``text`` is, or may be the start of, one JSON value.

    ``json`` reports where it failed; a failure that only the missing rest
    could explain (an open string, a number or a literal cut short, the text
    ending where a value or a delimiter was due) leaves the question open.

    Examples
    --------
    >>> _could_begin_json('{"a": [1, tr'), _could_begin_json('{"a": 1.5e')
    (True, True)
    >>> _could_begin_json('{8         {"A": 1}'), _could_begin_json('{"8  {"A": 1}')
    (False, False)
    """
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        tail = text[exc.pos :]
        return (
            exc.msg.startswith(("Unterminated string", "Invalid \\uXXXX"))
            or not tail.strip()
            or _NUMBER_TAIL.fullmatch(tail) is not None
            or any(word.startswith(tail) for word in _LITERALS)
        )
    except RecursionError:
        return True
    return True


#: The top-level fields swergio's routing reads; :func:`outline_body` returns
#: these (when short) and nothing else.
ROUTING_FIELDS = frozenset(("TYPE", "TO_ROOM", "TO", "SENT_BY", "NAME", "ROOM"))
#: A routing field's value is decoded only if its JSON text is at most this
#: long; a longer one stands as :data:`LONG_VALUE` (it can name no room or
#: registered name, and a longer ``NAME`` is refused anyway).
_FIELD_TEXT = 4096
#: Characters of a large value decoded per step: decoding builds a few times
#: (up to some 20 times, for short strings) this much memory, then frees it.
_CHUNK = 1 << 16
#: Characters of the body one outline step covers at least: resuming a step
#: walks the chain of generators down to the nesting being read, so steps
#: over a few characters each would cost the nesting depth per character.
_STEP = 1 << 12
_WS = re.compile(r"[ \t\n\r]*")


class _LongValue:
    """Stands for a routing field's value too long to be worth decoding."""

    def __repr__(self) -> str:
        return "<a long value>"


#: The value :func:`outline_body` gives a routing field whose text is long.
LONG_VALUE: Any = _LongValue()


class Outline(NamedTuple):
    """What routing needs of a large body, found without decoding all of it.

    ``fields`` holds the body's top-level :data:`ROUTING_FIELDS` (the last
    one of each name, as ``json.loads`` keeps), ``text`` the body as text and
    ``end`` where its object closes; ``sent_by`` lists the ``(start, stop)``
    of every top-level ``SENT_BY`` value in ``text``.  ``body`` is the body's
    bytes: where it has one byte per character, the same positions hold.
    """

    fields: dict[str, Any]
    text: str
    end: int
    sent_by: tuple[tuple[int, int], ...]
    body: bytes = b""


def outline_body(body: bytes, encoding: str) -> Generator[None, None, Outline]:
    """Check that ``body`` is a JSON object and outline it, a slice at a time.

    A generator: each ``next()`` does a bounded piece of work (about 64 KiB of
    the body), so a caller can serve others between pieces; its return value
    (``StopIteration.value``, or ``yield from``) is the :class:`Outline`.
    It raises ``ValueError`` saying why if ``json.loads`` would fail on the
    body or would not return an object.  No value is built whole: memory
    stays a small multiple of the body however it is made.

    Examples
    --------
    >>> steps = outline_body(b'{"TYPE": "T", "X": [1, 2], "SENT_BY": "a"}', "utf-8")
    >>> for _ in steps:  # serve others between steps
    ...     pass
    >>> outline = outline_at_once(b'{"TYPE": "T", "X": [1, 2], "SENT_BY": "a"}', "utf-8")
    >>> outline.fields, outline.sent_by, outline.end
    ({'TYPE': 'T', 'SENT_BY': 'a'}, ((38, 41),), 42)
    """
    try:
        text = body.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ValueError(f"the frame is not valid JSON ({exc})") from None
    try:
        outline = yield from _outline(text)
    except IndexError:
        raise ValueError("the frame is not valid JSON (it ends early)") from None
    except RecursionError:
        raise ValueError("the frame is nested too deeply to decode") from None
    return outline._replace(body=body)


def _expect(text: str, i: int, char: str, what: str) -> int:
    if text[i] != char:
        raise ValueError(
            f"the frame is not valid JSON (expected {what} at character {i})"
        )
    return _WS.match(text, i + 1).end()  # type: ignore[union-attr]


def _outline(text: str) -> Generator[None, None, Outline]:
    pace = [0]  # where the last step ended
    ws = _WS.match
    i = ws(text, 0).end()  # type: ignore[union-attr]
    if i == len(text) or text[i] != "{":
        # Not decoded to name its kind: a large list would cost what this avoids.
        raise ValueError(
            f"the frame is not a JSON object (it starts with "
            f"{preview(text[i : i + 1])})"
        )
    fields: dict[str, Any] = {}
    sent_by: list[tuple[int, int]] = []
    i = _expect(text, i, "{", "{")
    if text[i] != "}":
        while True:
            if i - pace[0] >= _STEP:
                pace[0] = i
                yield
            if text[i] != '"':
                _expect(text, i, '"', "a key")
            key, i = _raw_json(text, i)
            i = ws(text, i).end()  # type: ignore[union-attr]
            i = _expect(text, i, ":", "':'")
            start = i
            i = yield from _skip_value(text, i, pace)
            if key in ROUTING_FIELDS:
                if key == "SENT_BY":
                    sent_by.append((start, i))
                if i - start <= _FIELD_TEXT:
                    fields[key] = _raw_json(text, start)[0]
                else:
                    fields[key] = LONG_VALUE
            i = ws(text, i).end()  # type: ignore[union-attr]
            if text[i] == ",":
                i = ws(text, i + 1).end()  # type: ignore[union-attr]
                continue
            _expect(text, i, "}", "',' or '}'")
            break
    end = i + 1
    if ws(text, end).end() != len(text):  # type: ignore[union-attr]
        raise ValueError(f"the frame is not valid JSON (extra data at character {end})")
    return Outline(fields, text, end, tuple(sent_by))


def _raw_json(text: str, i: int) -> tuple[Any, int]:
    try:
        return _raw_decode(text, i)
    except ValueError as exc:
        raise ValueError(f"the frame is not valid JSON ({exc})") from None


def _skip_value(text: str, i: int, pace: list[int]) -> Generator[None, None, int]:
    """Check the JSON value at ``text[i]``; return where it ends."""
    opener = text[i]
    if opener == "{":
        return (yield from _skip_object(text, i, pace))
    if opener == "[":
        return (yield from _skip_array(text, i, pace))
    # A scalar: a long string costs one copy, whatever its length.
    return _raw_json(text, i)[1]


def _skip_object(text: str, i: int, pace: list[int]) -> Generator[None, None, int]:
    ws = _WS.match
    i = _expect(text, i, "{", "{")
    if text[i] == "}":
        return i + 1
    while True:
        if i - pace[0] >= _STEP:
            pace[0] = i
            yield
        if text[i] != '"':
            _expect(text, i, '"', "a key")
        i = _raw_json(text, i)[1]
        i = ws(text, i).end()  # type: ignore[union-attr]
        i = _expect(text, i, ":", "':'")
        i = yield from _skip_value(text, i, pace)
        i = ws(text, i).end()  # type: ignore[union-attr]
        if text[i] == ",":
            i = ws(text, i + 1).end()  # type: ignore[union-attr]
            continue
        _expect(text, i, "}", "',' or '}'")
        return i + 1


def _skip_array(text: str, i: int, pace: list[int]) -> Generator[None, None, int]:
    """Check a list by decoding slices of its elements, cut at ``", "``.

    A slice ``text[i:q]`` from an element's start to a ``", "`` decodes as
    ``"[" + slice + "]"`` only if ``q`` falls between elements of this list:
    a cut inside a string leaves it unterminated, a cut inside a nested
    container leaves that unclosed.  So decoding slices checks the list
    without building it whole.  Where no slice decodes (no ``", "`` near, a
    cut inside an element, an error), elements are checked one at a time
    (recursing into nested containers) over the next stretch.  Slices grow
    from 256 characters, so a short list costs about its own length.
    """
    ws = _WS.match
    i = _expect(text, i, "[", "[")
    if text[i] == "]":
        return i + 1
    step = 256
    while True:
        if i - pace[0] >= _STEP:
            pace[0] = i
            yield
        q = text.find(", ", i + step, i + 2 * step)
        if q != -1:
            try:
                _, end = _raw_decode("[" + text[i:q] + "]")
            except (ValueError, RecursionError):
                end = -1
            if end == q - i + 2:  # every element in the slice is whole
                i = ws(text, q + 1).end()  # type: ignore[union-attr]
                step = min(2 * step, _CHUNK)
                continue
            if end > 0:  # the list closes inside the slice
                return i + end - 1
        stop = i + 2 * step
        while True:
            i = yield from _skip_value(text, i, pace)
            i = ws(text, i).end()  # type: ignore[union-attr]
            if text[i] == "]":
                return i + 1
            i = _expect(text, i, ",", "',' or ']'")
            if i > stop:
                break
            if i - pace[0] >= _STEP:
                pace[0] = i
                yield


def outline_at_once(body: bytes, encoding: str) -> Outline:
    """Run :func:`outline_body` to the end; its :class:`Outline`.

    Examples
    --------
    >>> outline_at_once(b'{"TYPE": "T", "TO_ROOM": "r"}', "utf-8").fields
    {'TYPE': 'T', 'TO_ROOM': 'r'}
    """
    steps = outline_body(body, encoding)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            outline: Outline = done.value
            return outline


def _json_kind(value: object) -> str:
    names = {list: "list", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")
