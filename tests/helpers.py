"""Shared test helpers: the torch original, and an aggregator's whole state.

``torch_get_action`` is ``tests/reference/torch_baseline.py``'s ``get_action_detailed``:
the original component's helper, which the benchmarks time and the parity
tests compare against (that module says what it adds to the original).
"""

from __future__ import annotations

import copy

try:
    import torch  # noqa: F401

    HAVE_TORCH = True
except ImportError:  # parity tests skip without torch
    HAVE_TORCH = False

if HAVE_TORCH:
    from .reference.torch_baseline import get_action_detailed as torch_get_action
else:
    torch_get_action = None


def snapshot(agg):
    """Everything observable about an :class:`~ensemble_agg.Aggregator`'s state.

    Equal before and after a rejected submission if it left round, tally and
    random stream as they were.
    """
    return (
        agg.pending,
        agg.contributions,
        agg.round_opened_at,
        agg.n_actions,
        agg.rounds,
        copy.deepcopy(agg._rng.bit_generator.state),
        {k: list(v) for k, v in agg._round.items()},
    )
