"""``agg-client --demo``: the whole loop on 127.0.0.1, with nothing else installed.

It starts, in this process: a swergio server (:class:`TunedServer`, free
port), the real aggregator component (:class:`AggregatorComponent`, the same
code ``agg-client`` runs), 20 simulated models (swergio clients with small
random linear policies), a CartPole environment and an evolution-like
component that asks for the contributions every few hundred rounds.  Then it
prints rounds/s, the per-model contribution table and the action histogram.
"""

from __future__ import annotations

import logging
import math
import select
import threading
import time
import uuid
from typing import Any

import numpy as np

from ._component import AggregatorComponent, Settings
from ._server import AggServer
from .swergio_shim import TunedClient

__all__ = ["run_demo"]

logger = logging.getLogger(__name__)

N_MODELS = 20
ROUNDS = 3000
GET_EVERY = 500
TIME_BUDGET = 20.0  # seconds of rounds; the demo exits by itself well inside 30 s


def _msg(room: str, **fields: Any) -> dict[str, Any]:
    return {"ID": uuid.uuid4().hex, "TYPE": "DATA/CUSTOM", "TO_ROOM": room, **fields}


class CartPole:
    """The classic cart-pole balancing task (Barto, Sutton and Anderson, 1983)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.state = np.zeros(4)
        self.steps = 0
        self.reset()

    def reset(self) -> list[float]:
        self.state = self.rng.uniform(-0.05, 0.05, size=4)
        self.steps = 0
        return self.state.tolist()

    def step(self, action: int) -> tuple[list[float], bool]:
        x, x_dot, theta, theta_dot = self.state
        force = 10.0 if action == 1 else -10.0
        cos, sin = math.cos(theta), math.sin(theta)
        temp = (force + 0.05 * theta_dot**2 * sin) / 1.1
        theta_acc = (9.8 * sin - cos * temp) / (0.5 * (4.0 / 3.0 - 0.1 * cos**2 / 1.1))
        x_acc = temp - 0.05 * theta_acc * cos / 1.1
        tau = 0.02
        self.state = np.array(
            [
                x + tau * x_dot,
                x_dot + tau * x_acc,
                theta + tau * theta_dot,
                theta_dot + tau * theta_acc,
            ]
        )
        self.steps += 1
        done = (
            abs(self.state[0]) > 2.4 or abs(self.state[2]) > 0.2095 or self.steps >= 500
        )
        return self.state.tolist(), bool(done)


def _run_models(
    host: str, port: int, stop: threading.Event, rng: np.random.Generator
) -> None:
    """20 models on one thread: answer each observation with LOGITS."""
    models = []
    for i in range(N_MODELS):
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


def run_demo(
    *,
    seed: int | None = None,
    rule: str = "sum",
    temperature: float = 1.0,
    rounds: int = ROUNDS,
    out: Any = None,
) -> int:
    """Run the demonstration and print its summary; return the exit status 0."""
    write = print if out is None else (lambda *a: print(*a, file=out))
    rng = np.random.default_rng(seed if seed is not None else 2024)
    server = AggServer("127.0.0.1", 0, enable_logging=False)
    server.serve_in_thread()
    host, port = server.address
    stop = threading.Event()
    settings = Settings(
        server=host,
        port=port,
        models=N_MODELS,
        rule=rule,
        temperature=temperature,
        seed=seed,
        stats_interval=0,
        step_timeout=2.0,
    )
    component = AggregatorComponent(settings, stop=stop)
    agg_thread = threading.Thread(target=component.run, name="aggregator", daemon=True)
    agg_thread.start()
    env = TunedClient("environment", host, port)
    env.join_room("action")
    evolution = TunedClient("evolution", host, port)
    evolution.join_room("evolution")
    swarm = threading.Thread(
        target=_run_models, args=(host, port, stop, rng), name="models", daemon=True
    )
    swarm.start()
    time.sleep(0.3)  # let every client register and join its rooms

    write(
        f"ensemble-agg demo: {N_MODELS} models, rule {rule!r}, "
        f"swergio server on {host}:{port}"
    )
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
        stop.set()
        swarm.join(2)
        agg_thread.join(2)
        env.close()
        evolution.close()
        server.stop()

    rate = done_rounds / elapsed
    write(f"rounds: {done_rounds} in {elapsed:.1f} s ({rate:.0f} rounds/s)")
    if episodes:
        write(
            f"CartPole episodes finished: {len(episodes)}, "
            f"mean length {np.mean(episodes):.1f} steps"
        )
    credited = sum(totals.values())
    write(f"\ncontribution per model (summed over {credited:.0f} credited rounds):")
    write(f"  {'model':<10} {'share':>7}  {'total':>8}")
    for model_id, total in sorted(totals.items(), key=lambda kv: -kv[1]):
        share = total / credited if credited else 0.0
        write(
            f"  {model_id:<10} {share:>7.2%}  {total:>8.1f}  "
            + "#" * round(share * 200)
        )
    write("\naction histogram:")
    for a, name in enumerate(("push left", "push right")):
        n = int(actions[a])
        share = n / max(done_rounds, 1)
        write(f"  {a} {name:<10} {n:>6} {share:>7.2%}  " + "#" * round(share * 40))
    return 0
