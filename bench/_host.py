"""The host's CPU time as Linux counts it, to tell what the host lent others.

On a virtual machine the hypervisor may run other guests on our CPUs; Linux
counts that time as *steal* in ``/proc/stat``. A contention row that is
latency-bound (two contenders handing one lock back and forth) slows down
several times over when the host is shared that way, so each row reports the
share of the host's CPU time stolen during its window next to its rate. Off
Linux (no ``/proc/stat``) the share is not known (None).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["cpu_times", "steal_share"]

_STAT = Path("/proc/stat")
_STEAL = 7  # the eighth figure of the "cpu" line: user nice system idle iowait irq softirq steal


def cpu_times(stat: Path = _STAT) -> tuple[int, ...] | None:
    """The host's CPU time so far by kind (clock ticks, all CPUs), or None."""
    try:
        first = stat.read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    if first[:1] != ["cpu"] or len(first) <= _STEAL + 1:
        return None
    return tuple(int(x) for x in first[1:])


def steal_share(before: tuple[int, ...] | None, after: tuple[int, ...] | None) -> float | None:
    """The share of the host's CPU time between two :func:`cpu_times` that was
    stolen (0 to 1), or None when either is unknown or no time passed. Guest
    time is already inside user time, so it is left out of the total."""
    if before is None or after is None:
        return None
    spent = [b - a for a, b in zip(before[: _STEAL + 1], after[: _STEAL + 1], strict=True)]
    total = sum(spent)
    return spent[_STEAL] / total if total > 0 else None
