"""Tests of ensemble_agg.core.streams: uniforms addressed by global step index."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ensemble_agg import aggregate
from ensemble_agg.core.streams import (
    BlockUniforms,
    StepUniforms,
    block_uniforms,
    philox_key,
    step_uniforms,
)


def reference(seed, n):
    """The scheme as documented, built from NumPy's own classes in one stream."""
    return np.random.Generator(np.random.Philox(np.random.SeedSequence(seed))).random(n)


class TestStepUniforms:
    def test_golden(self):
        # Pinned: changing the scheme changes every seeded action users have.
        # Values printed with repr() from the scheme's first implementation.
        np.testing.assert_array_equal(
            step_uniforms(0, 0, 4),
            [
                0.014067035665647709,
                0.2577672456246177,
                0.47156538101528966,
                0.0914196711073687,
            ],
        )
        np.testing.assert_array_equal(
            step_uniforms(2024, 10**12, 2), [0.1387052748099049, 0.5129294671114369]
        )

    @pytest.mark.parametrize("seed", [0, 1, 2**40 + 3])
    def test_is_one_philox_stream(self, seed):
        full = reference(seed, 64)
        for start in range(0, 40, 3):
            for n in (0, 1, 5, 17):
                np.testing.assert_array_equal(
                    step_uniforms(seed, start, n), full[start : start + n]
                )

    def test_seed_sequence_equals_its_int(self):
        np.testing.assert_array_equal(
            step_uniforms(np.random.SeedSequence(9), 5, 3), step_uniforms(9, 5, 3)
        )
        assert philox_key(np.int64(9)) == philox_key(9)

    def test_shape_is_c_order(self):
        np.testing.assert_array_equal(
            step_uniforms(3, 2, (2, 3)), step_uniforms(3, 2, 6).reshape(2, 3)
        )

    @pytest.mark.parametrize("bad", [-1, True, 1.5, "3", np.random.default_rng(0)])
    def test_bad_seed(self, bad):
        with pytest.raises((TypeError, ValueError), match="seed"):
            philox_key(bad)

    def test_negative_start(self):
        with pytest.raises(ValueError, match="start"):
            step_uniforms(0, -1, 3)

    def test_single_step_is_step_zero(self):
        assert StepUniforms(5).random() == step_uniforms(5, 0, 1)[0]
        np.testing.assert_array_equal(
            StepUniforms(5).random((2, 2)), reference(5, 4).reshape(2, 2)
        )


class TestBlockUniforms:
    @settings(max_examples=80, deadline=None)
    @given(st.data())
    def test_any_block_equals_the_slice(self, data):
        shape = data.draw(
            st.lists(st.integers(1, 6), min_size=1, max_size=3).map(tuple)
        )
        location = []
        for n in shape:
            start = data.draw(st.integers(0, n - 1))
            location.append((start, data.draw(st.integers(start + 1, n))))
        whole = reference(11, int(np.prod(shape))).reshape(shape)
        expected = whole[tuple(slice(a, b) for a, b in location)]
        np.testing.assert_array_equal(
            block_uniforms(philox_key(11), shape, location), expected
        )

    def test_sparse_block_run_by_run(self):
        # A thin column of a wide batch: its steps are far apart, drawn run by run.
        shape = (50, 1000)
        location = [(3, 40), (500, 502)]
        whole = reference(4, 50_000).reshape(shape)
        got = BlockUniforms(philox_key(4), shape, location).random((37, 2))
        np.testing.assert_array_equal(got, whole[3:40, 500:502])


class TestSeededAggregate:
    @pytest.mark.parametrize("rule", ["sum", "product", "majority", "rank"])
    @pytest.mark.parametrize("n_actions", [2, 5])
    def test_action_k_uses_uniform_k(self, rule, n_actions):
        x = np.random.default_rng(2).normal(size=(4, 30, 3, n_actions))
        probs = aggregate(x, rule=rule, deterministic=True).probs.reshape(
            120, n_actions
        )
        u = reference(77, 120)
        cum = np.cumsum(probs, axis=-1)
        expected = (cum <= (u * cum[:, -1])[:, None]).sum(axis=-1)
        got = aggregate(x, rule=rule, rng=77).action
        np.testing.assert_array_equal(got.ravel(), expected)

    @pytest.mark.parametrize("n_actions", [2, 6])
    def test_single_step_equals_first_of_batch(self, n_actions):
        # Two actions take the pure-Python row path for one step, NumPy for the batch.
        x = np.random.default_rng(3).normal(size=(1, 4, n_actions))
        for seed in range(20):
            assert aggregate(x[0], rng=seed).action == aggregate(x, rng=seed).action[0]
            assert (
                aggregate(x[0].tolist(), rng=seed).action
                == aggregate(x, rng=seed).action[0]
            )

    def test_generator_still_draws_in_sequence(self):
        x = np.zeros((2, 3))
        rng = np.random.default_rng(0)
        draws = {aggregate(x, rng=rng).action for _ in range(50)}
        assert draws == {0, 1, 2}
