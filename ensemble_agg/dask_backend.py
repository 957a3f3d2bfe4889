"""``aggregate`` on dask arrays: lazy, chunked, on any scheduler.

Rules for this module: it is imported only when :func:`ensemble_agg.aggregate`
is given a dask collection (``ensemble_agg.dispatch`` imports it then;
``import ensemble_agg`` never imports dask, and the core never imports this
module); it builds a task graph and computes nothing; every chunk goes
through the same NumPy code as an in-memory batch (``aggregate_checked``),
after the same option checks (``core.options``).

Theory of operation
-------------------
The batch axes keep the caller's chunks and the model and action axes become
one chunk each, so every block is a complete batch of steps.  One task per
block runs the NumPy aggregation and returns ``(action, contribution,
probs)``; three cheap tasks per block pick the fields apart, so computing all
three fields together runs the aggregation once.

Each task learns where its block sits in the whole batch (``block_info``).
That position does two jobs: sampling draws each step's uniform from its
global index (``streams``), so the actions do not depend on the chunking or
the machine; and an error raised for invalid logits names the global step,
not the step inside the block.

Cheap checks (rule, temperature, weights, seed, dtype, shape, in the order
the NumPy path runs them) run when the graph is built; NaN, ``+inf``, dead
models and empty supports can only be found in the data, so they raise when
the result is computed.
"""

from __future__ import annotations

import math
import operator
import re
from typing import Any, cast

import dask.array as da
import numpy as np

from .core.aggregation import Aggregation, aggregate_checked
from .core.checks import FloatArray, as_logits, check_values
from .core.options import as_rng, check_options
from .core.streams import BlockUniforms, Key, StepUniforms, UniformSource

__all__ = ["aggregate_dask"]

# The step tuple that core.checks and core.aggregation put in their messages: "step (3,)".
_STEP = re.compile(r"step \((\d+(?:, \d+)*),?\)")


def aggregate_dask(
    logits: Any,
    *,
    deterministic: bool,
    rng: Any,
    weights: Any,
    rule: str,
    temperature: float,
) -> Aggregation:
    """:func:`ensemble_agg.aggregate` for a dask collection: see its docstring."""
    x = _as_dask_array(logits)
    if any(math.isnan(n) for n in x.shape):
        raise ValueError(
            f"logits has unknown chunk sizes (shape {x.shape}); the step indices "
            f"must be known: call logits.compute_chunk_sizes() first"
        )
    # The same checks in the same order as for NumPy input, so the same
    # messages: the options, then dtype and shape on data-free stand-ins.
    options = check_options(rule, temperature, weights)
    key = None if deterministic else _key(rng)
    as_logits(np.zeros((1, 1), dtype=x.dtype))  # non-numeric or complex
    dtype = np.dtype(np.float32 if x.dtype == np.float32 else np.float64)
    as_logits(np.broadcast_to(np.zeros((), dtype), x.shape))  # ndim, empty axes
    n_models, n_actions = x.shape[-2:]
    w = options.weights_for(n_models, dtype)

    nb = x.ndim - 2
    if x.dtype != dtype:
        x = x.astype(dtype)
    if x.numblocks[nb:] != (1, 1):
        # Every step needs all its models and actions in one block.
        x = x.rechunk({nb: -1, nb + 1: -1})
    batch_chunks = x.chunks[:nb]
    fields = da.map_blocks(
        _aggregate_block,
        x,
        key=key,
        w=w,
        rule=options.rule,
        t=options.temperature,
        deterministic=bool(deterministic),
        batch_shape=x.shape[:nb],
        drop_axis=[nb, nb + 1],
        chunks=batch_chunks,
        dtype=object,
        meta=np.empty((0,) * nb, dtype=object),
        token="ensemble-agg-" + options.rule,
    )
    action = _field(fields, 0, batch_chunks, np.dtype(np.intp))
    contribution = _field(fields, 1, (*batch_chunks, (n_models,)), dtype)
    probs = _field(fields, 2, (*batch_chunks, (n_actions,)), dtype)
    return Aggregation(action, contribution, cast(Any, probs))


def _field(
    fields: da.Array,
    index: int,
    chunks: tuple[tuple[int, ...], ...],
    dtype: np.dtype[Any],
) -> da.Array:
    """Field ``index`` of the ``(action, contribution, probs)`` blocks of ``fields``."""
    extra = len(chunks) - fields.ndim  # contribution and probs add the last axis
    return da.map_blocks(
        operator.itemgetter(index),
        fields,
        new_axis=list(range(fields.ndim, fields.ndim + extra)),
        chunks=chunks,
        dtype=dtype,
        meta=np.empty((0,) * len(chunks), dtype=dtype),
    )


def _as_dask_array(logits: Any) -> da.Array:
    if isinstance(logits, da.Array):
        return logits
    data = getattr(logits, "data", None)  # an xarray.DataArray backed by dask
    if isinstance(data, da.Array):
        return data
    raise TypeError(
        f"logits is a dask collection of type {type(logits).__name__}, not a dask "
        f"array; pass a dask.array.Array of shape (*batch, n_models, n_actions)"
    )


def _key(rng: Any) -> Key:
    """The Philox key sampling uses; the same rng types as for NumPy input."""
    if rng is None:
        rng = np.random.SeedSequence()
    elif isinstance(rng, np.random.Generator):
        # Chunks may run in other processes, so a Generator cannot be shared;
        # one draw from it seeds the step-indexed scheme instead.
        rng = int(rng.integers(2**63))
    source = as_rng(rng, by_step=True)  # raises for the wrong types, as for NumPy
    assert isinstance(source, StepUniforms)
    return source.key


def _aggregate_block(
    x: FloatArray,
    *,
    key: Key | None,
    w: FloatArray | None,
    rule: str,
    t: float,
    deterministic: bool,
    batch_shape: tuple[int, ...],
    block_info: dict[Any, Any] | None = None,
) -> tuple[Any, FloatArray, FloatArray]:
    """Aggregate one block of complete steps; its position comes from ``block_info``."""
    assert block_info is not None
    location = [
        tuple(loc) for loc in block_info[0]["array-location"][: len(batch_shape)]
    ]
    if x.size == 0:  # an empty chunk, as slicing can leave: nothing to check
        empty = np.empty(x.shape[:-1], dtype=x.dtype)
        return (
            empty[..., 0].astype(np.intp),
            empty,
            np.empty(x.shape[:-2] + x.shape[-1:], x.dtype),
        )
    source: UniformSource | None = None
    if key is not None:
        source = (
            BlockUniforms(key, batch_shape, location)
            if batch_shape
            else StepUniforms(key)
        )
    offset = tuple(start for start, _ in location)
    check_values(x, step_offset=offset)  # errors name the step in the whole batch
    try:
        result = aggregate_checked(x, w, rule, t, deterministic, source)
    except ValueError as exc:  # an empty support: name the global step
        raise ValueError(_globalise(str(exc), list(offset))) from None
    return np.asarray(result.action, dtype=np.intp), result.contribution, result.probs


def _globalise(message: str, offsets: list[int]) -> str:
    """Rewrite the block-local step index in ``message`` as the global one."""
    if not offsets:
        return message

    def shift(match: re.Match[str]) -> str:
        local = [int(i) for i in match.group(1).split(", ")]
        return f"step {tuple(i + o for i, o in zip(local, offsets, strict=True))}"

    return _STEP.sub(shift, message, count=1)
