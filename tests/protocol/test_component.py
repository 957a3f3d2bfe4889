"""Tests of ensemble_agg.protocol.component: the aggregator's rules, frame by frame.

In-process, on a fake clock (``now`` is passed in): no socket, no thread, no
sleep.  The socket loop around this protocol is tested in tests/cli.
"""

from __future__ import annotations

import logging
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ensemble_agg import Aggregator
from ensemble_agg.protocol.component import AggregatorProtocol, Outbox, Rooms
from ensemble_agg.protocol.framing import Frame

from ..helpers import snapshot

LOGGER = "ensemble_agg.protocol.component"


def _protocol(n_models: int = 2, **kwargs) -> AggregatorProtocol:
    agg_kwargs = {k: kwargs.pop(k) for k in ("model_ids",) if k in kwargs}
    return AggregatorProtocol(
        Aggregator(n_models, rng=0, **agg_kwargs), Rooms(), max_actions=8, **kwargs
    )


def _logits(model: object, logits: object, **fields) -> Frame:
    message = {"TYPE": "DATA/CUSTOM", "TO_ROOM": "logits", "COMPONENT_ID": model}
    return Frame({**message, "LOGITS": logits, **fields})


def _get(**fields) -> Frame:
    return Frame(
        {"TYPE": "DATA/CUSTOM", "TO_ROOM": "evolution", "CMD": "GET", **fields}
    )


def _messages(protocol: AggregatorProtocol, frame: Frame, now: float = 0.0) -> list:
    return [out.message for out in protocol.handle_frame(frame, now)]


def _tally(protocol: AggregatorProtocol) -> dict:
    """A finished round's tally, taken by a GET (the protocol's tally is then empty)."""
    for model in ("a", "b"):
        protocol.handle_frame(_logits(model, [0.0, 1.0]), now=0.0)
    (reply,) = protocol.handle_frame(_get(), now=0.0)
    return reply.message


class TestRound:
    def test_completes_with_one_action_carrying_root_id_and_model_status(self):
        protocol = _protocol()
        assert _messages(protocol, _logits("a", [0.0, 1.0])) == []
        fields = {"ROOT_ID": "r1", "MODEL_STATUS": 1, "DETERMINISTIC": True}
        (action,) = _messages(protocol, _logits("b", [0.0, 2.0], **fields))
        assert action["ACTION"] == [1] and type(action["ACTION"][0]) is int
        assert action["TO_ROOM"] == "action" and action["TYPE"] == "DATA/CUSTOM"
        assert action["SENT_BY"] == "aggregation"
        assert action["ROOT_ID"] == "r1" and action["MODEL_STATUS"] == 1
        assert protocol.counters.rounds == 1 and protocol.dirty
        assert set(protocol.aggregator.contributions) == {"a", "b"}

    @pytest.mark.parametrize("root_id", ["x" * 1000, {"deep": [1]}, 2**70])
    def test_an_unsafe_root_id_is_not_copied(self, root_id):
        protocol = _protocol(1)
        (action,) = _messages(protocol, _logits("a", [0.0, 1.0], ROOT_ID=root_id))
        assert "ROOT_ID" not in action and action["ACTION"] in ([0], [1])


# Each breaks one rule of the wire; the second model's round is then open.
DROPS = {
    "LOGITS not a list": _logits("b", "0, 1"),
    "LOGITS of strings": _logits("b", ["a", "b"]),
    "LOGITS empty": _logits("b", []),
    "LOGITS too long": _logits("b", [0.0] * 9),
    "no COMPONENT_ID": Frame(
        {"TYPE": "DATA/CUSTOM", "TO_ROOM": "logits", "LOGITS": [1]}
    ),
    "non-string id": _logits(7, [0.0, 1.0]),
    "wrong width": _logits("b", [0.0, 1.0, 2.0]),
    "NaN": _logits("b", [math.nan, 0.0]),
    "+inf": _logits("b", [math.inf, 0.0]),
    "all -inf": _logits("b", [-math.inf, -math.inf]),
    "DETERMINISTIC not a bool": _logits("b", [0.0, 1.0], DETERMINISTIC="yes"),
    "CMD not a string": Frame(
        {"TYPE": "DATA/CUSTOM", "TO_ROOM": "evolution", "CMD": 1}
    ),
    "unknown TYPE": Frame({**_logits("b", [0.0, 1.0]).message, "TYPE": "DATA/NOPE"}),
    "TYPE not a string": Frame({**_logits("b", [0.0, 1.0]).message, "TYPE": [1]}),
    "undecodable frame": Frame(None, "the frame is not valid JSON"),
}


