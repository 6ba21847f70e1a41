"""A process that takes a shared lock or a semaphore, driven by tests/test_shared_processes.py.

``python tests/shared_worker.py --kind shared|exclusive|semaphore --api sync|async ...``
connects, prints ``READY <pid> <instance id>``, waits for one byte on
``--start-fd`` (end of file: abort), then acquires and releases its lock
``--iterations`` times, holding each time for a random 0 to ``--hold-ms`` ms.
Each hold is logged to the shared log with single ``O_APPEND`` writes:

* ``S <pid> <kind> <token> <called_ns> <start_ns>`` as soon as ``acquire``
  returns (``called_ns`` just before it was called);
* ``E <pid> <token> <end_ns> <lost>`` after the release: ``end_ns`` is when
  this holder stopped believing it held the lock, the moment ``release`` was
  called or, if earlier, the lock's loss deadline (a holder that was stopped
  past its lease stopped believing then); ``lost`` is 1 when ``release``
  raised :class:`~lockheed.LockLost`.

A hold whose process is killed has an ``S`` line and no ``E`` line. All stamps
are ``time.monotonic_ns`` (CLOCK_MONOTONIC: one clock for every process of
the host). Prints ``DONE <pid>`` at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import select
import sys
import time
from typing import Any

from lockheed import (
    AsyncConfigMapLocker,
    AsyncLock,
    AsyncSemaphore,
    ConfigMapLocker,
    Lock,
    LockLost,
    Semaphore,
)
from lockheed._core import Read

LIMIT = 3


def say(line: str) -> None:
    print(line, flush=True)


def wait_for_start(fd: int, timeout: float) -> bool:
    ready, _, _ = select.select([fd], [], [], timeout)
    return bool(ready) and os.read(fd, 1) != b""


def make(args: argparse.Namespace, locker: Any, asynchronous: bool) -> Any:
    lock: Any
    if args.kind == "semaphore":
        lock = (AsyncSemaphore if asynchronous else Semaphore)(args.lock, locker, LIMIT)
    else:
        lock = (AsyncLock if asynchronous else Lock)(args.lock, locker).with_mode(args.kind)
    return lock.with_duration(args.duration).with_renew_interval(args.renew_interval)


def believed_until(lock: Any, end: int) -> int:
    """When this holder stopped believing: ``end``, or its loss deadline if earlier."""
    deadline = lock._deadline  # monotonic seconds of this host; None: never
    if deadline is None:
        return end
    return min(end, int(deadline * 1e9))


class Log:
    def __init__(self, path: str):
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, line: str) -> None:
        os.write(self.fd, (line + "\n").encode())

    def close(self) -> None:
        os.close(self.fd)


def run_sync(args: argparse.Namespace) -> int:
    pid, rng, log = os.getpid(), random.Random(), Log(args.log)
    locker = ConfigMapLocker(args.namespace, config=args.kubeconfig)
    try:
        lock = make(args, locker, asynchronous=False)
        locker.execute(Read(args.lock))
        say(f"READY {pid} {lock.instance_id}")
        if not wait_for_start(args.start_fd, args.start_timeout):
            say(f"ABORTED {pid}")
            return 2
        for _ in range(args.iterations):
            called = time.monotonic_ns()
            token = lock.acquire(timeout=args.acquire_timeout)
            log.write(f"S {pid} {args.kind} {token} {called} {time.monotonic_ns()}")
            time.sleep(rng.uniform(0, args.hold_ms / 1000))
            end, lost = time.monotonic_ns(), 0
            # Before the release: a process killed while releasing held until here.
            log.write(f"R {pid} {token} {believed_until(lock, end)}")
            try:
                lock.release()
            except LockLost:
                lost = 1
            log.write(f"E {pid} {token} {believed_until(lock, end)} {lost}")
        say(f"DONE {pid}")
        return 0
    finally:
        log.close()
        locker.close()


async def run_async(args: argparse.Namespace) -> int:
    pid, rng, log = os.getpid(), random.Random(), Log(args.log)
    try:
        async with AsyncConfigMapLocker(args.namespace, config=args.kubeconfig) as locker:
            lock = make(args, locker, asynchronous=True)
            await locker.execute(Read(args.lock))
            say(f"READY {pid} {lock.instance_id}")
            started = await asyncio.to_thread(wait_for_start, args.start_fd, args.start_timeout)
            if not started:
                say(f"ABORTED {pid}")
                return 2
            for _ in range(args.iterations):
                called = time.monotonic_ns()
                token = await lock.acquire(timeout=args.acquire_timeout)
                log.write(f"S {pid} {args.kind} {token} {called} {time.monotonic_ns()}")
                await asyncio.sleep(rng.uniform(0, args.hold_ms / 1000))
                end, lost = time.monotonic_ns(), 0
                # Before the release: a process killed while releasing held until here.
                log.write(f"R {pid} {token} {believed_until(lock, end)}")
                try:
                    await lock.release()
                except LockLost:
                    lost = 1
                log.write(f"E {pid} {token} {believed_until(lock, end)} {lost}")
        say(f"DONE {pid}")
        return 0
    finally:
        log.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shared_worker")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--lock", required=True)
    parser.add_argument("--kind", choices=["shared", "exclusive", "semaphore"], required=True)
    parser.add_argument("--api", choices=["sync", "async"], required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--renew-interval", type=float, required=True)
    parser.add_argument("--iterations", type=int, required=True)
    parser.add_argument("--hold-ms", type=float, default=20.0)
    parser.add_argument("--log", required=True)
    parser.add_argument("--start-fd", type=int, required=True)
    parser.add_argument("--start-timeout", type=float, default=240.0)
    parser.add_argument("--acquire-timeout", type=float, default=600.0)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.api == "async":
        return asyncio.run(run_async(args))
    return run_sync(args)


if __name__ == "__main__":
    sys.exit(main())
