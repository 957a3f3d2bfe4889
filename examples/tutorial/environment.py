"""04_environment.py: the environment, stepping on every aggregated ACTION.

It sends an observation to the ``observation`` room, waits for the
aggregator's ``{"ACTION": [a]}`` in the ``action`` room, applies ``a`` and
sends the next observation.  It stops after ``ROUNDS`` steps (first
argument; default 200) and prints how long they took.
"""

import math
import sys
import time
import uuid

import numpy as np
from common import FORMAT, HEADER_LENGTH, PORT, SERVER
from swergio import Client

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 200


class CartPole:
    """The classic cart-pole task, in a few lines of NumPy."""

    def __init__(self):
        self.rng = np.random.default_rng(0)
        self.reset()

    def reset(self):
        self.state = self.rng.uniform(-0.05, 0.05, size=4)
        self.steps = 0
        return self.state.tolist()

    def step(self, action):
        _, x_dot, theta, theta_dot = self.state
        force = 10.0 if action == 1 else -10.0
        cos, sin = math.cos(theta), math.sin(theta)
        temp = (force + 0.05 * theta_dot**2 * sin) / 1.1
        theta_acc = (9.8 * sin - cos * temp) / (0.5 * (4 / 3 - 0.1 * cos**2 / 1.1))
        x_acc = temp - 0.05 * theta_acc * cos / 1.1
        self.state = self.state + 0.02 * np.array([x_dot, x_acc, theta_dot, theta_acc])
        self.steps += 1
        done = (
            abs(self.state[0]) > 2.4 or abs(self.state[2]) > 0.2095 or self.steps >= 500
        )
        return self.state.tolist(), done


def send(client, room, **fields):
    client.send(
        {"ID": uuid.uuid4().hex, "TYPE": "DATA/CUSTOM", "TO_ROOM": room, **fields}
    )


client = Client("environment", SERVER, PORT, FORMAT, HEADER_LENGTH)
client.join_room("action")
env = CartPole()
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