@pytest.mark.parametrize("frame", DROPS.values(), ids=DROPS.keys())
def test_every_drop_counts_once_and_changes_nothing(frame, caplog):
    protocol = _protocol()
    protocol.handle_frame(_logits("a", [0.0, 1.0]), now=0.0)
    protocol.aggregator.add_contributions({"old": 0.5})
    protocol.dirty = False
    before = snapshot(protocol.aggregator)
    with caplog.at_level(logging.WARNING, LOGGER):
        assert protocol.handle_frame(frame, now=1.0) == []
    assert protocol.counters.dropped == 1
    assert snapshot(protocol.aggregator) == before and not protocol.dirty
    (record,) = caplog.records
    assert record.getMessage().startswith("dropped a message from ")
    # The round still completes with the next valid submission.
    (action,) = _messages(protocol, _logits("b", [0.0, 1.0]))
    assert "ACTION" in action and protocol.counters.rounds == 1


@pytest.mark.parametrize(
    "kind", ["DATA/TEXT", "LOG/MESSAGES", "COMMAND/ENABLELOGGING", "DATA/FORWARD"]
)
@pytest.mark.parametrize("room", ["logits", "evolution"])
def test_swergios_other_types_are_ignored_not_dropped(kind, room, caplog):
    protocol = _protocol()
    protocol.handle_frame(_logits("a", [0.0, 1.0]), now=0.0)
    before = snapshot(protocol.aggregator)
    frame = Frame({**_logits("b", [0.0, 1.0]).message, "TYPE": kind, "TO_ROOM": room})
    with caplog.at_level(logging.WARNING, LOGGER):
        assert protocol.handle_frame(frame, now=1.0) == []
    assert protocol.counters.dropped == 0 and caplog.records == []
    assert snapshot(protocol.aggregator) == before


@pytest.mark.parametrize(
    "message",
    [
        {"TYPE": "DATA/CUSTOM", "TO_ROOM": "action", "LOGITS": "junk"},
        {"TYPE": "COMMAND/REGISTER", "TO_ROOM": "_command", "NAME": "x"},
        {"TYPE": "DATA/CUSTOM", "TO": "aggregation", "LOGITS": "junk"},
        {"TYPE": "DATA/CUSTOM", "TO_ROOM": "evolution", "CMD": "SET", "WEIGHTS": {}},
        {"TYPE": "DATA/CUSTOM", "TO_ROOM": "logits", "OBSERVATION": [1]},
    ],
)
def test_traffic_we_do_not_serve_is_ignored(message):
    protocol = _protocol()
    assert protocol.handle_frame(Frame(message), now=0.0) == []
    assert protocol.counters.dropped == 0 and not protocol.dirty


class TestGet:
    def test_pops_the_tally_and_lists_pending_models_at_zero(self):
        protocol = _protocol()
        for model in ("a", "b", "c"):  # a and b finish a round; c waits
            protocol.handle_frame(_logits(model, [0.0, 1.0]), now=0.0)
        tally = protocol.aggregator.contributions
        protocol.dirty = False
        (out,) = protocol.handle_frame(_get(ROOT_ID="g1"), now=1.0)
        assert out.clears_tally
        reply = out.message
        assert reply["CONTRIBUTION"] == {**tally, "c": 0.0}
        assert reply["TO_ROOM"] == "evolution" and reply["ROOT_ID"] == "g1"
        assert protocol.aggregator.contributions == {}
        assert protocol.aggregator.pending == ("c",)
        assert protocol.counters.gets == 1 and protocol.dirty

    def test_other_commands_get_no_answer(self):
        protocol = _protocol()
        assert _messages(protocol, _get(CMD="SET")) == []
        assert protocol.counters.gets == 0


