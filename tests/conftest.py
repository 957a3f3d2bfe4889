"""Fixtures shared by the end-to-end tests: swergio servers and agg-client processes."""

from __future__ import annotations

import pytest

from .swergio_helpers import (
    AggProcess,
    RawPeer,
    ServerProcess,
    await_logits_membership,
)


@pytest.fixture
def server():
    s = ServerProcess().start()
    yield s
    s.kill()


@pytest.fixture
def agg_server():
    # The stock server reads a header with one recv(10), which a burst can
    # split, and needs minutes to route a frame of tens of MB; floods, soaks
    # and large frames go through agg-server, which frames robustly and
    # routes the same.
    s = ServerProcess(agg=True).start()
    yield s
    s.kill()


@pytest.fixture
def agg(tmp_path):
    started: list[AggProcess] = []
    probes: list[RawPeer] = []

    def start(port: int, *args: str, env: dict | None = None, wait: bool = True):
        p = AggProcess(port, tmp_path, "--stats-interval", "0", *args, env=env)
        started.append(p)
        if wait:
            p.wait_log("connected to")
            probes.append(await_logits_membership(port, p))
        return p

    yield start
    for probe in probes:
        probe.close()
    for p in started:
        p.stop()
        # shown by pytest only when the test failed
        print(f"--- agg-client log {p.log_path.name} ---\n{p.log[-5000:]}")
