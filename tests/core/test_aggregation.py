"""Tests of ensemble_agg.core.aggregation: aggregate and softmax."""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import stats

from ensemble_agg import Aggregation, SingleModelBatchWarning, aggregate, softmax

LN3, LN4 = math.log(3.0), math.log(4.0)
# Member policies chosen so every probability is a simple fraction:
# softmax([0, ln 3]) = (1/4, 3/4), softmax([0, 0]) = (1/2, 1/2),
# softmax([ln 4, 0]) = (4/5, 1/5).
GOLDEN = [[0.0, LN3], [0.0, 0.0], [LN4, 0.0]]
P_MEMBERS = np.array([[0.25, 0.75], [0.5, 0.5], [0.8, 0.2]])
INF = float("inf")
RULES = ["sum", "product", "majority", "rank"]


class TestSoftmax:
    def test_golden(self):
        np.testing.assert_allclose(softmax([0.0, LN3]), [0.25, 0.75], rtol=1e-15)
        np.testing.assert_allclose(softmax(GOLDEN), P_MEMBERS, rtol=1e-15)

    @pytest.mark.parametrize("big", [1e4, -1e4, 1e6])
    def test_huge_logits_do_not_overflow(self, big):
        out = softmax([big, big, big - 1.0])
        e = math.exp(-1.0)
        np.testing.assert_allclose(
            out, [1 / (2 + e), 1 / (2 + e), e / (2 + e)], rtol=1e-14
        )

    def test_minus_inf_is_probability_zero(self):
        np.testing.assert_array_equal(softmax([-INF, 0.0, -INF]), [0.0, 1.0, 0.0])

    def test_all_minus_inf_is_nan(self):
        assert np.isnan(softmax([-INF, -INF])).all()

    def test_axis(self):
        x = np.arange(6.0).reshape(2, 3)
        np.testing.assert_allclose(softmax(x, axis=0), softmax(x.T).T, rtol=1e-15)
        np.testing.assert_allclose(softmax(x, axis=0).sum(axis=0), 1.0)

    def test_dtypes(self):
        assert softmax(np.zeros(3, np.float32)).dtype == np.float32
        assert softmax([1, 2, 3]).dtype == np.float64

    def test_no_writeback(self):
        x = np.array([1.0, 2.0])
        softmax(x)
        np.testing.assert_array_equal(x, [1.0, 2.0])


