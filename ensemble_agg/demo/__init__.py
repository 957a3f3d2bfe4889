"""The self-contained demonstration (``agg-client --demo``) and its environment.

``CartPole`` is the classic control task in NumPy (the demo's and the
tutorial's environment); ``run_demo`` runs agg-server, agg-client, ``models`` models (default 20),
an environment and an evolution component on 127.0.0.1.
"""

from .cartpole import CartPole

__all__ = ["CartPole", "run_demo"]


def __getattr__(name: str) -> object:
    # run_demo needs the swergio side; CartPole alone does not.
    if name == "run_demo":
        from .swarm import run_demo

        return run_demo
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
