"""A process that takes a lockheed lock, driven by tests/test_processes.py.

Run as ``python tests/lock_worker.py MODE ...`` (or ``python -m lock_worker`` with
``tests`` on ``sys.path``). Every wait is bounded, so a worker always exits on its
own; it reports on stdout, one flushed line per step.

``contend``
    Connects, prints ``READY <pid>``, then waits for the start signal: one byte
    on ``--start-fd`` (end of file without a byte means "abort"). It then
    acquires and releases the lock ``--iterations`` times. Inside each hold it
    increments a counter file by a plain read-modify-write, and after each
    release it appends ``token start_ns end_ns pid call_ns joined`` to the
    shared log with a single ``O_APPEND`` write. ``call_ns`` is taken just
    before ``acquire`` is called, ``start_ns`` as soon as it returns and
    ``end_ns`` just before ``release`` is called, all from
    ``time.monotonic_ns``. That is CLOCK_MONOTONIC on Linux: one system-wide
    clock, so stamps from different processes on this host can be compared.
    ``joined`` is the resourceVersion of the write by which this acquire last
    joined the line of waiters (``lockheed/queue``), 0 if it never joined
    (it took the lock at once). Prints ``DONE <pid> <count>`` at the end.

``wait``
    Connects, prints ``READY <pid>``, waits for one byte on ``--start-fd`` if
    given (end of file: abort), then acquires once (joining the line
    when the lock is held), prints ``HELD <token> <acquired_ns>``, releases at
    once and prints ``RELEASED <released_ns>`` (``time.monotonic_ns`` after
    ``release`` returned).

``hold``
    Acquires once with a short lease renewed in the background, registers an
    ``on_lost`` callback that prints ``LOST <reason>``, prints
    ``HELD <token> <instance id>`` and waits to be told of the loss. Then it
    calls ``release`` and prints ``RELEASE-RAISED LockLost <message>`` (the
    expected outcome), ``RELEASED`` or ``NOT-LOST``.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import os
import select
import sys
import threading
import time
from typing import Any

from lockheed import AsyncConfigMapLocker, AsyncLock, ConfigMapLocker, Lock, LockLost
from lockheed._core import Read, Replace
from lockheed._queue import read_queue
from lockheed._state import Record


def say(line: str) -> None:
    print(line, flush=True)


def wait_for_start(fd: int, timeout: float) -> bool:
    """Block until the start byte arrives on ``fd``; False on end of file or timeout."""
    ready, _, _ = select.select([fd], [], [], timeout)
    return bool(ready) and os.read(fd, 1) != b""


def _joined(effect: Any, result: Any, me: str) -> int | None:
    """The version of a write of ours that put ``me`` in the line, else None."""
    if not isinstance(effect, Replace) or not isinstance(result, Record):
        return None
    before = {w.instance_id for w in read_queue(effect.base.meta)}
    after = {w.instance_id for w in read_queue(result.meta)}
    return int(result.version) if me in after and me not in before else None


def observe_joins(locker: Any, me: str, joins: list[int]) -> None:
    """Append to ``joins`` the version of every write of ``locker`` that put
    ``me`` in the line (the locker's ``execute`` is wrapped; sync or async)."""
    inner = locker.execute
    if inspect.iscoroutinefunction(inner):

        async def aexecute(effect: Any) -> Any:
            result = await inner(effect)
            joined = _joined(effect, result, me)
            if joined is not None:
                joins.append(joined)
            return result

        locker.execute = aexecute
        return

    def execute(effect: Any) -> Any:
        result = inner(effect)
        joined = _joined(effect, result, me)
        if joined is not None:
            joins.append(joined)
        return result

    locker.execute = execute


def contend(args: argparse.Namespace) -> int:
    if args.api == "async":
        return asyncio.run(contend_async(args))
    pid = os.getpid()
    locker = ConfigMapLocker(args.namespace, config=args.kubeconfig)
    lock = (
        Lock(args.lock, locker)
        .with_duration(args.duration)
        .with_renew_interval(args.renew_interval)
    )
    joins: list[int] = []
    observe_joins(locker, lock.instance_id, joins)
    log = os.open(args.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    counter = os.open(args.counter, os.O_RDWR)
    try:
        # Open the connection and sample the server's clock before the start,
        # so that all workers begin contending at once.
        locker.execute(Read(args.lock))
        say(f"READY {pid}")
        if not wait_for_start(args.start_fd, args.start_timeout):
            say(f"ABORTED {pid}")
            return 2
        os.close(args.start_fd)
        for _ in range(args.iterations):
            joins.clear()
            called = time.monotonic_ns()
            token = lock.acquire(timeout=args.acquire_timeout)
            start, end = critical_section(counter)
            try:
                lock.release()
            finally:  # a hold that ended in LockLost is logged too, then fails the worker
                joined = joins[-1] if joins else 0
                os.write(log, f"{token} {start} {end} {pid} {called} {joined}\n".encode())
        say(f"DONE {pid} {args.iterations}")
        return 0
    finally:
        os.close(counter)
        os.close(log)
        locker.close()


def critical_section(counter: int) -> tuple[int, int]:
    start = time.monotonic_ns()
    # A read-modify-write that loses increments unless holds exclude each other.
    value = int(os.pread(counter, 32, 0) or b"0")
    os.pwrite(counter, b"%-31d\n" % (value + 1), 0)
    return start, time.monotonic_ns()


async def contend_async(args: argparse.Namespace) -> int:
    """The same as :func:`contend` with the asyncio API."""
    pid = os.getpid()
    log = os.open(args.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    counter = os.open(args.counter, os.O_RDWR)
    try:
        async with AsyncConfigMapLocker(args.namespace, config=args.kubeconfig) as locker:
            lock = (
                AsyncLock(args.lock, locker)
                .with_duration(args.duration)
                .with_renew_interval(args.renew_interval)
            )
            joins: list[int] = []
            observe_joins(locker, lock.instance_id, joins)
            await locker.execute(Read(args.lock))
            say(f"READY {pid}")
            started = await asyncio.to_thread(wait_for_start, args.start_fd, args.start_timeout)
            if not started:
                say(f"ABORTED {pid}")
                return 2
            os.close(args.start_fd)
            for _ in range(args.iterations):
                joins.clear()
                called = time.monotonic_ns()
                token = await lock.acquire(timeout=args.acquire_timeout)
                start, end = critical_section(counter)
                try:
                    await lock.release()
                finally:
                    joined = joins[-1] if joins else 0
                    os.write(log, f"{token} {start} {end} {pid} {called} {joined}\n".encode())
        say(f"DONE {pid} {args.iterations}")
        return 0
    finally:
        os.close(counter)
        os.close(log)


def wait(args: argparse.Namespace) -> int:
    locker = ConfigMapLocker(args.namespace, config=args.kubeconfig)
    try:
        lock = (
            Lock(args.lock, locker, instance_id=args.instance_id)
            .with_duration(args.duration)
            .with_renew_interval(args.renew_interval)
        )
        locker.execute(Read(args.lock))  # connect first: READY means about to join
        say(f"READY {os.getpid()}")
        if args.start_fd is not None and not wait_for_start(args.start_fd, args.acquire_timeout):
            say(f"ABORTED {os.getpid()}")
            return 2
        token = lock.acquire(timeout=args.acquire_timeout)
        say(f"HELD {token} {time.monotonic_ns()}")
        lock.release()
        say(f"RELEASED {time.monotonic_ns()}")
        return 0
    finally:
        locker.close()


def hold(args: argparse.Namespace) -> int:
    locker = ConfigMapLocker(args.namespace, config=args.kubeconfig)
    try:
        lock = (
            Lock(args.lock, locker, instance_id=args.instance_id)
            .with_duration(args.duration)
            .with_renew_interval(args.renew_interval)
        )
        lost = threading.Event()

        def on_lost(error: LockLost) -> None:
            say(f"LOST {error}")
            lost.set()

        lock.on_lost(on_lost)
        token = lock.acquire(timeout=args.acquire_timeout)
        say(f"HELD {token} {lock.instance_id}")
        if not lost.wait(args.lost_timeout):
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


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="lock_worker", description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--kubeconfig", required=True)
    common.add_argument("--namespace", required=True)
    common.add_argument("--lock", required=True)
    common.add_argument("--duration", type=float, required=True)
    common.add_argument("--renew-interval", type=float, required=True)
    common.add_argument("--acquire-timeout", type=float, default=60.0)
    modes = parser.add_subparsers(dest="mode", required=True)

    c = modes.add_parser("contend", parents=[common])
    c.add_argument("--iterations", type=int, required=True)
    c.add_argument("--api", choices=["sync", "async"], default="sync")
    c.add_argument("--log", required=True)
    c.add_argument("--counter", required=True)
    c.add_argument("--start-fd", type=int, required=True)
    c.add_argument("--start-timeout", type=float, default=120.0)
    c.set_defaults(run=contend)

    w = modes.add_parser("wait", parents=[common])
    w.add_argument("--instance-id", required=True)
    w.add_argument("--start-fd", type=int)
    w.set_defaults(run=wait)

    h = modes.add_parser("hold", parents=[common])
    h.add_argument("--instance-id")
    h.add_argument("--lost-timeout", type=float, default=120.0)
    h.set_defaults(run=hold)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