class TestGolden:
    """Hand-computed results for GOLDEN (fractions from P_MEMBERS)."""

    def test_sum(self):
        r = aggregate(GOLDEN, deterministic=True)
        # s = (0.25 + 0.5 + 0.8, 0.75 + 0.5 + 0.2) = (1.55, 1.45), P = s / 3
        np.testing.assert_allclose(r.probs, [1.55 / 3, 1.45 / 3], rtol=1e-14)
        assert r.action == 0 and type(r.action) is int
        np.testing.assert_allclose(
            r.contribution, [0.25 / 1.55, 0.5 / 1.55, 0.8 / 1.55]
        )

    def test_sum_temperature(self):
        r = aggregate(GOLDEN, deterministic=True, temperature=0.5)
        # P ∝ s**2 = (2.4025, 2.1025)
        np.testing.assert_allclose(
            r.probs, [2.4025 / 4.505, 2.1025 / 4.505], rtol=1e-13
        )

    def test_product(self):
        r = aggregate(GOLDEN, deterministic=True, rule="product")
        # P ∝ (0.25 * 0.5 * 0.8, 0.75 * 0.5 * 0.2) = (0.1, 0.075) = (4/7, 3/7)
        np.testing.assert_allclose(r.probs, [4 / 7, 3 / 7], rtol=1e-13)
        assert r.action == 0
        np.testing.assert_allclose(
            r.contribution, [0.25 / 1.55, 0.5 / 1.55, 0.8 / 1.55]
        )

    def test_product_temperature_and_weights(self):
        r = aggregate(GOLDEN, rule="product", temperature=2.0, weights=[2, 0, 1], rng=0)
        # P ∝ sqrt(0.25**2 * 0.8, 0.75**2 * 0.2) = sqrt(0.05, 0.1125)
        a, b = math.sqrt(0.05), math.sqrt(0.1125)
        np.testing.assert_allclose(r.probs, [a / (a + b), b / (a + b)], rtol=1e-13)

    def test_majority_weighted(self):
        r = aggregate(
            GOLDEN, deterministic=True, rule="majority", weights=[1, 0.5, 0.25]
        )
        # argmaxes: 1, 0 (tie -> lowest), 0; votes = (0.75, 1); P ∝ exp(votes)
        p1 = 1 / (1 + math.exp(-0.25))
        np.testing.assert_allclose(r.probs, [1 - p1, p1], rtol=1e-14)
        assert r.action == 1
        # w_i p_i(1) = (0.75, 0.25, 0.05), sum 1.05
        np.testing.assert_allclose(
            r.contribution, [0.75 / 1.05, 0.25 / 1.05, 0.05 / 1.05]
        )

    def test_rank(self):
        # model 0 ranks (0, 2, 1) -> points (3, 1, 2); model 1 ranks (1, 0, 2)
        # -> points (2, 3, 1): total (5, 4, 3), P = softmax(5, 4, 3).
        r = aggregate(
            [[3.0, 1.0, 2.0], [0.0, 5.0, -INF]], deterministic=True, rule="rank"
        )
        e = np.exp([2.0, 1.0, 0.0])
        np.testing.assert_allclose(r.probs, e / e.sum(), rtol=1e-14)
        assert r.action == 0

    def test_rank_ties_go_to_lower_index(self):
        # Ties within a model: lower index ranks higher, (2, 1) points.
        r = aggregate([[1.0, 1.0]], deterministic=True, rule="rank", temperature=1.0)
        np.testing.assert_allclose(r.probs, [1 / (1 + math.exp(-1)), 1 / (1 + math.e)])

    def test_ties_go_to_lowest_action(self):
        for rule in RULES:
            assert (
                aggregate([[0.0, 0.0, 0.0]], deterministic=True, rule=rule).action == 0
            )

    def test_one_model_one_action(self):
        r = aggregate([[5.0]], rng=1)
        assert r.action == 0
        np.testing.assert_array_equal(r.probs, [1.0])
        np.testing.assert_array_equal(r.contribution, [1.0])

    def test_masked_action_never_chosen(self):
        logits = [[0.0, -INF, 0.0], [1.0, -INF, -1.0]]
        for rule in RULES:
            r = aggregate(logits, rule=rule, rng=3)
            assert r.probs[1] == 0.0 and r.action != 1

    def test_product_vetoes_what_any_model_forbids(self):
        r = aggregate([[0.0, -INF], [5.0, 0.0]], rule="product", deterministic=True)
        np.testing.assert_array_equal(r.probs, [1.0, 0.0])

    def test_returns_named_tuple(self):
        r = aggregate(GOLDEN, deterministic=True)
        assert isinstance(r, Aggregation)
        assert r._fields == ("action", "contribution", "probs")
        action, contribution, probs = r  # unpacks in field order
        assert type(action) is int and action == int(np.argmax(probs))
        assert contribution.shape == (len(GOLDEN),) and probs.shape == (2,)
        assert math.isclose(contribution.sum(), 1.0) and math.isclose(probs.sum(), 1.0)


