"""Observing a running command: recorders, Prometheus metrics, an HTTP endpoint, a page.

A layer of its own on top of ``util`` and the standard library; the loops in
``transport`` feed it, and ``import ensemble_agg`` never imports it (nor
``prometheus_client``, which is loaded only when metrics are rendered).

- ``recorders``: :class:`ClientRecorder` and :class:`ServerRecorder`, sans-I/O
  counters fed with the caller's clock; each publishes a plain JSON-able
  snapshot by swapping one reference, so the HTTP thread reads it without
  locks.
- ``metrics``: the Prometheus text exposition of a snapshot, and
  :func:`require_http_extra` for option parsing.
- ``http``: :class:`HttpEndpoint`, one thread with one selectors loop that
  serves ``/metrics``, ``/healthz``, ``/status`` and ``/``, and
  :func:`parse_address` for ``--http [HOST:]PORT``.
- ``page``: the self-contained live page.
"""

from .http import HttpEndpoint, parse_address
from .metrics import MissingExtraError, require_http_extra
from .recorders import ClientRecorder, ServerRecorder

__all__ = [
    "ClientRecorder",
    "HttpEndpoint",
    "MissingExtraError",
    "ServerRecorder",
    "parse_address",
    "require_http_extra",
]
