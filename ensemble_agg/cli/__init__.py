"""The commands: option, environment, signal and logging helpers, and the two mains.

- ``settings``: agg-client's options as one dataclass (the parser, the
  ``AGG_`` variables and the docs' reference are built from it).
- ``agg_client``: ``agg-client`` (``main``); ``python -m ensemble_agg`` runs it.
- ``agg_server``: ``agg-server`` (``main``); also ``python -m ensemble_agg.server_cli``.

Nothing below this package imports it, except ``settings`` that the
component loop is configured with.
"""