class TestDtypes:
    def test_float32_in_float32_out(self):
        x = np.asarray(GOLDEN, np.float32)
        r = aggregate(x, deterministic=True)
        assert r.probs.dtype == np.float32 and r.contribution.dtype == np.float32
        r = aggregate(x, rng=0, rule="rank", weights=[1, 2, 3])
        assert r.probs.dtype == np.float32 and r.contribution.dtype == np.float32

    @pytest.mark.parametrize(
        "logits", [[[1, 2], [3, 4]], np.array([[1, 2]], np.int8), [[True, False]]]
    )
    def test_ints_become_float64(self, logits):
        assert aggregate(logits, deterministic=True).probs.dtype == np.float64

    def test_no_writeback(self):
        x = np.array(GOLDEN)
        before = x.copy()
        for rule in RULES:
            aggregate(x, rule=rule, rng=0, weights=[1, 2, 3])
        np.testing.assert_array_equal(x, before)


class TestSampling:
    @pytest.mark.parametrize("rule", RULES)
    def test_chi_square_batched(self, rule):
        logits = np.array([[0.5, -0.2, 1.0, -INF], [0.1, 0.3, -1.0, 0.0]])
        n = 40_000
        r = aggregate(np.broadcast_to(logits, (n, 2, 4)), rule=rule, rng=12345)
        counts = np.bincount(r.action, minlength=4)
        probs = r.probs[0]
        assert counts[probs == 0].sum() == 0
        keep = probs > 0
        _, pvalue = stats.chisquare(counts[keep], probs[keep] * n)
        assert pvalue > 1e-4, (counts, probs * n)

    def test_chi_square_loop(self):
        rng = np.random.default_rng(99)
        logits = [[0.0, 1.0, 2.0], [2.0, 1.0, 0.0], [0.0, 0.0, 3.0]]
        draws = [aggregate(logits, rng=rng).action for _ in range(6000)]
        probs = aggregate(logits, deterministic=True).probs
        _, pvalue = stats.chisquare(np.bincount(draws, minlength=3), probs * 6000)
        assert pvalue > 1e-4

    def test_same_seed_same_actions(self):
        x = np.random.default_rng(0).normal(size=(50, 5, 7))
        a = aggregate(x, rng=2024).action
        b = aggregate(x, rng=2024).action
        np.testing.assert_array_equal(a, b)
        assert len({aggregate(x[0], rng=5).action for _ in range(20)}) == 1

    @pytest.mark.parametrize("dtype", [np.float64, np.float32])
    @pytest.mark.parametrize("rule", RULES)
    def test_batched_equals_loop(self, rule, dtype):
        x = np.random.default_rng(1).normal(size=(3, 4, 5, 6)).astype(dtype)
        w = [1.0, 0.5, 2.0, 0.0, 1.0]
        batched = aggregate(x, rule=rule, weights=w, rng=np.random.default_rng(7))
        rng = np.random.default_rng(7)
        loop = [
            aggregate(s, rule=rule, weights=w, rng=rng) for s in x.reshape(12, 5, 6)
        ]
        assert batched.action.shape == (3, 4)
        np.testing.assert_array_equal(batched.action.ravel(), [r.action for r in loop])
        np.testing.assert_allclose(
            batched.probs.reshape(12, 6), [r.probs for r in loop], rtol=1e-6
        )
        np.testing.assert_allclose(
            batched.contribution.reshape(12, 5),
            [r.contribution for r in loop],
            rtol=1e-6,
        )

    def test_deterministic_does_not_touch_rng(self):
        rng = np.random.default_rng(3)
        state = rng.bit_generator.state
        aggregate(GOLDEN, deterministic=True, rng=rng)
        assert rng.bit_generator.state == state


# -- properties --------------------------------------------------------------

finite = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False)


@st.composite
def logits_and_mask(draw, max_models=6, max_actions=6):
    n_models = draw(st.integers(1, max_models))
    n_actions = draw(st.integers(1, max_actions))
    x = draw(hnp.arrays(np.float64, (n_models, n_actions), elements=finite))
    mask = draw(hnp.arrays(np.bool_, (n_models, n_actions)))
    mask[
        np.arange(n_models),
        draw(hnp.arrays(np.int64, n_models, elements=st.integers(0, n_actions - 1))),
    ] = False
    return np.where(mask, -np.inf, x)


