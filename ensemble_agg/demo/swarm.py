"""``agg-client --demo``: the whole loop on 127.0.0.1, with nothing else installed.

It starts, in this process: a swergio server (agg-server's, on a free
port), the real aggregator component (:class:`AggregatorComponent`, the same
code ``agg-client`` runs), ``models`` simulated models (default 20) (swergio clients with small
random linear policies), a CartPole environment and an evolution-like
component that asks for the contributions every few hundred rounds.  Then it
prints rounds/s (saying so when the 20 s limit stopped it before its rounds
were done), the CartPole episodes' mean length with why it is short, the
per-model contribution table and the action histogram.

The demo's output is its summary: the header comes first, a progress line
is drawn only when the output is a terminal, and the component's INFO and
DEBUG lines (its connection and its own stats line, whose rate also counts
the wait before the first round) are held back, so the one rate printed is
the environment's.  WARNING and above still reach the log.
"""

from __future__ import annotations

import contextlib
import logging
import select
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any, TextIO

import numpy as np

from ..protocol.message_types import DATA_CUSTOM
from ..transport.client import TunedClient
from ..transport.component import AggregatorComponent
from ..transport.server import AggServer
from ..transport.settings import Settings
from .cartpole import CartPole

__all__ = ["run_demo"]

logger = logging.getLogger(__name__)

N_MODELS = 20
MAX_MODELS = 200  # one thread serves every model; more would not fit the time budget
ROUNDS = 3000
GET_EVERY = 500
TIME_BUDGET = 20.0  # seconds of rounds; the demo exits by itself well inside 30 s
BAR = 30  # characters of the best model's bar
#: Mean CartPole episode length under a policy that pushes at random (measured
#: over 2,000 episodes of this demo's CartPole).
RANDOM_EPISODE = 22.0
PROGRESS_EVERY = 0.25  # seconds between redraws of the progress line


def _msg(room: str, **fields: Any) -> dict[str, Any]:
    return {"ID": uuid.uuid4().hex, "TYPE": DATA_CUSTOM, "TO_ROOM": room, **fields}


def _run_models(
    host: str,
    port: int,
    stop: threading.Event,
    rng: np.random.Generator,
    n_models: int,
) -> None:
    """``n_models`` models on one thread: answer each observation with LOGITS."""
    models = []
    for i in range(n_models):
        client = TunedClient(f"model-{i:02d}", host, port)
        client.join_room("observation")
        # Observations are small (|x| < 0.2 mostly); sharper policies (bigger
        # weights) are more confident and so claim more of the credit.
        scale = rng.uniform(1.0, 60.0)
        weights = rng.normal(scale=scale, size=(2, 4))
        models.append((client, f"model-{i:02d}", weights))
    by_socket = {m[0].client: m for m in models}
    try:
        while not stop.is_set():
            ready, _, _ = select.select(list(by_socket), [], [], 0.1)
            for sock in ready:
                client, model_id, weights = by_socket[sock]
                for frame in client.poll(0):
                    msg = frame.message
                    if not msg or msg.get("TO_ROOM") != "observation":
                        continue
                    logits = (weights @ np.asarray(msg["OBS"])).tolist()
                    # Deterministic (greedy) rounds: under sampling from the summed
                    # distribution every model's expected share is exactly 1/n,
                    # so only greedy rounds show which models lead the ensemble.
                    client.send(
                        _msg(
                            "logits",
                            LOGITS=logits,
                            COMPONENT_ID=model_id,
                            DETERMINISTIC=True,
                        )
                    )
    finally:
        for client, _, _ in models:
            client.close()


def _request(
    client: TunedClient,
    message: dict[str, Any],
    room: str,
    key: str,
    timeout: float,
    *,
    match_root: bool = False,
) -> dict[str, Any]:
    """Send ``message`` and return the first reply in ``room`` that has ``key``.

    The message is sent again every second without a reply: swergio joins
    take effect asynchronously, so the very first messages can miss a room.
    (A repeated submission just replaces the model's first one.)  With
    ``match_root``, only a reply carrying this message's ``ROOT_ID`` counts,
    which swergio copies into replies: a late answer to an earlier send is
    not mistaken for this one.
    """
    if match_root:
        message = {**message, "ROOT_ID": message["ID"]}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        client.send(message)
        resend_at = time.monotonic() + 1.0
        while time.monotonic() < min(resend_at, deadline):
            for frame in client.poll(0.05):
                msg = frame.message
                if msg and msg.get("TO_ROOM") == room and key in msg:
                    if not match_root or msg.get("ROOT_ID") == message["ROOT_ID"]:
                        return msg
    raise TimeoutError(f"no {key} in room {room!r} within {timeout} s")


