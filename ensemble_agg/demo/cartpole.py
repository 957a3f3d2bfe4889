"""The cart-pole task of the demo and the tutorial's environment, in NumPy."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["CartPole"]


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
