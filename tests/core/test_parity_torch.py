"""Parity with a PyTorch implementation of the original ``get_action``.

Runs only where torch imports (.ci/run installs torch==2.13.0).  The
original computes in float32 (``torch.tensor`` of Python floats), so
contributions agree to 1e-5, and the deterministic action agrees wherever the
two best ensemble probabilities are not tied within float32 rounding.
"""

from __future__ import annotations

import numpy as np
import pytest

from ensemble_agg import Aggregator, aggregate

from ..helpers import HAVE_TORCH, torch_get_action

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason="torch is not installed")

SHAPES = [(1, 1), (1, 2), (2, 1), (20, 2), (20, 18), (3, 7), (200, 100), (7, 1000)]


def _cases():
    rng = np.random.default_rng(2024)
    for n_models, n_actions in SHAPES:
        for scale in (0.1, 1.0, 10.0):
            yield rng.normal(scale=scale, size=(n_models, n_actions))
    for _ in range(60):
        shape = rng.integers(1, 30, size=2)
        yield rng.normal(scale=rng.uniform(0.1, 5), size=shape)


CASES = list(_cases())


def _as_dict(x):
    return {f"m{i}": row.tolist() for i, row in enumerate(x)}


@pytest.mark.parametrize("x", CASES, ids=lambda x: f"{x.shape[0]}x{x.shape[1]}")
def test_deterministic_parity(x):
    t_action, t_contrib, t_probs = torch_get_action(_as_dict(x), deterministic=True)
    ours = aggregate(x.tolist(), deterministic=True)
    np.testing.assert_allclose(ours.probs, t_probs, atol=1e-6)
    top2 = np.sort(ours.probs)[-2:]
    if top2.size == 1 or top2[1] - top2[0] > 1e-5:
        assert ours.action == int(t_action[0])
    else:  # a float32 near-tie: both picked one of the tied best
        assert ours.probs[int(t_action[0])] >= top2[1] - 1e-5
    t_contrib = torch_get_action(_as_dict(x), action=ours.action)[1]
    np.testing.assert_allclose(ours.contribution, list(t_contrib.values()), atol=1e-5)


@pytest.mark.parametrize("x", CASES[:12], ids=lambda x: f"{x.shape[0]}x{x.shape[1]}")
def test_sampled_contributions_match_for_drawn_action(x):
    rng = np.random.default_rng(0)
    for _ in range(5):
        ours = aggregate(x, rng=rng)
        t_contrib = torch_get_action(_as_dict(x), action=ours.action)[1]
        np.testing.assert_allclose(
            ours.contribution, list(t_contrib.values()), atol=1e-5
        )


def test_aggregator_matches_original_round():
    x = np.random.default_rng(5).normal(size=(20, 2))
    agg = Aggregator(20)
    for i, row in enumerate(x[:-1]):
        assert agg.submit(f"m{i}", row.tolist()) is None
    result = agg.submit("m19", x[-1].tolist(), deterministic=True)
    action, contrib, _ = torch_get_action(_as_dict(x), deterministic=True)
    assert [result.action] == action.tolist()
    for key, value in contrib.items():
        assert abs(result.contribution[key] - float(value)) < 1e-5


def test_masked_parity():
    x = np.random.default_rng(9).normal(size=(5, 6))
    x[:, 2] = -np.inf
    x[0, 4] = -np.inf
    action, contrib, _ = torch_get_action(_as_dict(x), deterministic=True)
    ours = aggregate(x, deterministic=True)
    assert ours.action == int(action[0]) and ours.probs[2] == 0.0
    np.testing.assert_allclose(ours.contribution, list(contrib.values()), atol=1e-5)
