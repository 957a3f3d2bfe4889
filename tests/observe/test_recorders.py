"""The recorders on a fake clock: quantiles, caps, since-GET reset, bounded memory."""

from __future__ import annotations

import copy
import json
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ensemble_agg import Aggregator
from ensemble_agg.observe.recorders import (
    LATENCY_BUCKETS,
    OTHER,
    ClientRecorder,
    ServerRecorder,
    quantile,
)


def play_round(rec: ClientRecorder, t: float, delays: dict[str, float], action=0):
    """Submissions at ``t + delay`` each, then the round at the last one."""
    for model, delay in sorted(delays.items(), key=lambda kv: kv[1]):
        rec.submission(model, t + delay)
    n = len(delays)
    end = t + max(delays.values())
    rec.round_done(end, action, {m: 1.0 / n for m in delays})
    return end


def by_model(snap: dict) -> dict[str, dict]:
    return {row["model"]: row for row in snap["models"]}


class TestQuantile:
    @settings(deadline=None)
    @given(
        st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=60),
        st.sampled_from([0.0, 0.25, 0.5, 0.95, 1.0]),
    )
    def test_quantile_equals_numpy_linear(self, values, q):
        expected = float(np.quantile(np.array(values), q))
        assert quantile(sorted(values), q) == pytest.approx(expected, abs=1e-6)

    def test_quantile_rejects_empty_and_bad_q(self):
        with pytest.raises(ValueError, match="no values"):
            quantile([], 0.5)
        with pytest.raises(ValueError, match=r"q must be in \[0, 1\]"):
            quantile([1.0], 1.5)


