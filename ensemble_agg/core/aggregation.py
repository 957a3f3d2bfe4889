"""Pure math: member policies in, one ensemble action and its credit out.

Rules for this module: arrays in, arrays out; randomness only through the
``rng`` argument; no I/O, no logging, no state between calls, no dask (the
dask backend builds on this module; :mod:`ensemble_agg.dispatch` chooses
between them).  Inputs are checked once, in :func:`aggregate_numpy` (logits
by ``checks``, options by ``options``); :func:`aggregate_checked` and the
private helpers below trust their arguments, so
:class:`~ensemble_agg.Aggregator` and the dask backend call it on data they
have already checked.

Theory of operation
-------------------
Every rule starts from the member distributions ``p_i = softmax(logits_i)``
and builds an ensemble distribution ``P`` over actions.  The logits were
converted and checked once, by ``checks`` (NaN, ``+inf``, a model with
every action at ``-inf`` never get here).  An action is in the ensemble's
support when some model with a positive weight allows it (``"product"``:
when every such model allows it); actions outside the support get
probability exactly 0 and are never drawn.

Members are kept factored, ``w_i p_i(a) = e[i, a] * coef[i]`` with
``e = exp(x - shift)`` (:class:`_Members`): the ensemble needs only the sum
over models and the contribution only the chosen action's column.  Each
step is shifted by its own largest logit, and only steps in which some
model's logits lie far below that are shifted model by model (the product
rule always is); the sums over models go through ``einsum``, one
step at a time in a fixed order.  So a step's result depends on its logits
alone, to the last bit, whatever batch or dask chunk it came in.

One step of the default rule (a 2-D array, or rows of floats that
:func:`_float_rows` converts) takes :func:`_one_step`: the same operations
as the general path, minus what only the cases it declines need (the
checks, ``errstate`` blocks, the per-model shift).  A mid-size step is some
fifteen NumPy calls at about a microsecond each, so calls are what it saves.

What comes from ``scipy.special``, and what stays hand-written
----------------------------------------------------------------
``log_softmax`` gives the product rule its member log-probabilities, and
``logsumexp`` and ``softmax`` the log-space recovery of a contribution whose
member probabilities all underflow: the right tools, off the hot path.
They are imported on first use: ``import scipy.special`` costs about 0.15 s
and 25 MB, more than the rest of ``import ensemble_agg``.  The default rule's
paths stay hand-written, because they are the hot path and measured faster
than scipy here: one max per step (over its models and actions at once) and
the factored members above, where scipy's ``softmax`` takes a max per row
and builds every normalised ``p_i``; and for two actions the logistic form
of ``two_actions.py``, where ``scipy.special.expit`` measured seven times
slower than NumPy's ``exp``.
"""

from __future__ import annotations

import importlib
import math
import warnings
from collections.abc import Hashable, Mapping
from itertools import chain
from typing import Any, Generic, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt

from ..errors import SingleModelBatchWarning
from ..util.text import label
from .checks import FloatArray, as_logits, as_numbers, check_values
from .options import RNGLike, as_rng, check_options, check_weight_map
from .streams import UniformSource
from .two_actions import sum_two_actions_batched, sum_two_actions_rows

__all__ = [
    "Aggregation",
    "RoundResult",
    "Source",
    "aggregate_checked",
    "aggregate_numpy",
    "softmax",
]

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
        a = int(cum.searchsorted(rng.random() * cum.item(-1), "right"))
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


def aggregate_checked(
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


# A step whose logits span less than this (max minus min) cannot have a model
# whose sum of exps falls below _MIN_NORM, nor a NaN, an infinity or an
# overflowing difference on the way: the single-step path's one test.
_MAX_RANGE: dict[np.dtype[Any], float] = {
    np.dtype(np.float64): 500.0,
    np.dtype(np.float32): 60.0,
}
_TINY = {
    np.dtype(np.float64): float(np.finfo(np.float64).tiny),
    np.dtype(np.float32): float(np.finfo(np.float32).tiny),
}
# The ufuncs' reductions, called directly: the methods add a Python wrapper
# that costs a tenth of a microsecond each, on a step of some fifteen calls.
_max = np.maximum.reduce
_min = np.minimum.reduce
_sum = np.add.reduce


def _c_einsum() -> Any:
    """NumPy's C ``einsum``, or ``numpy.einsum`` where it cannot be found.

    ``numpy.einsum`` without ``optimize`` is a Python wrapper (array-function
    dispatch, keywords) around this C function: calling it directly saves
    0.8 us of a 20x18 step's 2 us of einsum, with the same loops and bits.
    """
    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):  # 2.x, 1.x
        try:
            return importlib.import_module(module).c_einsum
        except (ImportError, AttributeError):
            continue
    return np.einsum  # pragma: no cover - a NumPy that moved it again


_einsum = _c_einsum()


