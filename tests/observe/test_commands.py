"""``--http`` on the real commands: agg-server and agg-client as subprocesses.

A real agg-server (``--http``) routes between a real agg-client (``--http``)
and hand-made model peers on plain sockets; the tests read what the two
endpoints serve (``/metrics`` parsed by ``prometheus_client.parser``,
``/healthz``, ``/status``) and open the live page in Debian's chromium.
Every process is stopped by its PID, every wait is bounded, everything binds
127.0.0.1.  Rounds are counted, never timed: each round's three submissions
come over one connection, so they arrive in order however slow the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ..swergio_helpers import (
    HOST,
    AggProcess,
    RawPeer,
    ServerProcess,
    await_logits_membership,
    data,
    free_port,
    logits_msg,
    wait_for,
)

parser = pytest.importorskip("prometheus_client.parser")

XSS = "<img src=x onerror=alert(1)>"
MODELS = ["alpha", "beta", XSS]


def get(port: int, path: str) -> tuple[int, str, str]:
    """``(status, content type, body)`` of a GET, 503s included."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=5) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def status(port: int) -> dict:
    code, kind, body = get(port, "/status")
    assert code in (200, 503) and kind.startswith("application/json")
    return json.loads(body)


def metrics(port: int) -> dict[str, list]:
    """Family name -> samples of one scrape."""
    code, kind, body = get(port, "/metrics")
    assert code == 200 and kind.startswith("text/plain; version=0.0.4")
    return {f.name: f.samples for f in parser.text_string_to_metric_families(body)}


def value(samples: list, name: str, **labels: str) -> float:
    found = [s.value for s in samples if s.name == name and s.labels == labels]
    assert len(found) == 1, (name, labels, samples)
    return found[0]


class Live:
    """agg-server and agg-client with ``--http``, and a peer submitting LOGITS."""

    def __init__(self, tmp: Path) -> None:
        self.server_http = free_port()
        self.client_http = free_port()
        self.server = ServerProcess(
            None, "--http", f"{HOST}:{self.server_http}", agg=True
        )
        self.client: AggProcess | None = None
        self.peers: list[RawPeer] = []
        self.rounds = 0
        self.server.start()
        wait_for(
            lambda: get(self.server_http, "/healthz")[0] == 200, 10, "server /healthz"
        )
        self.client = AggProcess(
            self.server.port,
            tmp,
            "--models",
            str(len(MODELS)),
            "--stats-interval",
            "0",
            "--http",
            str(self.client_http),  # HOST defaults to 127.0.0.1
        )
        wait_for(self.healthy, 15, "agg-client /healthz 200")
        self.peers.append(await_logits_membership(self.server.port, self.client))
        self.models = RawPeer(self.server.port, "models")
        self.peers.append(self.models)

    def healthy(self) -> bool:
        try:
            return get(self.client_http, "/healthz")[0] == 200
        except OSError:  # not listening yet
            return False

    def play(self, n: int, favourite: str, late: float = 0.0) -> None:
        """``n`` rounds; `favourite` is sure of action 1, the others unsure.

        The last model's submission waits `late` seconds (a straggler).
        """
        for _ in range(n):
            for model in MODELS:
                if late and model == MODELS[-1]:
                    time.sleep(late)
                logits = [0.0, 6.0] if model == favourite else [0.1, 0.0]
                self.models.send(logits_msg(model, logits, deterministic=True))
        self.rounds += n
        wait_for(
            lambda: status(self.client_http)["counters"]["rounds"] == self.rounds,
            20,
            f"{self.rounds} rounds in /status",
        )

    def close(self) -> None:
        for peer in self.peers:
            peer.close()
        if self.client is not None:
            self.client.stop()
        self.server.kill()


@pytest.fixture
def live(tmp_path):
    swarm = Live(tmp_path)
    try:
        yield swarm
    finally:
        swarm.close()