rules = st.sampled_from(RULES)
temperatures = st.sampled_from([0.1, 0.5, 1.0, 3.0])


def _assert_distribution(v):
    assert np.isfinite(v).all() and (v >= 0).all()
    np.testing.assert_allclose(v.sum(axis=-1), 1.0, rtol=1e-9)


class TestProperties:
    @settings(max_examples=150, deadline=None)
    @given(logits_and_mask(), rules, temperatures, st.booleans(), st.integers(0, 2**32))
    def test_outputs_are_distributions(self, x, rule, t, det, seed):
        try:
            r = aggregate(x, rule=rule, temperature=t, deterministic=det, rng=seed)
        except ValueError as exc:  # only the product rule can have no support
            assert rule == "product" and "every action is forbidden" in str(exc)
            return
        _assert_distribution(r.probs)
        _assert_distribution(r.contribution)
        assert r.probs[r.action] > 0
        # forbidden (by every model; "product": by any) is never chosen
        forbidden = (
            np.isneginf(x).any(0) if rule == "product" else np.isneginf(x).all(0)
        )
        assert not forbidden[r.action]
        assert (r.probs[forbidden] == 0).all()
        if det:
            assert r.probs[r.action] == r.probs.max()
            assert r.action == int(np.argmax(r.probs))

    @settings(max_examples=100, deadline=None)
    @given(logits_and_mask(), rules, st.integers(-100, 100))
    def test_shift_per_model_changes_nothing(self, x, rule, c):
        # Multiples of 1/8 shifted by integers stay exact, so ties survive.
        x = np.round(x * 8) / 8
        shifted = x + c * np.arange(1, x.shape[0] + 1)[:, None]
        try:
            a = aggregate(x, rule=rule, rng=11)
        except ValueError:
            return
        b = aggregate(shifted, rule=rule, rng=11)
        np.testing.assert_allclose(a.probs, b.probs, atol=1e-9)
        np.testing.assert_allclose(a.contribution, b.contribution, atol=1e-9)

    @settings(max_examples=100, deadline=None)
    @given(logits_and_mask(), rules, st.randoms(use_true_random=False))
    def test_permuting_models_permutes_contributions(self, x, rule, rnd):
        perm = list(range(x.shape[0]))
        rnd.shuffle(perm)
        try:
            a = aggregate(x, rule=rule, deterministic=True)
        except ValueError:
            return
        b = aggregate(x[perm], rule=rule, deterministic=True)
        np.testing.assert_allclose(a.probs, b.probs, atol=1e-12)
        if a.action == b.action:
            np.testing.assert_allclose(a.contribution[perm], b.contribution, atol=1e-12)

    @settings(max_examples=60, deadline=None)
    @given(st.data(), rules)
    def test_batched_equals_loop(self, data, rule):
        shape = data.draw(
            st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4))
        )
        x = data.draw(hnp.arrays(np.float64, shape, elements=finite))
        b = aggregate(x, rule=rule, rng=np.random.default_rng(5))
        rng = np.random.default_rng(5)
        loop = [aggregate(s, rule=rule, rng=rng) for s in x]
        np.testing.assert_array_equal(b.action, [r.action for r in loop])

    @settings(max_examples=60, deadline=None)
    @given(
        hnp.arrays(
            np.float32,
            st.tuples(st.integers(1, 5), st.integers(1, 5)),
            elements=st.floats(-1e4, 1e4, width=32),
        ),
        rules,
    )
    def test_float32_never_nan(self, x, rule):
        r = aggregate(x, rule=rule, rng=0)
        assert r.probs.dtype == np.float32
        assert np.isfinite(r.probs).all() and np.isfinite(r.contribution).all()
        np.testing.assert_allclose(r.contribution.sum(), 1.0, rtol=1e-5)


