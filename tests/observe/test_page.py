"""The live page in a real browser (Debian's chromium driven by playwright).

Skips when playwright or a chromium binary is missing; never downloads a
browser.  Screenshots go to ``$AGG_SCREENSHOTS`` (default: the test's tmp
dir) so that the docs can show them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from ensemble_agg import Aggregator
from ensemble_agg.observe import ClientRecorder, HttpEndpoint, ServerRecorder
from ensemble_agg.observe.page import render_page

from ..swergio_helpers import wait_for

sync_api = pytest.importorskip("playwright.sync_api")

XSS = "<img src=x onerror=alert(1)>"
MODELS = ["alpha", "beta", XSS, "delta-model-with-a-rather-long-identifier"]
CHROMIUM = next(
    (
        p
        for p in (
            shutil.which("chromium"),
            "/usr/bin/chromium",
            "/usr/bin/chromium-browser",
        )
        if p and os.path.exists(p)
    ),
    None,
)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary found")


class Swarm:
    """A ClientRecorder fed by real Aggregator rounds on a fake clock."""

    def __init__(self) -> None:
        self.agg = Aggregator(len(MODELS), rng=7)
        self.rec = ClientRecorder()
        self.rec.connection("connected")
        self.rng = np.random.default_rng(3)
        self.t = 1000.0

    def rounds(self, n: int, favourite: int) -> None:
        for r in range(n):
            self.t += 0.05
            start = self.t
            # the XSS model is always slow, the others a little jittery; they
            # are fed in the order they arrive, as the loop's clock would
            arrivals = sorted(
                (0.03 if m == XSS else abs(float(self.rng.normal(0, 0.002))), i, m)
                for i, m in enumerate(MODELS)
            )
            result = None
            for delay, i, model in arrivals:
                # the favourite is sure of its action, the others are not; the
                # argmax then follows the favourite, which earns most credit
                logits = self.rng.normal(0, 0.5, size=3)
                logits[r % 3] += 4.0 if i == favourite else 0.0
                now = start + delay
                self.t = max(self.t, now)
                result = self.agg.submit(
                    model, logits.tolist(), deterministic=True, now=now
                )
                self.rec.submission(model, now)
            assert result is not None
            self.rec.round_done(self.t, result.action, result.contribution)
        self.rec.drop("malformed")
        self.rec.publish(self.t)


@pytest.fixture
def shots(tmp_path) -> Path:
    path = Path(os.environ.get("AGG_SCREENSHOTS") or tmp_path)
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def shares(page) -> dict[str, str]:
    rows = page.query_selector_all("#shares .bar-row")
    return {
        r.get_attribute("data-name"): r.query_selector(".val").text_content()
        for r in rows
    }


@pytest.mark.parametrize("width, height", [(1280, 900), (390, 1400)])
def test_client_page_bars_update_and_xss_is_text(browser, shots, width, height):
    swarm = Swarm()
    swarm.rounds(40, favourite=0)
    endpoint = HttpEndpoint("127.0.0.1", 0, swarm.rec.latest, "agg-client").start()
    dialogs: list[str] = []
    errors: list[str] = []
    try:
        # Without the page's CSP (playwright's waits evaluate strings): the
        # XSS id must render as text by the page's own doing, not the policy's.
        page = browser.new_page(
            viewport={"width": width, "height": height}, bypass_csp=True
        )
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on(
            "console",
            lambda m: errors.append(m.text) if m.type == "error" else None,
        )
        page.goto(f"http://127.0.0.1:{endpoint.port}/", timeout=15000)
        wait_for(lambda: len(shares(page)) == len(MODELS), 15, "a bar per model")
        first = shares(page)
        assert set(first) == set(MODELS)  # one bar per model, the XSS id as text
        names = page.eval_on_selector_all(
            "#shares .bar-row .name", "els => els.map(e => e.firstChild.textContent)"
        )
        assert XSS in names
        assert page.eval_on_selector_all("img", "els => els.length") == 0
        assert page.text_content("#health").startswith("healthy")
        straggler = page.query_selector(
            f"#shares .bar-row.straggler[data-name='{XSS}']"
        )
        assert straggler is not None  # 30 ms late in every round

        swarm.rounds(200, favourite=1)  # beta takes the lead
        wait_for(
            lambda: next(iter(shares(page)), None) == "beta", 15, "the bars to change"
        )
        assert shares(page) != first

        page.click("button[data-since=get]")
        assert page.get_attribute("button[data-since=get]", "aria-pressed") == "true"
        page.click("button[data-since=start]")
        # nothing spills sideways at a phone's width
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        page.screenshot(path=str(shots / f"agg-client-{width}.png"), full_page=True)
    finally:
        endpoint.stop()
    assert dialogs == []
    assert errors == []


def test_server_page(browser, shots):
    rec = ServerRecorder()
    t = 0.0
    rooms = {"logits": 21, "action": 2, "evolution": 22, "_command": 23, XSS: 1}

    def traffic(scale: int) -> None:
        nonlocal t
        t += 1.0
        for room, members in rooms.items():
            for _ in range(scale * members):
                rec.frame_in(room, 200)
                rec.frame_out(room, 200, copies=members)
        rec.set_state(
            clients=23,
            registered_names=23,
            room_members=rooms,
            queue_bytes=65536,
            slowest_readers=[("environment", 48000), (XSS, 17000), ("model-3", 512)],
        )
        rec.publish(t)

    traffic(1)
    endpoint = HttpEndpoint("127.0.0.1", 0, rec.latest, "agg-server").start()
    dialogs: list[str] = []
    try:
        page = browser.new_page(
            viewport={"width": 1280, "height": 800}, bypass_csp=True
        )
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(f"http://127.0.0.1:{endpoint.port}/", timeout=15000)
        page.wait_for_function(
            "document.querySelectorAll('#traffic .bar-row').length === 5", timeout=15000
        )
        traffic(3)
        # a second poll turns totals into frames per second
        page.wait_for_function(
            "document.querySelector('#traffic .val').textContent.endsWith('/s')",
            timeout=15000,
        )
        assert XSS in page.text_content("#readers")
        assert page.eval_on_selector_all("img", "els => els.length") == 0
        page.screenshot(path=str(shots / "agg-server-1280.png"), full_page=True)
    finally:
        endpoint.stop()
    assert dialogs == []


def test_page_runs_under_its_own_policy(browser):
    """The CSP allows the page's script and style by hash: they must match."""
    swarm = Swarm()
    swarm.rounds(5, favourite=0)
    endpoint = HttpEndpoint("127.0.0.1", 0, swarm.rec.latest, "agg-client").start()
    violations: list[str] = []
    try:
        page = browser.new_page()
        page.on(
            "console",
            lambda m: violations.append(m.text) if m.type == "error" else None,
        )
        page.goto(f"http://127.0.0.1:{endpoint.port}/", timeout=15000)
        # polled from here: the policy forbids evaluating strings in the page
        wait_for(
            lambda: len(page.query_selector_all("#shares .bar-row")) == len(MODELS),
            15,
            "the page's script to draw the bars",
        )
        color = page.eval_on_selector("header", "e => getComputedStyle(e).display")
        assert color == "flex"  # the style ran too
    finally:
        endpoint.stop()
    assert violations == []


def test_page_has_no_inner_html_and_fetches_nothing_else():
    page = render_page("agg-client")
    assert b"innerHTML" not in page and b"outerHTML" not in page
    assert b"insertAdjacentHTML" not in page and b"document.write" not in page
    assert b"http://" not in page and b"https://" not in page and b"@import" not in page
