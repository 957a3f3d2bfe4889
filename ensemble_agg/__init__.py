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

Exceptions and warnings: :class:`UnknownModelError`,
:class:`SingleModelBatchWarning`; the result types :class:`Aggregation` and
:data:`RoundResult`.

Inside, one module per concern: ``_validation`` (convert and check, once),
``_math`` (the rules; one dispatch), ``_aggregator`` (rounds and tally, no
I/O), ``_wire`` (swergio frames and message checks), ``_protocol`` (the
aggregator component's message rules, no sockets), ``_component`` (its
socket loop and state file), :mod:`ensemble_agg.transport` (swergio clients
and a server without Nagle stalls), ``_routing``/``_server`` (agg-server),
and the commands in :mod:`ensemble_agg.cli` and
:mod:`ensemble_agg.server_cli`.  Importing this package loads none of the
swergio side (nor swergio, scipy or dask).
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
