"""Fast paths for the commonest case: the ``"sum"`` rule over two actions.

With two actions a model's softmax is a logistic function of the logit
difference, ``p(1) = 1 / (1 + exp(l0 - l1))``.  Written as ``r = 1 / (1 + e)``
with ``e = exp(-|l1 - l0|) <= 1``, the larger probability is ``r`` and the
smaller ``e * r``: neither overflows, and the smaller one keeps its full
relative precision (``1 - r`` would not).

:func:`sum_two_actions_rows` takes unchecked Python rows and checks as it
computes: it returns ``None`` when the input is not its to handle (NaN,
``+inf``, a model with both actions at ``-inf``, non-numbers, rows that are
not pairs, an integer too large for a float), and the caller then takes the general
path, which either computes the same thing or raises the precise error.
:func:`sum_two_actions_batched` takes an array already checked by
``checks.as_logits`` and always returns a result.  Both compute the same
values as the general path to within rounding, and draw the same action
from the same uniform.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .checks import FloatArray
from .streams import UniformSource

__all__ = ["sum_two_actions_batched", "sum_two_actions_rows"]


def sum_two_actions_rows(
    rows: Any,
    deterministic: bool,
    rng: np.random.Generator | UniformSource | None,
    _exp: Any = math.exp,
    _inf: float = math.inf,
) -> tuple[int, FloatArray, FloatArray] | None:
    """``(action, contribution, probs)`` for a list of ``[l0, l1]`` pairs, in pure Python.

    For a handful of models, Python floats beat building a NumPy array: the
    conversion alone costs more than this whole loop.  (``_exp`` and ``_inf``
    are bound as defaults because local names are the fastest to look up.)
    """
    p0s: list[float] = []
    p1s: list[float] = []
    add0 = p0s.append
    add1 = p1s.append
    try:
        for a, b in rows:
            d = b - a
            if d > 0:
                e = _exp(-d)
                if e == 0.0 and b == _inf:
                    return None
                r = 1.0 / (1.0 + e)
                add1(r)
                add0(e * r)
            else:
                e = _exp(d)  # NaN stays NaN and is caught below
                if e == 0.0 and a == _inf:
                    return None
                r = 1.0 / (1.0 + e)
                add0(r)
                add1(e * r)
    except (TypeError, ValueError, OverflowError):
        return None
    s0 = sum(p0s)
    s1 = sum(p1s)
    total = s0 + s1
    if total != total or not p0s:  # NaN: invalid input, for the general path to name
        return None
    p0 = s0 / total
    p1 = s1 / total
    if deterministic:
        action = 1 if p1 > p0 else 0
    else:
        assert rng is not None
        # As the general path: the first index whose cumulative sum exceeds
        # u * total, never an action of probability 0.
        action = 0 if p0 > rng.random() * (p0 + p1) or p1 == 0.0 else 1
    contribution = np.array(p1s if action else p0s)
    contribution /= s1 if action else s0
    return action, contribution, np.array([p0, p1])


def sum_two_actions_batched(
    x: FloatArray,
    w: FloatArray | None,
    deterministic: bool,
    rng: np.random.Generator | UniformSource | None,
) -> tuple[Any, FloatArray, FloatArray]:
    """``(action, contribution, probs)`` for checked ``x`` of shape ``(*batch, n_models, 2)``.

    Each member probability is ``1 / (1 + exp(-d))`` of the logit difference
    ``d``, which keeps full relative precision in both tails (``exp`` may
    overflow to ``inf``, giving the right limit 0).  Sums over models are
    taken one step at a time, and the chosen action's column is picked by
    ``numpy.where`` with the step's choice broadcast over its models.
    """
    # The logits were checked (no NaN, +inf or model with both actions at
    # -inf).  An overflowing difference gives +-inf, whose probabilities 0 and
    # 1 are the limit; the caller has silenced NumPy's warnings for it.
    d = x[..., 1] - x[..., 0]
    p1 = np.negative(d)
    np.exp(p1, out=p1)
    p1 += 1.0
    np.reciprocal(p1, out=p1)
    p0 = np.exp(d, out=d)
    p0 += 1.0
    np.reciprocal(p0, out=p0)
    # sum_i w_i p_i(a), one step at a time: a BLAS product would group steps
    # and let a step's last bits depend on its neighbours.
    if w is None:
        s0 = np.einsum("...m->...", p0)
        s1 = np.einsum("...m->...", p1)
    else:
        s0 = np.einsum("...m,m->...", p0, w)
        s1 = np.einsum("...m,m->...", p1, w)
    total = s0 + s1
    probs = np.stack([s0 / total, s1 / total], axis=-1)
    if deterministic:
        take1 = probs[..., 1] > probs[..., 0]
    else:
        assert rng is not None
        # As the general path: the first index whose cumulative sum exceeds
        # u * total, never an action of probability 0.
        v = rng.random(probs.shape[:-1]) * (probs[..., 0] + probs[..., 1])
        take1 = (probs[..., 0] <= v) & (probs[..., 1] > 0)
    # The mask is one value per step, broadcast over its models: runs that
    # numpy.where selects from in one pass (three fewer than 0/1 masks).
    contribution = np.where(take1[..., None], p1, p0)
    if w is not None:
        contribution *= w
    contribution /= np.where(take1, s1, s0)[..., None]
    return take1.astype(np.intp), contribution, probs