class TestMappingInput:
    """``aggregate({model_id: row})``, as the original component held a step."""

    def test_equals_the_array_form_with_contribution_by_id(self):
        rows = {"a": [[2.0, 0.0, -1.0]], "b": np.array([0.0, 1.0, 0.5]), "c": [1, 1, 1]}
        got = aggregate(rows, rng=3, rule="product")
        want = aggregate(
            [[2.0, 0.0, -1.0], [0.0, 1.0, 0.5], [1, 1, 1]], rng=3, rule="product"
        )
        assert got.action == want.action
        np.testing.assert_array_equal(got.probs, want.probs)
        assert list(got.contribution) == ["a", "b", "c"]
        np.testing.assert_array_equal(
            list(got.contribution.values()), want.contribution
        )

    def test_weights_by_id_missing_ids_weigh_one(self):
        rows = {"a": [2.0, 0.0], "b": [0.0, 1.0]}
        got = aggregate(rows, weights={"b": 3.0}, deterministic=True)
        want = aggregate(list(rows.values()), weights=[1.0, 3.0], deterministic=True)
        np.testing.assert_allclose(list(got.contribution.values()), want.contribution)

    def test_float32_rows_stay_float32(self):
        rows = {"a": np.zeros(2, np.float32), "b": np.ones(2, np.float32)}
        assert aggregate(rows, deterministic=True).probs.dtype == np.float32

    @pytest.mark.parametrize(
        ("rows", "words"),
        [
            ({}, "empty mapping"),
            ({"a": [1.0, 2.0], "b": [1.0, 2.0, 3.0]}, "different numbers of actions"),
            ({"a": [[1.0, 2.0], [3.0, 4.0]]}, "shape (n_actions,) or (1, n_actions)"),
            ({"a": [float("nan"), 0.0]}, "NaN"),
        ],
    )
    def test_bad_mappings_name_the_problem(self, rows, words):
        with pytest.raises(ValueError, match=re.escape(words)):
            aggregate(rows)

    @pytest.mark.parametrize(
        ("rows", "exc", "message"),
        [
            (
                {"a": [1.0, 2.0], "b": [float("nan"), 1.0]},
                ValueError,
                "logits contain NaN: model 'b', action 0;",
            ),
            (
                {"a": [1.0, 2.0], "b": [-math.inf, -math.inf]},
                ValueError,
                "logits: model 'b' has all actions at -inf",
            ),
            ({"a": [1.0], "b": "xy"}, TypeError, "logits of model 'b' must be numbers; got 'xy'"),
            (
                {"a": [1.0, 2.0], "b": ["x", "y"]},
                TypeError,
                "logits of model 'b' must be numbers; got ['x', 'y']",
            ),
            (
                {"a": [1.0, 2.0], 7: [None, 1.0]},
                TypeError,
                "logits of model 7 must be numbers; got [None, 1.0]",
            ),
            (
                {"a": [1.0, 2.0], "b": [[1.0, 2.0], [1.0]]},
                ValueError,
                "logits of model 'b' must be a flat sequence of numbers",
            ),
        ],
    )  # fmt: skip
    def test_errors_name_the_id_not_the_position(self, rows, exc, message):
        with pytest.raises(exc) as info:
            aggregate(rows)
        assert str(info.value).startswith(message), str(info.value)
        assert "model 1" not in str(info.value)

    @settings(max_examples=50, deadline=None)
    @given(
        ids=st.lists(
            st.text(min_size=1, max_size=8), min_size=2, max_size=6, unique=True
        ),
        data=st.data(),
    )
    def test_a_bad_row_is_named_by_its_id(self, ids, data):
        bad = data.draw(st.sampled_from(ids))
        value = data.draw(st.sampled_from([math.nan, math.inf]))
        rows = {i: [0.0, value] if i == bad else [0.0, 1.0] for i in ids}
        with pytest.raises(ValueError) as info:
            aggregate(rows)
        assert f"model {bad!r}, action 1;" in str(info.value)

    def test_a_bad_weight_by_id_is_named_by_its_id(self):
        with pytest.raises(ValueError, match="weight of model 'b' must be finite"):
            aggregate({"a": [0.0, 1.0], "b": [0.0, 1.0]}, weights={"b": -1.0})

    def test_unknown_weight_ids_are_an_error(self):
        with pytest.raises(ValueError, match="weights name ids"):
            aggregate({"a": [0.0, 1.0]}, weights={"z": 1.0})


