"""Input checks at the edge of the pure-math layer.

Everything that enters :func:`ensemble_agg.aggregate` or
:meth:`ensemble_agg.Aggregator.submit` passes through here once; the math in
``_math.py`` trusts what it is given.  Messages follow one pattern: what is
wrong, where (model and action index, counted from 0), and what was expected.

The cheap checks run on every call.  The expensive diagnosis (which model, which
action is NaN) runs only after the math found a NaN in its result, because NaN
and ``+inf`` in the input always propagate to one (see ``diagnose_logits``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "RULES",
    "as_logits",
    "check_nonnegative",
    "check_rule",
    "check_temperature",
    "check_weights",
    "describe_model",
    "diagnose_logits",
    "preview",
]

#: The ensemble rules, in the order the documentation lists them.
RULES = ("sum", "product", "majority", "rank")

FloatArray = npt.NDArray[np.floating[Any]]

# NumPy < 1.24 turns ragged nested lists into object arrays with a warning
# instead of raising; make it raise there too, so the error is the same.
_RAGGED_WARNS = np.lib.NumpyVersion(np.__version__) < "1.24.0"


def _asarray(obj: object) -> np.ndarray:
    if not _RAGGED_WARNS:
        return np.asarray(obj)
    ragged: type[Warning] = getattr(np, "VisibleDeprecationWarning", Warning)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ragged)
        try:
            return np.asarray(obj)
        except ragged as exc:
            raise ValueError(str(exc)) from None


def preview(value: object, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_model(index: int, ids: list[Hashable] | None = None) -> str:
    """Name model ``index`` for an error message, by id when ids are known."""
    if ids is not None:
        return f"model {ids[index]!r}"
    return f"model {index}"


def as_logits(logits: object, *, name: str = "logits") -> FloatArray:
    """Convert ``logits`` to a float array of at least two dimensions.

    float32 input stays float32; every other real input becomes float64.
    Raises ``TypeError`` for non-numeric data and ``ValueError`` for a wrong
    number of dimensions or an empty models or actions axis.
    """
    if isinstance(logits, np.ndarray) and logits.dtype == np.float32:
        arr: np.ndarray = logits
    else:
        try:
            arr = _asarray(logits)
        except ValueError as exc:  # ragged nested lists
            raise ValueError(
                f"{name} must be a rectangular array of numbers of shape "
                f"(n_models, n_actions); rows of different lengths cannot be "
                f"combined ({exc})"
            ) from None
        if arr.dtype.kind == "c":
            raise TypeError(f"{name} must be real numbers, got complex values")
        if arr.dtype.kind not in "fiub":
            raise TypeError(
                f"{name} must be numbers, got an array of dtype {arr.dtype} "
                f"(e.g. strings, None or nested sequences of unequal length)"
            )
        if arr.dtype != np.float64:  # ints, bools, float16, float128
            arr = arr.astype(np.float64)
    if arr.ndim < 2:
        raise ValueError(
            f"{name} must have shape (n_models, n_actions) or "
            f"(*batch, n_models, n_actions); got {arr.ndim} dimension(s), "
            f"shape {arr.shape}"
        )
    if arr.shape[-2] == 0:
        raise ValueError(
            f"{name} has zero models (shape {arr.shape}); need at least one"
        )
    if arr.shape[-1] == 0:
        raise ValueError(
            f"{name} has zero actions (shape {arr.shape}); need at least one"
        )
    return arr


def check_rule(rule: object) -> str:
    """Return ``rule`` if it names a known rule, else raise ``ValueError``."""
    if not isinstance(rule, str) or rule not in RULES:
        raise ValueError(
            f"unknown rule {rule!r}; expected one of {', '.join(map(repr, RULES))}"
        )
    return rule


def check_temperature(temperature: object) -> float:
    """Return ``temperature`` as a float if it is finite and > 0."""
    if isinstance(temperature, bool) or not isinstance(
        temperature, (int, float, np.integer, np.floating)
    ):
        raise TypeError(
            f"temperature must be a number, got {type(temperature).__name__} "
            f"{temperature!r}"
        )
    t = float(temperature)
    if not (math.isfinite(t) and t > 0):
        raise ValueError(
            f"temperature must be a finite number > 0, got {temperature!r}"
        )
    return t


def check_nonnegative(value: object, what: str) -> float:
    """Return ``value`` as a float if it is a finite number >= 0.

    ``what`` names the value in the message, e.g. ``"weight of model 'a'"``.
    """
    if isinstance(value, bool) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise TypeError(f"{what} must be a number, got {value!r}")
    v = float(value)
    if not (math.isfinite(v) and v >= 0):
        raise ValueError(f"{what} must be finite and non-negative, got {value!r}")
    return v


def check_weights(weights: object, n_models: int, dtype: np.dtype[Any]) -> FloatArray:
    """Return ``weights`` as an array of shape ``(n_models,)`` in ``dtype``.

    Raises if the shape is wrong or a weight is negative, NaN or infinite, or
    if all weights are zero.
    """
    try:
        w = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"weights must be a sequence of {n_models} non-negative numbers, "
            f"got {weights!r:.80}"
        ) from None
    if w.shape != (n_models,):
        raise ValueError(
            f"weights must have shape ({n_models},), one per model; got shape {w.shape}"
        )
    bad = np.flatnonzero(~np.isfinite(w))
    if bad.size:
        raise ValueError(f"weights must be finite; weight {bad[0]} is {w[bad[0]]!r}")
    neg = np.flatnonzero(w < 0)
    if neg.size:
        raise ValueError(
            f"weights must be non-negative; weight {neg[0]} is {w[neg[0]]!r}"
        )
    if not w.any():
        raise ValueError("weights are all zero; at least one model must count")
    return w.astype(dtype, copy=False)


def diagnose_logits(
    x: np.ndarray, ids: list[Hashable] | None = None, *, name: str = "logits"
) -> None:
    """Raise ``ValueError`` naming the first invalid entry of ``x``.

    Called on the error path only, after the math produced a NaN.  Checks, in
    order: NaN, ``+inf``, a model whose logits are all ``-inf``.  Returns
    normally if ``x`` is valid.
    """
    for what, mask in (("NaN", np.isnan(x)), ("+inf", np.isposinf(x))):
        if mask.any():
            where = np.argwhere(mask)[0]
            raise ValueError(
                f"{name} contain {what}: {_locate(where, x.shape, ids)}; "
                f"logits must be finite or -inf (a forbidden action)"
            )
    dead = np.isneginf(x).all(axis=-1)
    if dead.any():
        where = np.argwhere(dead)[0]
        raise ValueError(
            f"{name}: {_locate(where, x.shape[:-1], ids, with_action=False)} has "
            f"all actions at -inf (every action forbidden); a model must allow "
            f"at least one action"
        )


def _locate(
    where: np.ndarray,
    shape: tuple[int, ...],
    ids: list[Hashable] | None,
    *,
    with_action: bool = True,
) -> str:
    """Describe an index into ``(*batch, n_models[, n_actions])`` in words."""
    idx = [int(i) for i in where]
    parts = []
    n_batch = len(shape) - (2 if with_action else 1)
    if n_batch:
        parts.append(f"step {tuple(idx[:n_batch])}")
    parts.append(describe_model(idx[n_batch], ids))
    if with_action:
        parts.append(f"action {idx[n_batch + 1]}")
    return ", ".join(parts)
