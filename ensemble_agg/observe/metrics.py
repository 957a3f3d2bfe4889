"""The Prometheus text exposition of a recorder's snapshot.

``prometheus_client`` is an optional extra (``ensemble-agg[http]``) and is
imported only inside the functions here, never at module import, so that the
commands can check for it at option-parsing time with
:func:`require_http_extra` and everything else works without it.

The collector reads one published snapshot per scrape: every family of one
exposition comes from the same moment, and a scrape costs the loop nothing.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from typing import Any

__all__ = [
    "CONTENT_TYPE",
    "MetricsRenderer",
    "MissingExtraError",
    "render",
    "require_http_extra",
]

#: The exposition format's content type (Prometheus text format 0.0.4).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MissingExtraError(RuntimeError):
    """``--http`` was asked for, but ``prometheus_client`` is not installed."""


def require_http_extra(option: str = "--http") -> None:
    """Raise :class:`MissingExtraError` (one line) if ``prometheus_client`` is missing.

    For option parsing: call it when `option` is given, and turn the error
    into a usage error (``parser.error(str(exc))``).

    Examples
    --------
    >>> require_http_extra()  # prometheus_client is installed here
    """
    if importlib.util.find_spec("prometheus_client") is None:
        raise MissingExtraError(
            f"{option} needs prometheus_client: pip install 'ensemble-agg[http]'"
        )


def _counts(name: str, doc: str, label: str, counts: dict[str, int]) -> Any:
    """A counter family with one sample per entry of `counts`, labelled `label`."""
    from prometheus_client.core import CounterMetricFamily

    family = CounterMetricFamily(name, doc, labels=[label])
    for key, n in sorted(counts.items()):
        family.add_metric([key], n)
    return family


def _client_families(snap: dict[str, Any]) -> Iterator[Any]:
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )

    c = snap["counters"]
    simple = [
        ("ensemble_agg_rounds", "Rounds aggregated (early-closed included).", "rounds"),
        ("ensemble_agg_actions_sent", "ACTION messages sent.", "actions_sent"),
        ("ensemble_agg_submissions", "LOGITS submissions accepted.", "submissions"),
        (
            "ensemble_agg_skipped_frames",
            "Frames over --max-frame-bytes skipped.",
            "skipped_frames",
        ),
        ("ensemble_agg_reconnects", "Reconnections to the server.", "reconnects"),
        ("ensemble_agg_internal_errors", "Bugs caught by the loop.", "internal_errors"),
        ("ensemble_agg_gets", "CMD GET requests answered.", "gets"),
        (
            "ensemble_agg_early_closes",
            "Rounds closed by the step timeout.",
            "early_closes",
        ),
        (
            "ensemble_agg_discarded_rounds",
            "Early-closed rounds that could not be aggregated.",
            "discarded_rounds",
        ),
    ]
    for name, doc, key in simple:
        yield CounterMetricFamily(name, doc, value=c[key])
    yield _counts(
        "ensemble_agg_dropped",
        "Messages dropped, by reason.",
        "reason",
        snap["dropped"],
    )
    saves = CounterMetricFamily(
        "ensemble_agg_state_saves", "State file writes, by result.", labels=["result"]
    )
    for result in ("ok", "error"):
        saves.add_metric([result], snap["state_saves"][result])
    yield saves
    lat = snap["round_latency"]
    yield HistogramMetricFamily(
        "ensemble_agg_round_latency_seconds",
        "Seconds from a round's first submission to its ACTION.",
        buckets=[(str(le), n) for le, n in lat["buckets"]],
        sum_value=lat["sum"],
    )
    per_model = CounterMetricFamily(
        "ensemble_agg_model_submissions",
        'Submissions per model (label capped; the rest as model="other").',
        labels=["model"],
    )
    share = GaugeMetricFamily(
        "ensemble_agg_model_contribution",
        "Each model's share of the contribution tally, since start or since the "
        "last GET; sums to 1 over models.",
        labels=["model", "since"],
    )
    lateness = GaugeMetricFamily(
        "ensemble_agg_model_lateness_seconds",
        "Seconds from a round's first submission to this model's, over a window.",
        labels=["model", "quantile"],
    )
    straggler = GaugeMetricFamily(
        "ensemble_agg_model_straggler",
        "1 if the model is marked as a straggler.",
        labels=["model"],
    )
    for row in snap["models"]:
        model = row["model"]
        per_model.add_metric([model], row["submissions"])
        share.add_metric([model, "start"], row["share"]["start"])
        share.add_metric([model, "get"], row["share"]["since_get"])
        for q, key in (("0.5", "median"), ("0.95", "p95")):
            value = row["lateness"][key]
            if value is not None:
                lateness.add_metric([model, q], value)
        straggler.add_metric([model], 1.0 if row["straggler"] else 0.0)
    yield from (per_model, share, lateness, straggler)
    yield _counts(
        "ensemble_agg_actions", "Actions chosen, by action.", "action", snap["actions"]
    )
    yield GaugeMetricFamily(
        "ensemble_agg_connected",
        "1 while connected, registered and in its rooms.",
        value=1.0 if snap["connection"] == "connected" else 0.0,
    )


def _server_families(snap: dict[str, Any]) -> Iterator[Any]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    yield GaugeMetricFamily(
        "ensemble_agg_server_clients", "Connected clients.", value=snap["clients"]
    )
    yield GaugeMetricFamily(
        "ensemble_agg_server_registered_names",
        "Registered client names.",
        value=snap["registered_names"],
    )
    yield GaugeMetricFamily(
        "ensemble_agg_server_rooms", "Rooms with members.", value=snap["rooms"]
    )
    members = GaugeMetricFamily(
        "ensemble_agg_server_room_members",
        'Members per room (the fullest rooms; the rest as room="other").',
        labels=["room"],
    )
    for row in snap["room_members"]:
        members.add_metric([row["room"]], row["members"])
    yield members
    for key, doc in (
        ("frames_in", "Frames received, by TO_ROOM."),
        ("frames_out", "Frame copies queued to members, by room."),
        ("bytes_in", "Bytes received (headers included), by TO_ROOM."),
        ("bytes_out", "Bytes queued to members, by room."),
    ):
        family = CounterMetricFamily(f"ensemble_agg_server_{key}", doc, labels=["room"])
        for row in snap["traffic"]:
            family.add_metric([row["room"]], row[key])
        yield family
    yield GaugeMetricFamily(
        "ensemble_agg_server_queue_bytes",
        "Bytes queued to all clients, not yet sent.",
        value=snap["queue_bytes"],
    )
    yield CounterMetricFamily(
        "ensemble_agg_server_slow_consumer_disconnects",
        "Clients disconnected for not reading.",
        value=snap["slow_consumer_disconnects"],
    )
    yield _counts(
        "ensemble_agg_server_dropped",
        "Frames dropped, by reason.",
        "reason",
        snap["dropped"],
    )
    yield GaugeMetricFamily(
        "ensemble_agg_server_accepting",
        "1 while the server accepts connections.",
        value=1.0 if snap["health"]["ok"] else 0.0,
    )


def _families(snap: dict[str, Any]) -> Iterator[Any]:
    kind = snap.get("kind")
    if kind == "agg-client":
        return _client_families(snap)
    if kind == "agg-server":
        return _server_families(snap)
    raise ValueError(
        f"unknown snapshot kind {kind!r}; expected agg-client or agg-server"
    )


class _SnapshotCollector:
    """A ``prometheus_client`` custom collector over the latest snapshot."""

    def __init__(self, snapshot: Callable[[], dict[str, Any] | None]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Any]:
        snap = self._snapshot()
        if snap is None:  # nothing published yet: an empty exposition
            return iter(())
        return _families(snap)

    def describe(self) -> list[Any]:
        # Registering must not call collect(): the loop may not have
        # published yet.
        return []


class MetricsRenderer:
    """Render ``snapshot()`` in the Prometheus text format, with its own registry.

    Parameters
    ----------
    snapshot : callable
        Returns the latest published snapshot (a recorder's ``latest``), or
        ``None`` before the first.

    Examples
    --------
    >>> from ensemble_agg.observe.recorders import ServerRecorder
    >>> rec = ServerRecorder()
    >>> _ = rec.publish(0.0)
    >>> text = MetricsRenderer(rec.latest).render().decode()
    >>> "ensemble_agg_server_clients 0.0" in text
    True
    """

    def __init__(self, snapshot: Callable[[], dict[str, Any] | None]) -> None:
        from prometheus_client import CollectorRegistry

        self._snapshot = snapshot
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_SnapshotCollector(snapshot))
        self._rendered: tuple[object, bytes] | None = None

    def render(self) -> bytes:
        """The exposition, as bytes in the :data:`CONTENT_TYPE` format.

        Rendered once per published snapshot (snapshots are never changed
        once published), so a flood of scrapes costs a copy each, not a
        rendering each.
        """
        from prometheus_client import generate_latest

        snap = self._snapshot()
        if (
            self._rendered is not None
            and self._rendered[0] is snap
            and snap is not None
        ):
            return self._rendered[1]
        text = generate_latest(self._registry)
        self._rendered = (snap, text)
        return text


def render(snapshot: dict[str, Any]) -> bytes:
    """The exposition of one snapshot (for tests and one-off use).

    Examples
    --------
    >>> from ensemble_agg.observe.recorders import ClientRecorder
    >>> text = render(ClientRecorder().snapshot(0.0)).decode()
    >>> "ensemble_agg_rounds_total 0.0" in text
    True
    """
    return MetricsRenderer(lambda: snapshot).render()
