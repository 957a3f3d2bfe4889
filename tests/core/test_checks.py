"""Every bad input in the contract: the right exception and a useful message."""

from __future__ import annotations

import numpy as np
import pytest

from ensemble_agg import aggregate

INF, NAN = float("inf"), float("nan")
OK = [[0.0, 1.0], [1.0, 0.0]]

BAD_LOGITS = [
    # (logits, exception, words the message must contain)
    ([0.0, 1.0], ValueError, ["1 dimension", "(n_models, n_actions)"]),
    (3.0, ValueError, ["0 dimension"]),
    (np.zeros((0, 3)), ValueError, ["zero models"]),
    (np.zeros((2, 0)), ValueError, ["zero actions"]),
    (np.zeros((4, 0, 3)), ValueError, ["zero models"]),
    ([[0.0, NAN], [1.0, 2.0]], ValueError, ["NaN", "model 0", "action 1"]),
    ([[0.0, 1.0], [INF, 2.0]], ValueError, ["+inf", "model 1", "action 0"]),
    ([[0.0, 1.0], [-INF, -INF]], ValueError, ["model 1", "all actions at -inf"]),
    (
        np.array([[[0.0, 1.0]], [[NAN, 1.0]]]),
        ValueError,
        ["NaN", "step (1,)", "model 0"],
    ),
    ([["a", "b"]], TypeError, ["numbers", "dtype"]),
    ([[None, 1.0]], TypeError, ["numbers"]),
    ([[1j, 1.0]], TypeError, ["real"]),
    ([[1.0, 2.0], [3.0]], ValueError, ["rectangular"]),
]


@pytest.mark.parametrize(("logits", "exc", "words"), BAD_LOGITS)
def test_bad_logits(logits, exc, words):
    with pytest.raises(exc) as info:
        aggregate(logits, rng=0)
    for word in words:
        assert word in str(info.value)


BAD_OPTIONS = [
    ({"weights": [1.0]}, ValueError, ["shape (2,)", "(1,)"]),
    ({"weights": [[1.0, 1.0]]}, ValueError, ["shape (2,)"]),
    ({"weights": [1.0, -1.0]}, ValueError, ["non-negative", "weight 1"]),
    ({"weights": [1.0, NAN]}, ValueError, ["finite", "weight 1"]),
    ({"weights": [INF, 1.0]}, ValueError, ["finite", "weight 0"]),
    ({"weights": [0.0, 0.0]}, ValueError, ["all zero"]),
    ({"weights": ["x", 1]}, TypeError, ["weights"]),
    (
        {"rule": "mean"},
        ValueError,
        ["unknown rule 'mean'", "'sum', 'product', 'majority', 'rank'"],
    ),
    ({"rule": None}, ValueError, ["unknown rule"]),
    ({"temperature": 0.0}, ValueError, ["finite number > 0"]),
    ({"temperature": -1.0}, ValueError, ["finite number > 0"]),
    ({"temperature": INF}, ValueError, ["finite number > 0"]),
    ({"temperature": NAN}, ValueError, ["finite number > 0"]),
    ({"temperature": "1"}, TypeError, ["temperature must be a number"]),
    ({"rng": "seed"}, TypeError, ["rng must be"]),
    ({"rng": -1}, ValueError, ["seed must be >= 0"]),
]


@pytest.mark.parametrize(("kwargs", "exc", "words"), BAD_OPTIONS)
def test_bad_options(kwargs, exc, words):
    with pytest.raises(exc) as info:
        aggregate(OK, **kwargs)
    for word in words:
        assert word in str(info.value)


def test_every_action_forbidden_in_product_ensemble():
    with pytest.raises(ValueError, match="every action is forbidden in the ensemble"):
        aggregate([[0.0, -INF], [-INF, 0.0]], rule="product", rng=0)


def test_batched_empty_support_names_the_step():
    x = np.zeros((3, 2, 2))
    x[2, 0, 0] = x[2, 1, 1] = -INF
    with pytest.raises(ValueError, match=r"at step \(2,\)"):
        aggregate(x, rule="product", deterministic=True)


def test_zero_weight_model_does_not_veto_under_product():
    r = aggregate([[0.0, -INF], [-INF, 0.0]], rule="product", weights=[1, 0], rng=0)
    assert r.action == 0


@pytest.mark.parametrize("rule", ["sum", "product", "majority", "rank"])
def test_never_returns_nan_for_extremes(rule):
    x = [[1e300, -1e300, 0.0], [-1e308, 1e308, -INF], [5e-324, 0.0, -5e-324]]
    r = aggregate(x, rule=rule, rng=0, temperature=1e-300)
    assert np.isfinite(r.probs).all() and np.isfinite(r.contribution).all()


@pytest.mark.parametrize("batched", [False, True])
def test_product_winner_with_underflowing_member_probs(batched):
    # Action 2 wins the product (log P = -3750 against -4000 and -6000) though
    # e**-750 underflows to 0 in every member probability.
    x = np.array([[0.0, -2000.0, -750.0], [-2000.0, 0.0, -750.0]])
    x = np.stack([x, np.zeros((2, 3))]) if batched else x
    r = aggregate(x, rule="product", deterministic=True, weights=[2.0, 3.0])
    action = r.action[0] if batched else r.action
    contribution = r.contribution[0] if batched else r.contribution
    assert action == 2
    np.testing.assert_allclose(contribution, [0.4, 0.6], rtol=1e-12)
