"""Tests of ensemble_agg.core.aggregator: the round collector and its tally."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ensemble_agg import Aggregator, UnknownModelError, aggregate

from ..helpers import snapshot

INF, NAN = float("inf"), float("nan")


def test_round_completes_at_exactly_n_distinct_models():
    agg = Aggregator(3, rng=0)
    assert agg.submit("a", [0.0, 1.0]) is None
    assert agg.submit("b", [1.0, 0.0]) is None
    assert agg.submit("a", [0.5, 0.5]) is None  # resubmission: still two models
    assert agg.pending == ("a", "b")
    result = agg.submit("c", [0.0, 0.0])
    assert result is not None and agg.pending == () and agg.rounds == 1
    assert set(result.contribution) == {"a", "b", "c"}
    assert math.isclose(sum(result.contribution.values()), 1.0)
    assert isinstance(result.action, int)


def test_resubmission_replaces_and_result_matches_aggregate():
    agg = Aggregator(2)
    agg.submit("a", [5.0, 0.0])
    agg.submit("a", [0.0, 2.0])
    result = agg.submit("b", [1.0, 0.0], deterministic=True)
    expected = aggregate([[0.0, 2.0], [1.0, 0.0]], deterministic=True)
    assert result.action == expected.action
    np.testing.assert_allclose(result.probs, expected.probs, rtol=1e-15)
    np.testing.assert_allclose(
        [result.contribution["a"], result.contribution["b"]], expected.contribution
    )


def test_tally_accumulates_and_pop_clears():
    agg = Aggregator(2, rng=1)
    shares = []
    for _ in range(5):
        agg.submit("x", [0.0, 1.0])
        shares.append(agg.submit("y", [1.0, 0.3]).contribution)
    tally = agg.contributions
    assert tally.keys() == {"x", "y"}
    assert math.isclose(tally["x"], sum(s["x"] for s in shares), rel_tol=1e-12)
    assert math.isclose(sum(tally.values()), 5.0, rel_tol=1e-12)
    assert agg.pop_contributions() == tally
    assert agg.contributions == {} and agg.pop_contributions() == {}


def test_stored_logits_are_copies():
    agg = Aggregator(2)
    row = [0.0, 5.0]
    arr = np.array([0.0, 5.0])
    agg.submit("a", row)
    agg.submit("a", arr)
    arr[1] = -5.0
    row[1] = -5.0
    assert agg.submit("b", [0.0, 0.0], deterministic=True).action == 1


def test_contributions_is_a_copy():
    agg = Aggregator(1)
    agg.submit("a", [0.0])
    agg.contributions["a"] = 99.0
    assert agg.contributions == {"a": 1.0}


BAD_SUBMISSIONS = [
    ([NAN, 0.0], ValueError, "NaN"),
    ([INF, 0.0], ValueError, "+inf"),
    ([-INF, -INF], ValueError, "all actions at -inf"),
    ([0.0, 1.0, 2.0], ValueError, "sent 3 logits; this round has 2"),
    ([], ValueError, "empty"),
    (["1", 2.0], TypeError, "flat sequence of numbers"),
    ([[1.0, 2.0]], TypeError, "flat sequence of numbers"),
    ([None, 1.0], TypeError, "flat sequence of numbers"),
    ([1j, 1.0], TypeError, "real"),
    (np.zeros((1, 2)), ValueError, "one-dimensional"),
    (np.array(["a", "b"]), TypeError, "numbers"),
    ("ab", TypeError, "numbers"),
]


@pytest.mark.parametrize(("logits", "exc", "words"), BAD_SUBMISSIONS)
@pytest.mark.parametrize("who", ["new", "resubmit"])
def test_bad_submission_leaves_state_unchanged(logits, exc, words, who):
    agg = Aggregator(3, rng=0)
    agg.submit("a", [0.0, 1.0], now=10.0)
    agg.submit("b", [2.0, 1.0], now=11.0)
    before = snapshot(agg)
    model = "c" if who == "new" else "b"
    with pytest.raises(exc) as info:
        agg.submit(model, logits, now=12.0)
    assert words in str(info.value)
    assert repr(model) in str(info.value)
    assert snapshot(agg) == before
    # and the round still completes as if nothing had happened
    assert agg.submit("c", [0.0, 0.0], deterministic=True) is not None


def test_failed_round_completion_is_undone():
    agg = Aggregator(2, rule="product")
    agg.submit("a", [0.0, -INF])
    with pytest.raises(ValueError, match="every action is forbidden"):
        agg.submit("b", [-INF, 0.0])
    assert agg.pending == ("a",) and agg.contributions == {} and agg.rounds == 0
    assert agg.submit("b", [0.0, 0.0]).action == 0


def test_only_member_may_change_width():
    agg = Aggregator(2)
    agg.submit("a", [0.0, 1.0])
    agg.submit("a", [0.0, 1.0, 2.0])
    assert agg.n_actions == 3
    assert agg.submit("b", [1.0, 1.0, 1.0]) is not None
    # a new round may have any width
    agg.submit("a", [1.0])
    assert agg.submit("b", [2.0]).action == 0


def test_early_close_aggregates_those_present():
    agg = Aggregator(3, rng=0)
    assert agg.close_round() is None
    agg.submit("a", [3.0, 0.0], now=1.0)
    agg.submit("b", [2.0, 0.0], deterministic=True, now=2.5)
    assert agg.round_opened_at == 1.0
    result = agg.close_round()
    assert result.action == 0  # deterministic, from the latest submission
    assert set(result.contribution) == {"a", "b"}
    assert agg.rounds == 1 and agg.rounds_closed_early == 1
    assert agg.round_opened_at is None and agg.pending == ()
    assert agg.missing == ("a", "b")  # expected: the last round's models


def test_missing_with_model_ids():
    agg = Aggregator(3, model_ids=["a", "b", "c"])
    agg.submit("b", [0.0])
    assert agg.missing == ("a", "c")


def test_model_ids_restrict_and_cap_bounds_ids():
    agg = Aggregator(2, model_ids=["a", "b"])
    with pytest.raises(UnknownModelError) as info:
        agg.submit("zz", [0.0])
    assert info.value.reason == "unknown" and "'zz'" in str(info.value)
    capped = Aggregator(2, max_ids=4)
    for i in range(4):
        capped.submit(i, [0.0])
    with pytest.raises(UnknownModelError) as info:
        capped.submit(99, [0.0])
    assert info.value.reason == "cap"
    capped.submit(0, [0.0])  # known ids still count
    capped.pop_contributions()
    capped.submit(99, [0.0])  # room again after the tally is popped


def test_id_flood_stays_bounded():
    agg = Aggregator(20, max_ids=100)
    dropped = 0
    for i in range(20_000):
        try:
            agg.submit(f"id{i}", [0.0, 1.0])
        except UnknownModelError:
            dropped += 1
    assert len(agg.contributions) + len(agg.pending) <= 100
    assert dropped == 20_000 - 100


def test_weights_mapping_and_sequence():
    agg = Aggregator(2, weights={"a": 0.0}, rng=0)
    agg.submit("a", [5.0, 0.0])
    r = agg.submit("b", [0.0, 5.0], deterministic=True)
    assert r.action == 1 and r.contribution == {"a": 0.0, "b": 1.0}
    agg2 = Aggregator(2, weights=[3.0, 1.0], model_ids=["a", "b"])
    agg2.submit("b", [0.0, 0.0])
    r2 = agg2.submit("a", [0.0, 0.0], deterministic=True)
    assert r2.contribution == {"b": 0.25, "a": 0.75}


def test_all_zero_weights_in_a_round():
    agg = Aggregator(1, weights={"a": 0.0})
    with pytest.raises(ValueError, match="weight 0"):
        agg.submit("a", [0.0])
    assert agg.pending == ()


@pytest.mark.parametrize(
    ("kwargs", "exc", "words"),
    [
        ({"n_models": 0}, ValueError, "n_models must be >= 1"),
        ({"n_models": 2.5}, TypeError, "n_models must be an int"),
        ({"n_models": 2, "rule": "avg"}, ValueError, "unknown rule"),
        ({"n_models": 2, "temperature": 0}, ValueError, "temperature"),
        ({"n_models": 2, "weights": [1, 2]}, TypeError, "model_ids"),
        ({"n_models": 2, "weights": {"a": -1}}, ValueError, "weight of model 'a'"),
        ({"n_models": 2, "weights": [1], "model_ids": "ab"}, ValueError, "model_ids"),
        ({"n_models": 2, "max_ids": 1}, ValueError, "max_ids"),
    ],
)
def test_bad_constructor_arguments(kwargs, exc, words):
    with pytest.raises(exc, match=words):
        Aggregator(**kwargs)


def test_unhashable_id():
    agg = Aggregator(2)
    with pytest.raises(TypeError, match="hashable"):
        agg.submit(["a"], [0.0])


@pytest.mark.parametrize("model_id", [["x"], {"x": 1}, {"x"}])
@pytest.mark.parametrize("method", ["submit", "submit_row"])
def test_unhashable_id_is_named_and_leaves_state_unchanged(model_id, method):
    agg = Aggregator(2)
    agg.submit("a", [0.0, 1.0])
    before = snapshot(agg)
    with pytest.raises(TypeError) as info:
        getattr(agg, method)(model_id, [0.0, 1.0])
    message = str(info.value)
    assert message.startswith("model_id must be hashable"), message
    assert f"got {type(model_id).__name__} {model_id!r}" in message
    assert snapshot(agg) == before


def test_add_contributions_validates_all_first():
    agg = Aggregator(1)
    agg.add_contributions({"a": 1.5})
    with pytest.raises(ValueError, match="'b'"):
        agg.add_contributions({"a": 1.0, "b": -1.0})
    assert agg.contributions == {"a": 1.5}


def test_seeded_runs_are_reproducible():
    def run():
        agg = Aggregator(3, rng=42)
        actions = []
        for step in range(50):
            for m in range(3):
                r = agg.submit(m, [math.sin(step + m), math.cos(step * m), 0.1])
            actions.append(r.action)
        return actions, agg.contributions

    assert run() == run()


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcd"), st.booleans()), max_size=60))
def test_tally_equals_sum_of_round_results(events):
    agg = Aggregator(3, rng=0)
    expected: dict[str, float] = {}
    for model, flip in events:
        r = agg.submit(model, [1.0, 0.0] if flip else [0.0, 2.0])
        if r is not None:
            for k, v in r.contribution.items():
                expected[k] = expected.get(k, 0.0) + v
    got = agg.contributions
    assert got.keys() == expected.keys()
    for k in got:
        assert math.isclose(got[k], expected[k], rel_tol=1e-12)
    assert math.isclose(sum(got.values()), agg.rounds, rel_tol=1e-9) or agg.rounds == 0


@pytest.mark.parametrize("n_models", [3, 100])  # the Python path, then NumPy's
@pytest.mark.parametrize("weighted", [False, True])
def test_round_equals_aggregate_of_the_stacked_logits(n_models, weighted):
    x = np.random.default_rng(n_models).normal(size=(n_models, 2))
    ids = [f"m{i}" for i in range(n_models)]
    w = np.linspace(0.5, 2.0, n_models) if weighted else None
    agg = Aggregator(n_models, weights=w, model_ids=ids if weighted else None)
    for model_id, row in zip(ids, x.tolist(), strict=True):
        result = agg.submit(model_id, row, deterministic=True)
    expected = aggregate(x, deterministic=True, weights=w)
    assert result.action == expected.action
    np.testing.assert_allclose(result.probs, expected.probs, rtol=1e-12)
    np.testing.assert_allclose(
        [result.contribution[i] for i in ids], expected.contribution, rtol=1e-12
    )


class TestExpire:
    """The straggler deadline, decided by the aggregator on the caller's clock."""

    def test_round_expires_at_the_timeout_with_the_models_present(self):
        agg = Aggregator(3, model_ids=["a", "b", "c"], rng=0)
        assert agg.expire(now=5.0, timeout=1.0) is None  # nothing open
        agg.submit("a", [2.0, 0.0], deterministic=True, now=10.0)
        agg.submit("b", [1.0, 0.0], now=10.5)
        assert agg.expire(now=10.999, timeout=1.0) is None
        expiry = agg.expire(now=11.0, timeout=1.0)
        assert expiry.error is None and expiry.result.action in (0, 1)
        assert expiry.present == ("a", "b") and expiry.missing == ("c",)
        assert set(expiry.result.contribution) == {"a", "b"}
        assert agg.pending == () and agg.rounds == 1 and agg.rounds_closed_early == 1
        assert agg.expire(now=100.0, timeout=1.0) is None  # the next round is empty

    def test_round_that_cannot_be_aggregated_is_discarded(self):
        agg = Aggregator(3, weights={"a": 0.0}, rng=0)
        agg.submit("a", [1.0, 0.0], now=0.0)
        expiry = agg.expire(now=2.0, timeout=1.0)
        assert expiry.result is None and "weight 0" in expiry.error
        assert agg.pending == () and agg.contributions == {}

    def test_round_opened_without_a_clock_never_expires(self):
        agg = Aggregator(2)
        agg.submit("a", [1.0, 0.0])
        assert agg.expire(now=1e9, timeout=0.1) is None
