"""Limits of a lock's numbers and arguments, checked before any request.

Each check raises ``ValueError`` (or ``TypeError`` for the wrong kind of
argument) naming the parameter and the allowed range, so a bad value never
reaches the wire format, a timer or the renewer:

* duration: 0 or None (never expires), else 1 s to 106751 days;
* renew interval: 0 or None (never renew), else 0.05 s to 106751 days, and
  shorter than the duration minus the holder's safety margin;
* acquire timeout: None (no limit), else 0 s to 106751 days;
* nan, infinities and negative numbers are refused everywhere;
* a lock takes a locker of its own API (sync or asyncio).

Imports nothing of lockheed.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any

__all__ = [
    "MAX_SECONDS",
    "MIN_DURATION",
    "MIN_RENEW_INTERVAL",
    "check_locker",
    "check_renewal",
    "check_timeout",
    "to_timedelta",
]

#: The shortest lease: the API server's clock is known to about a second (its
#: ``Date`` header), so a shorter lease could not be judged, and a duration
#: below a microsecond would round to 0, which means "never expires".
MIN_DURATION = timedelta(seconds=1)
#: The shortest renew interval: more often is a busy loop against the API server.
MIN_RENEW_INTERVAL = timedelta(milliseconds=50)
#: The longest duration, renew interval and timeout: Go's longest
#: ``time.Duration`` (about 292 years) in whole days. A lease that never
#: expires is duration 0 (Go's ``9999-12-31T23:59:59Z``), not a huge number.
MAX_SECONDS = timedelta(days=106751)


def _describe(value: float | timedelta) -> str:
    if isinstance(value, timedelta):
        return f"{value.total_seconds():g} s"
    return f"{value!r}"


def _seconds_range(minimum: timedelta) -> str:
    low = minimum.total_seconds()
    return f"between {low:g} s and {MAX_SECONDS.days} days"


def to_timedelta(
    value: float | timedelta | None, what: str, *, minimum: timedelta, zero: str
) -> timedelta | None:
    """Validate seconds (or a timedelta) in ``[minimum, MAX_SECONDS]``.

    0 and None give None, which means ``zero`` (for the error message). A
    positive value below ``minimum`` is refused, never rounded to 0.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, timedelta)):
        raise TypeError(f"{what} must be seconds or a timedelta, not {type(value).__name__}")
    allowed = f"0 or None ({zero}) or {_seconds_range(minimum)}"
    if isinstance(value, timedelta):
        td: timedelta | None = value
        is_zero = value == timedelta(0)
    else:
        is_zero = value == 0
        # nan, infinity and huge numbers have no timedelta: they are out of range below
        fits = math.isfinite(value) and abs(value) <= MAX_SECONDS.total_seconds()
        td = timedelta(seconds=value) if fits else None
    if is_zero:
        return None
    if td is None or not minimum <= td <= MAX_SECONDS:
        negative = (td is not None and td < timedelta(0)) or value == -math.inf
        must = "must not be negative; it must be" if negative else "must be"
        raise ValueError(f"{what} {must} {allowed}, not {_describe(value)}")
    return td


def check_timeout(timeout: float | None) -> float | None:
    """Validate an acquire timeout: None (no limit) or finite seconds in range."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be seconds or None, not {type(timeout).__name__}")
    if not (math.isfinite(timeout) and 0 <= timeout <= MAX_SECONDS.total_seconds()):
        raise ValueError(
            f"timeout {'must not be negative; it ' if timeout < 0 else ''}must be None "
            f"(wait without limit) or {_seconds_range(timedelta(0))}, not {timeout!r}"
        )
    return float(timeout)


def check_renewal(
    duration: timedelta | None,
    interval: timedelta | None,
    margin: Callable[[timedelta], float],
) -> None:
    """A renewal must come before the holder's loss deadline: the duration minus
    ``margin(duration)`` after the write."""
    if duration is None or interval is None:
        return
    usable = duration.total_seconds() - margin(duration)
    if interval.total_seconds() >= usable:
        raise ValueError(
            f"renew interval ({interval.total_seconds():g} s) must be shorter than the "
            f"duration ({duration.total_seconds():g} s) minus the safety margin "
            f"({margin(duration):g} s), so below {usable:g} s; renew more often or "
            "set a longer duration"
        )


def check_locker(locker: Any, asynchronous: bool, user: str) -> None:
    """Refuse a locker of the other API (sync for asyncio code, or the reverse) at
    once, instead of failing at the first request. A locker that is neither
    recognisably sync nor async (a wrapper of a third party) is let through."""
    execute = getattr(locker, "execute", None)
    if not callable(execute) or not callable(getattr(locker, "object_name", None)):
        raise TypeError(
            f"{user} needs a locker (ConfigMapLocker, MemoryLocker, or their Async "
            f"twins), not {type(locker).__name__}"
        )
    if inspect.iscoroutinefunction(execute):
        is_async: bool | None = True
    elif callable(getattr(locker, "aclose", None)):
        is_async = True
    elif callable(getattr(locker, "close", None)):
        is_async = False
    else:
        is_async = None
    if is_async is None or is_async == asynchronous:
        return
    if asynchronous:
        raise TypeError(
            f"{user} needs an asyncio locker (AsyncConfigMapLocker, AsyncMemoryLocker); "
            f"{type(locker).__name__} is a sync locker, for Lock and list_locks"
        )
    raise TypeError(
        f"{user} needs a sync locker (ConfigMapLocker, MemoryLocker); "
        f"{type(locker).__name__} is an asyncio locker, for AsyncLock and alist_locks"
    )
