"""A process that takes part in a leader election, driven by tests/test_election.py.

Run as ``python tests/elect_worker.py MODE ...``. Every wait is bounded, so a
worker always exits on its own; it reports on stdout, one flushed line per step.

``terms``
    Connects, prints ``READY <pid>``, waits for one byte on ``--start-fd`` (end
    of file: abort), then leads ``--terms`` times: each term is one
    ``run(work)`` whose work increments a counter file by a plain
    read-modify-write and appends ``token start_ns end_ns pid`` to the shared
    log (``time.monotonic_ns``, comparable across processes on this host) with
    one ``O_APPEND`` write before returning, which ends the term and releases
    leadership. Prints ``DONE <pid> <terms>``.

``lead``
    Leads once until SIGTERM: prints ``NEW-LEADER <identity>`` for each leader
    it sees, ``LEADING <token> <lease expiry, ISO>`` when it leads,
    ``BELIEVES <ISO>`` after each acquire and renewal (sync API: until when, on
    this host's wall clock, it believes it leads: its loss deadline), and on
    SIGTERM (handled by ``stop()``, as the README shows) releases and prints
    ``STOPPED`` before exiting 0. ``--backend lease`` campaigns on a Lease
    (client-go's record) instead of a ConfigMap.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import select
import signal
import sys
import threading
import time
from datetime import datetime, timezone
from typing import Any

from lockheed import (
    AsyncConfigMapLocker,
    AsyncLeaderElector,
    AsyncLeaseLocker,
    AsyncLock,
    ConfigMapLocker,
    Event,
    EventCode,
    LeaderElector,
    LeaseLocker,
    Lock,
)
from lockheed._core import Read


def say(line: str) -> None:
    print(line, flush=True)


def wait_for_start(fd: int, timeout: float) -> bool:
    ready, _, _ = select.select([fd], [], [], timeout)
    return bool(ready) and os.read(fd, 1) != b""


def critical_section(counter: int) -> tuple[int, int]:
    start = time.monotonic_ns()
    value = int(os.pread(counter, 32, 0) or b"0")
    time.sleep(0.01)  # widen the read-modify-write, so overlapping terms would lose counts
    os.pwrite(counter, b"%-31d\n" % (value + 1), 0)
    return start, time.monotonic_ns()


def timing(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "lease_duration": args.lease_duration,
        "renew_deadline": args.renew_deadline,
        "retry_period": args.retry_period,
    }


def terms(args: argparse.Namespace) -> int:
    if args.api == "async":
        return asyncio.run(terms_async(args))
    pid = os.getpid()
    log = os.open(args.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    counter = os.open(args.counter, os.O_RDWR)
    try:
        with ConfigMapLocker(args.namespace, config=args.kubeconfig) as locker:
            elector = LeaderElector(Lock(args.lock, locker), **timing(args))

            def work(ended: threading.Event) -> None:
                assert elector.is_leader and not ended.is_set()
                start, end = critical_section(counter)
                os.write(log, f"{elector.lock.fencing_token} {start} {end} {pid}\n".encode())

            locker.execute(Read(args.lock))
            say(f"READY {pid}")
            if not wait_for_start(args.start_fd, args.start_timeout):
                say(f"ABORTED {pid}")
                return 2
            for _ in range(args.terms):
                elector.run(work, once=True)
        say(f"DONE {pid} {args.terms}")
        return 0
    finally:
        os.close(counter)
        os.close(log)


async def terms_async(args: argparse.Namespace) -> int:
    pid = os.getpid()
    log = os.open(args.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    counter = os.open(args.counter, os.O_RDWR)
    try:
        async with AsyncConfigMapLocker(args.namespace, config=args.kubeconfig) as locker:
            elector = AsyncLeaderElector(AsyncLock(args.lock, locker), **timing(args))

            async def work() -> None:
                assert elector.is_leader
                start, end = critical_section(counter)
                os.write(log, f"{elector.lock.fencing_token} {start} {end} {pid}\n".encode())

            await locker.execute(Read(args.lock))
            say(f"READY {pid}")
            started = await asyncio.to_thread(wait_for_start, args.start_fd, args.start_timeout)
            if not started:
                say(f"ABORTED {pid}")
                return 2
            for _ in range(args.terms):
                await elector.run(work, once=True)
        say(f"DONE {pid} {args.terms}")
        return 0
    finally:
        os.close(counter)
        os.close(log)


def lead(args: argparse.Namespace) -> int:
    if args.api == "async":
        return asyncio.run(lead_async(args))
    lockers: dict[str, type[ConfigMapLocker | LeaseLocker]]
    lockers = {"configmap": ConfigMapLocker, "lease": LeaseLocker}
    with lockers[args.backend](args.namespace, config=args.kubeconfig) as locker:
        lock = Lock(args.lock, locker, instance_id=args.identity)

        def believes(event: Event) -> None:
            deadline = lock._deadline
            if event.code in (EventCode.ACQUIRE_OK, EventCode.RENEW_OK) and deadline is not None:
                until = time.time() + deadline - time.monotonic()
                say(f"BELIEVES {datetime.fromtimestamp(until, timezone.utc).isoformat()}")

        lock.with_event_handler(believes)
        elector = LeaderElector(
            lock, on_new_leader=lambda who: say(f"NEW-LEADER {who}"), **timing(args)
        )
        signal.signal(signal.SIGTERM, lambda signum, frame: elector.stop())

        def work(ended: threading.Event) -> str:
            expires = lock.expires_at
            assert expires is not None
            say(f"LEADING {lock.fencing_token} {expires.isoformat()}")
            if not ended.wait(args.lead_timeout):
                return "TIMEOUT"
            return "ENDED"

        result = elector.run(work, once=True)
    say(f"STOPPED {result}")
    return 0


async def lead_async(args: argparse.Namespace) -> int:
    lockers: dict[str, type[AsyncConfigMapLocker | AsyncLeaseLocker]]
    lockers = {"configmap": AsyncConfigMapLocker, "lease": AsyncLeaseLocker}
    async with lockers[args.backend](args.namespace, config=args.kubeconfig) as locker:
        lock = AsyncLock(args.lock, locker, instance_id=args.identity)
        elector = AsyncLeaderElector(
            lock, on_new_leader=lambda who: say(f"NEW-LEADER {who}"), **timing(args)
        )
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, elector.stop)

        async def work() -> str:
            expires = lock.expires_at
            assert expires is not None
            say(f"LEADING {lock.fencing_token} {expires.isoformat()}")
            try:
                await asyncio.sleep(args.lead_timeout)
            except asyncio.CancelledError:
                say("CANCELLED")
                raise
            return "TIMEOUT"

        result = await elector.run(work, once=True)
    say(f"STOPPED {result}")
    return 0


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="elect_worker", description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--kubeconfig", required=True)
    common.add_argument("--namespace", required=True)
    common.add_argument("--lock", required=True)
    common.add_argument("--api", choices=["sync", "async"], default="sync")
    common.add_argument("--lease-duration", type=float, required=True)
    common.add_argument("--renew-deadline", type=float, required=True)
    common.add_argument("--retry-period", type=float, required=True)
    modes = parser.add_subparsers(dest="mode", required=True)

    t = modes.add_parser("terms", parents=[common])
    t.add_argument("--terms", type=int, required=True)
    t.add_argument("--log", required=True)
    t.add_argument("--counter", required=True)
    t.add_argument("--start-fd", type=int, required=True)
    t.add_argument("--start-timeout", type=float, default=120.0)
    t.set_defaults(run=terms)

    lead_mode = modes.add_parser("lead", parents=[common])
    lead_mode.add_argument("--identity", required=True)
    lead_mode.add_argument("--lead-timeout", type=float, default=120.0)
    lead_mode.add_argument("--backend", choices=["configmap", "lease"], default="configmap")
    lead_mode.set_defaults(run=lead)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
