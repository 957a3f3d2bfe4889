"""Tests of ensemble_agg.util.ratelimit: time is a number the test passes in."""

from __future__ import annotations

import logging
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ensemble_agg.util.ratelimit import OVERFLOW_KIND, RateLimiter

SUMMARY = re.compile(r"(\d+) messages like '(.*)' were not logged in the last (\S+) s")


class Lines(logging.Handler):
    """Every line the limiter's logger emits, formatted."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def summaries(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for line in self.lines:
            m = SUMMARY.fullmatch(line)
            if m:
                out[m[2]] = out.get(m[2], 0) + int(m[1])
        return out


@pytest.fixture
def lines():
    logger = logging.getLogger("tests.ratelimit")
    handler = Lines()
    logger.addHandler(handler)
    logger.propagate = False
    yield handler
    logger.removeHandler(handler)


def _limiter(**kwargs) -> RateLimiter:
    return RateLimiter(logging.getLogger("tests.ratelimit"), **kwargs)


def test_burst_per_kind_then_one_summary_per_kind(lines):
    limiter = _limiter(burst=2, period=10.0)
    for i in range(5):
        limiter.log(100.0 + i, "bad frame", "bad frame %d", i)
        limiter.log(100.0 + i, "closed mid-frame", "closed %d", i)
    assert lines.lines == ["bad frame 0", "closed 0", "bad frame 1", "closed 1"]
    assert limiter.suppressed == 6
    limiter.tick(109.9)  # windows still open: nothing yet
    assert len(lines.lines) == 4
    limiter.tick(110.0)
    assert lines.lines[4:] == [
        "3 messages like 'bad frame' were not logged in the last 10 s",
        "3 messages like 'closed mid-frame' were not logged in the last 10 s",
    ]
    assert limiter.kinds == 0 and limiter.suppressed == 6  # a running total


def test_a_line_after_the_window_summarises_then_logs(lines):
    limiter = _limiter(burst=1, period=5.0)
    for i in range(4):
        limiter.log(0.0, "k", "line %d", i)
    assert limiter.log(7.0, "k", "line %d", 4)  # no tick in between
    assert lines.lines == [
        "line 0",
        "3 messages like 'k' were not logged in the last 5 s",
        "line 4",
    ]


def test_no_summary_when_nothing_was_left_out(lines):
    limiter = _limiter(burst=3, period=1.0)
    limiter.log(0.0, "k", "once")
    limiter.tick(2.0)
    assert lines.lines == ["once"] and limiter.kinds == 0


def test_a_flood_of_one_kind_does_not_hide_another(lines):
    limiter = _limiter(burst=2, period=10.0)
    for _ in range(1000):
        limiter.log(0.0, "flood", "flood")
    assert limiter.log(0.0, "rare", "rare")
    assert lines.lines.count("flood") == 2 and "rare" in lines.lines


def test_kinds_are_capped_and_the_rest_share_the_overflow(lines):
    limiter = _limiter(burst=1, period=10.0, max_kinds=3)
    for i in range(10):
        limiter.log(0.0, f"kind {i}", "line %d", i)
    assert limiter.kinds == 4  # 3 kinds and the overflow
    assert lines.lines == ["line 0", "line 1", "line 2", "line 3"]  # 3 is overflow's
    limiter.tick(10.0)
    assert lines.summaries() == {OVERFLOW_KIND: 6}
    assert limiter.kinds == 0
    assert limiter.log(10.0, "kind 9", "line %d", 9)  # room again


def test_long_kinds_are_cut(lines):
    limiter = _limiter(burst=1, period=1.0)
    for _ in range(2):
        limiter.log(0.0, "k" * 10_000, "x")
    limiter.tick(1.0)
    assert max(map(len, lines.lines)) < 200


def test_level_is_the_limiters():
    logger = logging.getLogger("tests.ratelimit.level")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        limiter = RateLimiter(logger, burst=1, period=1.0, level=logging.INFO)
        limiter.log(0.0, "k", "a")
        limiter.log(0.0, "k", "b")
        limiter.tick(1.0)
    finally:
        logger.removeHandler(handler)
    assert [r.levelno for r in records] == [logging.INFO, logging.INFO]


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"burst": 0}, "burst must be at least 1, got 0"),
        ({"period": 0.0}, "period must be > 0 seconds, got 0.0"),
        ({"period": float("nan")}, "period must be > 0 seconds"),
        ({"max_kinds": 0}, "max_kinds must be at least 1, got 0"),
    ],
)
def test_bad_settings_are_refused(kwargs, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        _limiter(**kwargs)


events = st.lists(
    st.tuples(st.floats(0.0, 5.0), st.sampled_from("abcdefgh")), max_size=300
)


@settings(max_examples=100, deadline=None)
@given(
    events=events,
    burst=st.integers(1, 5),
    period=st.floats(0.5, 20.0),
    max_kinds=st.integers(1, 6),
)
def test_every_line_is_logged_or_summarised_and_memory_is_bounded(
    events, burst, period, max_kinds
):
    logger = logging.getLogger("tests.ratelimit.property")
    handler = Lines()
    logger.addHandler(handler)
    logger.propagate = False
    try:
        limiter = RateLimiter(logger, burst=burst, period=period, max_kinds=max_kinds)
        now = 0.0
        logged = 0
        for step, kind in events:
            now += step  # the clock never goes back
            logged += limiter.log(now, kind, "line")
            assert limiter.kinds <= max_kinds + 1
            limiter.tick(now)
        limiter.tick(now + period)
    finally:
        logger.removeHandler(handler)
    assert logged + limiter.suppressed == len(events)
    assert sum(handler.summaries().values()) == limiter.suppressed
    assert handler.lines.count("line") == logged
    assert limiter.kinds == 0


@settings(max_examples=100, deadline=None)
@given(kinds=st.lists(st.sampled_from("abcdef"), max_size=200), burst=st.integers(1, 5))
def test_within_one_window_each_kind_logs_at_most_burst(kinds, burst):
    limiter = _limiter(burst=burst, period=10.0, max_kinds=10)
    allowed = [kind for kind in kinds if limiter.allow(0.0, kind)]
    for kind in set(kinds):
        assert allowed.count(kind) == min(burst, kinds.count(kind))


def test_warnings_are_rate_limited(caplog):
    import ensemble_agg.transport.server as server_module
    from ensemble_agg.util.ratelimit import RateLimiter

    throttle = RateLimiter(server_module.logger, burst=3, period=10.0)
    with caplog.at_level("WARNING", logger="ensemble_agg.transport.server"):
        for i in range(10):
            throttle.log(100.0 + i * 0.1, "bad message", "bad message %d", i)
        assert [r.getMessage() for r in caplog.records] == [
            "bad message 0",
            "bad message 1",
            "bad message 2",
        ]
        throttle.tick(105.0)  # still inside the window: nothing yet
        assert len(caplog.records) == 3
        throttle.log(110.5, "bad message", "bad message %d", 10)
    assert caplog.records[3].getMessage() == (
        "7 messages like 'bad message' were not logged in the last 10 s"
    )
    assert caplog.records[4].getMessage() == "bad message 10"
