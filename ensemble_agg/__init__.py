"""ensemble-agg: combine an ensemble's action logits into one action, without torch.

Every public name of the library is here; nothing else needs a longer path
(the swergio client is :mod:`ensemble_agg.transport`, the demonstration
environment ``ensemble_agg.demo.CartPole``).

Functions
---------
aggregate
    Combine ``(n_models, n_actions)`` logits (or a batch of them, or a dask
    array) into one action, the ensemble distribution and each model's
    contribution.
softmax
    Numerically stable softmax along an axis.

Classes
-------
Aggregator
    Collect one round of logits per step from many models and keep a running
    contribution tally (the stateful part of the original swergio component).
Aggregation
    The named tuple ``(action, contribution, probs)`` both return.
RoundResult
    ``Aggregation[dict[Hashable, float]]``: a result with contributions by id.
Expiry
    What :meth:`Aggregator.expire` did with a round that waited too long.
IdRejection
    Why an :class:`Aggregator` refused a model id (``UnknownModelError.reason``).

Exceptions and warnings (all defined in :mod:`ensemble_agg.errors`)
--------------------------------------------------------------------
UnknownModelError
    A submission from a model id the :class:`Aggregator` will not track.
BadMessage
    A peer's swergio message that agg-client cannot use.
ConnectionLost
    The connection to the swergio server ended or its framing broke.
ServerUnreachable
    The swergio server could not be reached within the connect timeout.
StateFileError
    The contribution state file cannot be read or written.
SingleModelBatchWarning
    :func:`aggregate` got shape ``(n, 1, n_actions)``: ``n`` one-model steps.

Data
----
__version__
    The package version.

The package's tree is its architecture; each layer imports only those above
it in this list, never the reverse:

- ``errors`` and ``util``: the exceptions, message text, the rate limiter for
  log lines; no dependencies.
- ``core``: NumPy only: checks, options, the rules, per-step random streams,
  the NumPy :func:`aggregate`, :class:`Aggregator`.  No sockets, threads or
  dask.
- ``dask_backend``: :func:`aggregate` on dask arrays, on top of the core.
- ``dispatch``: the public :func:`aggregate`, which sends dask collections to
  ``dask_backend`` (imported on first use) and everything else to the core.
- ``protocol``: swergio without sockets: framing, the message-type table,
  the aggregator's message checks and rules, agg-server's router.
- ``observe``: what ``--http`` serves: sans-I/O recorders, Prometheus
  metrics, the HTTP endpoint on its own thread, the live page.
- ``transport``: the I/O loops: the swergio client
  (:mod:`ensemble_agg.transport`), agg-client's component loop, agg-server,
  the state file.
- ``observe``: beside ``transport``: ``--http``'s recorders (no I/O), metrics
  and the HTTP endpoint on its own thread, which reads published snapshots.
- ``demo``, then ``cli``: the demonstration and the two commands.

``tests/test_layers.py`` holds every import to this order.

Importing this package loads none of the swergio side (nor swergio, socket,
scipy or dask).
"""

from .core.aggregation import Aggregation, RoundResult, softmax
from .core.aggregator import Aggregator, Expiry
from .dispatch import aggregate
from .errors import (
    BadMessage,
    ConnectionLost,
    IdRejection,
    ServerUnreachable,
    SingleModelBatchWarning,
    StateFileError,
    UnknownModelError,
)

__version__ = "0.1.0"

__all__ = [
    "Aggregation",
    "Aggregator",
    "BadMessage",
    "ConnectionLost",
    "Expiry",
    "IdRejection",
    "RoundResult",
    "ServerUnreachable",
    "SingleModelBatchWarning",
    "StateFileError",
    "UnknownModelError",
    "__version__",
    "aggregate",
    "softmax",
]
