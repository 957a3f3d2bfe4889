"""ensemble-agg: combine an ensemble's action logits into one action, without torch.

Functions
---------
aggregate
    Combine ``(n_models, n_actions)`` logits (or a batch of them) into one
    action, the ensemble distribution and each model's contribution.
softmax
    Numerically stable softmax along an axis.

Classes
-------
Aggregator
    Collect one round of logits per step from many models and keep a running
    contribution tally (the stateful part of the original swergio component).
Aggregation
    The named tuple ``(action, contribution, probs)`` both return.
UnknownModelError
    A submission from a model id the :class:`Aggregator` will not track.

The swergio component lives in :mod:`ensemble_agg.swergio_shim` and the
``agg-client`` command in :mod:`ensemble_agg.cli`; importing this package
loads neither (nor swergio).
"""

from ._aggregator import Aggregator, UnknownModelError
from ._math import (
    Aggregation,
    RoundResult,
    SingleModelBatchWarning,
    aggregate,
    softmax,
)

__version__ = "0.1.0"

__all__ = [
    "Aggregation",
    "Aggregator",
    "RoundResult",
    "SingleModelBatchWarning",
    "UnknownModelError",
    "__version__",
    "aggregate",
    "softmax",
]
