"""swergio without sockets: bytes and messages in, decisions and bytes out.

Nothing here opens a socket, reads a clock or sets up logging: callers feed
bytes or decoded messages with the time, and act on what comes back, so
every rule is tested in-process.  Imports the core, never ``transport``.

- ``message_types``: swergio's ``TYPE`` strings, the one copy of its table.
- ``framing``: swergio's frames in a byte stream (``FrameDecoder``, ``encode_frame``).
- ``messages``: the aggregator's message checks (``parse_submission``, ...).
- ``routing``: swergio's server routing (``Router``), for agg-server.
- ``component``: the aggregator component's rules (``AggregatorProtocol``),
  its outbox for the reconnect (``Outbox``) included.
"""
