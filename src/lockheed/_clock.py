"""The API server's clock, as seen from this process.

Lease expiry is written and judged in the API server's time, not this host's
wall clock: every response's ``Date`` header bounds the server's time at the
moment it answered, and the monotonic clock carries that bound forward. The
result is an interval ``(earliest, latest)`` for the server's time now, a
second or so wide (``Date`` has one-second resolution).

Safety rules built on it: a holder writes its expiry from ``latest`` (it never
claims less time than it may use), a contender treats a lease as expired only
when ``earliest`` has passed it. A host whose wall clock is off by minutes
therefore neither steals a live lease nor waits minutes too long. Before the
first response, the local wall clock is the only estimate.

The bounds move: ``earliest`` rises (and ``latest`` falls) as samples narrow
the interval, and both jump when it re-anchors. So a deadline counted on the
monotonic clock (a Lease's first sighting + its duration, client-go's rule)
must be compared on the monotonic clock, or re-derived from the bounds at the
moment of comparison with the same offset on both sides
(:func:`lockheed._core.sighted`); converted into a server time once and
compared with a later ``earliest``, it could end a lease up to the interval's
width early.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

__all__ = ["ServerClock"]

UTC = timezone.utc
# Re-anchor on fresh samples after this long, so drift between this host's
# monotonic clock and the server's clock cannot accumulate.
_SAMPLE_LIFETIME = 300.0


class ServerClock:
    """An estimate of the server's time, kept as offsets from the monotonic clock."""

    def __init__(
        self,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ):
        self.monotonic = monotonic
        self._wall = wall
        self._lo: float | None = None  # server epoch seconds - monotonic, lower bound
        self._hi: float | None = None  # upper bound
        self._anchored_at = 0.0
        # The last Date header parsed and its time: a busy client gets the same
        # one-second stamp on many answers, and parsing it was a tenth of the
        # CPU a waiter spent per request.
        self._date: tuple[str, float] | None = None

    def observe(self, server: float, sent: float, received: float, resolution: float = 1.0) -> None:
        """Add a sample: the server stamped ``server`` (epoch seconds, truncated to
        ``resolution``) while a request sent at monotonic ``sent`` was answered
        by ``received``."""
        lo = server - received
        hi = server + resolution - sent
        stale = received - self._anchored_at > _SAMPLE_LIFETIME
        if self._lo is None or self._hi is None or stale:
            self._lo, self._hi, self._anchored_at = lo, hi, received
            return
        new_lo, new_hi = max(self._lo, lo), min(self._hi, hi)
        if new_lo > new_hi:  # inconsistent with earlier samples: the clocks moved; re-anchor
            new_lo, new_hi = lo, hi
            self._anchored_at = received
        self._lo, self._hi = new_lo, new_hi

    def observe_http_date(self, header: str | None, sent: float, received: float) -> None:
        if not header:
            return
        last = self._date
        if last is not None and last[0] == header:
            self.observe(last[1], sent, received)
            return
        from email.utils import parsedate_to_datetime

        try:
            stamp = parsedate_to_datetime(header).timestamp()
        except (TypeError, ValueError):
            return
        self._date = (header, stamp)
        self.observe(stamp, sent, received)

    def bounds(self) -> tuple[datetime, datetime]:
        """``(earliest, latest)`` possible server time now."""
        mono = self.monotonic()
        if self._lo is None or self._hi is None:
            wall = self._wall()
            return _utc(wall), _utc(wall)
        return _utc(mono + self._lo), _utc(mono + self._hi)

    def monotonic_at(self, server_time: datetime) -> float:
        """The monotonic time by which the server's clock has surely reached ``server_time``."""
        mono = self.monotonic()
        earliest, _ = self.bounds()
        return mono + max(0.0, (server_time - earliest).total_seconds())


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _utc(epoch: float) -> datetime:
    return _EPOCH + timedelta(seconds=epoch)
