"""The original torch component and its helper: the reference the tests and the
benchmarks hold ensemble-agg to (torch needed; ``pip install torch==2.13.0``)."""
