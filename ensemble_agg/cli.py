"""The ``agg-client`` command line."""

from __future__ import annotations

import argparse

from . import __version__


def main(argv: list[str] | None = None) -> int:
    """Run ``agg-client``; return the exit status."""
    parser = argparse.ArgumentParser(prog="agg-client")
    parser.add_argument("--version", action="version", version=__version__)
    parser.parse_args(argv)
    parser.error("the swergio component is not available yet")
    return 2
