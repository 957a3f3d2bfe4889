"""Rate limits for log lines: a few of each kind per period, then one summary.

A peer that floods bad frames must cost a few log lines, not one per frame,
and the log must still say how many were left out.  :class:`RateLimiter`
does that per *kind* of line (a short string chosen by the caller, such as
``"bad frame"`` or ``"closed mid-frame"``), so a flood of one kind does not
hide the first lines of another.

Theory of operation
-------------------
Each kind has a window of ``period`` seconds that opens with its first line.
The first ``burst`` lines of a window are logged, the rest counted.  When the
window has ended (seen at the next line of that kind, or at :meth:`tick`),
one summary line says how many were not logged, and the kind is forgotten.
The table holds at most ``max_kinds`` kinds; a new kind that finds it full of
open windows is counted under :data:`OVERFLOW_KIND`, so memory stays bounded
whatever the callers pass.  Time is the caller's ``now`` (any monotonic
clock, in seconds); nothing here reads a clock, and the only output is the
logger it is given.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

__all__ = ["OVERFLOW_KIND", "RateLimiter"]

#: The kind that lines of new kinds are counted under while the table is full.
OVERFLOW_KIND = "(other kinds)"
#: Longest kind kept; longer ones are cut (kinds are labels, not messages).
MAX_KIND_LENGTH = 60


class _Window:
    __slots__ = ("end", "logged", "suppressed")

    def __init__(self, end: float) -> None:
        self.end = end
        self.logged = 0
        self.suppressed = 0


class RateLimiter:
    """Log at most ``burst`` lines of each kind per ``period``; summarise the rest.

    Parameters
    ----------
    logger : logging.Logger
        Where lines and summaries go.
    burst : int
        Lines of one kind logged per window, at least 1.
    period : float
        Length of a kind's window, in seconds, > 0.
    max_kinds : int
        Most kinds tracked at once, at least 1 (one more, for
        :data:`OVERFLOW_KIND`, when they are all busy).
    level : int
        Level of the lines and the summaries.  Default ``logging.WARNING``.
    descriptions : mapping, optional
        What a kind's summary calls its lines ("connections closed
        mid-frame"); default "messages like 'KIND'".

    Attributes
    ----------
    suppressed : int
        Lines not logged since construction, all kinds: for the stats line.

    Examples
    --------
    >>> import logging, sys
    >>> log = logging.getLogger("ratelimit-example")
    >>> log.addHandler(logging.StreamHandler(sys.stdout)); log.propagate = False
    >>> limiter = RateLimiter(log, burst=2, period=10.0)
    >>> for i in range(5):
    ...     _ = limiter.log(0.0, "bad frame", "bad frame %d", i)
    bad frame 0
    bad frame 1
    >>> limiter.tick(10.0)
    3 messages like 'bad frame' were not logged in the last 10 s
    >>> limiter.suppressed
    3
    """

    def __init__(
        self,
        logger: logging.Logger,
        *,
        burst: int = 20,
        period: float = 10.0,
        max_kinds: int = 64,
        level: int = logging.WARNING,
        descriptions: Mapping[str, str] | None = None,
    ) -> None:
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        if not period > 0:
            raise ValueError(f"period must be > 0 seconds, got {period}")
        if max_kinds < 1:
            raise ValueError(f"max_kinds must be at least 1, got {max_kinds}")
        self.logger = logger
        self.burst = burst
        self.period = period
        self.max_kinds = max_kinds
        self.level = level
        self.descriptions: Mapping[str, str] = descriptions or {}
        self.suppressed = 0
        self._windows: dict[str, _Window] = {}
        # No window ends before this: tick() is one comparison until then.
        self._due = float("inf")

    @property
    def kinds(self) -> int:
        """Kinds with an open window now (overflow included)."""
        return len(self._windows)

    def allow(self, now: float, kind: str) -> bool:
        """Count one line of ``kind`` at ``now``; True if it may be logged.

        A window of ``kind`` that has ended is summarised first.
        """
        kind = kind[:MAX_KIND_LENGTH]
        window = self._windows.get(kind)
        if window is not None and now >= window.end:
            self._close(kind, window)
            window = None
        if window is None:
            window = self._open(now, kind)
        if window.logged < self.burst:
            window.logged += 1
            return True
        window.suppressed += 1
        self.suppressed += 1
        return False

    def log(
        self, now: float, kind: str, msg: str, *args: object, level: int | None = None
    ) -> bool:
        """Log ``msg % args`` unless ``kind`` is over its limit; True if logged.

        ``level`` overrides the limiter's level for this line (its summary
        keeps the limiter's).
        """
        if self.allow(now, kind):
            self.logger.log(self.level if level is None else level, msg, *args)
            return True
        return False

    def tick(self, now: float) -> None:
        """Summarise and forget the kinds whose window has ended by ``now``.

        Cheap when no window has ended: call it on every pass of a loop.
        """
        if now < self._due:
            return
        for kind, window in list(self._windows.items()):
            if now >= window.end:
                self._close(kind, window)
        self._due = min((w.end for w in self._windows.values()), default=float("inf"))

    def _open(self, now: float, kind: str) -> _Window:
        if kind not in self._windows and len(self._windows) >= self.max_kinds:
            self.tick(now)  # ended windows make room
            busy = len(self._windows) - (OVERFLOW_KIND in self._windows)
            if busy >= self.max_kinds:
                kind = OVERFLOW_KIND
                window = self._windows.get(kind)
                if window is not None:
                    return window
        window = self._windows[kind] = _Window(now + self.period)
        self._due = min(self._due, window.end)
        return window

    def _close(self, kind: str, window: _Window) -> None:
        del self._windows[kind]
        if window.suppressed:
            what = self.descriptions.get(kind)
            if what is None:
                what = f"messages like {kind!r}"
            self.logger.log(
                self.level,
                "%d %s were not logged in the last %g s",
                window.suppressed,
                what,
                self.period,
            )
