"""Shared test helpers: the independent torch implementation of the original.

``torch_get_action`` is ``benchmarks/baseline.py``'s ``get_action_detailed``:
the original component's helper, which the benchmarks time and the parity
tests compare against (that module says what it adds to the original).
"""

from __future__ import annotations

try:
    import torch  # noqa: F401

    HAVE_TORCH = True
except ImportError:  # parity tests skip without torch
    HAVE_TORCH = False

if HAVE_TORCH:
    from benchmarks.baseline import get_action_detailed as torch_get_action
else:
    torch_get_action = None
