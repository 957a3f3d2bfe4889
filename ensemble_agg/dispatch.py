"""The public :func:`aggregate`: NumPy input to the core, dask input to its backend.

This module sits above both ``core`` and ``dask_backend`` so that neither
imports the other's way up: the core's NumPy path (``aggregate_numpy``) knows
nothing of dask, and ``dask_backend`` builds on the core.  The dispatch is by
duck type (dask's collection protocol, ``__dask_graph__``), and the backend is
imported on the first dask input, so ``import ensemble_agg`` loads no dask.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, overload

import numpy as np

from .core.aggregation import Aggregation, RoundResult, aggregate_numpy
from .core.checks import FloatArray
from .core.options import RNGLike

__all__ = ["aggregate"]


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
    # A dask collection speaks dask's protocol; a list or an ndarray (the
    # per-step input) is ruled out first: a missing attribute costs more.
    kind = type(logits)
    lazy = (
        kind is not list and kind is not np.ndarray and hasattr(kind, "__dask_graph__")
    )
    # Positional: cheaper than keywords, and this is the per-step path.
    return (_aggregate_lazy if lazy else aggregate_numpy)(
        logits, deterministic, rng, weights, rule, temperature
    )


def _aggregate_lazy(
    logits: Any,
    deterministic: bool,
    rng: RNGLike,
    weights: Any,
    rule: str,
    temperature: float,
) -> Aggregation[Any]:
    """:func:`aggregate` for a dask collection, via ``dask_backend`` (imported only now)."""
    options = (deterministic, rng, weights, rule, temperature)
    if logits.__dask_graph__() is None:  # e.g. an xarray object holding NumPy data
        return aggregate_numpy(np.asarray(logits), *options)
    try:
        from .dask_backend import aggregate_dask
    except ImportError as exc:
        raise ImportError(
            f"logits is a dask collection ({type(logits).__module__}."
            f"{type(logits).__qualname__}) but dask.array cannot be imported "
            f"({exc}); install the optional extra: pip install 'ensemble-agg[dask]'"
        ) from exc
    return aggregate_dask(
        logits,
        deterministic=deterministic,
        rng=rng,
        weights=weights,
        rule=rule,
        temperature=temperature,
    )
