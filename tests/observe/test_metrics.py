"""The Prometheus exposition, read back with prometheus_client's own parser."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ensemble_agg import Aggregator
from ensemble_agg.observe.metrics import (
    MissingExtraError,
    render,
    require_http_extra,
)
from ensemble_agg.observe.recorders import ClientRecorder, ServerRecorder

parser = pytest.importorskip("prometheus_client.parser")

#: INTERFACE.md section 4 and the issue: every one must be exposed.
CLIENT_SAMPLES = {
    "ensemble_agg_rounds_total",
    "ensemble_agg_actions_sent_total",
    "ensemble_agg_submissions_total",
    "ensemble_agg_dropped_total",
    "ensemble_agg_skipped_frames_total",
    "ensemble_agg_reconnects_total",
    "ensemble_agg_internal_errors_total",
    "ensemble_agg_gets_total",
    "ensemble_agg_state_saves_total",
    "ensemble_agg_early_closes_total",
    "ensemble_agg_round_latency_seconds_bucket",
    "ensemble_agg_round_latency_seconds_count",
    "ensemble_agg_round_latency_seconds_sum",
    "ensemble_agg_model_submissions_total",
    "ensemble_agg_model_contribution",
    "ensemble_agg_model_lateness_seconds",
}
SERVER_SAMPLES = {
    "ensemble_agg_server_clients",
    "ensemble_agg_server_registered_names",
    "ensemble_agg_server_rooms",
    "ensemble_agg_server_room_members",
    "ensemble_agg_server_frames_in_total",
    "ensemble_agg_server_frames_out_total",
    "ensemble_agg_server_bytes_in_total",
    "ensemble_agg_server_bytes_out_total",
    "ensemble_agg_server_queue_bytes",
    "ensemble_agg_server_slow_consumer_disconnects_total",
    "ensemble_agg_server_dropped_total",
}
HOSTILE = 'a"b\\c\nd <img src=x onerror=alert(1)>'


def samples(text: str) -> list:
    return [
        s for fam in parser.text_string_to_metric_families(text) for s in fam.samples
    ]


def value(found: list, name: str, **labels: str) -> float:
    hits = [s.value for s in found if s.name == name and s.labels == labels]
    assert len(hits) == 1, (name, labels, hits)
    return hits[0]


def client_snapshot() -> dict:
    agg = Aggregator(3, rng=1)
    rec = ClientRecorder()
    rec.connection("connected")
    t = 0.0
    for r in range(10):
        for i, model in enumerate(["a", HOSTILE, "c"]):
            t += 0.004 * (i + 1)
            result = agg.submit(model, [float(i), 0.0, float(r % 3)], now=t)
            rec.submission(model, t)
        assert result is not None  # the third model completes the round
        rec.round_done(t, result.action, result.contribution)
    rec.drop("malformed")
    rec.drop(HOSTILE)
    rec.state_save(True)
    rec.get_served()
    return rec.snapshot(t)


def test_client_exposition_has_the_interface_names_and_values():
    snap = client_snapshot()
    found = samples(render(snap).decode())
    assert CLIENT_SAMPLES <= {s.name for s in found}
    assert all(s.name.startswith("ensemble_agg_") for s in found)
    assert value(found, "ensemble_agg_rounds_total") == 10
    assert value(found, "ensemble_agg_submissions_total") == 30
    assert value(found, "ensemble_agg_dropped_total", reason="malformed") == 1
    assert value(found, "ensemble_agg_dropped_total", reason=HOSTILE) == 1
    assert value(found, "ensemble_agg_state_saves_total", result="ok") == 1
    assert value(found, "ensemble_agg_round_latency_seconds_count") == 10
    assert value(found, "ensemble_agg_round_latency_seconds_bucket", le="+Inf") == 10
    rows = {row["model"]: row for row in snap["models"]}
    for model in ("a", HOSTILE, "c"):
        share = value(
            found, "ensemble_agg_model_contribution", model=model, since="start"
        )
        assert share == pytest.approx(rows[model]["share"]["start"])
        assert (
            value(found, "ensemble_agg_model_contribution", model=model, since="get")
            == 0.0
        )
        p95 = value(
            found, "ensemble_agg_model_lateness_seconds", model=model, quantile="0.95"
        )
        assert p95 == pytest.approx(rows[model]["lateness"]["p95"])
        assert value(found, "ensemble_agg_model_submissions_total", model=model) == 10


def test_server_exposition_has_the_interface_names_and_values():
    rec = ServerRecorder()
    rec.frame_in("logits", 100)
    rec.frame_out("logits", 100, copies=4)
    rec.frame_in(HOSTILE, 7)
    rec.slow_consumer_disconnect()
    rec.drop("oversize")
    rec.set_state(
        clients=6,
        registered_names=5,
        room_members={"logits": 4, HOSTILE: 1},
        queue_bytes=99,
        slowest_readers=[("env", 99)],
    )
    found = samples(render(rec.snapshot(1.0)).decode())
    assert SERVER_SAMPLES <= {s.name for s in found}
    assert value(found, "ensemble_agg_server_clients") == 6
    assert value(found, "ensemble_agg_server_rooms") == 2
    assert value(found, "ensemble_agg_server_room_members", room=HOSTILE) == 1
    assert value(found, "ensemble_agg_server_frames_out_total", room="logits") == 4
    assert value(found, "ensemble_agg_server_bytes_in_total", room=HOSTILE) == 7
    assert value(found, "ensemble_agg_server_slow_consumer_disconnects_total") == 1
    assert value(found, "ensemble_agg_server_dropped_total", reason="oversize") == 1


def test_empty_recorders_render():
    for snap in (ClientRecorder().snapshot(0.0), ServerRecorder().snapshot(0.0)):
        assert samples(render(snap).decode())


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown snapshot kind 'x'"):
        render({"kind": "x"})


def test_require_http_extra_names_the_extra(monkeypatch):
    require_http_extra()
    # None in sys.modules is how Python marks a module as not importable.
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(MissingExtraError) as info:
        require_http_extra("--http")
    message = str(info.value)
    assert "\n" not in message
    assert message == (
        "--http needs prometheus_client: pip install 'ensemble-agg[http]'"
    )


def test_importing_the_package_loads_no_observer():
    code = (
        "import sys, ensemble_agg; "
        "print(any(m == 'prometheus_client' or m.startswith('ensemble_agg.observe') "
        "for m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip() == "False", out.stderr


def test_observe_imports_only_util_and_the_stdlib():
    code = (
        "import sys; import ensemble_agg.observe; "
        "bad = sorted(m for m in sys.modules if m.startswith(('ensemble_agg.core', "
        "'ensemble_agg.protocol', 'ensemble_agg.transport', 'ensemble_agg.cli', "
        "'prometheus_client', 'swergio', 'scipy'))); print(bad)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    # ensemble_agg/__init__ loads the core; observe itself adds nothing above util.
    loaded = [m for m in eval(out.stdout) if not m.startswith("ensemble_agg.core")]
    assert loaded == [], out.stderr