def test_stacked_single_row_policies_warn():
    stacked = np.zeros((20, 1, 18))  # twenty policies' (1, n_actions) outputs
    with pytest.warns(SingleModelBatchWarning, match=r"logits\[:, 0\]"):
        result = aggregate(stacked, deterministic=True)
    assert result.contribution.shape == (20, 1)


@pytest.mark.parametrize(
    ("logits", "where"),
    [
        ([[1.0, 2.0], [1.0]], "logits[0] has 2 values, logits[1] has 1 value"),
        ([[1.0, 2.0], "ab"], "logits[1] is 'ab', not a sequence of numbers"),
        ([[[1.0, 2.0], [3.0, 4.0]], [[1.0, 2.0], [1.0]]], "logits[1][1] has 1 value"),
    ],
)
def test_ragged_lists_say_which_rows_differ(logits, where):
    with pytest.raises(ValueError) as info:
        aggregate(logits)
    message = str(info.value)
    assert "rows of different lengths cannot be combined: " in message
    assert message.endswith(where), message
    assert "inhomogeneous" not in message  # no NumPy internals


def test_huge_integers_are_a_clear_error():
    with pytest.raises(ValueError, match="too large for a float"):
        aggregate([[10**310, 1], [0, 1]])
    fits = aggregate([[-(2**63), 10**308, 10**308, 1e16], [0, 0, 0, 0]], rng=0)
    assert np.isfinite(fits.probs).all()