class TestStepTimeout:
    def test_closes_early_and_names_the_missing_models(self, caplog):
        protocol = _protocol(3, model_ids=["a", "b", "c"], step_timeout=0.5)
        assert (
            _messages(protocol, _logits("a", [0.0, 1.0], DETERMINISTIC=True), 100.0)
            == []
        )
        assert protocol.tick(now=100.49) == []
        with caplog.at_level(logging.WARNING, LOGGER):
            (out,) = protocol.tick(now=100.5)
        assert out.message["ACTION"] == [1] and out.message["TO_ROOM"] == "action"
        assert protocol.counters.early == 1 and protocol.counters.rounds == 1
        assert "missing: 'b', 'c'" in caplog.text
        assert protocol.tick(now=1e9) == []  # nothing open any more

    def test_a_round_that_cannot_be_aggregated_is_discarded(self):
        protocol = AggregatorProtocol(
            Aggregator(3, weights={"a": 0.0}, rng=0),
            Rooms(),
            max_actions=8,
            step_timeout=1.0,
        )
        protocol.handle_frame(_logits("a", [0.0, 1.0]), now=0.0)
        assert protocol.tick(now=2.0) == []
        assert protocol.counters.discarded == 1 and protocol.counters.rounds == 0

    def test_off_without_a_step_timeout(self):
        protocol = _protocol(3)
        protocol.handle_frame(_logits("a", [0.0, 1.0]), now=0.0)
        assert protocol.tick(now=1e9) == []


class TestUndelivered:
    def test_an_unsent_contribution_returns_to_the_tally(self):
        protocol = _protocol()
        reply = _tally(protocol)
        protocol.dirty = False
        protocol.unsent(reply)
        assert protocol.aggregator.contributions == reply["CONTRIBUTION"]
        assert protocol.dirty
        protocol.unsent({"ACTION": [1]})  # an ACTION is simply gone
        assert protocol.aggregator.contributions == reply["CONTRIBUTION"]

    def test_a_reply_whose_tally_was_not_saved_says_so(self):
        protocol = _protocol()
        reply = _tally(protocol)
        assert protocol.reply_not_saved(reply)["STATE_SAVED"] is False

    def test_outbox_overflow_drops_old_actions_and_keeps_contributions(self, caplog):
        protocol = _protocol(outbox_limit=3)
        reply = _tally(protocol)
        protocol.hold(reply)
        actions = [{"ACTION": [i]} for i in range(5)]
        with caplog.at_level(logging.WARNING, LOGGER):
            for action in actions:
                protocol.hold(action)
        assert protocol.outbox.take_all() == actions[-3:]
        assert protocol.aggregator.contributions == reply["CONTRIBUTION"]
        overflow = [r for r in caplog.records if "wait for the reconnect" in r.message]
        assert len(overflow) == 1  # said once per overflow, not per message

    def test_at_stop_what_is_held_goes_back(self):
        protocol = _protocol()
        reply = _tally(protocol)
        protocol.hold({"ACTION": [0]})
        protocol.hold(reply)
        protocol.return_unsent()
        assert len(protocol.outbox) == 0
        assert protocol.aggregator.contributions == reply["CONTRIBUTION"]


@given(
    limit=st.integers(1, 6),
    held=st.lists(st.one_of(st.none(), st.floats(0.0, 1.0)), max_size=30),
    sent=st.integers(0, 30),
)
def test_outbox_loses_no_share_and_keeps_the_newest(limit, held, sent):
    # None stands for an ACTION, a float for a CONTRIBUTION of that share.
    protocol = _protocol(outbox_limit=limit)
    messages = [
        {"ACTION": [i]} if x is None else {"CONTRIBUTION": {f"m{i}": x}}
        for i, x in enumerate(held)
    ]
    delivered = []
    for message in messages:
        protocol.hold(message)
        assert len(protocol.outbox) <= limit
    for _ in range(min(sent, len(protocol.outbox))):
        delivered.append(protocol.outbox.first())
        protocol.outbox.sent()
    waiting = protocol.outbox.take_all()
    assert delivered + waiting == messages[-limit:] if messages else waiting == []
    shares = {k: v for m in messages for k, v in m.get("CONTRIBUTION", {}).items()}
    in_flight = {k for m in delivered + waiting for k in m.get("CONTRIBUTION", {})}
    returned = {k: v for k, v in shares.items() if k not in in_flight}
    assert protocol.aggregator.contributions == pytest.approx(returned)


