"""What the original torch component does, tried: the ground for docs/migrating.rst.

Each test starts a stock swergio server and the original component
(``tests/reference/original_03_aggregation.py``, the tutorial's code) as real
processes, talks to them over real sockets and checks what the migration
page says about the original.  They run only where torch imports (.ci/run
installs ``torch==2.13.0``).
"""

from __future__ import annotations

import contextlib
import math
import subprocess
import sys
from pathlib import Path

import pytest

from ..helpers import HAVE_TORCH
from ..swergio_helpers import HOST, RawPeer, ServerProcess, data, raw_frame, wait_for

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason="torch is not installed")

ORIGINAL = (
    Path(__file__).resolve().parents[1] / "reference" / "original_03_aggregation.py"
)


class Original:
    """The original component in a subprocess, its stdout and stderr in files."""

    def __init__(self, port: int, tmp: Path, n_models: int) -> None:
        self.out_path, self.err_path = tmp / "original.out", tmp / "original.err"
        self._files = [open(self.out_path, "w"), open(self.err_path, "w")]
        self.proc = subprocess.Popen(
            # -u: its prints reach the file at once, as they reach a terminal
            [sys.executable, "-u", str(ORIGINAL), HOST, str(port), str(n_models)],
            cwd=ORIGINAL.parent,
            stdout=self._files[0],
            stderr=self._files[1],
        )
        self.gets = 0

    @property
    def out(self) -> str:
        return self.out_path.read_text()

    @property
    def err(self) -> str:
        return self.err_path.read_text()

    def get(self, peer: RawPeer) -> dict:
        """Send ``{"CMD": "GET"}`` and return the ``CONTRIBUTION`` reply."""
        self.gets += 1
        peer.send(data("evolution", CMD="GET"))
        return peer.read_until(lambda m: "CONTRIBUTION" in m, timeout=10)[
            "CONTRIBUTION"
        ]

    def wait_ready(self, peer: RawPeer) -> None:
        """Until it answers a GET: it joined ``logits`` before ``evolution``."""

        def answered() -> bool:
            self.gets += 1
            peer.send(data("evolution", CMD="GET"))
            try:
                peer.read_until(lambda m: "CONTRIBUTION" in m, timeout=0.5)
            except AssertionError:
                return False
            return True

        wait_for(answered, 10, f"the original to answer a GET:\n{self.err[-2000:]}")

    def exit_status(self, timeout: float = 20.0) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for f in self._files:
            f.close()


@contextlib.contextmanager
def running_original(tmp: Path, n_models: int):
    """A stock server, the original with ``n_models`` and a peer in its rooms."""
    server = ServerProcess().start()
    orig = Original(server.port, tmp, n_models)
    peer = None
    try:
        # The peer joins once the original has made its rooms: the stock
        # server drops a client that sends to a room nobody has joined yet.
        wait_for(
            lambda: "aggregation to evolution" in Path(server.log.name).read_text(),
            30,  # torch's import alone takes a second or more
            f"the original to join its rooms:\n{orig.err[-2000:]}",
        )
        peer = RawPeer(server.port, "tester", rooms=("evolution", "action"))
        orig.wait_ready(peer)
        yield orig, peer, server
    finally:
        if peer is not None:
            peer.close()
        orig.stop()
        server.kill()


@pytest.fixture
def original(tmp_path, request):
    with running_original(tmp_path, getattr(request, "param", 1)) as (orig, peer, _):
        yield orig, peer


def logits(component_id: str, values, **fields) -> dict:
    return data("logits", LOGITS=values, COMPONENT_ID=component_id, **fields)


BAD_ROUNDS = {
    "LOGITS not a list": (
        [logits("m0", "abc", DETERMINISTIC=True)],
        "TypeError",
    ),
    "LOGITS of two lengths": (
        [
            logits("m0", [1.0, 2.0], DETERMINISTIC=True),
            logits("m1", [1.0, 2.0, 3.0], DETERMINISTIC=True),
        ],
        "RuntimeError",
    ),
    "NaN in LOGITS": (
        [logits("m0", [math.nan, 1.0], DETERMINISTIC=True)],
        "ValueError",
    ),
    "no DETERMINISTIC": ([logits("m0", [1.0, 2.0])], "KeyError: 'DETERMINISTIC'"),
}


@pytest.mark.parametrize("case", list(BAD_ROUNDS))
def test_a_malformed_round_ends_it_with_a_traceback_and_status_1(case, tmp_path):
    messages, error = BAD_ROUNDS[case]
    with running_original(tmp_path, len(messages)) as (orig, peer, _):
        for message in messages:
            peer.send(message)
        assert orig.exit_status() == 1
        assert "Traceback (most recent call last)" in orig.err
        assert error in orig.err


def test_a_non_json_frame_ends_it_silently_with_status_0(original):
    orig, peer = original
    # The stock server routes an undecodable frame by the sender's previous
    # message, so it reaches the logits room after one valid message there.
    peer.send(data("logits", NOTE="no LOGITS, ignored"))
    peer.send_raw(raw_frame(b"this is not JSON"))
    assert orig.exit_status() == 0
    assert orig.err == ""


def test_one_model_rounds_work(original):
    orig, peer = original
    for values, expected in (([0.0, 3.0], 1), ([2.0, -1.0, 0.5], 0)):
        peer.send(logits("m0", values, DETERMINISTIC=True))
        reply = peer.read_until(lambda m: "ACTION" in m, timeout=10)
        assert reply["ACTION"] == [expected]
    assert orig.get(peer) == {"m0": pytest.approx(2.0)}
    assert orig.proc.poll() is None


def test_its_tally_takes_in_every_new_id(original):
    orig, peer = original
    ids = [f"stranger-{i}" for i in range(30)]
    for component_id in ids:
        peer.send(logits(component_id, [1.0, 0.0], DETERMINISTIC=True))
        peer.read_until(lambda m: "ACTION" in m, timeout=10)
    assert sorted(orig.get(peer)) == sorted(ids)


@pytest.mark.parametrize("original", [2], indirect=True)
def test_it_prints_the_contribution_dict_on_every_get(original):
    orig, peer = original
    peer.send(logits("m0", [2.0, 0.0], DETERMINISTIC=True))
    peer.send(logits("m1", [0.0, 1.0], DETERMINISTIC=True))
    assert peer.read_until(lambda m: "ACTION" in m)["ACTION"] == [0]
    tally = orig.get(peer)
    assert orig.get(peer) == {}  # the tally is cleared by each GET
    lines = wait_for(
        lambda: len(orig.out.splitlines()) >= orig.gets and orig.out.splitlines(),
        10,
        "one printed line per GET",
    )
    assert len(lines) == orig.gets  # one line for every GET, the readiness ones too
    assert lines[-2] == repr(tally) and lines[-1] == "{}"
    assert lines[-2].startswith("{'m0': 0.766")


def test_it_exits_when_the_server_goes_away(tmp_path):
    with running_original(tmp_path, 1) as (orig, _, server):
        server.kill()
        status = orig.exit_status()  # no reconnect: it ends
        err = orig.err
    # Its goodbye (DISCONNECT) goes to the closed socket: a BrokenPipeError
    # traceback and status 1, unless the peer's reset arrives only after it.
    assert (status, "BrokenPipeError" in err) in ((1, True), (0, False)), err
