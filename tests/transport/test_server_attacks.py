"""agg-server against one hostile peer: issue 17's attacks at sizes CI affords.

Each test runs one attack of ``benchmarks/attacks.py`` (agg-server as a
subprocess on 127.0.0.1, stopped by PID; a probe relaying a small message
every 20 ms) and asserts what a trustworthy server does: the probe's
latency, the victims' connections, the server's RSS growth, its log lines,
a newcomer served.  Limits are lowered so that each attack crosses them at a
small size; descriptor attacks run under a lower ``RLIMIT_NOFILE``.
Latency bounds are generous (the machine may be loaded): 1 s, where the old
server stalled for seconds.
"""

from __future__ import annotations

import socket
import time

from benchmarks.attacks import (
    MB,
    Peer,
    Run,
    big_frames,
    idle_connections,
    log_flood,
    long_name,
    many_rooms,
    non_readers,
    parked,
)


def test_a_long_name_is_refused_so_members_get_what_was_sent():
    result = long_name(Run(keep_log=True), name_bytes=200_000, messages=40)
    assert result["members_disconnected"] == 0
    assert result["member_received_bytes"] < 2 * result["sent_bytes"]
    assert "NAME; the limit is 256" in result["log"]


def test_joinrooms_under_a_long_name_leave_the_members_connected():
    result = long_name(Run(), name_bytes=200_000, messages=47, readers=5, joins=True)
    assert result["members_disconnected"] == 0
    assert result["member_received_bytes"] < 2 * result["sent_bytes"]


def test_large_frames_of_short_strings_stall_nobody_and_cost_a_few_frames():
    result = big_frames(Run(), count=2, size=10 * MB)
    assert result["probe_worst_s"] < 1.0 and result["probe_lost"] == 0
    assert result["rss_growth_mb"] < 6 * 10  # decoding them cost 16 times


def test_three_large_frames_finishing_at_once_stall_nobody():
    result = big_frames(Run(), count=1, size=8 * MB, together=True, connections=3)
    assert result["probe_worst_s"] < 1.0 and result["probe_lost"] == 0


def test_parked_unfinished_frames_are_held_to_a_budget():
    run = Run(["--max-buffered-bytes", str(8 * MB), "--stats-interval", "0.5"],
              keep_log=True)  # fmt: skip
    result = parked(run, connections=10, park=int(2.4 * MB), announce=6 * MB)
    assert result["parkers_dropped"] >= 7  # at most 3 x 2.4 MB fit in 8 MB
    assert result["rss_growth_mb"] < 40
    assert "(--max-buffered-bytes)" in result["log"]
    stats = [ln for ln in result["log"].splitlines() if "stats:" in ln]
    assert stats and "over_buffer_budget=" in stats[-1]
    assert result["probe_worst_s"] < 1.0


def test_clients_that_never_read_are_held_to_a_budget_together():
    run = Run(["--max-queue-bytes", str(32 * MB), "--max-queued-bytes", str(8 * MB)],
              keep_log=True)  # fmt: skip
    result = non_readers(run, clients=6, flood=16, size=1 * MB)
    # alone, each may queue 32 MB (192 MB for six); together they hold 8 MB
    assert result["rss_growth_mb"] < 60
    assert "(--max-queued-bytes)" in result["log"]
    assert result["probe_worst_s"] < 1.0 and result["probe_lost"] == 0


def test_thousands_of_long_room_names_leave_newcomers_unaffected():
    result = many_rooms(Run(keep_log=True), rooms=2000, name_chars=1000)
    assert result["newcomer_served_s"] != "never"
    assert result["newcomer_served_s"] < 5
    assert "-character room name" in result["log"]
    assert result["log_lines"] < 40  # rate-limited, not one line per JOINROOM


def test_connections_closing_mid_frame_log_a_bounded_summary():
    result = log_flood(Run(keep_log=True), mid_frame=300, resets=100)
    assert result["log_lines"] <= 60, result["log"][-3000:]


def test_idle_connections_at_the_descriptor_limit_make_room_for_a_newcomer():
    result = idle_connections(Run(nofile=256), connections=300, wait=15.0)
    assert result["newcomer_served_s"] != "never"
    assert result["newcomer_served_s"] < 10


def test_trickling_connections_miss_the_register_deadline_and_a_newcomer_is_served():
    run = Run(["--register-timeout", "1.5"], nofile=256, keep_log=True)
    result = idle_connections(run, connections=300, trickle=0.5, wait=15.0, hold=2.5)
    assert result["newcomer_served_s"] != "never"
    assert result["newcomer_served_s"] < 10
    assert "no REGISTER within 1.5 s" in result["log"]


def test_a_frame_that_stops_arriving_is_closed_at_its_deadline():
    run = Run(["--frame-timeout", "1"], probe=False)
    with run.start() as server:
        slow = Peer(server.port, "slow", read=False)
        run.peers.append(slow)
        slow.send_raw(b"5000      {")  # a registered client starts a frame
        slow.sock.settimeout(10)
        t0 = time.monotonic()
        try:
            closed = slow.sock.recv(100) == b""  # EOF from the server
        except (ConnectionResetError, TimeoutError):
            closed = True
        assert closed and time.monotonic() - t0 < 5
        # a registered client that is not mid-frame stays
        idle = Peer(server.port, "idle", read=False)
        run.peers.append(idle)
        idle.sock.settimeout(2.5)
        try:
            idle.sock.recv(100)
            raise AssertionError("the idle client was sent something or closed")
        except TimeoutError:
            pass
        assert socket is not None


def test_log_lines_are_limited_per_kind_with_one_summary_each(caplog):
    from ensemble_agg.transport.server import _KINDS, logger
    from ensemble_agg.util.ratelimit import RateLimiter

    # agg-server's limiter, with its words for each kind
    throttle = RateLimiter(logger, burst=2, period=10.0, descriptions=_KINDS)
    with caplog.at_level("INFO", logger="ensemble_agg.transport.server"):
        for i in range(5):
            throttle.log(100.0, "closed", "closed %d", i, level=20)
            throttle.log(100.0, "dropped", "dropped %d", i)
        # one kind's flood hides none of another's
        assert [r.getMessage() for r in caplog.records] == [
            "closed 0", "dropped 0", "closed 1", "dropped 1"]  # fmt: skip
        assert caplog.records[0].levelname == "INFO"
        throttle.tick(111.0)
    summaries = [r.getMessage() for r in caplog.records[4:]]
    assert summaries == [
        "3 connections closed mid-frame, reset or failed were not logged "
        "in the last 10 s",
        "3 dropped messages were not logged in the last 10 s",
    ]
    assert throttle.suppressed == 6
