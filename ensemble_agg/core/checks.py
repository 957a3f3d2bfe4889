"""Input checks at the edge of the pure-math layer.

Every logit that enters the math passes through here once: arrays through
:func:`as_logits` (which :func:`ensemble_agg.aggregate` calls), one model's
row through :func:`as_row` (which :meth:`ensemble_agg.Aggregator.submit` and
the wire edge call).  The scalar checks (:func:`check_rule`,
:func:`check_temperature`, :func:`check_seed`, :func:`check_nonnegative`)
serve ``options.py``, the Aggregator's per-id weights and the state file.
Each converts and checks, and raises ``TypeError`` or ``ValueError`` with
one pattern of message: what is wrong, where (step, model and action,
counted from 0), and what was expected.  The math in ``aggregation.py``
trusts what they return.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ..util.text import preview

__all__ = [
    "RULES",
    "as_logits",
    "as_row",
    "check_nonnegative",
    "check_rule",
    "check_seed",
    "check_temperature",
    "check_values",
]

#: The ensemble rules, in the order the documentation lists them.
RULES = ("sum", "product", "majority", "rank")

#: A float array: float64, or float32 where the input was float32.
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


def as_logits(logits: object, *, name: str = "logits") -> FloatArray:
    """Convert ``logits`` to a float array of at least two dimensions, checked.

    float32 input stays float32; every other real input becomes float64.
    Raises ``TypeError`` for non-numeric data and ``ValueError`` for a wrong
    number of dimensions, an empty models or actions axis, an integer too
    large for a float, NaN, ``+inf`` or a model with every action at ``-inf``
    (:func:`check_values`).  What it returns, the math trusts.
    """
    if isinstance(logits, np.ndarray) and logits.dtype == np.float32:
        arr: np.ndarray = logits
    else:
        try:
            arr = _asarray(logits)
        except ValueError:  # ragged nested lists; NumPy's words name no row
            where = _ragged(logits, name)
            raise ValueError(
                f"{name} must be a rectangular array of numbers of shape "
                f"(n_models, n_actions); rows of different lengths cannot be "
                f"combined" + (f": {where}" if where else "")
            ) from None
        arr = _real(
            arr,
            name,
            f", got an array of dtype {arr.dtype} (e.g. strings, None or nested "
            f"sequences of unequal length)",
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
    check_values(arr, name=name)
    return arr


def as_numbers(values: object, what: str) -> np.ndarray:
    """Convert ``values`` to a real array (any shape); only its type is checked.

    ``what`` names the values in messages (``"logits of model 'a'"``).
    float32 stays float32.  Raises ``TypeError`` for strings, ``None``,
    complex numbers and other non-numbers, ``ValueError`` for ragged nested
    sequences and integers too large for a float.

    Examples
    --------
    >>> as_numbers(["x", "y"], "logits of model 'b'")
    Traceback (most recent call last):
    ...
    TypeError: logits of model 'b' must be numbers; got ['x', 'y']
    """
    if isinstance(values, (str, bytes)):  # NumPy would make a 0-d string array
        raise TypeError(f"{what} must be numbers; got {preview(values)}")
    try:
        arr = _asarray(values)
    except ValueError:  # ragged nested sequences
        raise ValueError(
            f"{what} must be a flat sequence of numbers; got {preview(values)}"
        ) from None
    return _real(arr, what, f"; got {preview(values)}")


def _real(arr: np.ndarray, name: str, got: str) -> np.ndarray:
    """``arr`` if it holds real numbers (an object array of them converted)."""
    if arr.dtype.kind == "c":
        raise TypeError(f"{name} must be real numbers, got complex values")
    if arr.dtype == object:
        arr = _object_to_float(arr, name)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name} must be numbers{got}")
    return arr


def _ragged(obj: object, path: str) -> str | None:
    """Where nested sequences first disagree in length, in words; else None.

    Examples
    --------
    >>> _ragged([[1.0, 2.0], [1.0]], "logits")
    'logits[0] has 2 values, logits[1] has 1 value'
    >>> _ragged([[1.0, 2.0], "ab"], "logits")
    "logits[0] has 2 values, logits[1] is 'ab', not a sequence of numbers"
    """
    if not isinstance(obj, (list, tuple)) or not obj:
        return None

    def size(item: object) -> int | None:
        if isinstance(item, (list, tuple, np.ndarray)):
            return len(item)
        return None

    def describe(i: int) -> str:
        n = size(obj[i])
        if n is None:
            return f"{path}[{i}] is {preview(obj[i])}, not a sequence of numbers"
        return f"{path}[{i}] has {n} value{'s' if n != 1 else ''}"

    sizes = [size(item) for item in obj]
    for i, n in enumerate(sizes):
        if n != sizes[0]:
            return f"{describe(0)}, {describe(i)}"
    for i, item in enumerate(obj):
        if isinstance(item, np.ndarray):
            item = item.tolist()
        found = _ragged(item, f"{path}[{i}]")
        if found:
            return found
    return None


def _object_to_float(arr: np.ndarray, name: str) -> np.ndarray:
    """Convert an object array of Python numbers (e.g. huge ints) to float64.

    NumPy makes an object array of integers beyond int64; they are logits
    like any other if they fit a float, and a clear error if they do not.
    Anything else in an object array (strings, None, nested sequences of
    unequal length) is left for the caller's dtype check.
    """
    out = np.empty(arr.shape, dtype=np.float64)
    flat = out.reshape(-1)
    for i, value in enumerate(arr.flat):
        if isinstance(value, bool) or not isinstance(
            value, (int, float, np.integer, np.floating)
        ):
            return arr
        try:
            flat[i] = float(value)
        except OverflowError:
            where = tuple(int(j) for j in np.unravel_index(i, arr.shape))
            raise ValueError(
                f"{name}{list(where)} is {preview(value)}, too large for a "
                f"float; logits must be finite numbers or -inf"
            ) from None
    return out


def as_row(values: Any, what: str) -> list[float]:
    """Convert one model's logits to a list of Python floats, checked.

    ``values`` is a flat sequence of real numbers; the result holds one float
    per action.  ``what`` names the row in messages (e.g. ``"logits of model
    'a'"``).  Raises ``TypeError`` for anything that is not a real number
    (strings, ``None``, nested lists, complex) and ``ValueError`` for an empty
    row, NaN, ``+inf``, an integer too large for a float, or a row whose every
    entry is ``-inf``.

    Examples
    --------
    >>> as_row([1, 2.5, float("-inf")], "logits")
    [1.0, 2.5, -inf]
    >>> as_row([1, 10**400], "logits")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: logits hold an integer too large for a float at action 1 ...
    """
    try:
        # map(float, ...) alone would accept numeric strings ("1.5"); sum()
        # rejects strings, None and lists with a TypeError in one C loop.
        total = sum(values)
    except TypeError:
        raise TypeError(_not_flat(values, what)) from None
    except OverflowError:  # huge ints beside floats: map(float) tells which
        total = 0
    if isinstance(total, complex):
        raise TypeError(f"{what} must be real numbers; got {preview(values)}")
    try:
        row = list(map(float, values))
    except TypeError:
        raise TypeError(_not_flat(values, what)) from None
    except OverflowError:
        big = next(i for i, v in enumerate(values) if abs(v) > 1e308)
        raise ValueError(
            f"{what} hold an integer too large for a float at action {big} "
            f"({preview(values[big])}); logits must be finite numbers or -inf"
        ) from None
    if not row:
        raise ValueError(f"{what} are empty; need one logit per action")
    s = sum(row)
    # The float sum is NaN or +inf exactly when an entry is NaN or +inf, or
    # when finite entries overflow (checked entry by entry below).
    if s != s or s == math.inf:
        for i, value in enumerate(row):
            if value != value or value == math.inf:
                raise ValueError(
                    f"{what} contain {'NaN' if value != value else '+inf'} at "
                    f"action {i}; logits must be finite numbers or -inf (a "
                    f"forbidden action)"
                )
    elif s == -math.inf and max(row) == -math.inf:
        raise ValueError(
            f"{what} have all actions at -inf (every action forbidden); a model "
            f"must allow at least one action"
        )
    return row


def _not_flat(values: Any, what: str) -> str:
    return f"{what} must be a flat sequence of numbers; got {preview(values)}"


def check_rule(rule: object) -> str:
    """Return ``rule`` if it names a known rule, else raise ``ValueError``."""
    if not isinstance(rule, str) or rule not in RULES:
        raise ValueError(
            f"unknown rule {preview(rule)}; expected one of "
            f"{', '.join(map(repr, RULES))}"
        )
    return rule


def check_temperature(temperature: object) -> float:
    """Return ``temperature`` as a float if it is finite and > 0."""
    if isinstance(temperature, bool) or not isinstance(
        temperature, (int, float, np.integer, np.floating)
    ):
        raise TypeError(
            f"temperature must be a number, got {type(temperature).__name__} "
            f"{preview(temperature)}"
        )
    try:
        t = float(temperature)
    except OverflowError:
        t = math.inf
    if not (math.isfinite(t) and t > 0):
        raise ValueError(
            "temperature must be a finite number > 0, got "
            + (preview(temperature) if isinstance(temperature, int) else f"{t}")
        )
    return t


def check_seed(
    seed: object,
    *,
    name: str = "seed",
    expected: str = "an int or a numpy.random.SeedSequence",
) -> int | np.random.SeedSequence:
    """Return ``seed`` as an ``int`` >= 0 or a ``SeedSequence``.

    Raises ``TypeError`` for any other type (saying `name` must be
    `expected`) and ``ValueError`` for a negative ``int``.
    """
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        if seed < 0:
            raise ValueError(f"rng seed must be >= 0, got {seed}")
        return int(seed)
    raise TypeError(f"{name} must be {expected}, got {type(seed).__name__}")


def check_nonnegative(value: object, what: str) -> float:
    """Return ``value`` as a float if it is a finite number >= 0.

    ``what`` names the value in the message, e.g. ``"weight of model 'a'"``.
    """
    if isinstance(value, bool) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise TypeError(f"{what} must be a number, got {preview(value)}")
    try:
        v = float(value)
    except OverflowError:
        v = math.inf  # an integer too large for a float
    if not (math.isfinite(v) and v >= 0):
        raise ValueError(
            f"{what} must be finite and non-negative, got {preview(value)}"
        )
    return v


def check_values(
    x: np.ndarray,
    *,
    name: str = "logits",
    step_offset: tuple[int, ...] | None = None,
    model_names: Sequence[str] | None = None,
) -> None:
    """Raise ``ValueError`` naming the first invalid entry of ``x``.

    Invalid are NaN, ``+inf`` and a model whose logits are all ``-inf``; the
    message names the step (shifted by `step_offset`, for a block of a larger
    batch), the model and the action.  One fast pass (the sum) clears the
    usual input: it is finite, or ``-inf`` only where actions are masked;
    the slower diagnosis runs only when the sum says there is something to
    find.  ``model_names`` (one per model) replaces the model's position
    in the message, for input whose models the caller named (a mapping's
    ids).
    """
    with np.errstate(over="ignore", invalid="ignore"):
        total = x.sum()
    if total == total and total != np.inf and total != -np.inf:
        return  # every entry finite
    for what, mask in (("NaN", np.isnan(x)), ("+inf", np.isposinf(x))):
        if mask.any():
            where = np.argwhere(mask)[0]
            raise ValueError(
                f"{name} contain {what}: "
                f"{_locate(where, x.shape, step_offset, model_names=model_names)}; "
                f"logits must be finite or -inf (a forbidden action)"
            )
    dead = np.isneginf(x).all(axis=-1)
    if dead.any():
        where = np.argwhere(dead)[0]
        place = _locate(
            where, x.shape[:-1], step_offset, with_action=False, model_names=model_names
        )
        raise ValueError(
            f"{name}: {place} has all actions at -inf (every action forbidden); "
            f"a model must allow at least one action"
        )


def _locate(
    where: np.ndarray,
    shape: tuple[int, ...],
    step_offset: tuple[int, ...] | None,
    *,
    with_action: bool = True,
    model_names: Sequence[str] | None = None,
) -> str:
    """Describe an index into ``(*batch, n_models[, n_actions])`` in words."""
    idx = [int(i) for i in where]
    parts = []
    n_batch = len(shape) - (2 if with_action else 1)
    if n_batch:
        step = idx[:n_batch]
        if step_offset is not None:
            step = [i + o for i, o in zip(step, step_offset, strict=True)]
        parts.append(f"step {tuple(step)}")
    model = idx[n_batch]
    parts.append(f"model {model_names[model] if model_names else model}")
    if with_action:
        parts.append(f"action {idx[n_batch + 1]}")
    return ", ".join(parts)
