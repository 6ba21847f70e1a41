"""A benchmark process: ``python -m bench._worker MODE [options]``.

Protocol, one flushed line per step on stdout: ``READY`` once set up (connected,
locks held for ``hold-many``); then the worker waits (at most
``--start-timeout`` seconds) for ``GO <t_end>`` on stdin, where ``t_end`` is a
``time.monotonic()`` value (CLOCK_MONOTONIC, one clock for every process of the
host); it works until then and prints ``RESULT <json>``. A failure prints
``ERROR <text>`` and exits with status 1. Every wait is bounded.

Modes:

``contend --system lockheed-sync|lockheed-async|sherlock [--unfair]``
    Take and release one lock as fast as possible until ``t_end``, recording
    for every acquisition the monotonic time its contender began to ask (its
    first acquire call since its previous acquisition: an acquire that timed
    out and is called again is still the same request) and the time it got
    the lock (on the shared rows, also when it released it, its side and its
    fencing token). ``lockheed-async`` runs ``--tasks`` contenders as tasks of this
    one process. ``--unfair``: lockheed's locks race (``with_fair(False)``)
    instead of waiting in line. lockheed (sync) only: ``--limit N`` takes a
    ``Semaphore`` of N instead of a mutex; ``--readers F`` a shared lock, each
    acquisition shared with probability F, else exclusive.
``hold-many``
    Acquire ``--locks`` locks (lockheed sync) with a duration and renew
    interval, then hold them through the window and report this process's CPU
    time over the window, its VmRSS and VmHWM, and the renewals it saw.
``elect --elector lockheed|leaderelection``
    Campaign for leadership of ``--lock`` (``--lease-duration``,
    ``--renew-deadline``, ``--retry-period``) with lockheed's
    ``LeaderElector`` or the kubernetes client's ``LeaderElection.run()``:
    prints ``READY`` when campaigning and ``LEADING`` when it leads, then leads
    until it is ended. SIGTERM makes lockheed's elector release leadership and
    exit; the kubernetes client has no release (SIGTERM just ends it). No
    ``GO``, no ``RESULT``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import random
import select
import signal
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

LIMIT = 30.0  # the longest any single acquire may wait


def say(line: str) -> None:
    print(line, flush=True)


def wait_for_go(timeout: float) -> float:
    """The ``t_end`` of the ``GO`` line; raises if none arrives in time."""
    ready, _, _ = select.select([sys.stdin], [], [], timeout)
    line = sys.stdin.readline() if ready else ""
    if not line.startswith("GO "):
        raise RuntimeError(f"no start signal (got {line!r})")
    return float(line.split()[1])


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


# ------------------------------------------------------------------ contend


# asked, got, contender; on the shared rows also: released, "s" (shared: a
# reader, or a semaphore's holder) or "x" (exclusive), and the fencing token
Stamps = list[tuple[Any, ...]]
# acquisitions, the contenders, and how many acquires raised LockConflict instead of LockTimeout
Outcome = tuple[Stamps, list[str], int]


LOST = [0]  # releases that raised LockLost (lockheed sync)


def contend_lockheed(args: argparse.Namespace) -> Outcome:
    from lockheed import ConfigMapLocker, Lock, LockConflict, LockLost, LockTimeout

    locker = ConfigMapLocker(args.namespace, config=args.kubeconfig)
    pick = _kinds(args, locker)
    warm = Lock(f"{args.lock}-warm-{os.getpid()}", locker).with_duration(30)
    warm.acquire()
    warm.release()
    say("READY")
    t_end = wait_for_go(args.start_timeout)
    me = str(os.getpid())
    stamps: Stamps = []
    conflicts = 0
    asked: float | None = None
    while True:
        now = time.monotonic()
        remaining = t_end - now
        if remaining <= 0:
            break
        asked = now if asked is None else asked
        lock = pick()
        try:
            lock.acquire(timeout=min(LIMIT, remaining))
        except LockTimeout:
            continue
        except LockConflict:  # the timeout passed while writes kept conflicting
            conflicts += 1
            continue
        got = time.monotonic()
        asked, began, token = None, asked, lock.fencing_token
        try:
            lock.release()
        except LockLost:  # reported, not fatal: the lease ran out before the release
            LOST[0] += 1
        if args.limit is None and args.readers is None:
            stamps.append((began, got, me))
        else:  # the shared rows: when it left, its side and its token (see bench._contention)
            side = "x" if lock.mode == "exclusive" else "s"
            stamps.append((began, got, me, time.monotonic(), side, token))
    locker.close()
    return stamps, [me], conflicts


def _kinds(args: argparse.Namespace, locker: Any) -> Callable[[], Any]:
    """The lock to take next: a mutex; a Semaphore of ``--limit``; or, with
    ``--readers F``, a shared lock's shared side with probability F, else its
    exclusive side (two lock objects, so two instance IDs, in one contender)."""
    from lockheed import Lock, Semaphore

    def made(lock: Any) -> Any:
        return lock.with_duration(30).with_renew_interval(10).with_fair(not args.unfair)

    if args.limit is not None:
        only = made(Semaphore(args.lock, locker, args.limit))
        return lambda: only
    if args.readers is None:
        mutex = made(Lock(args.lock, locker))
        return lambda: mutex
    reader = made(Lock(args.lock, locker).with_shared())
    writer = made(Lock(args.lock, locker).with_exclusive())
    rng = random.Random()
    return lambda: reader if rng.random() < args.readers else writer


def contend_lockheed_async(args: argparse.Namespace) -> Outcome:
    return asyncio.run(_contend_async(args))


async def _contend_async(args: argparse.Namespace) -> Outcome:
    from lockheed import AsyncConfigMapLocker, AsyncLock, LockConflict, LockTimeout

    locker = AsyncConfigMapLocker(args.namespace, config=args.kubeconfig)
    warm = AsyncLock(f"{args.lock}-warm-{os.getpid()}", locker).with_duration(30)
    await warm.acquire()
    await warm.release()
    say("READY")
    t_end = await asyncio.to_thread(wait_for_go, args.start_timeout)
    stamps: Stamps = []
    conflicts = 0
    who = [f"{os.getpid()}-{i}" for i in range(args.tasks)]

    async def contender(me: str) -> None:
        nonlocal conflicts
        lock = AsyncLock(args.lock, locker).with_duration(30).with_renew_interval(10)
        lock = lock.with_fair(not args.unfair)
        asked: float | None = None
        while True:
            now = time.monotonic()
            remaining = t_end - now
            if remaining <= 0:
                return
            asked = now if asked is None else asked
            try:
                await lock.acquire(timeout=min(LIMIT, remaining))
            except LockTimeout:
                continue
            except LockConflict:  # the timeout passed while writes kept conflicting
                conflicts += 1
                continue
            stamps.append((asked, time.monotonic(), me))
            asked = None
            await lock.release()

    await asyncio.gather(*(contender(me) for me in who))
    await locker.aclose()
    return stamps, who, conflicts


def contend_sherlock(args: argparse.Namespace) -> Outcome:
    sherlock: Any = importlib.import_module("sherlock")
    kubernetes: Any = importlib.import_module("kubernetes")
    api_client = kubernetes.config.new_client_from_config(config_file=args.kubeconfig)
    client = kubernetes.client.CoordinationV1Api(api_client)
    lock = sherlock.KubernetesLock(args.lock, args.namespace, client=client)
    default_timeout = lock.timeout
    with contextlib.suppress(kubernetes.client.exceptions.ApiException):
        client.list_namespaced_lease(args.namespace, limit=1)  # connect before the start
    say("READY")
    t_end = wait_for_go(args.start_timeout)
    me = str(os.getpid())
    stamps: Stamps = []
    asked: float | None = None
    while True:
        now = time.monotonic()
        remaining = t_end - now
        if remaining <= 0:
            break
        asked = now if asked is None else asked
        lock.timeout = min(default_timeout, remaining)
        try:
            lock.acquire()
        except sherlock.LockTimeoutException:
            continue
        stamps.append((asked, time.monotonic(), me))
        asked = None
        lock.release()
    lock._owner = None  # KubernetesLock.__del__ would send one more GET
    api_client.close()
    return stamps, [me], 0


CONTENDERS = {
    "lockheed-sync": contend_lockheed,
    "lockheed-async": contend_lockheed_async,
    "sherlock": contend_sherlock,
}


# ---------------------------------------------------------------- hold-many


def _bare_put_cpu(args: argparse.Namespace, n: int = 100) -> float:
    """CPU seconds of one PUT of a small ConfigMap with the HTTP client lockheed uses
    (lightkube's httpx2 client, same parameters), for comparison with a renewal."""
    import httpx2
    from lightkube.config.client_adapter import Client, ConnectionParams
    from lightkube.config.kubeconfig import KubeConfig

    config = KubeConfig.from_file(args.kubeconfig).get()
    assert config is not None
    path = f"/api/v1/namespaces/{args.namespace}/configmaps"
    with Client(config, ConnectionParams(timeout=httpx2.Timeout(30.0))) as http:
        body: dict[str, Any] = {"metadata": {"name": "bare-put"}, "data": {"n": "0"}}
        current = http.post(path, json=body).json()

        def put(i: int) -> None:
            nonlocal current
            current["data"] = {"n": str(i)}
            current = http.put(f"{path}/bare-put", json=current).json()

        for i in range(5):  # warm-up
            put(i)
        start = time.process_time()
        for i in range(n):
            put(i)
        return (time.process_time() - start) / n


def hold_many(args: argparse.Namespace) -> dict[str, Any]:
    from lockheed import ConfigMapLocker, Event, EventCode, Lock

    renewals = 0
    lost = 0

    def on_event(event: Event) -> None:
        nonlocal renewals, lost
        if event.code == EventCode.RENEW_OK:
            renewals += 1
        elif event.code == EventCode.LOST:
            lost += 1

    locker = ConfigMapLocker(args.namespace, config=args.kubeconfig)
    locks = [
        Lock(f"many-{i}", locker)
        .with_duration(args.duration)
        .with_renew_interval(args.interval)
        .with_event_handler(on_event)
        for i in range(args.locks)
    ]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda lock: lock.acquire(timeout=LIMIT), locks))
    acquire_seconds = time.monotonic() - started
    bare_put_cpu = _bare_put_cpu(args)
    say("READY")
    t_end = wait_for_go(args.start_timeout)
    renewals = 0
    cpu0, wall0 = time.process_time(), time.monotonic()
    time.sleep(max(0.0, t_end - time.monotonic()))
    cpu1, wall1 = time.process_time(), time.monotonic()
    return {
        "locks": len(locks),
        "held": sum(1 for lock in locks if lock.held),
        "cpu_seconds": cpu1 - cpu0,
        "wall_seconds": wall1 - wall0,
        "rss_mb": _status_mb("VmRSS"),
        "hwm_mb": _status_mb("VmHWM"),
        "acquire_seconds": acquire_seconds,
        "bare_put_cpu": bare_put_cpu,
        "renewals": renewals,
        "lost": lost,
    }