class _Progress:
    """A one-line progress display, redrawn in place; silent unless on a terminal."""

    def __init__(self, out: TextIO, total: int) -> None:
        self.out = out
        self.total = total
        isatty = getattr(out, "isatty", None)
        self.enabled = bool(isatty and isatty())
        self.next_draw = 0.0
        self.width = 0

    def update(self, done: int, elapsed: float) -> None:
        if not self.enabled or time.monotonic() < self.next_draw:
            return
        self.next_draw = time.monotonic() + PROGRESS_EVERY
        rate = done / elapsed if elapsed > 0 else 0.0
        line = f"  round {done}/{self.total}, {elapsed:.1f} s, {rate:.0f} rounds/s"
        self.width = max(self.width, len(line))
        self.out.write("\r" + line.ljust(self.width))
        self.out.flush()

    def clear(self) -> None:
        if self.enabled and self.width:
            self.out.write("\r" + " " * self.width + "\r")
            self.out.flush()


@contextlib.contextmanager
def _component_info_held_back() -> Iterator[None]:
    """Keep the component's INFO lines out of the demo's output (see module doc)."""
    package = logging.getLogger("ensemble_agg")
    before = package.level
    if package.getEffectiveLevel() < logging.WARNING:
        package.setLevel(logging.WARNING)
    try:
        yield
    finally:
        package.setLevel(before)


def run_demo(
    *,
    seed: int | None = None,
    rule: str = "sum",
    temperature: float = 1.0,
    rounds: int = ROUNDS,
    models: int = N_MODELS,
    out: TextIO | None = None,
    http: tuple[str, int] | None = None,
) -> int:
    """Run the demonstration and print its summary; return the exit status 0.

    Parameters
    ----------
    seed : int, optional
        Seeds the models' policies, the environment and the aggregator.
    rule, temperature : str, float
        As ``agg-client --rule`` and ``--temperature``.
    rounds : int
        Rounds to run (the demo also stops after 20 s of rounds).
    models : int
        Simulated models, 1 to 200.
    out : text stream, optional
        Where the summary goes (default: standard output).  A progress line
        is drawn there only when it is a terminal.
    http : (host, port), optional
        Serve the aggregator's live page and metrics there while the demo
        runs (as ``agg-client --http``); its URL is printed.

    Raises
    ------
    ValueError
        If ``models`` or ``rounds`` is out of range.

    Examples
    --------
    >>> import io
    >>> buf = io.StringIO()
    >>> run_demo(models=3, rounds=50, seed=1, out=buf)
    0
    >>> buf.getvalue().splitlines()[0]  # doctest: +ELLIPSIS
    "ensemble-agg demo: 3 models, rule 'sum', swergio server on 127.0.0.1:..."
    """
    if not 1 <= models <= MAX_MODELS:
        raise ValueError(f"--models must be 1..{MAX_MODELS} for the demo, not {models}")
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, not {rounds}")
    with _component_info_held_back():
        return _run(seed, rule, temperature, rounds, models, out, http)


