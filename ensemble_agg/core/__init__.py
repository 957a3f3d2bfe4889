"""The NumPy core: checks, the ensemble rules, per-step random streams, rounds.

Arrays in, arrays out.  Nothing here imports sockets, threads, swergio,
the dask backend or sets up logging; the layers above (``protocol``,
``transport``, ``cli``, ``dask_backend``) import it, never the reverse.

- ``checks``: convert and check input once (logits, rows, scalars, seeds).
- ``streams``: uniforms addressed by global step index (chunking-exact sampling).
- ``options``: ``Options`` (rule, temperature, weights) and the ``rng``,
  checked once for every entry point.
- ``two_actions``: the fast paths of the default rule for two actions.
- ``aggregation``: ``aggregate_numpy`` (the NumPy side of the public
  ``ensemble_agg.aggregate``), ``aggregate_checked`` (the one place that
  chooses a code path), ``softmax``, ``Aggregation``.
- ``aggregator``: ``Aggregator``, the round collector and tally, no I/O.
"""