class TestClientRecorder:
    def test_lateness_median_and_p95_per_model(self):
        rec = ClientRecorder(window=1000)
        t = 0.0
        for i in range(100):
            # c is 10 ms late in 90 rounds and 500 ms late in 10
            late_c = 0.5 if i % 10 == 0 else 0.010
            t = play_round(rec, t + 1.0, {"a": 0.0, "b": 0.002, "c": late_c})
        rows = by_model(rec.snapshot())
        lat_c = [0.5 if i % 10 == 0 else 0.010 for i in range(100)]
        assert rows["a"]["lateness"]["median"] == 0.0
        assert rows["b"]["lateness"]["median"] == pytest.approx(0.002)
        assert rows["c"]["lateness"]["median"] == pytest.approx(np.median(lat_c))
        assert rows["c"]["lateness"]["p95"] == pytest.approx(np.quantile(lat_c, 0.95))
        assert rows["c"]["lateness"]["n"] == 100
        assert rows["c"]["straggler"] and not rows["a"]["straggler"]

    def test_lateness_window_is_bounded(self):
        rec = ClientRecorder(window=8)
        t = 0.0
        for i in range(50):
            t = play_round(rec, t + 1.0, {"a": 0.0, "b": float(i)})
        row = by_model(rec.snapshot())["b"]
        assert row["lateness"]["n"] == 8
        assert row["lateness"]["median"] == pytest.approx(np.median(range(42, 50)))
        assert row["submissions"] == 50

    def test_round_latency_histogram(self):
        rec = ClientRecorder()
        latencies = [0.0001, 0.003, 0.003, 0.2, 30.0]
        t = 0.0
        for lat in latencies:
            t += 100.0
            t = play_round(rec, t, {"a": 0.0, "b": lat})
        hist = rec.snapshot()["round_latency"]
        assert hist["count"] == len(latencies)
        assert hist["sum"] == pytest.approx(sum(latencies))
        cumulative = dict((str(le), n) for le, n in hist["buckets"])
        for le in LATENCY_BUCKETS:
            assert cumulative[str(le)] == sum(x <= le for x in latencies)
        assert cumulative["+Inf"] == len(latencies)

    def test_shares_since_start_and_since_get(self):
        rec = ClientRecorder()
        rec.submission("a", 0.0)
        rec.submission("b", 0.1)
        rec.round_done(0.1, 0, {"a": 0.8, "b": 0.2})
        rec.get_served()
        rec.submission("a", 1.0)
        rec.submission("b", 1.1)
        rec.round_done(1.1, 1, {"a": 0.4, "b": 0.6})
        rows = by_model(rec.snapshot())
        assert rows["a"]["share"]["start"] == pytest.approx(0.6)
        assert rows["a"]["share"]["since_get"] == pytest.approx(0.4)
        assert rows["b"]["contribution"] == pytest.approx(
            {"start": 0.8, "since_get": 0.6}
        )
        rec.get_served()
        rows = by_model(rec.snapshot())
        assert rows["a"]["share"]["since_get"] == 0.0
        assert rows["a"]["share"]["start"] == pytest.approx(0.6)
        assert rec.snapshot()["counters"]["gets"] == 2

    @settings(max_examples=50, deadline=None)
    @given(
        st.lists(
            st.lists(st.floats(-20, 20), min_size=3, max_size=3),
            min_size=1,
            max_size=30,
        ),
        st.integers(0, 29),
    )
    def test_shares_match_a_real_aggregator(self, rounds, get_after):
        """Fed by Aggregator rounds, the shares are its tallies, normalised."""
        agg = Aggregator(3, rng=0)
        rec = ClientRecorder()
        tally_since_get: dict[str, float] = {}
        t = 0.0
        for r, logits in enumerate(rounds):
            for i, model in enumerate(["a", "b", "c"]):
                t += 0.01
                result = agg.submit(model, [logits[i], 0.0, -logits[i]], now=t)
                rec.submission(model, t)
            assert result is not None
            rec.round_done(t, result.action, result.contribution)
            if r == get_after:
                tally_since_get = agg.pop_contributions()
                rec.get_served()
        snap = rec.snapshot()
        rows = by_model(snap)
        total = sum(row["share"]["start"] for row in rows.values())
        assert total == pytest.approx(1.0)
        since = agg.contributions
        for model in "abc":
            start = tally_since_get.get(model, 0.0) + since.get(model, 0.0)
            assert rows[model]["contribution"]["start"] == pytest.approx(start)
            assert rows[model]["share"]["start"] == pytest.approx(start / len(rounds))
            assert rows[model]["contribution"]["since_get"] == pytest.approx(
                since.get(model, 0.0), abs=1e-12
            )
        json.dumps(snap, allow_nan=False)

    def test_first_max_ids_get_labels_the_rest_are_other(self):
        rec = ClientRecorder(max_ids=2)
        for i, model in enumerate(["a", "b", "c", "d", "c"]):
            rec.submission(model, float(i))
        rows = by_model(rec.snapshot())
        assert set(rows) == {"a", "b", OTHER}
        assert rows[OTHER]["submissions"] == 3
        assert rec.snapshot()["labels"]["other_submissions"] == 3

    def test_listed_model_ids_only(self):
        rec = ClientRecorder(model_ids=["x", "y"])
        rec.submission("intruder", 0.0)
        rec.submission("x", 0.1)
        rows = by_model(rec.snapshot())
        assert set(rows) == {"x", "y", OTHER}
        assert rows["y"]["submissions"] == 0
        assert rows["x"]["lateness"]["median"] == pytest.approx(0.1)

    def test_hostile_ids_cost_no_memory(self):
        """100,000 distinct ids (long, markup, control characters) stay bounded."""
        rec = ClientRecorder(max_ids=16, window=64)
        srv = ServerRecorder(max_rooms=16)

        def flood(start: int, n: int) -> None:
            for i in range(start, start + n):
                hostile = f"<img src=x onerror=alert({i})>\n\x00" + "z" * (i % 300)
                rec.submission(hostile, i * 1e-3)
                rec.drop(f"reason {i}")
                rec.round_done(i * 1e-3, i, {hostile: 1.0})
                srv.frame_in(hostile, 100)
                srv.frame_out(hostile, 100, copies=2)
                srv.drop(hostile)

        flood(0, 1000)  # labels, windows and rings reach their caps
        rec.publish(1.0)
        srv.publish(1.0)
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            flood(1000, 99_000)
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert grown < 256 * 1024, f"recorders grew by {grown} bytes"
        snap = rec.snapshot()
        assert len(snap["models"]) == 17
        assert len(snap["dropped"]) <= 33 and len(snap["actions"]) <= 65
        assert all(len(row["model"]) <= 80 for row in snap["models"])
        assert len(rec._by_id) == 16
        server = srv.snapshot()
        assert len(server["traffic"]) <= 17
        assert server["totals"]["frames_in"] == 100_000
        json.dumps(snap, allow_nan=False)

    def test_stragglers_from_early_closes(self):
        rec = ClientRecorder(straggler_rounds=3)
        rec.submission("a", 0.0)
        rec.early_close(1.0, ["b"])
        rec.round_done(1.0, 0, {"a": 1.0})
        rows = by_model(rec.snapshot())
        assert rows["b"]["straggler"] and rows["b"]["missed"] == 1
        assert not rows["a"]["straggler"]
        t = 1.0
        for _ in range(3):
            t = play_round(rec, t + 1.0, {"a": 0.0, "b": 0.0})
        assert not by_model(rec.snapshot())["b"]["straggler"]
        assert rec.snapshot()["counters"]["early_closes"] == 1

    def test_discarded_round_ends_the_round(self):
        rec = ClientRecorder()
        rec.submission("a", 0.0)
        rec.early_close(5.0, ["b"], discarded=True)
        rec.submission("a", 10.0)  # opens a new round: lateness 0, not 10
        rec.submission("b", 10.5)
        rows = by_model(rec.snapshot())
        assert rows["a"]["lateness"]["median"] == 0.0
        assert rows["b"]["lateness"]["median"] == pytest.approx(0.5)
        assert rec.snapshot()["counters"]["discarded_rounds"] == 1

    def test_rounds_per_second_ring(self):
        rec = ClientRecorder(rate_seconds=10)
        for second in range(20):
            for k in range(second % 4):
                rec.round_done(second + k * 0.1, 0, {})
        snap = rec.snapshot(19.5)
        assert snap["rate"]["rounds"] == [s % 4 for s in range(10, 20)]
        assert rec.snapshot(25.0)["rate"]["rounds"] == [0, 1, 2, 3] + [0] * 6

    def test_counters_and_health(self):
        rec = ClientRecorder()
        assert rec.snapshot()["health"] == {
            "ok": False,
            "reason": "not connected (starting)",
        }
        rec.connection("connected")
        for call in (rec.skipped_frame, rec.reconnect, rec.internal_error):
            call()
        rec.state_save(True)
        rec.state_save(False)
        rec.drop("malformed")
        rec.drop("malformed")
        rec.round_done(0.0, 3, {}, sent=False)
        snap = rec.snapshot()
        assert snap["health"]["ok"]
        c = snap["counters"]
        assert (c["skipped_frames"], c["reconnects"], c["internal_errors"]) == (1, 1, 1)
        assert (c["rounds"], c["actions_sent"]) == (1, 0)
        assert snap["state_saves"] == {"ok": 1, "error": 1}
        assert snap["dropped"] == {"malformed": 2}
        assert snap["actions"] == {"3": 1}

    def test_bad_input_is_refused_and_changes_nothing(self):
        rec = ClientRecorder()
        rec.submission("a", 0.0)
        before = rec.snapshot(1.0)
        with pytest.raises(ValueError, match="unknown connection state 'up'"):
            rec.connection("up")
        with pytest.raises(TypeError, match="reason must be a str"):
            rec.drop(3)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            rec.round_done(1.0, 0, {"a": "lots"})  # type: ignore[dict-item]
        assert rec.snapshot(1.0) == before
        with pytest.raises(ValueError, match="max_ids must be an int >= 1"):
            ClientRecorder(max_ids=0)
        with pytest.raises(ValueError, match="publish_interval must be a finite"):
            ClientRecorder(publish_interval=float("nan"))

    def test_published_snapshot_is_never_changed(self):
        rec = ClientRecorder(publish_interval=0.5)
        play_round(rec, 0.0, {"a": 0.0, "b": 0.1})
        first = rec.publish(0.2)
        frozen = copy.deepcopy(first)
        play_round(rec, 1.0, {"a": 0.0, "b": 0.3})
        rec.get_served()
        rec.drop("x")
        assert rec.latest() is first and first == frozen
        assert not rec.maybe_publish(0.6)  # 0.4 s after the last: not yet
        assert rec.maybe_publish(0.75)
        assert rec.latest() is not first and first == frozen