def test_outbox_refuses_a_limit_below_one():
    with pytest.raises(ValueError, match="at least 1 message, not 0"):
        Outbox(limit=0)


class TestRecorder:
    """What the protocol tells a ``ClientRecorder`` (``--http``)."""

    @staticmethod
    def _recorded(**kwargs):
        from ensemble_agg.observe import ClientRecorder

        rec = ClientRecorder()
        return _protocol(recorder=rec, **kwargs), rec

    @pytest.mark.parametrize(
        "frame, reason",
        [
            (Frame(None, error="not JSON"), "undecodable"),
            (Frame({"TYPE": "NO/SUCH", "TO_ROOM": "logits"}), "unknown_type"),
            (_logits("a", "x"), "malformed"),
            (_logits("a", [1.0, math.nan]), "malformed"),
            (_logits("zz", [1.0, 2.0]), "unknown_model"),
            (_get(CMD=7), "bad_command"),
        ],
    )
    def test_each_drop_is_counted_under_its_category(self, frame, reason):
        protocol, rec = self._recorded(model_ids=["a", "b"])
        protocol.handle_frame(frame, now=0.0)
        assert rec.publish(0.0)["dropped"] == {reason: 1}
        assert protocol.counters.dropped == 1

    def test_logits_the_round_refuses_are_bad_logits(self):
        protocol, rec = self._recorded()
        protocol.handle_frame(_logits("a", [0.0, 1.0]), now=0.0)
        protocol.handle_frame(_logits("b", [0.0, 1.0, 2.0]), now=0.0)
        assert rec.publish(0.0)["dropped"] == {"bad_logits": 1}

    def test_id_cap_is_a_category_of_its_own(self):
        from ensemble_agg.observe import ClientRecorder

        rec = ClientRecorder()
        protocol = AggregatorProtocol(
            Aggregator(2, rng=0, max_ids=2), Rooms(), max_actions=8, recorder=rec
        )
        for model in ("a", "b", "c"):
            protocol.handle_frame(_logits(model, [0.0, 1.0]), now=0.0)
        assert rec.publish(0.0)["dropped"] == {"id_cap": 1}

    def test_rounds_early_closes_and_gets(self):
        protocol, rec = self._recorded(step_timeout=1.0, model_ids=["a", "b"])
        protocol.handle_frame(_logits("a", [0.0, 1.0]), now=0.0)
        protocol.handle_frame(_logits("b", [0.0, 1.0]), now=0.25)
        protocol.handle_frame(_logits("a", [1.0, 0.0]), now=1.0)
        protocol.tick(now=2.5)  # b is missing: closed early
        protocol.handle_frame(_get(), now=3.0)
        snap = rec.publish(3.0)
        c = snap["counters"]
        assert (c["rounds"], c["early_closes"], c["gets"]) == (2, 1, 1)
        assert c["submissions"] == 3
        b = next(m for m in snap["models"] if m["model"] == "b")
        assert b["missed"] == 1 and b["lateness"]["median"] == 0.25
        assert snap["round_latency"]["sum"] == pytest.approx(0.25 + 1.5)

    @given(
        st.lists(
            st.tuples(
                st.sampled_from(["a", "b", "c"]),
                st.one_of(
                    st.lists(st.floats(-5, 5), min_size=2, max_size=2),
                    st.just([]),
                    st.just("x"),
                    st.lists(st.floats(-5, 5), min_size=3, max_size=3),
                ),
            ),
            max_size=40,
        )
    )
    def test_recorder_agrees_with_the_counters(self, submissions):
        protocol, rec = self._recorded(model_ids=["a", "b"])
        for i, (model, logits) in enumerate(submissions):
            protocol.handle_frame(_logits(model, logits), now=i * 0.01)
        snap = rec.publish(1.0)
        assert snap["counters"]["rounds"] == protocol.counters.rounds
        assert sum(snap["dropped"].values()) == protocol.counters.dropped
        shares = [m["share"]["start"] for m in snap["models"]]
        assert sum(shares) == pytest.approx(1.0 if protocol.counters.rounds else 0.0)
