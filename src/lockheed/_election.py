"""Leader election decided without I/O: its timing, and whether we lead.

The electors (``_sync/election.py`` and ``_async/election.py``) campaign by
acquiring one lock, lead while they hold it and resign by releasing it; this
module decides what they report and when:

* :class:`Timing` validates client-go's three durations with client-go's rules
  (lease duration > renew deadline > retry period * :data:`JITTER_FACTOR`, all
  greater than zero) and maps them onto the lock (:func:`configure`): lease
  duration → duration, retry period → renew interval, and renew deadline →
  the lock's loss deadline, so leadership ends when renewals have failed for
  the renew deadline since the last successful one (or at the lock's own loss
  deadline, the lease less its margin, if that is earlier).
* :class:`Election` is the state machine of leading and not leading. Each
  transition returns the :data:`Notice`\\ s to deliver, in order; a transition
  that changes nothing returns none, so a notice is never given twice.
* :func:`retryable` says which errors of a campaign are tried again after the
  retry period (the API server unreachable, endless write conflicts) and which
  end it (permissions, a malformed lock object, anything else).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ._base import LockBase
from ._errors import LockBackendError, LockConflict

__all__ = [
    "JITTER_FACTOR",
    "Callbacks",
    "Election",
    "NewLeader",
    "Notice",
    "StartedLeading",
    "StoppedLeading",
    "Timing",
    "configure",
    "retryable",
]

#: client-go's ``JitterFactor``: the renew deadline must exceed the retry period by it.
JITTER_FACTOR = 1.2


def _seconds(value: float | timedelta, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, timedelta)):
        raise TypeError(f"{what} must be seconds or a timedelta, not {type(value).__name__}")
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{what} must be greater than zero (got {value!r})")
    return seconds


@dataclass(frozen=True)
class Timing:
    """client-go's leader-election durations, in seconds, validated."""

    lease_duration: float
    renew_deadline: float
    retry_period: float

    @classmethod
    def of(
        cls,
        lease_duration: float | timedelta,
        renew_deadline: float | timedelta,
        retry_period: float | timedelta,
    ) -> Timing:
        lease = _seconds(lease_duration, "lease_duration")
        deadline = _seconds(renew_deadline, "renew_deadline")
        retry = _seconds(retry_period, "retry_period")
        if lease <= deadline:
            raise ValueError(
                f"lease_duration must be greater than renew_deadline "
                f"(got lease_duration={lease:g}, renew_deadline={deadline:g})"
            )
        if deadline <= retry * JITTER_FACTOR:
            raise ValueError(
                f"renew_deadline must be greater than retry_period * JitterFactor "
                f"{JITTER_FACTOR:g} (got renew_deadline={deadline:g}, retry_period={retry:g}: "
                f"{retry:g} * {JITTER_FACTOR:g} = {retry * JITTER_FACTOR:g})"
            )
        return cls(lease, deadline, retry)


def configure(lock: LockBase, timing: Timing) -> None:
    """Set the lock's lease, renewal and loss deadline from the election's timing."""
    if lock._active:
        raise ValueError(f"lock {lock.name!r} is held: give the elector a lock it can campaign for")
    before = (lock._duration, lock._renew_interval)
    try:  # the lock's own range checks apply too; a refusal leaves the lock as it was
        lock.with_duration(timing.lease_duration).with_renew_interval(timing.retry_period)
    except (ValueError, TypeError):
        lock._duration, lock._renew_interval = before
        raise
    lock._loss_after = timedelta(seconds=timing.renew_deadline)


@dataclass(frozen=True)
class NewLeader:
    """Another (or this) identity is seen leading."""

    identity: str


@dataclass(frozen=True)
class StartedLeading:
    """This elector leads."""


@dataclass(frozen=True)
class StoppedLeading:
    """This elector no longer leads (lost, or resigned)."""


Notice = NewLeader | StartedLeading | StoppedLeading


@dataclass
class Election:
    """Whether ``identity`` leads, and who it last saw leading."""

    identity: str
    leader: str | None = None
    leading: bool = False

    def observed(self, holder: str | None) -> list[Notice]:
        """A campaigning acquire saw ``holder`` hold the lock (None: nobody, or unknown)."""
        if self.leading or holder is None or holder == self.leader:
            return []
        self.leader = holder
        return [NewLeader(holder)]

    def won(self) -> list[Notice]:
        """The campaign acquired the lock."""
        if self.leading:
            return []
        notices: list[Notice] = [] if self.leader == self.identity else [NewLeader(self.identity)]
        self.leader, self.leading = self.identity, True
        return [*notices, StartedLeading()]

    def ended(self, successor: str | None = None) -> list[Notice]:
        """Leadership ended: lost (``successor``: the new holder, when known) or resigned."""
        if not self.leading:
            return []
        self.leading, self.leader = False, None
        notices: list[Notice] = [StoppedLeading()]
        if successor is not None and successor != self.identity:
            self.leader = successor
            notices.append(NewLeader(successor))
        return notices


def retryable(error: BaseException) -> bool:
    """Whether a campaign that failed with ``error`` tries again after the retry period."""
    return isinstance(error, (LockBackendError, LockConflict))


@dataclass(frozen=True)
class Callbacks:
    """The elector's callbacks; each may be None."""

    on_started_leading: Callable[[], Any] | None = None
    on_stopped_leading: Callable[[], Any] | None = None
    on_new_leader: Callable[[str], Any] | None = None

    def deliver(self, notices: list[Notice], report: Callable[[str, Exception], None]) -> None:
        """Call the callback of each notice in order; one that raises is ``report``\\ ed
        and does not stop the others."""
        for notice in notices:
            try:
                if isinstance(notice, NewLeader):
                    if self.on_new_leader is not None:
                        self.on_new_leader(notice.identity)
                elif isinstance(notice, StartedLeading):
                    if self.on_started_leading is not None:
                        self.on_started_leading()
                elif self.on_stopped_leading is not None:
                    self.on_stopped_leading()
            except Exception as exc:
                report(type(notice).__name__, exc)
