"""Hostile input, in process: whatever a swergio room delivers, nothing escapes.

Random frames (JSON of any shape, depth and size, random bytes, messages that
look almost right, huge numbers, truncated frames) go through the real
framing (:class:`FrameDecoder`) and the real component logic
(:class:`AggregatorProtocol` on an :class:`Aggregator`), interleaved with
valid rounds, in chunks of random size.  Every valid round must still give
exactly one ACTION, and nothing may leave the decoder or the protocol but
the messages to send.
"""

from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ensemble_agg import Aggregator
from ensemble_agg.protocol.component import AggregatorProtocol, Rooms
from ensemble_agg.protocol.framing import Frame, FrameDecoder, encode_frame
from ensemble_agg.protocol.messages import may_concern_aggregator

MODELS = ["m0", "m1", "m2"]
ROOMS = ["logits", "evolution", "action", "_command", "other"]
TYPES = ["DATA/CUSTOM", "DATA/NOPE", "COMMAND/REGISTER", 42, None, ["DATA/CUSTOM"]]


def _protocol(**kwargs) -> AggregatorProtocol:
    agg = Aggregator(len(MODELS), rng=0, model_ids=MODELS, n_actions=2, **kwargs)
    return AggregatorProtocol(agg, Rooms(), max_actions=64, step_timeout=None)


def _raw(body: bytes) -> bytes:
    return f"{len(body):<10}".encode() + body


def _valid(model: str, r: int) -> bytes:
    msg = {
        "ID": f"{model}-{r}",
        "TYPE": "DATA/CUSTOM",
        "TO_ROOM": "logits",
        "SENT_BY": model,
        "LOGITS": [math.sin(r), math.cos(r)],
        "COMPONENT_ID": model,
        "DETERMINISTIC": r % 2 == 0,
        "ROOT_ID": f"root-{r}",
    }
    return encode_frame(msg, "utf-8", 10)


def _deep(n: int, leaf: object = 0) -> object:
    value = leaf
    for _ in range(n):
        value = [value]
    return value


numbers = st.one_of(
    st.integers(),
    st.integers(min_value=10**300, max_value=10**400),
    st.integers(max_value=-(2**63), min_value=-(10**310)),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, -1e308, 5e-324, float("nan"), float("-inf")]),
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=20)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner)
    ),
    max_leaves=30,
)
# Messages that get past the first checks: right room and TYPE, wrong rest.
near_misses = st.fixed_dictionaries(
    {"TO_ROOM": st.sampled_from(ROOMS), "TYPE": st.sampled_from(TYPES)},
    optional={
        "LOGITS": st.one_of(json_values, st.lists(numbers, max_size=70)),
        "COMPONENT_ID": st.one_of(
            json_values, st.text(max_size=300), st.just("intruder")
        ).filter(lambda v: v not in MODELS),  # real models' ids are not forged here
        "DETERMINISTIC": json_values,
        "CMD": st.one_of(st.just("GET"), json_values),
        "ROOT_ID": st.one_of(json_values, st.builds(_deep, st.integers(0, 990))),
        "MODEL_STATUS": json_values,
        "SENT_BY": st.one_of(json_values, st.text(min_size=1000, max_size=3000)),
    },
)


def _encode(value: object) -> bytes:
    return json.dumps(value).encode()


hostile_bodies = st.one_of(
    near_misses.map(_encode),
    json_values.map(_encode),
    st.binary(max_size=200),
    st.integers(1, 200_000).map(lambda n: b"[" * n),
    st.integers(1, 2_000).map(lambda n: b'{"LOGITS": ' + b"[" * n + b"]" * n + b"}"),
    st.integers(0, 50).map(lambda n: b'{"LOGITS": [' + b"9" * (300 + n) + b", 1]}"),
    st.just(b'{"TO_ROOM": "logits", "TYPE": "DATA/CUSTOM", "LOGITS": [1e999, 0]}'),
    st.just(
        b'{"TO_ROOM": "logits", "TYPE": "DATA/CUSTOM", "COMPONENT_ID": "x", '
        b'"LOGITS": [-9223372036854775808, 1e308, 1e308, 1e16]}'
    ),
    st.just(b"[{}" + b",{}" * 100_000 + b"]"),
)