class TestServerRecorder:
    def test_traffic_per_room_and_totals(self):
        rec = ServerRecorder()
        rec.frame_in("logits", 100)
        rec.frame_in("logits", 50)
        rec.frame_out("logits", 100, copies=3)
        rec.frame_in(None, 10)
        rec.slow_consumer_disconnect()
        rec.drop("oversize")
        snap = rec.snapshot(2.0)
        traffic = {r["room"]: r for r in snap["traffic"]}
        assert traffic["logits"] == {
            "room": "logits",
            "frames_in": 2,
            "frames_out": 3,
            "bytes_in": 150,
            "bytes_out": 300,
        }
        assert traffic["(direct)"]["frames_in"] == 1
        assert snap["totals"]["frames_in"] == 3
        assert snap["slow_consumer_disconnects"] == 1
        assert snap["dropped"] == {"oversize": 1}

    def test_state_is_capped(self):
        rec = ServerRecorder(max_rooms=3, max_readers=2)
        rec.set_state(
            clients=5,
            registered_names=4,
            room_members={f"r{i}": i for i in range(10)},
            queue_bytes=1234,
            slowest_readers=[("a", 5), ("b", 500), ("c", 50)],
        )
        snap = rec.snapshot(0.0)
        assert snap["rooms"] == 10
        assert snap["room_members"] == [
            {"room": "r9", "members": 9},
            {"room": "r8", "members": 8},
            {"room": "r7", "members": 7},
            {"room": OTHER, "members": sum(range(7))},
        ]
        assert snap["slowest_readers"] == [
            {"name": "b", "queue_bytes": 500},
            {"name": "c", "queue_bytes": 50},
        ]
        assert (snap["clients"], snap["registered_names"], snap["queue_bytes"]) == (
            5,
            4,
            1234,
        )

    def test_rooms_cut_to_one_label_are_one_row(self):
        rec = ServerRecorder()
        rec.frame_in("x" * 100 + "1", 1)
        rec.frame_in("x" * 100 + "2", 1)
        rows = rec.snapshot(0.0)["traffic"]
        assert len(rows) == 1 and rows[0]["frames_in"] == 2

    def test_health_follows_accepting(self):
        rec = ServerRecorder()
        assert rec.snapshot(0.0)["health"]["ok"]
        rec.set_accepting(False)
        assert rec.snapshot(0.0)["health"] == {
            "ok": False,
            "reason": "not accepting connections",
        }
