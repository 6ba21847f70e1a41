"""Lock events, with Go lockheed's codes, sent to ``logging`` and an optional callback.

Codes: 211 renew ok, 511 renew failed, 212 release ok, 512 release failed,
213 acquire ok, 513 acquire failed, 214 renewal started, 215 renewal stopped,
299 debug; and lockheed's own 516: the lock was lost. They are logged on the
``lockheed`` logger: 516 at ERROR, 511 and 512 at WARNING, 513 at INFO, the
rest at DEBUG. A callback that raises is logged and otherwise ignored: events
never change a lock's behaviour.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

__all__ = ["Event", "EventCode", "EventHandler", "emit"]

logger = logging.getLogger("lockheed")


class EventCode(IntEnum):
    RENEW_OK = 211
    RELEASE_OK = 212
    ACQUIRE_OK = 213
    RENEWAL_STARTED = 214
    RENEWAL_STOPPED = 215
    DEBUG = 299
    RENEW_FAILED = 511
    RELEASE_FAILED = 512
    ACQUIRE_FAILED = 513
    LOST = 516


@dataclass(frozen=True)
class Event:
    code: EventCode
    lock: str
    instance_id: str
    message: str
    error: BaseException | None = None


EventHandler = Callable[[Event], None]

# A timed-out acquire is an answer, not a fault: only failures of a lock that is
# held (renewal, release) warn, and only a loss is an error.
_LEVELS = {
    EventCode.ACQUIRE_FAILED: logging.INFO,
    EventCode.RENEW_FAILED: logging.WARNING,
    EventCode.RELEASE_FAILED: logging.WARNING,
    EventCode.LOST: logging.ERROR,
}


def emit(handler: EventHandler | None, event: Event) -> None:
    level = _LEVELS.get(event.code, logging.DEBUG)
    if logger.isEnabledFor(level):
        logger.log(
            level, "[%d] lock %s (%s): %s", event.code, event.lock, event.instance_id, event.message
        )
    if handler is not None:
        try:
            handler(event)
        except Exception:
            logger.exception("lockheed event handler failed on %r", event)
