"""A process that holds or contends for a lockheed lock under injected faults,
driven by tests/reliability and tests/soak.py.

Run as ``python tests/fault_worker.py MODE ...``. Every wait is bounded, so a
worker always exits on its own; it reports on stdout, one flushed line per
step. Times are ``time.monotonic_ns()``: CLOCK_MONOTONIC on Linux, one clock
for every process of the host, so a test can compare them with its own.

``hold``
    Acquires once and prints ``HELD <token> <instance id>``. Then, every
    ``--check-interval`` seconds, it prints ``CHECK <t> <0|1>``: ``t`` is taken
    *before* reading ``lock.held``, so a 1 means the lock believed itself held
    at ``t`` at least (even if the process was stopped in between). The
    ``on_lost`` callback prints ``LOST <t> <reason>``. Once lost and no longer
    held, it calls ``release`` and prints ``RELEASE-RAISED LockLost <message>``
    (the expected outcome), ``RELEASED`` or, if never lost, ``NOT-LOST``.

``soak``
    Acquires and releases the lock until SIGTERM, holding it briefly (now and
    then for seconds, so it is renewed). Each hold appends one line to
    ``--log`` with a single ``O_APPEND`` write::

        HOLD <pid> <instance> <token> <start> <end> <write> <deadline> <notice> <release> <outcome>

    ``start``: ``acquire`` returned; ``end``: the last moment the lock believed
    itself held (``t`` as above just before ``release``, or, if it no longer
    did, its loss deadline: when ``held`` turned False); ``write``: when the
    write that made it the holder was sent; ``deadline``: its loss deadline at
    the end (0: none); ``notice``: when ``on_lost`` was called (0: not lost);
    ``release``: when ``release`` was called; ``outcome``: ``ok``, ``lost`` or
    the error's type. A failed acquire appends
    ``FAIL <pid> <instance> <time> <error type>``, and the worker pauses briefly.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sys
import threading
import time
from typing import Any

from fault_support import Traffic
from lockheed import AsyncConfigMapLocker, AsyncLock, ConfigMapLocker, Lock, LockError, LockLost
from lockheed._clock import ServerClock

FAIL_PAUSE = 0.2  # after a failed acquire, as a user's loop would wait before trying again


def say(line: str) -> None:
    print(line, flush=True)


def ns(seconds: float | None) -> int:
    return 0 if seconds is None else int(seconds * 1e9)


def clock(offset: float) -> ServerClock:
    """A server clock whose idea of this host's wall clock is ``offset`` seconds off."""
    return ServerClock(wall=lambda: time.time() + offset)


def lock_of(args: argparse.Namespace, locker: Any, cls: type[Any]) -> Any:
    return (
        cls(args.lock, locker, instance_id=args.instance_id)
        .with_duration(args.duration)
        .with_renew_interval(args.renew_interval)
    )


# ---------------------------------------------------------------- hold


def hold(args: argparse.Namespace) -> int:
    if args.api == "async":
        return asyncio.run(hold_async(args))
    locker = ConfigMapLocker(args.namespace, config=args.kubeconfig, clock=clock(args.clock_offset))
    try:
        lock = lock_of(args, locker, Lock)
        lost = threading.Event()

        def on_lost(error: LockLost) -> None:
            say(f"LOST {time.monotonic_ns()} {error}")
            lost.set()

        lock.on_lost(on_lost)
        token = lock.acquire(timeout=args.acquire_timeout)
        say(f"HELD {token} {lock.instance_id}")
        deadline = time.monotonic() + args.lost_timeout
        while time.monotonic() < deadline:
            t = time.monotonic_ns()
            held = lock.held
            say(f"CHECK {t} {int(held)}")
            if lost.is_set() and not held:
                break
            time.sleep(args.check_interval)
        else:
            say("NOT-LOST")
            lock.release()
            return 3
        try:
            lock.release()
        except LockLost as error:
            say(f"RELEASE-RAISED LockLost {error}")
            return 0
        say("RELEASED")
        return 4
    finally:
        locker.close()


async def hold_async(args: argparse.Namespace) -> int:
    async with AsyncConfigMapLocker(
        args.namespace, config=args.kubeconfig, clock=clock(args.clock_offset)
    ) as locker:
        lock = lock_of(args, locker, AsyncLock)

        def on_lost(error: LockLost) -> None:
            say(f"LOST {time.monotonic_ns()} {error}")

        lock.on_lost(on_lost)
        token = await lock.acquire(timeout=args.acquire_timeout)
        say(f"HELD {token} {lock.instance_id}")
        deadline = time.monotonic() + args.lost_timeout
        while time.monotonic() < deadline:
            t = time.monotonic_ns()
            held = lock.held
            say(f"CHECK {t} {int(held)}")
            if lock.lost is not None and not held:
                break
            await asyncio.sleep(args.check_interval)
        else:
            say("NOT-LOST")
            await lock.release()
            return 3
        try:
            await lock.release()
        except LockLost as error:
            say(f"RELEASE-RAISED LockLost {error}")
            return 0
        say("RELEASED")
        return 4