def _one_step(
    x: FloatArray, deterministic: bool, source: Source
) -> Aggregation[FloatArray] | None:
    """One step of unchecked 2-D float logits, ``"sum"``, ``T = 1``, no weights.

    The mid-size step's path: the same NumPy operations, in the same order,
    as :func:`_aggregate_general` takes for it (so the same bits, and the
    same action as in any batch), without what that path needs for the
    cases this one declines.  ``None`` (nothing drawn from ``source``) unless
    every logit is finite and they span less than ``_MAX_RANGE``: that one
    test (a max and a min) stands for ``check_values``, for the ``errstate``
    blocks (nothing here can overflow or divide by 0) and for the
    per-model shift (no model's sum of exps can be small), and what it
    declines, the general path checks in full.
    """
    top = float(_max(x, None))
    span = top - float(_min(x, None))  # NaN or inf for NaN, +inf or -inf entries
    if not span < _MAX_RANGE[x.dtype]:
        return None
    e = np.subtract(x, top, dtype=x.dtype)
    np.exp(e, out=e)
    # As _members_shifted and _ensemble, to the last bit.
    coef = np.divide(1.0, _einsum("...a->...", e), dtype=x.dtype)
    qsum = _einsum("...m,...ma->...a", coef, e)
    probs = qsum / _sum(qsum)  # a 1-D sum: the general path's sum over axis -1
    if deterministic:
        action = int(probs.argmax())
    else:
        assert source is not None
        action = _sample(probs, source)
    den = qsum[action]
    if den < _TINY[x.dtype]:  # unreachable within _MAX_RANGE; kept as the general
        return Aggregation(action, _log_contribution(x[:, action], x, None), probs)
    contribution = e[:, action] * coef
    contribution /= den
    return Aggregation(action, contribution, probs)


def _float_rows(rows: list[Any]) -> FloatArray | None:
    """``rows``, a list of equal-length lists of numbers with a float among them, as float64.

    ``None`` for anything else (ints alone, NumPy scalars, strings, ragged
    or nested rows), which ``as_logits`` converts or rejects with its own
    message.  ``sum`` rejects what is not a number (``numpy.fromiter``
    would parse strings); its type says whether every value is a Python
    number and one a float (NumPy scalars would make it a NumPy type).
    The float array is what ``numpy.asarray`` would give, at a third of the
    cost.
    """
    try:
        if type(sum(chain.from_iterable(rows))) is not float:
            return None
        widths = set(map(len, rows))
    except (TypeError, ValueError, OverflowError):
        return None
    if len(widths) != 1:
        return None
    n = len(rows[0])
    flat = np.fromiter(chain.from_iterable(rows), np.float64, len(rows) * n)
    return flat.reshape(len(rows), n)


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


def aggregate_numpy(
    logits: Any,
    deterministic: bool = False,
    rng: RNGLike = None,
    weights: Any = None,
    rule: str = "sum",
    temperature: float = 1.0,
) -> Aggregation[Any]:
    """:func:`ensemble_agg.aggregate` for in-memory input: arrays, lists, mappings.

    The public :func:`ensemble_agg.aggregate` (see its docstring) calls this
    for everything that is not a dask collection, with positional arguments
    (cheaper than keywords on the per-step path).  The options are checked
    first (they are cheap), then the logits.
    """
    kind = type(logits)
    if kind is not np.ndarray and kind is not list and isinstance(logits, Mapping):
        return _aggregate_mapping(
            logits,
            deterministic=deterministic,
            rng=rng,
            weights=weights,
            rule=rule,
            temperature=temperature,
        )
    options = check_options(rule, temperature, weights)
    source = None if deterministic else as_rng(rng, by_step=True)
    if kind is list and logits:
        if type(logits[0]) is list and len(logits[0]) > 2:
            # Rows of floats, as a policy's .tolist() gives them: converted
            # here at a third of numpy.asarray's cost, checked below.
            rows = _float_rows(logits)
            if rows is not None:
                logits = rows
        elif options.is_default and len(logits) <= _ROWS_MAX:
            # One step of a few models from a list of lists, as it comes off
            # the wire: the two-action path checks as it computes, and what
            # it declines is converted and checked in full below.
            fast = _two_action_rows(logits, bool(deterministic), source)
            if fast is not None:
                return fast
    if (
        options.is_default
        and type(logits) is np.ndarray
        and logits.ndim == 2
        and logits.shape[-1] > 2
        and logits.shape[0]
        and logits.dtype in _MAX_RANGE
    ):
        fast = _one_step(logits, bool(deterministic), source)
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
            stacklevel=3,  # the caller of ensemble_agg.aggregate
        )
    w = options.weights_for(x.shape[-2], x.dtype)
    return aggregate_checked(
        x, w, options.rule, options.temperature, bool(deterministic), source
    )


def _aggregate_mapping(logits: Mapping[Any, Any], **options: Any) -> RoundResult:
    """:func:`aggregate_numpy` for ``{model_id: row}``; ``contribution`` keyed by id."""
    ids = list(logits)
    if not ids:
        raise ValueError("logits is an empty mapping; need at least one model")
    # Every message names the model by the id the caller used, not by its
    # position in the mapping (which the caller never chose).
    names = [label(i) for i in ids]
    rows = []
    for model_id, name in zip(ids, names, strict=True):
        value = logits[model_id]
        what = f"logits of model {name}"
        row = as_numbers(value, what)
        if row.ndim == 2 and row.shape[0] == 1:
            row = row[0]  # a policy's (1, n_actions) output
        if row.ndim != 1:
            raise ValueError(
                f"{what} must have shape (n_actions,) or (1, n_actions); got shape "
                f"{row.shape}"
            )
        rows.append(row)
    widths = {len(r) for r in rows}
    if len(widths) > 1:
        raise ValueError(
            "models have different numbers of actions: "
            + ", ".join(f"{n}: {len(r)}" for n, r in zip(names, rows, strict=True))
        )
    x = np.stack(rows)  # float32 rows stay float32, as for an array
    check_values(x, model_names=names)
    weights = options.pop("weights")
    if isinstance(weights, Mapping):
        unknown = [k for k in weights if k not in logits]
        if unknown:
            raise ValueError(f"weights name ids that logits has not: {unknown[:5]!r}")
        check_weight_map(weights)
        weights = [weights.get(i, 1.0) for i in ids]
    result = aggregate_numpy(x, weights=weights, **options)
    shares = dict(zip(ids, result.contribution.tolist(), strict=True))
    return Aggregation(result.action, shares, result.probs)
