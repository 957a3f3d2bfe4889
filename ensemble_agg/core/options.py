"""The aggregation options, checked once: rule, temperature, weights, rng.

:func:`ensemble_agg.aggregate`, the dask backend and
:class:`~ensemble_agg.Aggregator` all take the same options; each builds an
:class:`Options` with :func:`check_options` and turns its ``rng`` into a
source of uniforms with :func:`as_rng`, so every check and every message
exists once.  What these return, the math trusts.

Only the number of models is unknown here: :meth:`Options.weights_for`
checks the weights against it where the logits are known.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np

from ..util.text import preview
from .checks import (
    FloatArray,
    check_nonnegative,
    check_rule,
    check_seed,
    check_temperature,
)
from .streams import StepUniforms, UniformSource

__all__ = ["Options", "RNGLike", "as_rng", "check_options"]

#: What the ``rng`` argument accepts (a ``UniformSource`` is internal: the
#: dask backend hands each block the uniforms of its steps).
RNGLike = (
    None | int | np.integer[Any] | np.random.SeedSequence | np.random.Generator
) | UniformSource

_RNG_EXPECTED = (
    "None, an int seed, a numpy.random.SeedSequence or a numpy.random.Generator"
)


class Options(NamedTuple):
    """Checked aggregation options; build them with :func:`check_options`.

    Attributes
    ----------
    rule : str
        One of :data:`~ensemble_agg.core.checks.RULES`.
    temperature : float
        Finite and > 0.
    weights : numpy.ndarray or None
        float64, read-only, finite, non-negative, not all zero, with a finite
        sum; ``None`` when every model weighs 1.  Its shape is checked against
        the number of models by :meth:`weights_for`.
    """

    rule: str
    temperature: float
    weights: FloatArray | None

    def weights_for(self, n_models: int, dtype: np.dtype[Any]) -> FloatArray | None:
        """The weights for logits of ``n_models`` models, in ``dtype``.

        Raises ``ValueError`` unless the weights have shape ``(n_models,)``.
        """
        w = self.weights
        if w is None:
            return None
        if w.shape != (n_models,):
            raise ValueError(
                f"weights must have shape ({n_models},), one per model; got "
                f"shape {w.shape}"
            )
        return w.astype(dtype, copy=False)

    @property
    def is_default(self) -> bool:
        """True for ``"sum"`` at ``T = 1`` without weights: the fast paths' case."""
        return self is _DEFAULT


def check_options(
    rule: object = "sum", temperature: object = 1.0, weights: object = None
) -> Options:
    """Check the aggregation options and return them as :class:`Options`.

    Raises ``ValueError`` (``TypeError`` for values that are not numbers) for
    an unknown `rule`, a `temperature` that is not a finite number > 0, and
    `weights` that are negative, non-finite or all zero, naming the first bad
    weight.

    Examples
    --------
    >>> from ensemble_agg.core.options import check_options
    >>> check_options("product", 2, [1, 0.5]).weights
    array([1. , 0.5])
    >>> check_options("mean")
    Traceback (most recent call last):
    ...
    ValueError: unknown rule 'mean'; expected one of 'sum', 'product', 'majority', 'rank'
    """
    if weights is None and type(rule) is str and rule == "sum":
        if type(temperature) is float and temperature == 1.0:
            return _DEFAULT  # the usual call: nothing to check or build
        if check_temperature(temperature) == 1.0:
            return _DEFAULT
    return Options(
        check_rule(rule),
        check_temperature(temperature),
        None if weights is None else _check_weights(weights),
    )


_DEFAULT = Options("sum", 1.0, None)


def _check_weights(weights: object) -> FloatArray:
    """``weights`` as a new read-only float64 array, its values checked (not its shape).

    A copy, so that the caller changing the array later (e.g. before a lazy
    dask result is computed) cannot change the options.
    """
    try:
        w = np.array(weights, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"weights must be a sequence of non-negative numbers, one per model; "
            f"got {preview(weights)}"
        ) from None
    bad = np.flatnonzero(~np.isfinite(w))
    if bad.size:
        raise ValueError(
            f"weights must be finite; weight {bad[0]} is {float(w.flat[bad[0]])}"
        )
    neg = np.flatnonzero(w < 0)
    if neg.size:
        raise ValueError(
            f"weights must be non-negative; weight {neg[0]} is {float(w.flat[neg[0]])}"
        )
    if not w.any():
        raise ValueError("weights are all zero; at least one model must count")
    if not np.isfinite(w.sum()):
        raise ValueError("weights are too large: their sum is not a finite number")
    w.flags.writeable = False
    return w


def check_weight_map(
    weights: Mapping[Any, float] | Iterable[float] | None,
    model_ids: Collection[Hashable] | None = None,
) -> dict[Hashable, float] | None:
    """Weights by model id, each checked: the form :class:`Aggregator`, the
    mapping input of ``aggregate`` and ``--weights`` take.

    ``weights`` is a mapping from id to weight, or a sequence aligned with
    ``model_ids``.  Each weight must be a finite number >= 0, and their sum
    finite.  (Not all zero is checked where the round's models are known.)
    """
    if weights is None:
        return None
    if isinstance(weights, Mapping):
        pairs = list(weights.items())
    else:
        if model_ids is None:
            raise TypeError(
                "weights must be a mapping from model id to weight, or a "
                "sequence aligned with model_ids (which was not given)"
            )
        values = list(weights)
        ids = list(model_ids)
        if len(values) != len(ids):
            raise ValueError(
                f"weights has {len(values)} entries; model_ids has {len(ids)}"
            )
        pairs = list(zip(ids, values, strict=True))
    checked = {
        key: check_nonnegative(value, f"weight of model {preview(key)}")
        for key, value in pairs
    }
    if not math.isfinite(math.fsum(checked.values())):
        raise ValueError("weights are too large: their sum is not a finite number")
    return checked


def as_rng(rng: RNGLike, *, by_step: bool) -> np.random.Generator | UniformSource:
    """Turn the ``rng`` argument into what sampling draws from.

    A ``Generator`` (or a ``UniformSource``) is used as it is, and ``None``
    is a generator on fresh entropy.  A seed (an ``int`` >= 0 or a
    ``SeedSequence``) gives, with `by_step`, the uniforms of
    ``streams.StepUniforms`` (each step's draw depends only on the seed and
    its index, as :func:`ensemble_agg.aggregate` promises); without it, one
    generator that later calls keep drawing from (an :class:`Aggregator`'s
    rounds).  Raises ``TypeError`` for any other type and ``ValueError`` for
    a negative seed.
    """
    if type(rng) is np.random.Generator:  # the per-step hot path
        return rng
    if isinstance(rng, (np.random.Generator, UniformSource)):
        return rng
    if rng is None:
        return np.random.default_rng()
    seed = check_seed(rng, name="rng", expected=_RNG_EXPECTED)
    return StepUniforms(seed) if by_step else np.random.default_rng(seed)
