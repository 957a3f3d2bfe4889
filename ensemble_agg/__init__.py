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

The package's tree is its architecture; each layer imports only those above
it in this list, never the reverse:

- ``util``: message text and rate limits, no dependencies.
- ``core``: NumPy only: checks, the rules, per-step random streams,
  :func:`aggregate`, :class:`Aggregator`.  No sockets, threads or dask.
- ``dask_backend``: :func:`aggregate` on dask arrays, on top of the core.
- ``protocol``: swergio without sockets: framing, the message-type table,
  the aggregator's message checks and rules, agg-server's router.
- ``transport``: the I/O loops: the swergio client
  (:mod:`ensemble_agg.transport`), agg-client's component loop, agg-server,
  the state file.
- ``cli`` and ``demo``: the two commands and the demonstration.

Importing this package loads none of the swergio side (nor swergio, scipy or
dask).
"""

from .core.aggregation import (
    Aggregation,
    RoundResult,
    SingleModelBatchWarning,
    aggregate,
    softmax,
)
from .core.aggregator import Aggregator, UnknownModelError

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
