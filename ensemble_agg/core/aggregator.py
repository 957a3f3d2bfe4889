"""The stateful round collector: submissions in, rounds and a tally out.

Rules for this module: no I/O, no clocks, no logging.  Time enters only as the
``now`` argument, so deadlines are tested without sleeping; the caller
(agg-client's ``protocol.component``, or a user's own loop) decides when a
round has waited too long and calls :meth:`Aggregator.expire` or
:meth:`Aggregator.close_round`.

Theory of operation
-------------------
The open round is a dict from model id to that model's logits, a new list of
Python floats made by ``checks.as_row`` (insertion order = arrival order; a
resubmission replaces the value and keeps the place).  Whatever the caller
passed (a list, a tuple, an array) is converted and checked in full before it
is stored, and storing is one dict assignment, so a rejected submission
leaves the round as it was and later changes to the caller's object cannot
leak in.  (A list per row is cheaper than writing a row of a preallocated
array, which we measured.)  When the last model arrives the round's rows go
to ``aggregation.aggregate_checked`` (two actions with the default rule and
no weights through the pure-Python fast path, everything else through
NumPy), each model's share is added to the tally, and the dict is cleared.
The options are checked once, when the aggregator is built; the weights are
kept by model id and made into an array for each round's ids.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np

from ..errors import IdRejection, UnknownModelError
from ..util.text import label, preview
from .aggregation import RoundResult, aggregate_checked
from .checks import as_row, check_nonnegative
from .options import RNGLike, as_rng, check_options, check_weight_map

__all__ = ["Aggregator", "Expiry"]


class Expiry(NamedTuple):
    """What :meth:`Aggregator.expire` did with a round that waited too long.

    Attributes
    ----------
    result : RoundResult or None
        The round's result, or ``None`` if it was discarded.
    present : tuple
        Ids that had submitted, in arrival order.
    missing : tuple
        Ids expected but absent (see :attr:`Aggregator.missing`).
    error : str or None
        Why the round could not be aggregated, if it was discarded.
    """

    result: RoundResult | None
    present: tuple[Hashable, ...]
    missing: tuple[Hashable, ...]
    error: str | None


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
    rng : None, int, numpy.random.SeedSequence or numpy.random.Generator, optional
        Randomness for sampled actions.  A seed makes one generator used for
        all rounds, so a run is reproducible as a whole.
    model_ids : collection of hashable, optional
        If given, only these ids may submit; others raise
        :class:`UnknownModelError`.
    max_ids : int, optional
        Cap on the distinct ids held at once (in the tally and the open
        round); a new id beyond it raises :class:`UnknownModelError` until
        :meth:`pop_contributions` clears the tally.  Default: no cap.
    n_actions : int, optional
        If given, every submission must have exactly this many logits;
        others raise ``ValueError``.  Without it the first submission of a
        round sets the round's width, so one bad first submission can make
        the rest of the round fail.  Default: any width.

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
        weights: Mapping[Any, float] | Iterable[float] | None = None,
        temperature: float = 1.0,
        rng: RNGLike = None,
        model_ids: Collection[Hashable] | None = None,
        max_ids: int | None = None,
        n_actions: int | None = None,
    ) -> None:
        if isinstance(n_models, bool) or not isinstance(n_models, (int, np.integer)):
            raise TypeError(f"n_models must be an int, got {type(n_models).__name__}")
        if n_models < 1:
            raise ValueError(f"n_models must be >= 1, got {n_models}")
        self.n_models = int(n_models)
        # Weights are by model id here (see check_weight_map), not by position.
        options = check_options(rule, temperature)
        self.rule = options.rule
        self.temperature = options.temperature
        self._rng = as_rng(rng, by_step=False)
        self._model_ids: frozenset[Hashable] | None = None
        if model_ids is not None:
            ids = list(model_ids)
            if isinstance(model_ids, (str, bytes)) or not ids:
                raise ValueError("model_ids must be a non-empty collection of ids")
            self._model_ids = frozenset(ids)
        if max_ids is not None and (isinstance(max_ids, bool) or max_ids < n_models):
            raise ValueError(f"max_ids must be >= n_models ({n_models}), got {max_ids}")
        self.max_ids = max_ids
        if n_actions is not None and (
            isinstance(n_actions, bool)
            or not isinstance(n_actions, (int, np.integer))
            or n_actions < 1
        ):
            raise ValueError(f"n_actions must be an int >= 1, got {n_actions!r}")
        self._n_actions_fixed = None if n_actions is None else int(n_actions)
        self._weights = check_weight_map(weights, model_ids)

        self._round: dict[Hashable, Any] = {}
        self._n_actions: int | None = None
        self._opened_at: float | None = None
        self._last_deterministic = False
        self._last_ids: tuple[Hashable, ...] = ()
        self._tally: dict[Hashable, float] = {}
        self.rounds = 0
        self.rounds_closed_early = 0

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
    ) -> RoundResult | None:
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
        RoundResult or None
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
        replacing = self._replacing(model_id)
        return self._store(
            model_id, self._as_row(model_id, logits), deterministic, now, replacing
        )

    def submit_row(
        self,
        model_id: Hashable,
        row: list[float],
        deterministic: bool = False,
        now: float | None = None,
    ) -> RoundResult | None:
        """:meth:`submit` for a row that ``core.checks.as_row`` made.

        For the wire edge (``protocol.component``), which converts and checks
        a message's ``LOGITS`` once with that same function: the row is
        trusted, only the id and the width are checked.  Not part of the
        public interface.
        """
        return self._store(model_id, row, deterministic, now, self._replacing(model_id))

    def _replacing(self, model_id: Hashable) -> bool:
        """True if ``model_id`` already submitted this round; else check it may join."""
        try:
            replacing = model_id in self._round
        except TypeError:  # a list or a dict: say so, not "unhashable type"
            raise TypeError(_unhashable(model_id)) from None
        if not replacing:
            self._check_new_id(model_id)
        return replacing

    def _store(
        self,
        model_id: Hashable,
        row: list[float],
        deterministic: bool,
        now: float | None,
        replacing: bool,
    ) -> RoundResult | None:
        self._check_width(model_id, len(row), replacing=replacing)
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

    def close_round(self, deterministic: bool | None = None) -> RoundResult | None:
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

    def expire(self, now: float, timeout: float) -> Expiry | None:
        """Close the open round if it has waited `timeout` or longer at `now`.

        The straggler deadline, decided here so that it can be tested with a
        fake clock: the round's age is ``now`` minus the ``now`` given with
        its first submission (a round opened without ``now`` never expires).

        Returns
        -------
        Expiry or None
            ``None`` if no round is open or it is younger than `timeout`.
            Otherwise what happened: the round was aggregated with the models
            present (``result`` set), or it could not be (e.g. every model
            present has weight 0) and was discarded (``error`` set).

        Examples
        --------
        >>> from ensemble_agg import Aggregator
        >>> agg = Aggregator(3, model_ids=["a", "b", "c"])
        >>> agg.submit("a", [1.0, 0.0], deterministic=True, now=10.0)
        >>> agg.expire(now=10.4, timeout=0.5) is None
        True
        >>> expiry = agg.expire(now=10.5, timeout=0.5)
        >>> expiry.result.action, expiry.present, expiry.missing
        (0, ('a',), ('b', 'c'))
        """
        opened = self.round_opened_at
        if opened is None or now - opened < timeout:
            return None
        present, missing = self.pending, self.missing
        try:
            result = self.close_round()
        except ValueError as exc:
            self.discard_round()
            return Expiry(None, present, missing, str(exc))
        return Expiry(result, present, missing, None)

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
            raise TypeError(_unhashable(model_id)) from None
        if self._model_ids is not None:
            if model_id not in self._model_ids:
                raise UnknownModelError(
                    f"model {label(model_id)} is not one of the {len(self._model_ids)} "
                    f"known model ids",
                    IdRejection.UNLISTED,
                )
        elif self.max_ids is not None and model_id not in self._tally:
            tracked = len(self._tally) + sum(
                1 for i in self._round if i not in self._tally
            )
            if tracked >= self.max_ids:
                raise UnknownModelError(
                    f"model {label(model_id)} is new and {tracked} distinct ids are "
                    f"already tracked (max_ids={self.max_ids}); it is dropped "
                    f"until the tally is popped",
                    IdRejection.CAP,
                )

    def _as_row(self, model_id: Hashable, logits: Any) -> list[float]:
        """Convert and check one model's logits (a new list: no later leaks)."""
        what = f"logits of model {label(model_id)}"
        if isinstance(logits, (str, bytes)):
            raise TypeError(f"{what} must be numbers, got {type(logits).__name__}")
        if type(logits) is not list and type(logits) is not tuple:
            arr = np.asarray(logits)
            if arr.ndim != 1:
                raise ValueError(
                    f"{what} must be one-dimensional (one logit per action); got "
                    f"shape {arr.shape}"
                )
            logits = arr.tolist()
        return as_row(logits, what)

    def _check_width(self, model_id: Hashable, n: int, *, replacing: bool) -> None:
        if self._n_actions_fixed is not None and n != self._n_actions_fixed:
            raise ValueError(
                f"model {label(model_id)} sent {n} logits; this aggregator takes "
                f"{self._n_actions_fixed} actions (n_actions)"
            )
        expected = self._n_actions if self._round else None
        if replacing and len(self._round) == 1:
            expected = None  # the only submission may change the round's width
        if expected is not None and n != expected:
            raise ValueError(
                f"model {label(model_id)} sent {n} logits; this round has {expected} "
                f"actions (set by its first submission)"
            )

    def _finish(self, deterministic: bool) -> RoundResult:
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
        result = aggregate_checked(
            rows,
            w,
            self.rule,
            self.temperature,
            deterministic,
            None if deterministic else self._rng,
        )
        tally = self._tally
        shares = dict(zip(ids, result.contribution.tolist(), strict=True))
        for model_id, share in shares.items():
            tally[model_id] = tally.get(model_id, 0.0) + share
        self._last_ids = tuple(ids)
        self._round.clear()
        self.rounds += 1
        return RoundResult(result.action, shares, result.probs)


def _unhashable(model_id: object) -> str:
    return (
        f"model_id must be hashable (a str or an int, for example, or a tuple "
        f"of them); got {type(model_id).__name__} {preview(model_id)}"
    )