# ---------------------------------------------------------------- soak


class Soak:
    """The bookkeeping of one soak worker, the same for both APIs."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.pid = os.getpid()
        self.stop = threading.Event()
        self.notice = 0
        self.log = os.open(args.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.random = random.Random(args.seed)
        signal.signal(signal.SIGTERM, lambda *_: self.stop.set())

    def on_lost(self, error: LockLost) -> None:
        self.notice = time.monotonic_ns()

    def hold_time(self) -> float:
        if self.random.random() < self.args.long_hold_fraction:
            return self.random.uniform(0.5, 2.0)  # long enough to be renewed
        return self.random.uniform(0.0, 0.02)

    def write(self, line: str) -> None:
        os.write(self.log, f"{line}\n".encode())

    def held_until(self, lock: Any) -> tuple[int, int]:
        """``(end, deadline)``: see the module docstring."""
        t = time.monotonic_ns()
        held = lock.held
        deadline = ns(getattr(lock, "_deadline", None))  # when ``held`` turns False
        return (t if held else deadline), deadline

    def record(self, lock: Any, token: int, times: tuple[int, ...], out: str) -> None:
        start, end, write, deadline, release = times
        self.write(
            f"HOLD {self.pid} {lock.instance_id} {token} {start} {end} {write} {deadline} "
            f"{self.notice} {release} {out}"
        )

    def fail(self, lock: Any, error: BaseException) -> None:
        self.write(
            f"FAIL {self.pid} {lock.instance_id} {time.monotonic_ns()} {type(error).__name__}"
        )


def soak(args: argparse.Namespace) -> int:
    if args.api == "async":
        return asyncio.run(soak_async(args))
    state = Soak(args)
    locker = ConfigMapLocker(args.namespace, config=args.kubeconfig, clock=clock(args.clock_offset))
    traffic = Traffic(locker)
    lock = lock_of(args, locker, Lock).on_lost(state.on_lost)
    say(f"READY {state.pid} {lock.instance_id}")
    try:
        while not state.stop.is_set():
            state.notice = 0
            try:
                token = lock.acquire(timeout=args.acquire_timeout)
            except LockError as error:
                state.fail(lock, error)
                time.sleep(FAIL_PAUSE)
                continue
            start, write = time.monotonic_ns(), ns(traffic.last_write[0])
            time.sleep(state.hold_time())  # the work done under the lock
            end, deadline = state.held_until(lock)
            outcome, release = "ok", time.monotonic_ns()
            try:
                lock.release()
            except LockLost:
                outcome = "lost"
            except LockError as error:
                outcome = type(error).__name__
            state.record(lock, token, (start, end, write, deadline, release), outcome)
            time.sleep(state.random.uniform(0, 0.01))  # let a waiter in now and then
    finally:
        locker.close()
    return 0


async def soak_async(args: argparse.Namespace) -> int:
    state = Soak(args)
    async with AsyncConfigMapLocker(
        args.namespace, config=args.kubeconfig, clock=clock(args.clock_offset)
    ) as locker:
        traffic = Traffic(locker)
        lock = lock_of(args, locker, AsyncLock).on_lost(state.on_lost)
        say(f"READY {state.pid} {lock.instance_id}")
        while not state.stop.is_set():
            state.notice = 0
            try:
                token = await lock.acquire(timeout=args.acquire_timeout)
            except LockError as error:
                state.fail(lock, error)
                await asyncio.sleep(FAIL_PAUSE)
                continue
            start, write = time.monotonic_ns(), ns(traffic.last_write[0])
            await asyncio.sleep(state.hold_time())
            end, deadline = state.held_until(lock)
            outcome, release = "ok", time.monotonic_ns()
            try:
                await lock.release()
            except LockLost:
                outcome = "lost"
            except LockError as error:
                outcome = type(error).__name__
            state.record(lock, token, (start, end, write, deadline, release), outcome)
            await asyncio.sleep(state.random.uniform(0, 0.01))
    return 0


# ---------------------------------------------------------------- command line


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fault_worker", description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--kubeconfig", required=True)
    common.add_argument("--namespace", required=True)
    common.add_argument("--lock", required=True)
    common.add_argument("--duration", type=float, required=True)
    common.add_argument("--renew-interval", type=float, required=True)
    common.add_argument("--acquire-timeout", type=float, default=60.0)
    common.add_argument("--instance-id")
    common.add_argument("--api", choices=["sync", "async"], default="sync")
    common.add_argument("--clock-offset", type=float, default=0.0)
    modes = parser.add_subparsers(dest="mode", required=True)

    h = modes.add_parser("hold", parents=[common])
    h.add_argument("--check-interval", type=float, default=0.05)
    h.add_argument("--lost-timeout", type=float, default=120.0)
    h.set_defaults(run=hold)

    s = modes.add_parser("soak", parents=[common])
    s.add_argument("--log", required=True)
    s.add_argument("--long-hold-fraction", type=float, default=0.05)
    s.add_argument("--seed", type=int, default=None)
    s.set_defaults(run=soak)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