def _drain(protocol: AggregatorProtocol, frames: list[Frame]) -> list[dict]:
    out = []
    for frame in frames:
        out += [o.message for o in protocol.handle_frame(frame, now=0.0)]
    return out


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    hostile=st.lists(hostile_bodies, min_size=1, max_size=8),
    where=st.lists(st.integers(0, 3), min_size=8, max_size=8),
    cuts=st.lists(st.integers(1, 5000), min_size=1, max_size=20),
    n_rounds=st.integers(1, 3),
)
def test_valid_rounds_survive_any_frames(hostile, where, cuts, n_rounds):
    protocol = _protocol()
    stream = b""
    for r in range(n_rounds):
        valid = [_valid(m, r) for m in MODELS]
        for body, slot in zip(hostile, where, strict=False):
            valid.insert(min(slot, len(valid) - 1), _raw(body))
        stream += b"".join(valid)
    decoder = FrameDecoder("utf-8", 10, 1 << 20, wanted=may_concern_aggregator)
    sent = []
    pos = 0
    i = 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        sent += _drain(protocol, decoder.feed(stream[pos : pos + step]))
        pos += step
        i += 1
    actions = [m for m in sent if "ACTION" in m]
    assert len(actions) == n_rounds
    for r, msg in enumerate(actions):
        assert type(msg["ACTION"][0]) is int and msg["ACTION"][0] in (0, 1)
        assert msg["ROOT_ID"] == f"root-{r}"
        json.dumps(msg)  # every reply can be encoded
    assert protocol.aggregator.pending == ()
    assert math.isclose(sum(protocol.aggregator.contributions.values()), n_rounds) or (
        protocol.counters.gets > 0  # a hostile GET popped part of the tally
    )
    assert protocol.counters.internal_errors == 0


@settings(max_examples=300, deadline=None)
@given(
    junk=st.binary(max_size=64),
    cuts=st.lists(st.integers(1, 40), min_size=1, max_size=10),
)
def test_any_junk_between_frames_loses_nothing_around_it(junk, cuts):
    # Bytes out of step (a cut-short header the stock server forwarded, any
    # garbage): the frames before and after them still come out.
    decoder = FrameDecoder("utf-8", 10, 1 << 10)
    good = encode_frame({"A": 1}, "utf-8", 10)
    stream = good + junk + good + good
    frames, pos, i = [], 0, 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        frames += decoder.feed(stream[pos : pos + step])
        pos, i = pos + step, i + 1
    messages = [f.message for f in frames if f.message is not None]
    assert messages[0] == {"A": 1}
    assert messages[-2:] == [{"A": 1}, {"A": 1}]


def test_fullwidth_digit_header_keeps_the_stream_in_step():
    # swergio's server parses headers with int(), which takes any Unicode
    # digits, and forwards the header as it came: read it the same way.
    body = b'{"X": 1}' + b" " * (123 - 8)
    header = "１２３".encode() + b" "
    assert len(header) == 10
    decoder = FrameDecoder("utf-8", 10, 1 << 10)
    frames = decoder.feed(_valid("m0", 0) + header + body + _valid("m1", 0))
    assert [f.message and f.message.get("COMPONENT_ID") for f in frames] == [
        "m0",
        None,
        "m1",
    ]
    assert frames[1].message == {"X": 1}


def test_deep_root_id_gives_an_action_without_it():
    protocol = _protocol()
    frames = [
        Frame(json.loads(_valid(m, 0)[10:]) | {"ROOT_ID": _deep(990)}) for m in MODELS
    ]
    out = _drain(protocol, frames)
    assert len(out) == 1 and "ROOT_ID" not in out[0]
    encode_frame(out[0], "utf-8", 10)


def test_huge_integers_are_dropped_and_the_round_completes():
    protocol = _protocol()
    sent = []
    for model, logits in [
        ("m0", [0.5, 0.25]),
        ("m1", [10**310, 0]),  # does not fit a float
        ("m1", [-(2**63), 10**308]),  # fits; valid
        ("m2", [1e308, 1e308]),  # fits; the sum would overflow
    ]:
        msg = json.loads(_valid(model, 0)[10:]) | {"LOGITS": logits}
        sent += _drain(protocol, [Frame(msg)])
    assert protocol.counters.dropped == 1
    assert len(sent) == 1 and sent[0]["ACTION"] in ([0], [1])


def test_width_poisoning_is_prevented_by_n_actions():
    agg = Aggregator(3, n_actions=2)
    protocol = AggregatorProtocol(agg, Rooms(), max_actions=64)
    rogue = json.loads(_valid("rogue", 0)[10:]) | {"LOGITS": [1.0]}
    out = _drain(
        protocol,
        [Frame(rogue)] + [Frame(json.loads(_valid(m, 0)[10:])) for m in MODELS],
    )
    assert len(out) == 1 and protocol.counters.dropped == 1


def test_dense_large_body_is_refused_before_decoding():
    body = b'{"LOGITS": [' + b"{}," * 100_000 + b"{}]}"
    frames = FrameDecoder("utf-8", 10, 1 << 20).feed(_raw(body))
    assert frames[0].message is None and "objects and lists" in frames[0].error


def test_large_frames_that_cannot_concern_us_are_not_parsed():
    weights = {
        "CMD": "SET",
        "WEIGHTS": {f"m{i}": [0.123456789] * 20_000 for i in range(5)},
    }
    decoder = FrameDecoder("utf-8", 10, 16 << 20, wanted=may_concern_aggregator)
    frames = decoder.feed(encode_frame(weights, "utf-8", 10) + _valid("m0", 0))
    assert decoder.skipped == 1
    assert [f.message["COMPONENT_ID"] for f in frames] == ["m0"]