def test_metrics_health_and_status_of_both_commands(live):
    live.play(12, favourite="alpha")
    live.models.send(data("logits", TYPE="NO/SUCH_TYPE", LOGITS=[1, 2]))
    wait_for(
        lambda: status(live.client_http)["dropped"].get("unknown_type") == 1,
        10,
        "the malformed message's drop reason",
    )

    m = metrics(live.client_http)
    assert value(m["ensemble_agg_rounds"], "ensemble_agg_rounds_total") == 12
    assert value(m["ensemble_agg_submissions"], "ensemble_agg_submissions_total") == 36
    dropped = m["ensemble_agg_dropped"]
    assert value(dropped, "ensemble_agg_dropped_total", reason="unknown_type") == 1
    # the join probe's empty LOGITS (see await_logits_membership)
    assert value(dropped, "ensemble_agg_dropped_total", reason="malformed") >= 1
    latency = m["ensemble_agg_round_latency_seconds"]
    assert value(latency, "ensemble_agg_round_latency_seconds_count") == 12
    assert value(latency, "ensemble_agg_round_latency_seconds_bucket", le="+Inf") == 12
    share = {
        s.labels["model"]: s.value
        for s in m["ensemble_agg_model_contribution"]
        if s.labels["since"] == "start"
    }
    assert set(share) == set(MODELS)  # one label per model, the XSS id verbatim
    assert sum(share.values()) == pytest.approx(1.0)
    assert max(share, key=share.__getitem__) == "alpha"
    lateness = {
        (s.labels["model"], s.labels["quantile"])
        for s in m["ensemble_agg_model_lateness_seconds"]
    }
    assert {(model, "0.5") for model in MODELS} <= lateness
    assert value(m["ensemble_agg_connected"], "ensemble_agg_connected") == 1

    st = status(live.client_http)
    assert st["kind"] == "agg-client" and st["connection"] == "connected"
    assert st["counters"]["rounds"] == 12 and st["counters"]["actions_sent"] == 12
    assert get(live.client_http, "/healthz")[:1] == (200,)

    s = metrics(live.server_http)
    assert value(s["ensemble_agg_server_clients"], "ensemble_agg_server_clients") >= 3
    frames_in = sum(
        x.value for x in s["ensemble_agg_server_frames_in"] if x.name.endswith("_total")
    )
    assert frames_in >= 36
    out_logits = value(
        s["ensemble_agg_server_frames_out"],
        "ensemble_agg_server_frames_out_total",
        room="logits",
    )
    assert out_logits >= 36  # every LOGITS reached agg-client
    slow = s["ensemble_agg_server_slow_consumer_disconnects"]
    assert value(slow, "ensemble_agg_server_slow_consumer_disconnects_total") == 0
    server_status = status(live.server_http)
    assert server_status["kind"] == "agg-server"
    assert {"room": "logits", "members": 1} in server_status["room_members"]

    # The server goes away: agg-client is alive but unhealthy, and says why.
    live.server.kill()
    wait_for(lambda: get(live.client_http, "/healthz")[0] == 503, 15, "/healthz 503")
    code, _, body = get(live.client_http, "/healthz")
    assert code == 503 and body.strip() and "\n" not in body.strip()
    assert "connect" in body  # "disconnected" or "connecting"


def _isolated_env(tmp_path: Path) -> dict[str, str]:
    """An environment in which ``prometheus_client`` cannot be found."""
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\nsys.modules['prometheus_client'] = None\n"
    )
    return {**os.environ, "PYTHONPATH": str(tmp_path)}


