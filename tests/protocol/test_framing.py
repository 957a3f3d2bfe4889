"""Tests of ensemble_agg.protocol.framing and .messages: frames and message checks."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ensemble_agg.protocol.framing import FrameDecoder, encode_frame
from ensemble_agg.protocol.messages import BadMessage, parse_command, parse_submission


def test_encode_frame_matches_swergio_client_bytes():
    msg = {
        "ID": "x",
        "TYPE": "DATA/CUSTOM",
        "TO_ROOM": "action",
        "ACTION": [1],
        "é": "ü",
    }
    body = json.dumps(msg).encode("utf-8")
    assert encode_frame(msg, "utf-8", 10) == f"{len(body):<10}".encode() + body
    assert encode_frame(msg, "utf-8", 16)[:16] == f"{len(body):<16}".encode()


def test_encode_frame_rejects_body_too_long_for_header():
    with pytest.raises(ValueError, match="does not fit"):
        encode_frame({"A": "x" * 200}, "utf-8", 2)


messages = st.dictionaries(
    st.text(max_size=5),
    st.one_of(
        st.integers(), st.text(max_size=20), st.lists(st.floats(allow_nan=False))
    ),
    max_size=5,
)


@given(st.lists(messages, max_size=8), st.lists(st.integers(1, 50), max_size=20))
def test_decoder_reassembles_any_split(msgs, cuts):
    stream = b"".join(encode_frame(m, "utf-8", 10) for m in msgs)
    dec = FrameDecoder("utf-8", 10, max_body=1 << 20)
    out, pos = [], 0
    for cut in [*cuts, len(stream)]:
        out += [f.message for f in dec.feed(stream[pos : pos + cut])]
        pos += cut
    out += [f.message for f in dec.feed(stream[pos:])]
    assert out == msgs
    assert not dec.mid_frame


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{nope", "not valid JSON"),
        (b"[1, 2]", "JSON list, not an object"),
        (b'"s"', "JSON string"),
        (b"3", "JSON number"),
        (b"null", "JSON null"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_bad_bodies_are_reported_and_stream_continues(body, error):
    dec = FrameDecoder("utf-8", 10, max_body=100)
    stream = f"{len(body):<10}".encode() + body + encode_frame({"OK": 1}, "utf-8", 10)
    frames = list(dec.feed(stream))
    assert frames[0].message is None and error in frames[0].error
    assert frames[1].message == {"OK": 1}


def test_oversized_body_is_skipped_without_buffering():
    dec = FrameDecoder("utf-8", 10, max_body=100)
    big = encode_frame({"X": "y" * 10_000}, "utf-8", 10)
    # Large frames are ordinary traffic (an evolution room's WEIGHTS): they
    # pass by unread and are counted, not reported as errors.
    assert dec.feed(big[:500]) == []
    assert dec.skipped == 1
    assert dec.buffered == 0
    for i in range(500, len(big), 700):
        assert list(dec.feed(big[i : i + 700])) == []
        assert dec.buffered == 0
    assert [f.message for f in dec.feed(encode_frame({"N": 2}, "utf-8", 10))] == [
        {"N": 2}
    ]
    assert dec.skipped == 1


@pytest.mark.parametrize("header", [b"abc       ", b"-5        ", b"\xff" * 10])
def test_bad_header_resynchronises_at_the_next_frame(header):
    # A header the swergio server cut short and forwarded: one error frame,
    # then the frames after it, none of the earlier ones lost.
    dec = FrameDecoder("utf-8", 10, 100)
    good = encode_frame({"N": 1}, "utf-8", 10)
    frames = dec.feed(good + header + b"{}" + good)
    assert frames[0].message == {"N": 1}
    assert "lost the frame boundaries" in frames[1].error
    assert frames[2].message == {"N": 1} and len(frames) == 3
    assert dec.resyncs == 1


def test_forged_oversized_length_does_not_swallow_the_stream():
    # "9" forwarded alone as a header, then 9 body bytes: read as 10 bytes,
    # a length of 9 GB; the frames after it must still be read.
    dec = FrameDecoder("utf-8", 10, 1 << 10)
    good = encode_frame({"N": 1}, "utf-8", 10)
    for forged in (b"9099999999", b"8099999997{"):
        frames = []
        stream = forged + good + good
        for i in range(0, len(stream), 3):  # frame starts straddle the reads
            frames += dec.feed(stream[i : i + 3])
        assert [f.message for f in frames[1:]] == [{"N": 1}, {"N": 1}], frames
        assert frames[0].error is not None


def _framed(body: bytes) -> bytes:
    """``body`` behind a 10-byte header of its length, whatever it holds."""
    return f"{len(body):<10}".encode() + body


@given(junk=st.binary(max_size=60), message=messages)
def test_resync_finds_the_next_frame_start_after_any_junk(junk, message):
    dec = FrameDecoder("utf-8", 10, max_body=1 << 20)
    frame = encode_frame(message, "utf-8", 10)
    buf = bytearray(junk + frame)
    at = dec._resync(buf, 0)
    # At the frame, or earlier where junk ending in digits makes a header
    # with it; never past the frame.
    assert at is not None and at <= len(junk)
    assert dec._frame_start.match(buf, at)
    if not any(byte in b"0123456789" for byte in junk):
        assert at == len(junk)


# Pieces of a hostile stream: frames, junk, cut-short and forged headers,
# bodies that are not objects, frames over a small max_body.
stream_pieces = st.one_of(
    messages.map(lambda m: encode_frame(m, "utf-8", 10)),
    st.integers(0, 300).map(lambda n: _framed(b'{"X": "' + b"y" * n + b'"}')),
    st.binary(max_size=40),
    st.binary(max_size=40).map(_framed),
    st.tuples(st.integers(0, 500), st.binary(max_size=60)).map(
        lambda t: f"{t[0]:<10}".encode() + t[1]
    ),
    st.sampled_from(
        [b"9099999999", b"8099999997{", b"abc       ", b"\xff" * 10, b"1 2       {"]
    ),
)


@given(
    pieces=st.lists(stream_pieces, max_size=10),
    cuts=st.lists(st.integers(0, 120), max_size=30),
    max_body=st.sampled_from([0, 50, 1 << 20]),
)
def test_any_chunking_gives_the_frames_of_feeding_at_once(pieces, cuts, max_body):
    stream = b"".join(pieces)
    whole = FrameDecoder("utf-8", 10, max_body)
    expected = whole.feed(stream)
    dec = FrameDecoder("utf-8", 10, max_body)
    frames, pos = [], 0
    for cut in [*cuts, len(stream)]:
        frames += dec.feed(stream[pos : pos + cut])
        pos += cut
    assert frames == expected
    assert (dec.resyncs, dec.mid_frame) == (whole.resyncs, whole.mid_frame)
    # (skipped may differ: an oversized frame that arrives in pieces is
    # counted as skipped before a frame found inside it shows it forged.)


GOOD = {"LOGITS": [0.5, -1, float("-inf")], "COMPONENT_ID": "m1", "DETERMINISTIC": True}


def test_parse_submission_good():
    sub = parse_submission(GOOD, 4096)
    assert sub.model_id == "m1" and sub.logits == GOOD["LOGITS"] and sub.deterministic
    assert all(type(v) is float for v in sub.logits)
    assert (
        parse_submission({"LOGITS": [1], "COMPONENT_ID": "a"}, 1).deterministic is False
    )
    assert parse_submission({"TO_ROOM": "logits", "OBS": [1]}, 10) is None


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"COMPONENT_ID": 5}, "COMPONENT_ID is int"),
        ({"COMPONENT_ID": ""}, "1 to 256"),
        ({"COMPONENT_ID": "x" * 257}, "1 to 256"),
        ({"LOGITS": "1,2"}, "expected a list"),
        ({"LOGITS": []}, "empty"),
        ({"LOGITS": [0.0] * 5}, "the limit is 4"),
        ({"LOGITS": [0, "1"]}, "LOGITS[1]"),
        ({"LOGITS": [False]}, "LOGITS[0]"),
        ({"LOGITS": [[1]]}, "LOGITS[0]"),
        ({"LOGITS": [float("nan")]}, "LOGITS of 'm1' contain NaN at action 0"),
        ({"LOGITS": [1.0, float("inf")]}, "LOGITS of 'm1' contain +inf at action 1"),
        ({"LOGITS": [1, 10**400]}, "too large for a float at action 1"),
        ({"LOGITS": [float("-inf")] * 2}, "all actions at -inf"),
        ({"DETERMINISTIC": "yes"}, "DETERMINISTIC"),
    ],
)
def test_parse_submission_bad(change, words):
    with pytest.raises(BadMessage) as info:
        parse_submission(GOOD | change, 4)
    assert words in str(info.value)


def test_parse_submission_missing_halves():
    with pytest.raises(BadMessage, match="without COMPONENT_ID"):
        parse_submission({"LOGITS": [1]}, 4)
    with pytest.raises(BadMessage, match="without LOGITS"):
        parse_submission({"COMPONENT_ID": "a"}, 4)


def test_parse_command():
    assert parse_command({"CMD": "GET"}) == "GET"
    assert parse_command({"WEIGHTS": {}}) is None
    with pytest.raises(BadMessage, match="CMD is list"):
        parse_command({"CMD": ["GET"]})


@pytest.mark.parametrize(
    "junk", [b"100       {", b'100       {"', b'100       {"k":[0,']
)
def test_a_forged_header_before_a_brace_loses_no_frame_after_it(junk):
    # Found by hypothesis: a cut-short header whose "body" starts with "{"
    # claimed the frames after it.  Their bytes cannot continue a JSON object,
    # so the header is out of step and the frames come out, fed in any pieces.
    good = encode_frame({"A": 1}, "utf-8", 10)
    stream = good + junk + good + good
    for step in (1, 7, len(stream)):
        decoder = FrameDecoder("utf-8", 10, 1 << 10)
        frames = []
        for pos in range(0, len(stream), step):
            frames += decoder.feed(stream[pos : pos + step])
        assert [f.message for f in frames if f.message is not None] == [{"A": 1}] * 3


def test_a_frame_like_run_inside_a_string_is_not_a_frame_start():
    # The other side of the rule above: a real body may hold such bytes in a
    # string, and arrives whole however it is cut.
    body = {"TEXT": '8         {"A": 1}', "X": list(range(100))}
    wire = encode_frame(body, "utf-8", 10)
    for step in (1, 3, 50):
        decoder = FrameDecoder("utf-8", 10, 1 << 10)
        frames = []
        for pos in range(0, len(wire), step):
            frames += decoder.feed(wire[pos : pos + step])
        assert [f.message for f in frames] == [body]


@pytest.mark.parametrize("spaces, pad", [(1, 20), (3, 2027), (2, 0), (9, 100)])
def test_a_body_starting_with_spaces_is_delivered_as_stock_swergio_does(spaces, pad):
    # Stock swergio json.loads the body, spaces and all.  A header read a
    # byte early looks the same (its digits and padding, then "{"); here the
    # shorter frame that reading would give is no JSON object, so the
    # frame is taken whole (issue 17 review, item 7).
    message = {"TYPE": "DATA/CUSTOM", "TO": "x", "P": "p" * pad}
    body = b" " * spaces + json.dumps(message).encode()
    stream = f"{len(body):<10}".encode() + body + encode_frame({"A": 1}, "utf-8", 10)
    for step in (1, 7, len(stream)):
        decoder = FrameDecoder("utf-8", 10, 1 << 20)
        frames = []
        for at in range(0, len(stream), step):
            frames += decoder.feed(stream[at : at + step])
        assert [f.message for f in frames] == [message, {"A": 1}], step
        assert decoder.resyncs == 0


@given(
    st.lists(st.integers(0, 300), min_size=1, max_size=12),
    st.integers(1, 5),
    st.integers(1, 4000),
)
def test_max_frames_bounds_each_feed_and_loses_nothing(sizes, limit, step):
    # The server routes at most a few frames per connection per pass; the
    # rest waits in the decoder as bytes, counted in ``buffered``.
    stream = b"".join(encode_frame({"I": i, "P": "x" * n}, "utf-8", 10)
                      for i, n in enumerate(sizes))  # fmt: skip
    decoder = FrameDecoder("utf-8", 10, 1 << 20)
    got = []
    for at in range(0, len(stream), step):
        frames = decoder.feed(stream[at : at + step], limit)
        while True:
            assert len(frames) <= limit
            got += frames
            if not decoder.more:
                break
            assert decoder.buffered > 0
            frames = decoder.feed(b"", limit)
    assert [f.message["I"] for f in got] == list(range(len(sizes)))
    assert decoder.buffered == 0


def test_frames_after_an_undecoded_body_stay_bytes_until_asked_for():
    # A large body comes back undecoded for the caller to outline over
    # several passes; the frames after it must not be decoded (and held)
    # meanwhile: a dense small frame decodes to some 30 times its size.
    big = encode_frame({"TYPE": "T", "X": "a" * 70_000}, "utf-8", 10)
    dense = encode_frame({"TYPE": "T", "X": [[]] * 20_000}, "utf-8", 10)
    decoder = FrameDecoder("utf-8", 10, 1 << 20, raw_above=1 << 16)
    [frame] = decoder.feed(big + dense * 3, 64)
    assert frame.body is not None and decoder.more
    assert decoder.buffered == 3 * len(dense)
    assert len(decoder.feed(b"", 64)) == 3 and not decoder.more
