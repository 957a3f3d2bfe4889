"""The commands: the two mains and what they share.

- ``common``: exit codes, options read from the environment, signal handlers
  and logging set-up, used by both commands.
- ``agg_client``: ``agg-client`` (``main``); ``python -m ensemble_agg`` runs it.
- ``agg_server``: ``agg-server`` (``main``); also ``python -m ensemble_agg.server_cli``.

Each command imports ``common``, never the other command.  agg-client's
settings (``transport.settings``) are one layer down, since the component
loop is configured with them.
"""
