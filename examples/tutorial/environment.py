"""04_environment.py: the environment, stepping on every aggregated ACTION.

It sends an observation to the ``observation`` room, waits for the
aggregator's ``{"ACTION": [a]}`` in the ``action`` room, applies ``a`` and
sends the next observation.  It stops after ``ROUNDS`` steps (first
argument; default 200) and prints how long they took.
"""

import sys
import time
import uuid

import numpy as np
from common import FORMAT, HEADER_LENGTH, PORT, SERVER
from swergio import Client

# The classic cart-pole task (the same one agg-client --demo steps).
from ensemble_agg.demo import CartPole

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 200


def send(client, room, **fields):
    client.send(
        {"ID": uuid.uuid4().hex, "TYPE": "DATA/CUSTOM", "TO_ROOM": room, **fields}
    )


client = Client("environment", SERVER, PORT, FORMAT, HEADER_LENGTH)
client.join_room("action")
env = CartPole(np.random.default_rng(0))
observation = env.reset()
episodes = []
started = time.perf_counter()
for _ in range(ROUNDS):
    send(client, "observation", OBSERVATION=observation)
    msg = client.receive()
    while msg is not False and "ACTION" not in msg:
        msg = client.receive()
    if msg is False:
        sys.exit("environment: connection closed")
    observation, done = env.step(msg["ACTION"][0])
    if done:
        episodes.append(env.steps)
        observation = env.reset()
elapsed = time.perf_counter() - started
print(
    f"environment: {ROUNDS} steps in {elapsed:.1f} s ({ROUNDS / elapsed:.1f} steps/s), "
    f"{len(episodes)} episodes finished"
)
client.close()
