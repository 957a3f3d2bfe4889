"""The stateful round collector: submissions in, rounds and a tally out.

Rules for this module: no I/O, no clocks, no logging.  Time enters only as the
``now`` argument, so deadlines are tested without sleeping; the caller (the
swergio shim, or a user's own loop) decides when a round has waited too long
and calls :meth:`Aggregator.close_round`.

Theory of operation
-------------------
The open round is a dict from model id to that model's logits (insertion
order = arrival order; a resubmission replaces the value and keeps the
place).  A submission is checked in full before it is stored, and storing is
one dict assignment, so a rejected submission leaves the round as it was.
Lists are stored as shallow copies (a Python list copy is cheaper than
writing a row of a preallocated array, which we measured); arrays as float64
copies.  When the last model arrives the round is aggregated (two actions
with the default rule go through the pure-Python fast path, everything else
through NumPy), each model's share is added to the tally, and the dict is
cleared.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterable, Mapping
from typing import Any

import numpy as np

from ._math import Aggregation, RNGLike, _aggregate_checked, _rng, _rows_fast
from ._validation import (
    check_nonnegative,
    check_rule,
    check_temperature,
    diagnose_logits,
    preview,
)

__all__ = ["Aggregator", "UnknownModelError"]


class UnknownModelError(ValueError):
    """A submission from a model id the aggregator will not track.

    Raised when ``model_ids`` was given and the id is not in it, or when the
    ``max_ids`` cap on distinct ids is reached.  ``reason`` is ``"unknown"``
    or ``"cap"``.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class Aggregator:
    """Collect one round of logits per step and keep each model's credit.

    The stateful part of the original swergio aggregator, with no I/O:
    feed it each model's logits with :meth:`submit`; once ``n_models``
    distinct models have submitted it aggregates the round, adds each model's
    contribution to the running tally and starts a new round.

    Parameters
    ----------
    n_models : int
        Distinct models that complete a round.
    rule : {"sum", "product", "majority", "rank"}, optional
        As in :func:`ensemble_agg.aggregate`.  Default ``"sum"``.
    weights : mapping or sequence, optional
        Per-model weights: a mapping from model id to a non-negative weight
        (ids not in it weigh 1), or a sequence aligned with `model_ids`.
        Default: every model weighs 1.
    temperature : float, optional
        As in :func:`ensemble_agg.aggregate`.  Default 1.
    rng : None, int or numpy.random.Generator, optional
        Randomness for sampled actions.  An ``int`` seeds one generator used
        for all rounds, so a run is reproducible as a whole.
    model_ids : collection of hashable, optional
        If given, only these ids may submit; others raise
        :class:`UnknownModelError`.
    max_ids : int, optional
        Cap on the distinct ids held at once (in the tally and the open
        round); a new id beyond it raises :class:`UnknownModelError` until
        :meth:`pop_contributions` clears the tally.  Default: no cap.

    Attributes
    ----------
    rounds : int
        Rounds aggregated so far, early-closed ones included.
    rounds_closed_early : int
        Rounds closed by :meth:`close_round` with models missing.

    Examples
    --------
    >>> from ensemble_agg import Aggregator
    >>> agg = Aggregator(2, rng=0)
    >>> agg.submit("a", [2.0, 0.0], deterministic=True) is None
    True
    >>> result = agg.submit("b", [0.0, 1.0], deterministic=True)
    >>> result.action
    0
    >>> {k: round(v, 4) for k, v in result.contribution.items()}
    {'a': 0.7661, 'b': 0.2339}
    >>> {k: round(v, 4) for k, v in agg.pop_contributions().items()}
    {'a': 0.7661, 'b': 0.2339}
    >>> agg.contributions
    {}
    """

    def __init__(
        self,
        n_models: int,
        *,
        rule: str = "sum",
        weights: Mapping[Hashable, float] | Iterable[float] | None = None,
        temperature: float = 1.0,
        rng: RNGLike = None,
        model_ids: Collection[Hashable] | None = None,
        max_ids: int | None = None,
    ) -> None:
        if isinstance(n_models, bool) or not isinstance(n_models, (int, np.integer)):
            raise TypeError(f"n_models must be an int, got {type(n_models).__name__}")
        if n_models < 1:
            raise ValueError(f"n_models must be >= 1, got {n_models}")
        self.n_models = int(n_models)
        self.rule = check_rule(rule)
        self.temperature = check_temperature(temperature)
        self._rng = _rng(rng)
        self._model_ids: frozenset[Hashable] | None = None
        if model_ids is not None:
            ids = list(model_ids)
            if isinstance(model_ids, (str, bytes)) or not ids:
                raise ValueError("model_ids must be a non-empty collection of ids")
            self._model_ids = frozenset(ids)
        if max_ids is not None and (isinstance(max_ids, bool) or max_ids < n_models):
            raise ValueError(f"max_ids must be >= n_models ({n_models}), got {max_ids}")
        self.max_ids = max_ids
        self._weights = self._weights_map(weights, model_ids)

        self._round: dict[Hashable, Any] = {}
        self._n_actions: int | None = None
        self._opened_at: float | None = None
        self._last_deterministic = False
        self._last_ids: tuple[Hashable, ...] = ()
        self._tally: dict[Hashable, float] = {}
        self.rounds = 0
        self.rounds_closed_early = 0

    @staticmethod
    def _weights_map(
        weights: Mapping[Hashable, float] | Iterable[float] | None,
        model_ids: Collection[Hashable] | None,
    ) -> dict[Hashable, float] | None:
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
        return {
            key: check_nonnegative(value, f"weight of model {key!r}")
            for key, value in pairs
        }

    # -- reading state -----------------------------------------------------

    @property
    def contributions(self) -> dict[Hashable, float]:
        """The running tally: model id -> summed contribution (a copy)."""
        return dict(self._tally)

    @property
    def pending(self) -> tuple[Hashable, ...]:
        """Ids that have submitted to the open round, in arrival order."""
        return tuple(self._round)

    @property
    def missing(self) -> tuple[Hashable, ...]:
        """Ids expected in the open round that have not submitted yet.

        Expected are `model_ids` if given, else the last completed round's
        models.
        """
        expected = self._model_ids if self._model_ids is not None else self._last_ids
        return tuple(sorted((i for i in expected if i not in self._round), key=repr))

    @property
    def round_opened_at(self) -> float | None:
        """The ``now`` of the open round's first submission, or ``None``."""
        return self._opened_at if self._round else None

    @property
    def n_actions(self) -> int | None:
        """Actions in the open round (set by its first submission), or ``None``."""
        return self._n_actions if self._round else None

    # -- changing state ----------------------------------------------------

    def submit(
        self,
        model_id: Hashable,
        logits: Any,
        deterministic: bool = False,
        *,
        now: float | None = None,
    ) -> Aggregation | None:
        """Store one model's logits for the open round.

        Parameters
        ----------
        model_id : hashable
            The submitting model.  A second submission in the same round
            replaces the first.
        logits : sequence of float
            One logit per action; ``-inf`` forbids an action.  Every model in
            a round must send the same number.
        deterministic : bool, optional
            Used if this submission completes the round: take the argmax
            instead of sampling.
        now : float, optional
            The caller's clock; recorded as :attr:`round_opened_at` when this
            submission opens a round.

        Returns
        -------
        Aggregation or None
            ``None`` while the round is incomplete; when it completes, the
            result with `contribution` as a ``dict`` from model id to float.

        Raises
        ------
        TypeError, ValueError
            If the logits are not a flat sequence of numbers, have the wrong
            length, hold NaN or ``+inf``, or are all ``-inf``;
            :class:`UnknownModelError` for an id that is not accepted.  The
            round and the tally are left exactly as they were.
        """
        replacing = model_id in self._round
        if not replacing:
            self._check_new_id(model_id)
        row = self._check_logits(model_id, logits, replacing=replacing)
        if not self._round:
            self._opened_at = now
        self._round[model_id] = row
        self._n_actions = len(row)
        if len(self._round) < self.n_models:
            self._last_deterministic = bool(deterministic)
            return None
        # Only a new id can complete a round: a resubmission keeps the count.
        assert not replacing
        try:
            result = self._finish(bool(deterministic))
        except ValueError:
            del self._round[model_id]  # the round is as it was before this call
            raise
        self._last_deterministic = bool(deterministic)
        return result

    def close_round(self, deterministic: bool | None = None) -> Aggregation | None:
        """Aggregate the open round now, with the models present.

        For a straggler deadline.  Returns ``None`` if nobody has submitted.
        `deterministic` defaults to the value of the latest submission.
        """
        if not self._round:
            return None
        if deterministic is None:
            deterministic = self._last_deterministic
        early = len(self._round) < self.n_models
        result = self._finish(bool(deterministic))
        if early:
            self.rounds_closed_early += 1
        return result

    def discard_round(self) -> tuple[Hashable, ...]:
        """Drop the open round's submissions; return the ids that were in it."""
        ids = tuple(self._round)
        self._round.clear()
        return ids

    def pop_contributions(self) -> dict[Hashable, float]:
        """Return the tally and clear it (the original's ``CMD: GET``).

        Examples
        --------
        >>> from ensemble_agg import Aggregator
        >>> agg = Aggregator(1)
        >>> _ = agg.submit("solo", [0.0, 0.0], deterministic=True)
        >>> agg.pop_contributions(), agg.pop_contributions()
        ({'solo': 1.0}, {})
        """
        tally, self._tally = self._tally, {}
        return tally

    def add_contributions(self, tally: Mapping[Any, float]) -> None:
        """Add a saved tally to the running one (e.g. restored from disk).

        Raises ``TypeError``/``ValueError`` for a value that is not a finite,
        non-negative number; nothing is added in that case.
        """
        clean = {
            key: check_nonnegative(value, f"contribution of {key!r}")
            for key, value in tally.items()
        }
        for key, v in clean.items():
            self._tally[key] = self._tally.get(key, 0.0) + v

    # -- internals ---------------------------------------------------------

    def _check_new_id(self, model_id: Hashable) -> None:
        try:
            hash(model_id)
        except TypeError:
            raise TypeError(
                f"model_id must be hashable, got {type(model_id).__name__}"
            ) from None
        if self._model_ids is not None:
            if model_id not in self._model_ids:
                raise UnknownModelError(
                    f"model {model_id!r} is not one of the {len(self._model_ids)} "
                    f"known model ids",
                    "unknown",
                )
        elif self.max_ids is not None and model_id not in self._tally:
            tracked = len(self._tally) + sum(
                1 for i in self._round if i not in self._tally
            )
            if tracked >= self.max_ids:
                raise UnknownModelError(
                    f"model {model_id!r} is new and {tracked} distinct ids are "
                    f"already tracked (max_ids={self.max_ids}); it is dropped "
                    f"until the tally is popped",
                    "cap",
                )

    def _check_logits(self, model_id: Hashable, logits: Any, *, replacing: bool) -> Any:
        """Validate one model's logits; return the copy to store."""
        if type(logits) is list or type(logits) is tuple:
            n = len(logits)
            try:
                # Python's sum rejects strings, None and nested lists with a
                # TypeError, and is NaN or inf exactly when some entry is NaN
                # or infinite (or the finite sum overflows): one cheap pass.
                total = sum(logits)
            except TypeError:
                raise TypeError(
                    f"logits of model {model_id!r} must be a flat sequence of "
                    f"numbers; got {preview(logits)}"
                ) from None
            if isinstance(total, complex):
                raise TypeError(f"logits of model {model_id!r} must be real numbers")
            finite = total - total == 0
            row: Any = list(logits)
        else:
            arr = np.asarray(logits)
            if arr.dtype.kind not in "fiub":
                raise TypeError(
                    f"logits of model {model_id!r} must be numbers, got dtype "
                    f"{arr.dtype}"
                )
            if arr.ndim != 1:
                raise ValueError(
                    f"logits of model {model_id!r} must be one-dimensional "
                    f"(one logit per action); got shape {arr.shape}"
                )
            n = arr.shape[0]
            finite = False
            row = arr.astype(np.float64)  # a copy, so later changes do not leak in
        if n == 0:
            raise ValueError(
                f"logits of model {model_id!r} are empty; need one per action"
            )
        expected = self._n_actions if self._round else None
        if replacing and len(self._round) == 1:
            expected = None  # the only submission may change the round's width
        if expected is not None and n != expected:
            raise ValueError(
                f"model {model_id!r} sent {n} logits; this round has {expected} "
                f"actions (set by its first submission)"
            )
        if not finite:
            diagnose_logits(np.asarray(row, dtype=np.float64)[None], [model_id])
        return row

    def _finish(self, deterministic: bool) -> Aggregation:
        ids = list(self._round)
        w = None
        if self._weights is not None:
            w = np.array([self._weights.get(i, 1.0) for i in ids])
            if not w.any():
                raise ValueError(
                    f"every model in this round has weight 0 ({ids!r}); at least "
                    f"one must count"
                )
        rows = list(self._round.values())
        result = _rows_fast(
            rows, w, self.rule, self.temperature, deterministic, self._rng
        )
        if result is None:
            x = np.array(rows, dtype=np.float64)
            result = _aggregate_checked(
                x, w, self.rule, self.temperature, deterministic, self._rng, ids
            )
        tally = self._tally
        shares = dict(zip(ids, result.contribution.tolist(), strict=True))
        for model_id, share in shares.items():
            tally[model_id] = tally.get(model_id, 0.0) + share
        self._last_ids = tuple(ids)
        self._round.clear()
        self.rounds += 1
        return Aggregation(result.action, shares, result.probs)
