"""The two-action fast paths agree with the general path they shortcut."""

from __future__ import annotations

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ensemble_agg import aggregate
from ensemble_agg.core.aggregation import _aggregate_general as _general_unguarded
from ensemble_agg.core.two_actions import sum_two_actions_batched as _batched_unguarded
from ensemble_agg.core.two_actions import sum_two_actions_rows


# The private paths expect their caller (aggregate) to have silenced NumPy's
# expected overflow and NaN warnings; call them the same way here.
def _aggregate_general(*args):
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        return _general_unguarded(*args)


def sum_two_actions_batched(*args):
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        return _batched_unguarded(*args)


logit = st.one_of(
    st.floats(-1e4, 1e4, allow_nan=False),
    st.just(-np.inf),
    st.sampled_from([0.0, 1.0, -745.5, 745.5, 1e308, -1e308]),
)


def _valid(x: np.ndarray) -> bool:
    return not np.isneginf(x).all(axis=-1).any()


def _assert_probs_close(
    probs, expected, rtol=1e-12, tiny=1e-200, log_rtol=1e-14, atol=1e-300
) -> None:
    """Equal to 1e-12 relative where exp is well conditioned; in log space below.

    A probability of exp(-661) inherits the rounding of its 661-sized
    argument: one ulp there is 1.1e-13 of relative error, so two correct
    paths differ by more than 1e-12 relative (hypothesis found
    [[-662, -1], [-inf, 56]]: 1.6e-12 on a 4e-288).  Their logs still agree
    to 1e-14 relative, which is what is asserted for such tiny values.
    """
    probs, expected = np.asarray(probs), np.asarray(expected)
    tiny = (expected < tiny) | (probs < tiny)
    np.testing.assert_allclose(probs[~tiny], expected[~tiny], rtol=rtol, atol=1e-300)
    both = tiny & (expected > atol) & (probs > atol)
    np.testing.assert_allclose(
        np.log(probs[both]), np.log(expected[both]), rtol=log_rtol, atol=1e-12
    )
    np.testing.assert_allclose(probs[tiny & ~both], expected[tiny & ~both], atol=atol)


def test_two_actions_tiny_probability_agrees_with_the_general_path():
    x = np.array([[-662.0, -1.0], [-np.inf, 56.0]])
    fast = sum_two_actions_rows(x.tolist(), True, np.random.default_rng(0))
    ref = _aggregate_general(x, None, "sum", 1.0, True, np.random.default_rng(0))
    assert fast is not None
    _assert_probs_close(fast[2], ref.probs)


@settings(max_examples=200, deadline=None)
@given(
    hnp.arrays(np.float64, st.tuples(st.integers(1, 25), st.just(2)), elements=logit),
    st.booleans(),
    st.integers(0, 2**32),
)
def test_rows_path_matches_general(x, deterministic, seed):
    fast = sum_two_actions_rows(x.tolist(), deterministic, np.random.default_rng(seed))
    if not _valid(x):
        assert fast is None
        return
    ref = _aggregate_general(
        x, None, "sum", 1.0, deterministic, np.random.default_rng(seed)
    )
    assert fast is not None
    action, contribution, probs = fast
    _assert_probs_close(probs, ref.probs)
    np.testing.assert_allclose(contribution, ref.contribution, rtol=1e-12, atol=1e-15)
    if abs(ref.probs[0] - ref.probs[1]) > 1e-12:
        assert action == ref.action


@settings(max_examples=150, deadline=None)
@given(
    hnp.arrays(
        st.sampled_from([np.float64, np.float32]),
        st.tuples(st.integers(1, 6), st.integers(1, 8), st.just(2)),
        elements=st.floats(-80, 80, width=32) | st.just(-np.inf),
    ),
    st.booleans(),
    st.booleans(),
    st.integers(0, 2**32),
)
def test_batched_path_matches_general(x, weighted, deterministic, seed):
    w = None
    if weighted:
        w = np.linspace(0.0, 2.0, x.shape[-2]).astype(x.dtype)
        w[-1] = 1.0
    # The batched path takes checked logits only (as_logits rejects a model
    # with both actions at -inf before any path runs).
    assume(_valid(x))
    fast = sum_two_actions_batched(x, w, deterministic, np.random.default_rng(seed))
    ref = _aggregate_general(
        x, w, "sum", 1.0, deterministic, np.random.default_rng(seed)
    )
    action, contribution, probs = fast
    rtol = 1e-5 if x.dtype == np.float32 else 1e-12
    assert probs.dtype == contribution.dtype == x.dtype
    if x.dtype == np.float32:  # exp(-36) in float32 carries its argument's rounding
        _assert_probs_close(
            probs, ref.probs, rtol=rtol, tiny=1e-6, log_rtol=1e-6, atol=1e-30
        )
    else:
        np.testing.assert_allclose(probs, ref.probs, rtol=rtol, atol=1e-30)
    clear = np.abs(ref.probs[..., 0] - ref.probs[..., 1]) > 10 * rtol
    np.testing.assert_array_equal(action[clear], ref.action[clear])
    same = action == ref.action
    np.testing.assert_allclose(
        contribution[same], ref.contribution[same], rtol=rtol, atol=1e-6
    )


def test_rows_path_hands_bad_input_to_the_general_path():
    for bad in (
        [[0.0, np.nan]],
        [[np.inf, 0.0]],
        [[0.0, np.inf]],
        [[1, 2], [3]],
        [["a", "b"]],
        [[1.0, 2.0, 3.0]],
        [],
        [[10**400, 0]],
    ):
        assert sum_two_actions_rows(bad, True, None) is None


def test_list_and_array_inputs_agree():
    x = np.random.default_rng(3).normal(size=(20, 2))
    for det in (True, False):
        a = aggregate(x.tolist(), deterministic=det, rng=5)
        b = aggregate(x, deterministic=det, rng=5)
        c = aggregate(
            x, deterministic=det, rng=5, rule="sum", temperature=1.0 + 1e-15
        )  # general path
        assert a.action == b.action == c.action
        np.testing.assert_allclose(a.contribution, b.contribution, rtol=1e-12)
        np.testing.assert_allclose(a.probs, c.probs, rtol=1e-12)
