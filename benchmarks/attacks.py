"""One hostile peer against agg-server: the attacks of issue 17, measured.

The attacks themselves are ``tests/transport/attacks.py`` (the tests run
them at sizes CI affords and assert); this runs them at the sizes of the
attacks as reported and prints what each did.

Usage::

    python benchmarks/attacks.py                   # the reported sizes
    python benchmarks/attacks.py --smoke           # small sizes, seconds
    python benchmarks/attacks.py --source DIR      # agg-server from DIR (say,
                                                   # an older commit's tree)
    python benchmarks/attacks.py --only big_frames,log_flood
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.transport.attacks import (
    MB,
    Run,
    big_frames,
    idle_connections,
    log_flood,
    long_name,
    many_rooms,
    non_readers,
    parked,
)


def attacks(smoke: bool) -> dict[str, tuple[Callable[..., dict[str, Any]], dict, dict]]:
    """name -> (attack, its arguments, Run arguments), at the issue's sizes
    or (``smoke``) small ones."""
    k = 0.05 if smoke else 1.0
    return {
        "long_name": (long_name, {"name_bytes": int(4 * MB * k), "messages": 40}, {}),
        "long_name_joins": (
            long_name,
            {
                "name_bytes": int(4 * MB * k),
                "messages": 47,
                "readers": 5,
                "joins": True,
            },
            {},
        ),
        "big_frames": (big_frames, {"count": 2, "size": int(40 * MB * k)}, {}),
        "big_frames_together": (
            big_frames,
            {"count": 1, "size": int(32 * MB * k), "together": True, "connections": 3},
            {},
        ),
        "parked": (
            parked,
            {"connections": 10, "park": int(24 * MB * k), "announce": int(60 * MB * k)},
            {},
        ),
        "non_readers": (non_readers, {"clients": 6, "flood": int(80 * k) or 4}, {}),
        "many_rooms": (
            many_rooms,
            {"rooms": int(10_100 * k) if smoke else 10_100, "name_chars": 1000},
            {},
        ),
        "log_flood": (
            log_flood,
            {"mid_frame": int(1500 * k) or 50, "resets": int(400 * k) or 20},
            {},
        ),
        "idle": (
            idle_connections,
            {"connections": 1144 if not smoke else 300, "wait": 15.0},
            {"nofile": 1024 if not smoke else 256},
        ),
        "trickle": (
            idle_connections,
            {"connections": 1100 if not smoke else 300, "trickle": 2.0, "wait": 15.0},
            {"nofile": 1024 if not smoke else 256},
        ),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="small sizes, for CI")
    parser.add_argument("--source", help="run agg-server from this source tree")
    parser.add_argument("--only", help="comma-separated attack names")
    args = parser.parse_args(argv)
    table = attacks(args.smoke)
    names = args.only.split(",") if args.only else list(table)
    print(
        f"agg-server from {args.source or 'this checkout'}"
        f"{' (smoke sizes)' if args.smoke else ''}"
    )
    for name in names:
        attack, kwargs, run_kwargs = table[name]
        run = Run(source=args.source, **run_kwargs)
        t0 = time.monotonic()
        try:
            result = attack(run, **kwargs)
        except Exception as exc:  # a run that breaks is a figure too
            result = {**run.result, "error": f"{type(exc).__name__}: {exc}"}
        figures = " ".join(f"{k}={v}" for k, v in result.items())
        print(f"{name:<20} {figures}  ({time.monotonic() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