def _run(
    seed: int | None,
    rule: str,
    temperature: float,
    rounds: int,
    n_models: int,
    out: TextIO | None,
    http: tuple[str, int] | None = None,
) -> int:
    stream = sys.stdout if out is None else out

    def write(*parts: object) -> None:
        # flushed: the header must precede any log line on a shared terminal or file
        print(*parts, file=stream, flush=True)

    rng = np.random.default_rng(seed if seed is not None else 2024)
    server = AggServer("127.0.0.1", 0, enable_logging=False)
    server.serve_in_thread()
    host, port = server.address
    write(
        f"ensemble-agg demo: {n_models} models, rule {rule!r}, "
        f"swergio server on {host}:{port}"
    )
    stop = threading.Event()
    settings = Settings(
        server=host,
        port=port,
        models=n_models,
        rule=rule,
        temperature=temperature,
        seed=seed,
        stats_interval=0,
        step_timeout=2.0,
        http=http,
    )
    component = AggregatorComponent(settings, stop=stop)
    url = component.start_http()
    if url is not None:
        write(f"live page: {url} (metrics at {url}metrics, while the demo runs)")
    agg_thread = threading.Thread(target=component.run, name="aggregator", daemon=True)
    agg_thread.start()
    env = TunedClient("environment", host, port)
    env.join_room("action")
    evolution = TunedClient("evolution", host, port)
    evolution.join_room("evolution")
    swarm = threading.Thread(
        target=_run_models,
        args=(host, port, stop, rng, n_models),
        name="models",
        daemon=True,
    )
    swarm.start()
    time.sleep(0.3)  # let every client register and join its rooms

    progress = _Progress(stream, rounds)
    cart = CartPole(rng)
    obs = cart.reset()
    actions = np.zeros(2, dtype=np.int64)
    totals: dict[str, float] = {}
    episodes: list[int] = []
    done_rounds = 0
    started = time.perf_counter()
    try:
        while done_rounds < rounds and time.perf_counter() - started < TIME_BUDGET:
            reply = _request(
                env, _msg("observation", OBS=obs), "action", "ACTION", 10.0
            )
            action = reply["ACTION"][0]
            actions[action] += 1
            done_rounds += 1
            progress.update(done_rounds, time.perf_counter() - started)
            obs, done = cart.step(action)
            if done:
                episodes.append(cart.steps)
                obs = cart.reset()
            if done_rounds % GET_EVERY == 0 or done_rounds == rounds:
                get = _msg("evolution", CMD="GET")
                reply = _request(
                    evolution, get, "evolution", "CONTRIBUTION", 10.0, match_root=True
                )
                for k, v in reply["CONTRIBUTION"].items():
                    totals[k] = totals.get(k, 0.0) + v
                evolution.send(_msg("evolution", CMD="SET", WEIGHTS={}))
        elapsed = time.perf_counter() - started
    finally:
        progress.clear()
        stop.set()
        swarm.join(2)
        agg_thread.join(2)
        env.close()
        evolution.close()
        server.stop()

    rate = done_rounds / elapsed
    if done_rounds < rounds:  # the time budget ran out first: say so
        write(
            f"rounds: {done_rounds} of {rounds} in {elapsed:.1f} s "
            f"({rate:.0f} rounds/s, observation to action); stopped at the "
            f"demo's {TIME_BUDGET:.0f} s limit"
        )
    else:
        write(
            f"rounds: {done_rounds} in {elapsed:.1f} s "
            f"({rate:.0f} rounds/s, observation to action)"
        )
    if episodes:
        write(
            f"CartPole episodes finished: {len(episodes)}, "
            f"mean length {np.mean(episodes):.1f} steps"
        )
        if np.mean(episodes) < RANDOM_EPISODE:  # no bug: nothing here learns
            write(
                f"  (shorter than random pushes last, about {RANDOM_EPISODE:.0f} "
                "steps: the models are\n   untrained random linear policies, "
                "and the ensemble follows the most\n   confident, which here "
                "mostly push the way the pole already leans; the\n   demo shows "
                "the aggregation and its credit, not learning)"
            )
    credited = sum(totals.values())
    write(f"\ncontribution per model (summed over {credited:.0f} credited rounds):")
    write(f"  {'model':<10} {'share':>7}  {'total':>8}")
    # bars scaled to the best model's, so the table stays narrow for any --models
    best = max(totals.values(), default=0.0)
    for model_id, total in sorted(totals.items(), key=lambda kv: -kv[1]):
        share = total / credited if credited else 0.0
        write(
            f"  {model_id:<10} {share:>7.2%}  {total:>8.1f}  "
            + "#" * (round(BAR * total / best) if best > 0 else 0)
        )
    write("\naction histogram:")
    for a, name in enumerate(("push left", "push right")):
        n = int(actions[a])
        share = n / max(done_rounds, 1)
        write(f"  {a} {name:<10} {n:>6} {share:>7.2%}  " + "#" * round(share * 40))
    return 0
