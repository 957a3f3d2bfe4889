#!/usr/bin/env python3
"""Replay billions of logits through ``aggregate`` on a local dask cluster.

    python benchmarks/dask_replay.py            # 2e9 float32 logits, a few minutes
    python benchmarks/dask_replay.py --smoke    # seconds; for CI, checks nothing

The replay (``--steps`` steps of 20 models x 20 actions, float32) is generated
lazily, chunk by chunk, inside the workers, and reduced to two numbers, so it
never exists in memory as a whole: 5e6 steps are 2e9 logits, 8 GB.  Each chunk
repeats a small random pool seeded by the chunk's index; the aggregation work
is the same as for distinct steps, and generating it costs little next to it.

Reported, all measured in this same run:

- the in-memory NumPy figure: ``aggregate`` on one chunk already in memory,
  one core, in M logits/s (per rule);
- the cluster figures: the whole replay through 1 and 2 worker processes (one
  thread each), in M logits/s, and the scaling from 1 to 2 workers;
- the peak resident memory of each worker process, against the data size;
- generating the replay alone through the cluster (the cost of the input).

Writes ``dask_replay.json`` to ``--out`` (default ``benchmarks/results``).
Other work on the machine slows every figure; the load averages before and
after are recorded with them.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
from distributed import Client, LocalCluster

from ensemble_agg import aggregate

HERE = Path(__file__).resolve().parent
RULES = ("sum", "product", "majority", "rank")
POOL = 1000  # distinct steps per chunk; the rest repeat them


def replay_block(block_info: dict[Any, Any] | None = None) -> np.ndarray:
    """One chunk of the lazy replay: a pool seeded by the chunk index, repeated."""
    assert block_info is not None
    info = block_info[None]
    n_steps, n_models, n_actions = info["chunk-shape"]
    rng = np.random.default_rng(info["chunk-location"][0])
    pool = rng.standard_normal(
        (min(POOL, n_steps), n_models, n_actions), dtype=np.float32
    )
    pool *= 3.0
    reps = -(-n_steps // len(pool))
    return np.tile(pool, (reps, 1, 1))[:n_steps]


def lazy_replay(steps: int, chunk: int, n_models: int, n_actions: int) -> da.Array:
    """``(steps, n_models, n_actions)`` float32 logits, generated when computed."""
    chunks = (chunk,) * (steps // chunk) + ((steps % chunk,) if steps % chunk else ())
    return da.map_blocks(
        replay_block,
        chunks=(chunks, (n_models,), (n_actions,)),
        dtype=np.float32,
        meta=np.empty((0, 0, 0), dtype=np.float32),
    )


def numpy_rate(
    chunk: int, n_models: int, n_actions: int, rule: str, repeats: int
) -> float:
    """M logits/s of ``aggregate`` on one chunk in memory, best of ``repeats``."""
    x = replay_block(
        {None: {"chunk-shape": (chunk, n_models, n_actions), "chunk-location": (0,)}}
    )
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        aggregate(x, rule=rule, rng=1)
        best = min(best, time.perf_counter() - start)
    return x.size / best / 1e6


def peak_rss_mib() -> float:
    """Peak resident memory of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def through_cluster(
    n_workers: int, replay: da.Array, rules: dict[str, da.Array]
) -> dict:
    """Time the replay (and the generation alone) on a fresh local cluster."""
    with (
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            worker_dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        # Import the library in every worker before timing anything.
        small = aggregate(replay[:10], rng=0).action.sum()
        client.compute(small).result()
        out: dict[str, Any] = {"workers": n_workers, "rules": {}}
        for rule, data in rules.items():
            result = aggregate(data, rule=rule, rng=2026)
            # Reduced to two numbers, so nothing but them comes back.
            totals = [result.action.sum(), result.probs[:, 0].sum()]
            start = time.perf_counter()
            action_sum, _ = client.gather(client.compute(totals))
            elapsed = time.perf_counter() - start
            out["rules"][rule] = {
                "logits": data.size,
                "seconds": elapsed,
                "M_logits_per_s": data.size / elapsed / 1e6,
                "action_sum": int(action_sum),
            }
        start = time.perf_counter()
        client.compute(replay.sum()).result()
        out["generate_only_M_logits_per_s"] = (
            replay.size / (time.perf_counter() - start) / 1e6
        )
        out["peak_rss_mib_per_worker"] = sorted(client.run(peak_rss_mib).values())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny replay, for CI")
    parser.add_argument("--steps", type=int, default=5_000_000, help="replay length")
    parser.add_argument("--chunk", type=int, default=25_000, help="steps per chunk")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    n_models, n_actions = 20, 20
    if args.smoke:
        args.steps, args.chunk = 20_000, 5_000
    replay = lazy_replay(args.steps, args.chunk, n_models, n_actions)
    # The default rule over the whole replay; the slower rules over a tenth.
    tenth = replay[: max(args.chunk, args.steps // 10)]
    rules = {"sum": replay} | {rule: tenth for rule in RULES[1:]}
    load_before = os.getloadavg()
    in_memory = {
        rule: numpy_rate(args.chunk, n_models, n_actions, rule, 1 if args.smoke else 3)
        for rule in RULES
    }
    runs = [through_cluster(n, replay, rules) for n in (1, 2)]
    load_after = os.getloadavg()

    results = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "dask": dask.__version__,
            "cpus": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": load_after,
        },
        "smoke": args.smoke,
        "shape": list(replay.shape),
        "chunk_steps": args.chunk,
        "data_mib": replay.nbytes / 2**20,
        "numpy_in_memory_M_logits_per_s": in_memory,
        "cluster": runs,
        "scaling_1_to_2_workers": {
            rule: runs[1]["rules"][rule]["M_logits_per_s"]
            / runs[0]["rules"][rule]["M_logits_per_s"]
            for rule in RULES
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dask_replay.json").write_text(json.dumps(results, indent=2) + "\n")

    print(
        f"replay {replay.shape} float32 = {replay.size / 1e9:.2f}e9 logits, "
        f"{results['data_mib']:.0f} MiB"
    )
    print(
        f"{'rule':<9}{'NumPy 1 core':>14}{'1 worker':>11}{'2 workers':>11}"
        f"{'scaling':>9}  M logits/s"
    )
    for rule in RULES:
        one, two = (run["rules"][rule]["M_logits_per_s"] for run in runs)
        print(
            f"{rule:<9}{in_memory[rule]:>14.0f}{one:>11.0f}{two:>11.0f}{two / one:>9.2f}"
        )
    for run in runs:
        rss = ", ".join(f"{m:.0f}" for m in run["peak_rss_mib_per_worker"])
        print(
            f"{run['workers']} worker(s): peak RSS per worker {rss} MiB; "
            f"generating alone {run['generate_only_M_logits_per_s']:.0f} M logits/s"
        )
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    print(f"wrote {args.out / 'dask_replay.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
