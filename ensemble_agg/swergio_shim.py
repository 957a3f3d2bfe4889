"""The former name of :mod:`ensemble_agg.transport`, kept for existing imports."""

from .transport import ConnectionLost, IOCounters, TunedClient, TunedServer, tune_client

__all__ = ["ConnectionLost", "IOCounters", "TunedClient", "TunedServer", "tune_client"]
