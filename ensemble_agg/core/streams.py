"""Random draws addressed by step index, so sampling does not depend on chunking.

Rules for this module: pure functions of ``(seed, step index)``; no hidden
state, no I/O.  :func:`ensemble_agg.aggregate` uses it whenever ``rng`` is an
``int`` seed or a :class:`numpy.random.SeedSequence`; a
:class:`numpy.random.Generator` (or ``None``) keeps drawing sequentially.

Theory of operation
-------------------
A sequential generator gives step ``k`` the ``k``-th draw only if every step
before it is drawn first, on the same machine, in order.  A counter-based
generator does not need that: Philox's output number ``k`` is a pure function
of its key and ``k``, and ``Philox.advance`` jumps to any position at once.
So a chunk of steps ``[start, start + n)`` is one generator positioned at
``start`` and ``n`` consecutive draws, whatever else is computed where.

The scheme (stable: changing it changes every seeded action, and
``tests/core/test_streams.py`` pins golden values):

1. ``key = SeedSequence(seed).generate_state(2, numpy.uint64)`` (a
   ``SeedSequence`` is used as given);
2. the stream is ``Philox(key=key)`` with counter 0, and ``o_k`` its ``k``-th
   64-bit output, counted from 0;
3. step ``k`` gets the uniform ``(o_k >> 11) * 2**-53`` in ``[0, 1)``, which is
   what ``Generator(Philox(key=key)).random()`` returns as its ``k``-th draw;
4. ``k`` is the step's position in the batch flattened in C order (row
   major): step ``(i, j)`` of a batch of shape ``(n, m)`` is ``k = i * m + j``.
   A single step (2-D logits) is step 0.

Philox produces four 64-bit outputs per counter increment, so positioning at
``start`` is ``advance(start // 4)`` followed by skipping ``start % 4`` draws.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from .checks import FloatArray, check_seed

__all__ = [
    "BlockUniforms",
    "StepUniforms",
    "UniformSource",
    "block_uniforms",
    "philox_key",
    "step_uniforms",
]

Seed = int | np.integer[Any] | np.random.SeedSequence
Key = tuple[int, int]

# Philox4x64 yields this many 64-bit outputs per counter increment.
_PER_COUNTER = 4

# A block whose steps are scattered over a range at most this many times its
# size is drawn as one run over the range (cheap) rather than run by run.
_SPAN_FACTOR = 4


@functools.lru_cache(maxsize=1024)
def _int_key(seed: int) -> Key:
    k0, k1 = np.random.SeedSequence(seed).generate_state(2, np.uint64)
    return int(k0), int(k1)


def philox_key(seed: Seed) -> Key:
    """Return the 128-bit Philox key of ``seed`` as two 64-bit integers.

    Raises ``ValueError`` for a negative seed and ``TypeError`` for anything
    other than an ``int`` or a ``SeedSequence``.
    """
    seed = check_seed(seed)
    if isinstance(seed, np.random.SeedSequence):
        k0, k1 = seed.generate_state(2, np.uint64)
        return int(k0), int(k1)
    return _int_key(seed)


def _run(key: Key, start: int, n: int) -> FloatArray:
    """The uniforms of steps ``[start, start + n)`` as one Philox run."""
    bits = np.random.Philox(key=np.array(key, dtype=np.uint64))
    bits.advance(start // _PER_COUNTER)
    skip = start % _PER_COUNTER
    return np.random.Generator(bits).random(skip + n)[skip:]


def step_uniforms(seed: Seed | Key, start: int, shape: Any) -> FloatArray:
    """Return the uniforms of steps ``start, start + 1, ...`` in an array of ``shape``.

    Parameters
    ----------
    seed : int, numpy.random.SeedSequence or (int, int)
        The seed (or a key from :func:`philox_key`).
    start : int
        Global index of the first step, ``>= 0``.
    shape : int or tuple of int
        Shape of the result; its ``prod(shape)`` entries are consecutive
        steps in C order.

    Returns
    -------
    numpy.ndarray
        float64 uniforms in ``[0, 1)``; entry ``k`` (flattened) belongs to step
        ``start + k`` and depends on nothing but the seed and that index.

    Examples
    --------
    >>> from ensemble_agg.core.streams import step_uniforms
    >>> u = step_uniforms(7, 0, 10)
    >>> bool((step_uniforms(7, 3, (2, 2)).ravel() == u[3:7]).all())
    True
    """
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    key = seed if isinstance(seed, tuple) else philox_key(seed)
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    return _run(key, int(start), math.prod(shape)).reshape(shape)


def block_uniforms(
    key: Key, batch_shape: tuple[int, ...], location: list[tuple[int, int]]
) -> FloatArray:
    """Return the uniforms of a rectangular block of a batch of steps.

    ``location`` gives the block's ``(start, stop)`` along each batch axis of
    the whole batch ``batch_shape``.  Its steps need not be contiguous in the
    flattened order (a block cut along a trailing axis is not); each
    contiguous run is drawn in one go, or the whole range at once when it is
    not much longer than the block.
    """
    shape = tuple(stop - start for start, stop in location)
    n = math.prod(shape)
    if n == 0:
        return np.empty(shape)
    first = int(np.ravel_multi_index([s for s, _ in location], batch_shape))
    last = int(np.ravel_multi_index([e - 1 for _, e in location], batch_shape))
    if last - first + 1 == n:  # one contiguous run
        return _run(key, first, n).reshape(shape)
    grids = np.ix_(*(np.arange(s, e) for s, e in location))
    flat = np.ravel_multi_index(grids, batch_shape) - first
    if last - first + 1 <= _SPAN_FACTOR * n:
        return _run(key, first, last - first + 1)[flat]
    # Runs along the trailing axes the block covers in full (or just the last).
    axis = len(shape) - 1
    while axis > 0 and shape[axis] == batch_shape[axis]:
        axis -= 1
    run = math.prod(shape[axis:])
    out = np.empty(n)
    for i, offset in enumerate(flat.reshape(-1, run)[:, 0]):
        out[i * run : (i + 1) * run] = _run(key, first + int(offset), run)
    return out.reshape(shape)


class UniformSource:
    """Base of the uniform sources that stand in for a ``Generator``.

    The sampling code calls ``rng.random()`` (one step) or
    ``rng.random(batch_shape)``; these sources answer with the uniforms of
    fixed step indices instead of the next draws of a stream, so calling
    twice returns the same numbers.
    """

    __slots__ = ()

    def random(self, size: Any = None) -> Any:
        """One ``float`` (``size=None``) or an array of ``size`` uniforms."""
        raise NotImplementedError


class StepUniforms(UniformSource):
    """The uniforms of steps ``0, 1, ...`` of ``seed``: a whole batch, or one step."""

    __slots__ = ("key",)

    def __init__(self, seed: Seed | Key) -> None:
        self.key = seed if isinstance(seed, tuple) else philox_key(seed)

    def random(self, size: Any = None) -> Any:
        if size is None:
            return _first_uniform(self.key)
        return step_uniforms(self.key, 0, size)


@functools.lru_cache(maxsize=1024)
def _first_uniform(key: Key) -> float:
    # A single step is step 0; caching it keeps one seeded step as cheap as
    # the Generator it replaces (building a Philox costs microseconds).
    return float(_run(key, 0, 1)[0])


class BlockUniforms(UniformSource):
    """The uniforms of one block of a larger batch (see :func:`block_uniforms`)."""

    __slots__ = ("uniforms",)

    def __init__(
        self, key: Key, batch_shape: tuple[int, ...], location: list[tuple[int, int]]
    ) -> None:
        self.uniforms = block_uniforms(key, batch_shape, location)

    def random(self, size: Any = None) -> Any:
        if size is None:
            return float(self.uniforms.reshape(-1)[0])
        assert tuple(np.atleast_1d(size)) == self.uniforms.shape, size
        return self.uniforms
