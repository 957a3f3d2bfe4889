"""Pure math: member policies in, one ensemble action and its credit out.

Rules for this module: arrays in, arrays out; randomness only through the
``rng`` argument; no I/O, no logging, no state between calls.  Inputs are
checked once in :func:`aggregate` (via ``checks``); the private helpers
below trust their arguments, so :class:`~ensemble_agg.Aggregator` can call
them on data it has already checked.

Theory of operation
-------------------
Every rule starts from the member distributions ``p_i = softmax(logits_i)``
and builds an ensemble distribution ``P`` over actions.  The logits were
converted and checked once, by ``checks`` (NaN, ``+inf``, a model with
every action at ``-inf`` never get here).  An action is in the ensemble's
support when some model with a positive weight allows it (``"product"``:
when every such model allows it); actions outside the support get
probability exactly 0 and are never drawn.

What comes from ``scipy.special``, and what stays hand-written
----------------------------------------------------------------
``log_softmax`` gives the product rule its member log-probabilities, and
``logsumexp`` and ``softmax`` the log-space recovery of a contribution whose
member probabilities all underflow: the right tools, off the hot path.
They are imported on first use: ``import scipy.special`` costs about 0.15 s
and 25 MB, more than the rest of ``import ensemble_agg``.  The default rule's
paths stay hand-written, because they are the hot path and measured faster
than scipy here: one shift for the whole array and a BLAS product over
models where scipy's ``softmax`` takes a max per row and builds every
``p_i``; and for two actions the logistic form of ``two_actions.py``, where
``scipy.special.expit`` measured seven times slower than NumPy's ``exp``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Mapping
from typing import Any, Generic, NamedTuple, TypeVar, overload

import numpy as np
import numpy.typing as npt

from ..util.text import preview
from .checks import (
    FloatArray,
    as_logits,
    check_rule,
    check_temperature,
    check_weights,
)
from .streams import StepUniforms, UniformSource
from .two_actions import sum_two_actions_batched, sum_two_actions_rows

__all__ = [
    "Aggregation",
    "RoundResult",
    "SingleModelBatchWarning",
    "aggregate",
    "softmax",
]

RNGLike = None | int | np.random.SeedSequence | np.random.Generator | UniformSource


#: The type of :attr:`Aggregation.contribution`: an array, or a dict by model id.
ContributionT = TypeVar("ContributionT")


class Aggregation(NamedTuple, Generic[ContributionT]):
    """The result of combining one step's (or a batch of steps') logits.

    Generic in the type of `contribution`: ``Aggregation[FloatArray]`` from
    :func:`aggregate` on arrays, ``Aggregation[dict[Hashable, float]]``
    (alias :data:`RoundResult`) from :func:`aggregate` on a mapping and from
    :class:`~ensemble_agg.Aggregator`.

    Attributes
    ----------
    action : int or numpy.ndarray
        The chosen action: a Python ``int`` for 2-D input, an integer array
        of shape ``batch`` for batched input.
    contribution : numpy.ndarray or dict
        Each model's share of the chosen action, ``w_i p_i(a) / sum_j w_j
        p_j(a)``; shape ``(n_models,)`` or ``(*batch, n_models)``, summing to 1
        over models; a ``dict`` from model id to ``float`` for mapping input
        and from :class:`~ensemble_agg.Aggregator`.
    probs : numpy.ndarray
        The ensemble distribution ``P``, shape ``(n_actions,)`` or
        ``(*batch, n_actions)``, summing to 1.
    """

    action: Any
    contribution: ContributionT
    probs: FloatArray


#: What :class:`~ensemble_agg.Aggregator` returns for a round.
RoundResult = Aggregation[dict[Hashable, float]]


def softmax(logits: Any, axis: int = -1) -> FloatArray:
    """Compute the softmax of `logits` along `axis`, without overflow.

    Parameters
    ----------
    logits : array_like
        Real numbers; ``-inf`` gives probability 0.  float32 input is
        computed and returned in float32, anything else in float64.
    axis : int, optional
        The axis that sums to 1.  Default: the last.

    Returns
    -------
    numpy.ndarray
        Same shape as `logits`, non-negative, summing to 1 along `axis`.  A
        slice whose entries are all ``-inf`` (or that holds NaN or ``+inf``)
        is NaN.

    Notes
    -----
    .. math:: \\operatorname{softmax}(x)_k = \\frac{e^{x_k - m}}{\\sum_j e^{x_j - m}},
              \\qquad m = \\max_j x_j

    Subtracting the maximum changes nothing mathematically and keeps every
    exponent at most 0, so ``exp`` cannot overflow.

    Examples
    --------
    >>> import numpy as np
    >>> from ensemble_agg import softmax
    >>> softmax([1.0, 2.0, 3.0]).round(4)
    array([0.09  , 0.2447, 0.6652])

    Huge logits are fine; the naive formula overflows to ``inf / inf``:

    >>> softmax([1e4, -1e4, 1e4]).round(4)
    array([0.5, 0. , 0.5])
    >>> with np.errstate(over="ignore", invalid="ignore"):
    ...     e = np.exp([1e4, -1e4, 1e4]); print(e / e.sum())
    [nan  0. nan]
    """
    x = logits if isinstance(logits, np.ndarray) else np.asarray(logits)
    if x.dtype != np.float32 and x.dtype != np.float64:
        x = x.astype(np.float64)
    m = x.max(axis=axis, keepdims=True)
    # An all -inf slice has m = -inf and x - m = NaN: the documented result.
    # Overflow in the shift gives -inf, whose exp is the right limit, 0.
    with np.errstate(invalid="ignore", over="ignore"):
        e = np.exp(x - m)
        return e / e.sum(axis=axis, keepdims=True)


def _rng(rng: RNGLike) -> np.random.Generator | UniformSource:
    if isinstance(rng, (np.random.Generator, UniformSource)):
        return rng
    if rng is None or isinstance(rng, np.random.SeedSequence):
        return np.random.default_rng(rng)
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        if rng < 0:
            raise ValueError(f"rng seed must be >= 0, got {rng}")
        return np.random.default_rng(int(rng))
    raise TypeError(
        "rng must be None, an int seed, a numpy.random.SeedSequence or a "
        f"numpy.random.Generator, got {type(rng).__name__}"
    )


def _sampling_rng(rng: RNGLike) -> np.random.Generator | UniformSource:
    """``rng`` for one :func:`aggregate` call: seeds draw by step index.

    An ``int`` seed or a ``SeedSequence`` gives each step the uniform of its
    flattened batch index (``streams``'s scheme), so the actions do not depend
    on how a batch is split; a ``Generator`` or ``None`` draws sequentially.
    """
    if type(rng) is np.random.Generator:  # the per-step hot path: no more checks
        return rng
    if isinstance(rng, np.random.SeedSequence) or (
        isinstance(rng, (int, np.integer)) and not isinstance(rng, bool)
    ):
        return StepUniforms(rng)
    return _rng(rng)


class _Members(NamedTuple):
    """Member policies in factored form: ``w_i p_i(a) = e[i, a] * coef[i]``.

    ``e`` is ``exp(x - shift)`` and ``coef = w / sum_a e``; keeping the two
    apart means the normalised ``w_i p_i`` array is never built: the ensemble
    needs only ``qsum = sum_i coef_i e_i`` and the contribution only the
    chosen action's column.
    """

    e: FloatArray
    coef: FloatArray
    norm: FloatArray  # sum_a e, per model


# A model whose sum of exps, shifted by its step's largest logit, is below
# this has its largest logit some 600 (float32: 80) below the step's: its
# probabilities would lose precision, so its step shifts each model apart.
_MIN_NORM = {
    np.dtype(np.float64): math.exp(-600.0),
    np.dtype(np.float32): math.exp(-80.0),
}


def _members(x: FloatArray, w: FloatArray | None, per_model: bool) -> _Members:
    """Member policies of checked ``x``, in factored form.

    Every step is computed from its own logits alone (its own shift, sums
    that never span steps), so a step's result does not depend on the batch
    it came in, to the last bit: a dask array split any way gives the NumPy
    result.  ``per_model`` shifts each model by its own max.
    """
    if per_model:
        return _members_shifted(x, x.max(axis=-1, keepdims=True), w)
    # The usual case shifts each step by its largest logit: one reduction
    # over the step's contiguous models x actions, where a max per model is
    # a slow reduction over a short axis.
    members = _members_shifted(x, x.max(axis=(-2, -1), keepdims=True), w)
    # A model whose largest logit is far below its step's would lose its
    # probabilities' precision (or all of them, to 0/0); its sum of exps
    # says so.  Those steps, and only they, shift each model by its own max.
    coarse = members.norm < _MIN_NORM[x.dtype]
    if not coarse.any():
        return members
    if x.ndim == 2:
        return _members_shifted(x, x.max(axis=-1, keepdims=True), w)
    steps = coarse.any(axis=-1)
    xs = x[steps]
    fine = _members_shifted(xs, xs.max(axis=-1, keepdims=True), w)
    members.e[steps] = fine.e
    members.coef[steps] = fine.coef
    members.norm[steps] = fine.norm
    return members


def _members_shifted(
    x: FloatArray, shift: FloatArray, w: FloatArray | None
) -> _Members:
    e = np.exp(x - shift)
    # einsum's loops sum each step alone and in a fixed order (a BLAS product
    # would group steps; .sum over a short axis is three times slower).
    norm = np.einsum("...a->...", e)
    coef = 1.0 / norm if w is None else w / norm
    return _Members(e, coef, norm)


def _scores_to_probs(
    score: FloatArray, support: npt.NDArray[np.bool_] | None, t: float
) -> FloatArray:
    """``softmax(score / t)`` over actions, with actions outside ``support`` at 0.

    The max is subtracted before dividing by ``t``, so a tiny temperature
    sends the best action to ``exp(0)`` rather than everything to ``-inf``.
    """
    if support is not None:
        score = np.where(support, score, -np.inf)
    e = np.exp((score - score.max(axis=-1, keepdims=True)) / t)
    return e / e.sum(axis=-1, keepdims=True)


def _ensemble(
    x: FloatArray, w: FloatArray | None, rule: str, t: float
) -> tuple[_Members, FloatArray, FloatArray]:
    """Return ``(members, qsum, P)`` for validated logits ``x``.

    ``qsum`` is ``sum_i w_i p_i`` (the ``"sum"`` rule's unnormalised ``P``
    and every rule's contribution denominator); ``P`` is the ensemble
    distribution.  Invalid input shows up as NaN in ``qsum``; an empty support
    as NaN in ``P``.
    """
    members = _members(x, w, per_model=rule == "product")
    # sum over models of coef_i * e_i, one step at a time (see _members)
    qsum = np.einsum("...m,...ma->...a", members.coef, members.e)
    if rule == "sum":
        s = qsum
        if t != 1.0:
            # P ∝ s**(1/T); scale by the max first so the power cannot overflow.
            s = (s / s.max(axis=-1, keepdims=True)) ** (1.0 / t)
        return members, qsum, s / s.sum(axis=-1, keepdims=True)
    if rule == "product":
        from scipy.special import log_softmax  # imported on first use: see above

        logp = log_softmax(x, axis=-1)
        if w is not None:
            # A weight-0 model must not veto: 0 * -inf would be NaN.
            logp = np.where(w[:, None] > 0, logp * w[:, None], 0.0)
        return members, qsum, _scores_to_probs(logp.sum(axis=-2), None, t)
    n_actions = x.shape[-1]
    if rule == "majority":
        best = x.argmax(axis=-1)
        points = (best[..., None] == np.arange(n_actions)).astype(x.dtype)
    else:  # rank
        # order[k] is the k-th best action (ties: lower index is better), so
        # its rank is k and it earns n_actions - k points.
        order = np.argsort(-x, axis=-1, kind="stable")
        ranks = np.argsort(order, axis=-1, kind="stable")
        points = (n_actions - ranks).astype(x.dtype)
    if w is not None:
        points = points * w[:, None]
    return members, qsum, _scores_to_probs(points.sum(axis=-2), qsum > 0, t)


def _sample(probs: FloatArray, rng: np.random.Generator | UniformSource) -> Any:
    """Draw one action per step from ``probs`` with one uniform per step.

    Uses the first index whose cumulative sum exceeds ``u * total``; an action
    of probability 0 adds nothing to the cumulative sum, so it can never be
    that first index.
    """
    cum = np.cumsum(probs, axis=-1)
    n_actions = probs.shape[-1]
    if probs.ndim == 1:
        # float(...) keeps v in float64 for float32 input too, as in the batched
        # branch, so a batch and a loop of single steps draw the same actions.
        a = int(np.searchsorted(cum, rng.random() * float(cum[-1]), side="right"))
        if a >= n_actions:  # u * total rounded up to total
            a = int(np.flatnonzero(probs)[-1])
        return a
    v = rng.random(probs.shape[:-1]) * cum[..., -1]
    a = (cum <= v[..., None]).sum(axis=-1)
    over = a >= n_actions
    if over.any():
        last = n_actions - 1 - np.argmax(probs[..., ::-1] > 0, axis=-1)
        a = np.where(over, last, a)
    return a


#: Random numbers for one call: a Generator drawn in sequence, or uniforms by
#: step index (``streams``); ``None`` when the action is the argmax.
Source = np.random.Generator | UniformSource | None


def _aggregate_checked(
    x: FloatArray | list[list[float]],
    w: FloatArray | None,
    rule: str,
    t: float,
    deterministic: bool,
    source: Source,
) -> Aggregation[FloatArray]:
    """Aggregate checked logits: the one place that chooses a code path.

    ``x`` is an array of shape ``(*batch, n_models, n_actions)``, or one
    step as a list of equal-length lists of floats (the :class:`Aggregator`'s
    rows, made by ``as_row``).  ``source`` is resolved by the caller once.
    The default rule over two actions takes a fast path of
    ``two_actions.py``, pure Python for one step of a few models, NumPy for
    a batch; everything else, and anything a fast path declines, takes
    :func:`_aggregate_general`, the reference they are tested against.
    Raises ``ValueError`` only for an ensemble in which every action is
    forbidden (the input itself was checked by ``as_logits`` or ``as_row``).
    """
    if rule == "sum" and t == 1.0:
        if isinstance(x, list):
            if w is None and len(x[0]) == 2 and len(x) <= _ROWS_MAX:
                fast = _two_action_rows(x, deterministic, source)
                if fast is not None:
                    return fast
        elif x.shape[-1] == 2:
            if (
                x.ndim == 2
                and w is None
                and x.dtype == np.float64
                and len(x) <= _ROWS_MAX
            ):
                fast = _two_action_rows(x.tolist(), deterministic, source)
                if fast is not None:
                    return fast
            else:
                return _two_action_batch(x, w, deterministic, source)
    arr = np.array(x, dtype=np.float64) if isinstance(x, list) else x
    return _aggregate_general(arr, w, rule, t, deterministic, source)


# Up to this many models the pure-Python two-action path beats NumPy for one
# step (measured: about 140 ns a model against a few microseconds of NumPy
# call overhead); beyond it NumPy's per-element cost wins.
_ROWS_MAX = 64


def _two_action_rows(
    rows: Any, deterministic: bool, source: Source
) -> Aggregation[FloatArray] | None:
    """One step of Python ``[l0, l1]`` rows, ``"sum"``, ``T = 1``, no weights.

    ``None`` (nothing drawn from ``source``) for rows that are not finite
    pairs of numbers: the fast path checks as it computes, so unchecked
    lists may be tried first and checked fully only when it declines.
    """
    fast = sum_two_actions_rows(rows, deterministic, source)
    return None if fast is None else Aggregation(*fast)


def _two_action_batch(
    x: FloatArray, w: FloatArray | None, deterministic: bool, source: Source
) -> Aggregation[FloatArray]:
    """``x`` of shape ``(*batch, n_models, 2)``, ``"sum"``, ``T = 1``."""
    # exp overflows to inf for huge logit differences: the right limit.
    with np.errstate(over="ignore", invalid="ignore"):
        action, contribution, probs = sum_two_actions_batched(
            x, w, deterministic, source
        )
    return Aggregation(int(action) if x.ndim == 2 else action, contribution, probs)


def _aggregate_general(
    x: FloatArray,
    w: FloatArray | None,
    rule: str,
    t: float,
    deterministic: bool,
    source: Source,
) -> Aggregation[FloatArray]:
    """Every rule, any shape: the reference the fast paths are tested against.

    Raises ``ValueError`` for an ensemble with an empty support (every action
    forbidden by the models that count).
    """
    # Overflow to inf and NaN are expected on the way (exp of large
    # differences, -inf - -inf for a dead model): they are the right limit,
    # or caught by the NaN checks on the result.
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        members, qsum, probs = _ensemble(x, w, rule, t)
        if math.isnan(probs.sum()):
            _raise_empty_support(probs, rule)
        if deterministic:
            a = probs.argmax(axis=-1)
            action: Any = int(a) if probs.ndim == 1 else a
        else:
            assert source is not None
            action = _sample(probs, source)
        contribution = _contribution(x, w, members, qsum, action)
    return Aggregation(action, contribution, probs)


def _contribution(
    x: FloatArray, w: FloatArray | None, m: _Members, qsum: FloatArray, action: Any
) -> FloatArray:
    """Each model's share ``q_i(a) / sum_j q_j(a)`` of the chosen action ``a``.

    Under the product rule an action can win although every member
    probability of it underflows to 0 (e.g. logits ``-750`` against ``0``
    and ``-2000``); those steps are recomputed in log space, where the same
    ratio is a softmax over models of ``log w_i + log p_i(a)``.
    """
    tiny = np.finfo(x.dtype).tiny
    if x.ndim == 2:
        den = qsum[action]
        if den >= tiny:
            return m.e[:, action] * m.coef / den
        return _log_contribution(x[:, action], x, w)
    a_idx = np.asarray(action)[..., None]
    qa = np.take_along_axis(m.e, a_idx[..., None], axis=-1)[..., 0] * m.coef
    den = np.take_along_axis(qsum, a_idx, axis=-1)
    low = den[..., 0] < tiny
    contribution = qa / den
    if low.any():
        xa = np.take_along_axis(x, a_idx[..., None], axis=-1)[..., 0]
        contribution[low] = _log_contribution(xa[low], x[low], w)
    return contribution


def _log_contribution(
    xa: FloatArray, x: FloatArray, w: FloatArray | None
) -> FloatArray:
    """``softmax`` over models of ``log w_i + log p_i(a)``; ``xa`` = logits of ``a``."""
    from scipy.special import logsumexp
    from scipy.special import softmax as sp_softmax

    logp = xa - logsumexp(x, axis=-1)
    if w is not None:
        logp = logp + np.log(w)
    return np.asarray(sp_softmax(logp, axis=-1), dtype=x.dtype)


def _raise_empty_support(probs: FloatArray, rule: str) -> None:
    bad = np.argwhere(np.isnan(probs).any(axis=-1)) if probs.ndim > 1 else None
    where = "" if bad is None else f" at step {tuple(int(i) for i in bad[0])}"
    because = (
        "each action is forbidden (-inf) by at least one model with a positive weight"
        if rule == "product"
        else "no model with a positive weight allows any action"
    )
    raise ValueError(
        f"every action is forbidden in the ensemble{where}: {because} (rule {rule!r})"
    )


@overload
def aggregate(
    logits: Mapping[Any, Any],
    *,
    deterministic: bool = ...,
    rng: RNGLike = ...,
    weights: Any = ...,
    rule: str = ...,
    temperature: float = ...,
) -> RoundResult: ...


@overload
def aggregate(
    logits: Any,
    *,
    deterministic: bool = ...,
    rng: RNGLike = ...,
    weights: Any = ...,
    rule: str = ...,
    temperature: float = ...,
) -> Aggregation[FloatArray]: ...


def aggregate(
    logits: Any,
    *,
    deterministic: bool = False,
    rng: RNGLike = None,
    weights: Any = None,
    rule: str = "sum",
    temperature: float = 1.0,
) -> Aggregation[Any]:
    """Combine several models' action logits into one action.

    Parameters
    ----------
    logits : array_like, mapping or dask.array.Array
        Shape ``(n_models, n_actions)``, or ``(*batch, n_models, n_actions)``
        for many independent steps.  float32 arrays are computed in float32,
        everything else in float64.  ``-inf`` marks an action the model
        forbids.  A mapping ``{model_id: row}`` (each row of shape
        ``(n_actions,)`` or ``(1, n_actions)``, as a policy returns it) is one
        step; `contribution` is then a ``dict`` keyed by the same ids.  Shape
        ``(n, 1, n_actions)`` means ``n`` steps of one model each and warns
        (:class:`SingleModelBatchWarning`): it is what stacking ``n``
        policies' ``(1, n_actions)`` outputs gives.  A dask array (optional
        extra ``ensemble-agg[dask]``) gives a lazy result; see Notes.
    deterministic : bool, optional
        If true, take the most probable action (ties: lowest index).  If
        false (default), draw it from the ensemble distribution.
    rng : None, int, numpy.random.SeedSequence or numpy.random.Generator, optional
        Source of randomness for sampling.  ``None`` (default) draws fresh
        entropy; an ``int`` seed or a ``SeedSequence`` gives the same actions
        for the same inputs on every call, however the batch is chunked (see
        Notes); a ``Generator`` is drawn from in sequence.  Unused when
        `deterministic` is true.
    weights : array_like or mapping, optional
        Non-negative weight per model, shape ``(n_models,)``, not all zero;
        with mapping `logits`, also a mapping from id to weight (missing ids
        weigh 1).  Default: every model weighs 1.
    rule : {"sum", "product", "majority", "rank"}, optional
        How member policies combine; see Notes.  Default ``"sum"``, the rule
        of the original torch component.
    temperature : float, optional
        ``T > 0``; higher flattens the ensemble distribution.  Default 1.

    Returns
    -------
    Aggregation
        Named tuple ``(action, contribution, probs)``.  `action` is an
        ``int`` (2-D input) or an integer array of shape ``batch``;
        `contribution` is each model's share of the chosen action, shape
        ``(n_models,)`` or ``(*batch, n_models)``, summing to 1; `probs` is the
        ensemble distribution, shape ``(n_actions,)`` or
        ``(*batch, n_actions)``, summing to 1.

    Raises
    ------
    TypeError
        If `logits` or `weights` are not numbers, or `rng` is of the wrong type.
    ValueError
        For a wrong number of dimensions, zero models or actions, NaN or
        ``+inf`` in `logits`, a model whose logits are all ``-inf``, an
        ensemble in which every action is forbidden, bad `weights`, an unknown
        `rule`, or a `temperature` that is not a finite number > 0.  The
        message names the step, model and action concerned.

    Notes
    -----
    With member policies :math:`p_i = \\operatorname{softmax}(\\ell_i)`,
    weights :math:`w_i` and temperature :math:`T`, the rules (Wiering and van
    Hasselt, 2008) are

    - ``"sum"``: :math:`P \\propto (\\sum_i w_i p_i)^{1/T}`;
    - ``"product"``: :math:`P \\propto (\\prod_i p_i^{w_i})^{1/T}`, in log space;
    - ``"majority"``: :math:`P \\propto \\exp(v/T)`, where :math:`v_a` sums the
      weights of the models whose argmax is :math:`a`;
    - ``"rank"``: :math:`P \\propto \\exp(r/T)`, where each model gives its
      best action ``n_actions`` points down to 1 for its worst, times
      :math:`w_i`.

    An action is possible only if a model with a positive weight allows it
    (for ``"product"``: if every such model allows it).  The contribution of
    model :math:`i` to the chosen action :math:`a` is
    :math:`w_i p_i(a) / \\sum_j w_j p_j(a)`, for every rule.

    Sampling draws one uniform :math:`u` per step and takes the first action
    whose cumulative probability exceeds :math:`u`.  With an ``int`` seed or a
    ``SeedSequence``, step :math:`k` (its index in the batch flattened in C
    order; a single 2-D step is step 0) gets the :math:`k`-th output of a
    Philox generator keyed by the seed, whatever else is computed with it.
    So a batch gives the same actions as one NumPy array, as any slicing into
    chunks of a dask array, on any scheduler or cluster.

    For a dask array ``(*batch, n_models, n_actions)`` the fields of the
    result are lazy dask arrays (``action`` of shape ``batch`` even without
    batch axes).  The batch axes keep their chunks; the model and action
    axes are rechunked to one chunk each, which costs a shuffle of the data
    unless they already are.  Bad shapes, dtypes, weights, rules and
    temperatures raise at once; invalid logits raise when the result is
    computed, naming the step by its index in the whole batch.  A
    ``Generator`` or ``None`` as `rng` seeds the chunks from one draw, so
    those actions do not match the NumPy ones.

    References
    ----------
    M. A. Wiering and H. van Hasselt, "Ensemble Algorithms in Reinforcement
    Learning", IEEE Trans. Systems, Man, and Cybernetics, Part B 38(4), 2008.

    Examples
    --------
    >>> from ensemble_agg import aggregate
    >>> logits = [[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
    >>> result = aggregate(logits, deterministic=True)
    >>> result.action
    0
    >>> result.probs.round(4)
    array([0.5499, 0.4501])
    >>> result.contribution.round(4)
    array([0.5339, 0.163 , 0.3031])

    Sampling with a seed is reproducible, and ``-inf`` forbids an action:

    >>> aggregate(logits, rng=7).action == aggregate(logits, rng=7).action
    True
    >>> masked = [[2.0, float("-inf")], [0.0, float("-inf")]]
    >>> aggregate(masked, rng=7).action
    0

    One step as the original component held it, ``{model_id: logits}``:

    >>> step = {"a": [[2.0, 0.0]], "b": [[0.0, 1.0]], "c": [[1.0, 1.0]]}
    >>> result = aggregate(step, deterministic=True)
    >>> {k: round(v, 4) for k, v in result.contribution.items()}
    {'a': 0.5339, 'b': 0.163, 'c': 0.3031}

    Many steps at once:

    >>> import numpy as np
    >>> batch = np.zeros((4, 3, 2), dtype=np.float32)
    >>> aggregate(batch, deterministic=True).action
    array([0, 0, 0, 0])
    """
    if type(logits) is not list and hasattr(type(logits), "__dask_graph__"):
        # A dask collection: a lazy result, computed chunk by chunk.
        options = {"deterministic": deterministic, "rng": rng, "weights": weights}
        options.update(rule=rule, temperature=temperature)
        return _aggregate_lazy(logits, options)
    if isinstance(logits, Mapping):
        return _aggregate_mapping(
            logits,
            deterministic=deterministic,
            rng=rng,
            weights=weights,
            rule=rule,
            temperature=temperature,
        )
    source = None if deterministic else _sampling_rng(rng)
    if (
        type(logits) is list
        and weights is None
        and rule == "sum"
        and temperature == 1
        and len(logits) <= _ROWS_MAX
    ):
        # One step of a few models from a list of lists, as it comes off the
        # wire: the two-action path checks as it computes, and what it
        # declines is converted and checked in full below.
        fast = _two_action_rows(logits, bool(deterministic), source)
        if fast is not None:
            return fast
    x = as_logits(logits)
    if x.ndim == 3 and x.shape[1] == 1 and x.shape[0] > 1:
        warnings.warn(
            f"logits of shape {x.shape} are read as {x.shape[0]} steps of ONE "
            f"model each (every contribution is 1).  If they are "
            f"{x.shape[0]} models' outputs of shape (1, n_actions), stacked, "
            f"pass logits[:, 0] (shape {(x.shape[0], x.shape[2])}) or a dict "
            f"{{model_id: row}}.",
            SingleModelBatchWarning,
            stacklevel=2,
        )
    rule = check_rule(rule)
    t = check_temperature(temperature)
    w = None if weights is None else check_weights(weights, x.shape[-2], x.dtype)
    return _aggregate_checked(x, w, rule, t, bool(deterministic), source)


class SingleModelBatchWarning(UserWarning):
    """``aggregate`` got shape ``(n, 1, n_actions)``: ``n`` one-model steps.

    That is what a stack of ``n`` policies' ``(1, n_actions)`` outputs looks
    like, which is almost always meant as one step of ``n`` models.
    """


def _aggregate_mapping(logits: Mapping[Any, Any], **options: Any) -> RoundResult:
    """:func:`aggregate` for ``{model_id: row}``; ``contribution`` keyed by id."""
    ids = list(logits)
    if not ids:
        raise ValueError("logits is an empty mapping; need at least one model")
    rows = []
    for model_id in ids:
        row = np.asarray(logits[model_id])
        if row.ndim == 2 and row.shape[0] == 1:
            row = row[0]  # a policy's (1, n_actions) output
        if row.ndim != 1:
            raise ValueError(
                f"logits of model {preview(model_id)} must have shape (n_actions,) or "
                f"(1, n_actions); got shape {row.shape}"
            )
        rows.append(row)
    widths = {len(r) for r in rows}
    if len(widths) > 1:
        raise ValueError(
            "models have different numbers of actions: "
            + ", ".join(f"{i!r}: {len(r)}" for i, r in zip(ids, rows, strict=True))
        )
    x = np.stack(rows)  # float32 rows stay float32, as for an array
    weights = options.pop("weights")
    if isinstance(weights, Mapping):
        unknown = [k for k in weights if k not in logits]
        if unknown:
            raise ValueError(f"weights name ids that logits has not: {unknown[:5]!r}")
        weights = [weights.get(i, 1.0) for i in ids]
    result = aggregate(x, weights=weights, **options)
    shares = dict(zip(ids, result.contribution.tolist(), strict=True))
    return Aggregation(result.action, shares, result.probs)


def _aggregate_lazy(logits: Any, options: dict[str, Any]) -> Aggregation:
    """:func:`aggregate` for a dask collection, via ``dask_backend`` (imported only now)."""
    if logits.__dask_graph__() is None:  # e.g. an xarray object holding NumPy data
        return aggregate(np.asarray(logits), **options)
    try:
        from ..dask_backend import aggregate_dask
    except ImportError as exc:
        raise ImportError(
            f"logits is a dask collection ({type(logits).__module__}."
            f"{type(logits).__qualname__}) but dask.array cannot be imported "
            f"({exc}); install the optional extra: pip install 'ensemble-agg[dask]'"
        ) from exc
    return aggregate_dask(logits, **options)
