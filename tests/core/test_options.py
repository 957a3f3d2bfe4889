"""Options and rng, checked once: the same value and the same errors everywhere."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ensemble_agg import Aggregator, aggregate
from ensemble_agg.core.options import Options, as_rng, check_options
from ensemble_agg.core.streams import StepUniforms, philox_key

OK = [[0.0, 1.0], [1.0, 0.5]]


class TestCheckOptions:
    def test_defaults_are_one_shared_value(self):
        default = check_options()
        assert default == Options("sum", 1.0, None) and default.is_default
        # Equal options however they are spelled take the fast paths too.
        assert check_options("sum", 1, None) is default
        assert check_options("sum", np.float64(1.0)) is default

    @pytest.mark.parametrize(
        "kwargs",
        [{"rule": "rank"}, {"temperature": 0.5}, {"weights": [1.0, 1.0]}],
    )
    def test_other_options_are_not_default(self, kwargs):
        assert not check_options(**kwargs).is_default

    def test_temperature_true_is_refused_even_for_the_default_rule(self):
        with pytest.raises(TypeError, match="temperature must be a number"):
            check_options("sum", True)

    def test_weights_become_a_read_only_float64_copy(self):
        given_weights = np.array([1, 2, 0], dtype=np.int64)
        w = check_options(weights=given_weights).weights
        assert w is not None and w.dtype == np.float64 and not w.flags.writeable
        given_weights[0] = 100  # the caller's array, changed later
        np.testing.assert_array_equal(w, [1.0, 2.0, 0.0])

    def test_weights_values_are_checked_before_the_models_are_known(self):
        with pytest.raises(ValueError, match=r"non-negative; weight 1 is -1\.0"):
            check_options(weights=[1.0, -1.0])

    def test_weights_for_checks_the_number_of_models(self):
        options = check_options(weights=[1.0, 2.0])
        with pytest.raises(
            ValueError, match=r"shape \(3,\), one per model; got shape \(2,\)"
        ):
            options.weights_for(3, np.dtype(np.float64))
        w32 = options.weights_for(2, np.dtype(np.float32))
        assert w32 is not None and w32.dtype == np.float32
        assert check_options().weights_for(5, np.dtype(np.float64)) is None

    @given(
        st.lists(
            st.floats(min_value=0.0, max_value=1e6, allow_nan=False),
            min_size=1,
            max_size=8,
        ).filter(any)
    )
    def test_valid_weights_are_kept_exactly(self, weights):
        options = check_options("product", 2.0, weights)
        assert options.weights is not None
        assert options.weights.tolist() == [float(v) for v in weights]
        assert options.weights_for(len(weights), np.dtype(np.float64)) is not None


# Each bad option, as every entry point that takes it must report it.
BAD = [
    {"rule": "mean"},
    {"rule": None},
    {"temperature": 0.0},
    {"temperature": "1"},
    {"temperature": float("nan")},
    {"rng": "seed"},
    {"rng": -1},
    {"rng": 1.5},
    {"rng": True},
]


@pytest.mark.parametrize("kwargs", BAD, ids=str)
def test_aggregate_and_aggregator_report_bad_options_alike(kwargs):
    with pytest.raises((TypeError, ValueError)) as from_aggregate:
        aggregate(OK, **kwargs)
    with pytest.raises(type(from_aggregate.value)) as from_aggregator:
        Aggregator(2, **kwargs)
    assert str(from_aggregator.value) == str(from_aggregate.value)


class TestAsRng:
    def test_a_generator_is_used_as_it_is(self):
        gen = np.random.default_rng(3)
        assert as_rng(gen, by_step=True) is gen
        assert as_rng(gen, by_step=False) is gen

    @pytest.mark.parametrize("seed", [0, 7, np.int64(7), np.random.SeedSequence(7)])
    def test_a_seed_by_step_gives_the_step_uniforms(self, seed):
        source = as_rng(seed, by_step=True)
        assert isinstance(source, StepUniforms)
        assert source.key == philox_key(seed)

    def test_a_seed_otherwise_gives_one_reproducible_generator(self):
        a, b = as_rng(11, by_step=False), as_rng(11, by_step=False)
        assert isinstance(a, np.random.Generator)
        assert a.random(3).tolist() == b.random(3).tolist()

    def test_none_is_fresh_entropy(self):
        assert isinstance(as_rng(None, by_step=True), np.random.Generator)

    def test_philox_key_keeps_its_own_wording(self):
        with pytest.raises(TypeError, match="seed must be an int or a numpy"):
            philox_key(1.5)
        with pytest.raises(ValueError, match="rng seed must be >= 0, got -2"):
            philox_key(-2)


@pytest.mark.parametrize("weight", [-1.0, float("nan"), float("inf")])
def test_weights_by_id_are_checked_alike_everywhere(weight):
    # Aggregator, aggregate on a mapping and --weights share one check of
    # weights by model id, so they say the same thing.
    from ensemble_agg.core.options import check_weight_map
    from ensemble_agg.transport.settings import weights as weights_option

    with pytest.raises(ValueError) as direct:
        check_weight_map({"a": weight})
    with pytest.raises(ValueError) as from_aggregator:
        Aggregator(2, weights={"a": weight, "b": 1.0})
    with pytest.raises(ValueError) as from_mapping:
        aggregate({"a": [0.0, 1.0], "b": [1.0, 0.0]}, weights={"a": weight})
    with pytest.raises(ValueError) as from_option:
        weights_option(f"a={weight},b=1")
    message = str(direct.value)
    assert message.startswith("weight of model 'a' must be finite and non-negative")
    assert str(from_aggregator.value) == message
    assert str(from_mapping.value) == message
    assert str(from_option.value) == message