# ------------------------------------------------------------------ elect


def elect(args: argparse.Namespace) -> None:
    if args.elector == "lockheed":
        from lockheed import ConfigMapLocker, LeaderElector, Lock

        with ConfigMapLocker(args.namespace, config=args.kubeconfig) as locker:
            elector = LeaderElector(
                Lock(args.lock, locker, instance_id=args.identity),
                lease_duration=args.lease_duration,
                renew_deadline=args.renew_deadline,
                retry_period=args.retry_period,
                on_started_leading=lambda: say("LEADING"),
            )
            signal.signal(signal.SIGTERM, lambda signum, frame: elector.stop())
            say("READY")
            elector.run()
        return
    kubernetes: Any = importlib.import_module("kubernetes")
    kubernetes.config.load_kube_config(config_file=args.kubeconfig)
    elections: Any = importlib.import_module("kubernetes.leaderelection.leaderelection")
    configs: Any = importlib.import_module("kubernetes.leaderelection.electionconfig")
    locks: Any = importlib.import_module("kubernetes.leaderelection.resourcelock.configmaplock")
    config = configs.Config(
        locks.ConfigMapLock(args.lock, args.namespace, args.identity),
        lease_duration=int(args.lease_duration),
        renew_deadline=int(args.renew_deadline),
        retry_period=int(args.retry_period),
        onstarted_leading=lambda: say("LEADING"),
        onstopped_leading=lambda: say("STOPPED"),
    )
    say("READY")
    elections.LeaderElection(config).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench._worker")
    parser.add_argument("mode", choices=["contend", "hold-many", "elect"])
    parser.add_argument("--system", choices=sorted(CONTENDERS), default="lockheed-sync")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--lock", default="contended")
    parser.add_argument("--tasks", type=int, default=1)
    parser.add_argument("--unfair", action="store_true", help="lockheed: with_fair(False)")
    parser.add_argument("--limit", type=int, help="lockheed (sync): a Semaphore of LIMIT")
    parser.add_argument("--readers", type=float, help="lockheed (sync): a shared lock, F shared")
    parser.add_argument("--locks", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--start-timeout", type=float, default=180.0)
    parser.add_argument("--elector", choices=["lockheed", "leaderelection"], default="lockheed")
    parser.add_argument("--identity", default=f"bench-{os.getpid()}")
    parser.add_argument("--lease-duration", type=float, default=17.0)
    parser.add_argument("--renew-deadline", type=float, default=15.0)
    parser.add_argument("--retry-period", type=float, default=5.0)
    args = parser.parse_args(argv)
    try:
        if args.mode == "elect":
            elect(args)
        elif args.mode == "contend":
            stamps, who, conflicts = CONTENDERS[args.system](args)
            result = {"stamps": stamps, "contenders": who, "conflicts": conflicts}
            result["lost"] = LOST[0]
            say("RESULT " + json.dumps(result))
        else:
            say("RESULT " + json.dumps(hold_many(args)))
    except Exception as exc:
        say(f"ERROR {exc!r}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