class TestSingleStepPath:
    """One step of >2 actions, default options: ``_one_step`` and ``_float_rows``."""

    def test_golden(self):
        # p_0 = (1, 2, 1) / 4 and p_1 = (1, 1, 2) / 4: P = (2, 3, 3) / 8, the
        # tie goes to action 1, whose shares are 2/4 and 1/4 of 3/4.
        x = np.log([[1.0, 2.0, 1.0], [1.0, 1.0, 2.0]])
        for logits in (x, x.tolist(), x.astype(np.float32)):
            r = aggregate(logits, deterministic=True)
            assert r.action == 1
            tol = 1e-6 if r.probs.dtype == np.float32 else 1e-15
            np.testing.assert_allclose(r.probs, [0.25, 0.375, 0.375], rtol=tol)
            np.testing.assert_allclose(r.contribution, [2 / 3, 1 / 3], rtol=tol)

    @settings(max_examples=150, deadline=None)
    @given(
        hnp.arrays(
            st.sampled_from([np.float64, np.float32]),
            st.tuples(st.integers(1, 8), st.integers(3, 8)),
            elements=st.floats(-700, 700, width=32) | st.just(-np.inf),
        ),
        st.booleans(),
        st.integers(0, 2**32),
    )
    def test_equals_the_general_path_and_the_batch_bit_for_bit(self, x, det, seed):
        from ensemble_agg.core.aggregation import _aggregate_general
        from ensemble_agg.core.checks import as_logits
        from ensemble_agg.core.streams import StepUniforms

        try:
            checked = as_logits(x)
        except ValueError:  # a model with every action at -inf
            with pytest.raises(ValueError, match="every action forbidden"):
                aggregate(x, deterministic=det, rng=seed)
            return
        got = aggregate(x, deterministic=det, rng=seed)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            ref = _aggregate_general(
                checked, None, "sum", 1.0, det, None if det else StepUniforms(seed)
            )
        batch = aggregate(x[None], deterministic=det, rng=seed)
        assert type(got.action) is int
        assert got.action == ref.action == batch.action[0]
        for want in (ref.probs, batch.probs[0]):
            np.testing.assert_array_equal(got.probs, want)
        for want in (ref.contribution, batch.contribution[0]):
            np.testing.assert_array_equal(got.contribution, want)
        assert got.probs.dtype == got.contribution.dtype == x.dtype

    @settings(max_examples=100, deadline=None)
    @given(
        hnp.arrays(
            np.float64,
            st.tuples(st.integers(1, 6), st.integers(3, 6)),
            elements=st.floats(-1e4, 1e4) | st.just(-np.inf),
        ),
        st.integers(0, 2**32),
    )
    def test_lists_of_floats_equal_the_array(self, x, seed):
        # The fast conversion needs a Python float; ints alone go the old way.
        x[0, 0] = 0.5
        rows = x.tolist()
        try:
            want = aggregate(x, rng=seed)
        except ValueError as exc:
            with pytest.raises(ValueError, match=re.escape(str(exc))):
                aggregate(rows, rng=seed)
            return
        got = aggregate(rows, rng=seed)
        assert got.action == want.action
        np.testing.assert_array_equal(got.probs, want.probs)
        np.testing.assert_array_equal(got.contribution, want.contribution)

    @pytest.mark.parametrize(
        ("rows", "error", "words"),
        [
            ([[1.0, 2.0, "3"], [0.0, 0.0, 0.0]], TypeError, "must be numbers"),
            ([[1.0, 2.0, None], [0.0, 0.0, 0.0]], TypeError, "must be numbers"),
            ([[1.0, 2.0, 3.0], [0.0, 0.0]], ValueError, "rows of different lengths"),
            ([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0, 1.0], [1.0]], ValueError, "different"),
            ([[1.0, 2.0, 3.0], [0.0, 0.0, math.nan]], ValueError, "contain NaN"),
            ([[1.0, 2.0, 3.0], [-INF, -INF, -INF]], ValueError, "all actions at -inf"),
            ([[1.0, 2.0, 3.0], [0.0, 0.0, 10**400]], ValueError, "too large"),
            ([[1.0, 2.0, 3.0], [0.0, 1j, 0.0]], TypeError, "real numbers"),
        ],
    )
    def test_lists_the_fast_conversion_declines_get_the_usual_error(
        self, rows, error, words
    ):
        with pytest.raises(error, match=words):
            aggregate(rows, rng=1)

    @pytest.mark.parametrize(
        "x",
        [
            [[0.0, 1.0, 2.0], [-700.0, -701.0, -702.0]],  # one model far below
            [[0.0, -INF, 2.0], [1.0, 1.0, -INF]],  # masks
            [[1e308, 0.0, -1e308], [0.0, 0.0, 0.0]],  # differences overflow
        ],
    )
    def test_steps_the_fast_path_declines_equal_the_general_path(self, x):
        from ensemble_agg.core.aggregation import _aggregate_general

        arr = np.array(x)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            ref = _aggregate_general(arr, None, "sum", 1.0, True, None)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nothing leaks NumPy's warnings
            got = aggregate(arr, deterministic=True)
        assert got.action == ref.action
        np.testing.assert_array_equal(got.probs, ref.probs)
        np.testing.assert_array_equal(got.contribution, ref.contribution)

    @pytest.mark.parametrize("scalar", [np.float32, np.float64, float, int])
    def test_a_list_is_float64_whatever_its_scalars(self, scalar):
        rows = [[scalar(1), scalar(2), scalar(0)], [0.5, scalar(1), scalar(2)]]
        got = aggregate(rows, rng=0)
        want = aggregate(np.array(rows, dtype=np.float64), rng=0)
        assert got.probs.dtype == got.contribution.dtype == np.float64
        assert got.action == want.action
        np.testing.assert_array_equal(got.probs, want.probs)
