#!/usr/bin/env python3
"""Replay logged logits through all four ensemble rules with dask.

    python examples/replay_dask.py                         # threads on this machine
    python examples/replay_dask.py --steps 2000000         # a bigger log
    python examples/replay_dask.py --zarr                  # log stored as Zarr
    python examples/replay_dask.py --scheduler tcp://10.0.0.5:8786   # a cluster

It needs the dask extra, zarr included: ``pip install 'ensemble-agg[dask]'``.

It first writes a log the way an ensemble run might keep one: the logits of
20 models over 18 actions for every step, float32, in a ``.npy`` file (or a
Zarr store), plus the action that turned out best at each step (known only
afterwards).  Then it replays the log without loading it into memory: the
file is opened as a memory map (or with ``dask.array.from_zarr``), cut into
chunks of steps, and each rule's choices are computed chunk by chunk, on the
local threads or on the cluster at ``--scheduler``.  It prints what each rule
would have chosen at the first steps and how often each picked the best action.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import dask
import dask.array as da
import numpy as np

from ensemble_agg import aggregate

RULES = ("sum", "product", "majority", "rank")
N_MODELS, N_ACTIONS = 20, 18


def write_log(
    directory: Path, steps: int, as_zarr: bool
) -> tuple[da.Array, np.ndarray]:
    """Write a synthetic log; return it opened lazily, and the best actions.

    Each model sees the best action's value through its own noise, and a few
    models are much noisier than the rest, so the rules disagree.
    """
    rng = np.random.default_rng(0)
    best = rng.integers(N_ACTIONS, size=steps)
    noise = np.where(np.arange(N_MODELS) < 5, 6.0, 2.0).astype(np.float32)
    logits = np.lib.format.open_memmap(
        directory / "logits.npy",
        mode="w+",
        dtype=np.float32,
        shape=(steps, N_MODELS, N_ACTIONS),
    )
    for start in range(0, steps, 100_000):  # written in pieces, as a logger would
        stop = min(start + 100_000, steps)
        block = rng.standard_normal(
            (stop - start, N_MODELS, N_ACTIONS), dtype=np.float32
        )
        block *= noise[:, None]
        block[np.arange(stop - start), :, best[start:stop]] += 3.0
        logits[start:stop] = block
    logits.flush()
    chunks = (min(steps, 50_000), N_MODELS, N_ACTIONS)
    if as_zarr:
        path = str(directory / "logits.zarr")
        da.from_array(
            np.load(directory / "logits.npy", mmap_mode="r"), chunks=chunks
        ).to_zarr(path)
        return da.from_zarr(path), best
    return da.from_array(
        np.load(directory / "logits.npy", mmap_mode="r"), chunks=chunks
    ), best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200_000, help="steps in the log")
    parser.add_argument("--zarr", action="store_true", help="store the log as Zarr")
    parser.add_argument("--scheduler", help="address of a dask.distributed scheduler")
    args = parser.parse_args(argv)

    client = None
    if args.scheduler:
        from distributed import Client

        client = Client(args.scheduler)  # dask.compute then runs on the cluster
    with tempfile.TemporaryDirectory() as tmp:
        logits, best = write_log(Path(tmp), args.steps, args.zarr)
        print(f"log: {logits.shape} float32 in {logits.numblocks[0]} chunks of steps")
        # One graph for all rules; sampling with a seed gives the same actions
        # however the log is chunked and wherever the chunks are computed.
        greedy = [
            aggregate(logits, rule=rule, deterministic=True).action for rule in RULES
        ]
        sampled = [aggregate(logits, rule=rule, rng=2026).action for rule in RULES]
        hits = [(action == best).mean() for action in greedy + sampled]
        scores, heads = dask.compute(hits, [action[:8] for action in greedy])
    print(f"{'step':<10}" + "".join(f"{step:>4}" for step in range(8)))
    print(f"{'best':<10}" + "".join(f"{a:>4}" for a in best[:8]))
    for rule, head in zip(RULES, heads, strict=True):
        print(f"{rule:<10}" + "".join(f"{a:>4}" for a in head))
    print("\nhow often each rule picked the best action")
    print(f"{'rule':<10}{'argmax':>8}{'sampled':>9}")
    for k, rule in enumerate(RULES):
        print(f"{rule:<10}{scores[k]:>8.1%}{scores[k + len(RULES)]:>9.1%}")
    winner = RULES[int(np.argmax(scores[: len(RULES)]))]
    print(f"\nbest rule on this log (argmax): {winner}")
    if client is not None:
        client.close()


if __name__ == "__main__":
    main()