@pytest.mark.parametrize(
    "module, env_var",
    [("ensemble_agg", "AGG_HTTP"), ("ensemble_agg.server_cli", "AGG_SERVER_HTTP")],
)
def test_http_without_prometheus_client_is_a_one_line_usage_error(
    tmp_path, module, env_var
):
    env = {**_isolated_env(tmp_path), env_var: "127.0.0.1:0"}
    proc = subprocess.run(
        [sys.executable, "-m", module, "--port", "1", "--log-level", "ERROR"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "ensemble-agg[http]" in lines[0], proc.stderr
    assert "--http" in lines[0]


def test_require_http_extra_in_process(monkeypatch, capsys):
    from ensemble_agg.cli import agg_client, agg_server

    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    assert agg_client.main(["--http", "0", "--server", HOST, "--port", "1"]) == 2
    assert agg_server.main(["--http", "0", "--host", HOST, "--port", "0"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "agg-client: error: --http needs prometheus_client: "
        "pip install 'ensemble-agg[http]'",
        "agg-server: error: --http needs prometheus_client: "
        "pip install 'ensemble-agg[http]'",
    ]


@pytest.mark.parametrize("module", ["ensemble_agg", "ensemble_agg.server_cli"])
def test_http_address_in_use_is_a_one_line_error(module):
    with socket.create_server((HOST, 0)) as taken:
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", module, "--http", f"{HOST}:{port}",
             "--port", str(free_port()), "--connect-timeout", "5"]
            if module == "ensemble_agg"
            else [sys.executable, "-m", module, "--http", f"{HOST}:{port}",
                  "--host", HOST, "--port", "0"],
            capture_output=True,
            text=True,
            timeout=60,
        )  # fmt: skip
    assert proc.returncode == (2 if module == "ensemble_agg" else 3), proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot listen on {HOST}:{port} for --http" in lines[0]


# -- the live page in a real browser ---------------------------------------------

CHROMIUM = next(
    (
        p
        for p in (shutil.which("chromium"), "/usr/bin/chromium")
        if p and os.path.exists(p)
    ),
    None,
)


def shares(page) -> dict[str, str]:
    rows = page.query_selector_all("#shares .bar-row")
    return {
        r.get_attribute("data-name"): r.query_selector(".val").text_content()
        for r in rows
    }


def look(page, live: Live, width: int, shots: Path) -> None:
    """One viewport: a bar per model, bars that move, the XSS id as text."""
    page.goto(f"http://{HOST}:{live.client_http}/", timeout=15000)
    wait_for(lambda: len(shares(page)) == len(MODELS), 15, "a bar per model")
    first = shares(page)
    assert set(first) == set(MODELS)
    names = page.eval_on_selector_all(
        "#shares .bar-row .name", "els => els.map(e => e.firstChild.textContent)"
    )
    assert XSS in names  # shown as text ...
    assert page.eval_on_selector_all("img", "els => els.length") == 0
    assert page.text_content("#health").startswith("healthy")
    favourite = "beta" if next(iter(first)) != "beta" else "alpha"
    live.play(60, favourite=favourite, late=0.004)  # ... bars follow the favourite
    wait_for(
        lambda: next(iter(shares(page)), None) == favourite, 15, "the bars to change"
    )
    assert shares(page) != first
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0  # nothing spills sideways, at a phone's width too
    page.screenshot(path=str(shots / f"observe-client-{width}.png"), full_page=True)
    page.goto(f"http://{HOST}:{live.server_http}/", timeout=15000)
    wait_for(
        lambda: page.query_selector("#traffic .bar-row") is not None,
        15,
        "the server page's traffic bars",
    )
    assert page.text_content("#health").startswith("healthy")
    page.screenshot(path=str(shots / f"observe-server-{width}.png"), full_page=True)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary found")
def test_live_page_in_chromium(live, tmp_path):
    """Screenshots go to ``$AGG_SCREENSHOTS`` if set (the docs' are made so)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    shots = Path(os.environ.get("AGG_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    live.play(20, favourite="alpha", late=0.004)
    dialogs: list[str] = []
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            for width, height in ((1280, 900), (390, 1500)):
                page = browser.new_page(viewport={"width": width, "height": height})
                page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
                page.on("pageerror", lambda e: errors.append(str(e)))
                look(page, live, width, shots)
                page.close()
        finally:
            browser.close()
    assert dialogs == []
    assert errors == []
