"""The I/O loops: sockets, clocks, files, on top of ``protocol`` and the core.

- ``client``: a swergio client without Nagle stalls that reads robustly
  (``TunedClient``, ``tune_client``, ``ConnectionLost``): public.
- ``component``: agg-client's socket loop around ``AggregatorProtocol``.
- ``server``: agg-server's selectors loop around ``Router`` (``AggServer``):
  the one server, for stock and tuned clients alike.
- ``state_file``: the contribution tally on disk.

``from ensemble_agg.transport import TunedClient, tune_client`` is the public
path of the client (importing it imports swergio), and
``from ensemble_agg.transport import AggServer`` that of the server.
"""

from .client import ConnectionLost, IOCounters, TunedClient, tune_client
from .server import AggServer

__all__ = ["AggServer", "ConnectionLost", "IOCounters", "TunedClient", "tune_client"]
