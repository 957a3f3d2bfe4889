"""The NumPy core: checks, the ensemble rules, per-step random streams, rounds.

Arrays in, arrays out.  Nothing here imports sockets, threads, swergio,
the dask backend or sets up logging; the layers above (``protocol``,
``transport``, ``cli``, ``dask_backend``) import it, never the reverse.

- ``checks``: convert and check input once (logits, rows, options).
- ``streams``: uniforms addressed by global step index (chunking-exact sampling).
- ``two_actions``: the fast path of the default rule for two actions.
- ``aggregation``: ``aggregate``, ``softmax``, ``Aggregation``; one dispatch.
- ``aggregator``: ``Aggregator``, the round collector and tally, no I/O.
"""
