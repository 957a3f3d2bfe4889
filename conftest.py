"""pytest configuration shared by the test suite and the doctests of the package."""

import importlib.util

# --doctest-modules imports every module of the package; the dask one needs
# the optional extra (and is covered by tests/test_dask_backend.py when it is there).
collect_ignore = (
    [] if importlib.util.find_spec("dask") else ["ensemble_agg/dask_backend.py"]
)
# The torch reference is code the tests run (a script, and a module that needs
# torch), not tests or doctests of its own.
collect_ignore_glob = ["tests/reference/*.py"]
