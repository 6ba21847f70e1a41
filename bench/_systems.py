"""The systems under test, each behind the same small interface.

An adapter performs the benchmark's operations the way its library is meant to
be used, at the library's default settings except where a figure fixes one
(the renew interval), and raises :class:`Unsupported` for an operation the
library does not have. Every wait is bounded.

* :class:`LockheedSync` / :class:`LockheedAsync`: ``Lock`` with a
  ``ConfigMapLocker``, ``AsyncLock`` with an ``AsyncConfigMapLocker`` (one event
  loop owned by the adapter; a whole figure runs inside one coroutine).
* :class:`LockheedLease`: ``Lock`` with a ``LeaseLocker``, otherwise as
  :class:`LockheedSync` (same core and transport; contention is measured on
  ConfigMaps only).
* :class:`Sherlock`: ``sherlock.KubernetesLock`` (a Lease per lock, through the
  official ``kubernetes`` client), defaults ``expire=60``, ``timeout=10``,
  ``retry_interval=0.1`` (a blocked acquire polls).
* :class:`LeaderElection`: ``kubernetes.leaderelection`` with its
  ``ConfigMapLock``. It has no release: a leader renews until it stops, and a
  candidate takes over once it has seen the record unchanged for a whole lease.
  ``LeaderElection.run()`` loops forever, so the adapter runs the same steps
  (``try_acquire_or_renew`` every ``retry_period``) in loops of its own that
  end by themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import itertools
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ._metrics import Batch, Meter
from ._results import Renewal
from ._sizes import Election

__all__ = [
    "OPS",
    "Env",
    "LeaderElection",
    "LockheedAsync",
    "LockheedLease",
    "LockheedSync",
    "Sherlock",
    "System",
    "Unsupported",
    "package_version",
    "thread_handoffs",
]

T = TypeVar("T")
OPS = ("acquire-new", "acquire-free", "renew", "release")
WAIT_LIMIT = 30.0  # no single acquire in the benchmark may wait longer
SETTLE = 0.15  # time given to a waiter to block before the holder releases


def renew_in_threads(
    meter: Meter, renewals: list[Callable[[], object]], interval: float, window: float
) -> Batch:
    """Call each renewal every ``interval`` from a thread of its own (for systems
    without background renewal) and count the requests of a ``window``."""
    stop = threading.Event()

    def loop(renew: Callable[[], object]) -> None:
        while not stop.wait(interval):
            renew()

    threads = [threading.Thread(target=loop, args=(r,), daemon=True) for r in renewals]
    for thread in threads:
        thread.start()
    try:
        time.sleep(min(0.5, interval / 2))
        with meter.batch() as batch:
            time.sleep(window)
    finally:
        stop.set()
        for thread in threads:
            thread.join(WAIT_LIMIT)
    return batch


def timed_cycles(
    acquire: Callable[[], object], release: Callable[[], object], n: int
) -> list[float]:
    """``n`` acquire+release cycles after three warm-up ones, each timed in seconds."""
    for _ in range(3):
        acquire()
        release()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        acquire()
        release()
        samples.append(time.perf_counter() - start)
    return samples


class Unsupported(Exception):
    """The system cannot do this operation; the message says why."""


@dataclass(frozen=True)
class Env:
    kubeconfig: Path
    namespace: str


def _module(name: str) -> Any:
    return importlib.import_module(name)


def package_version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def _check(ok: object, what: str) -> None:
    if ok is not True:
        raise RuntimeError(f"{what} returned {ok!r}")


def thread_handoffs(
    n: int,
    holder: Any,
    waiter: Any,
    acquire: Callable[[Any], object],
    release: Callable[[Any], object],
    rng: random.Random,
) -> list[float]:
    """Hand-offs between two lock objects in two threads of this process.

    Each round the holder takes the lock, a thread starts a blocking acquire
    with the waiter, the holder releases after a short random pause, and the
    sample is the waiter's ``time.monotonic()`` just after its acquire returned
    minus the holder's just after its release returned.
    """

    def wait(got: dict[str, Any]) -> None:
        try:
            acquire(waiter)
            got["t"] = time.monotonic()
            release(waiter)
        except BaseException as exc:
            got["error"] = exc

    samples: list[float] = []
    for _ in range(n):
        acquire(holder)
        got: dict[str, Any] = {}
        thread = threading.Thread(target=wait, args=(got,), name="bench-waiter", daemon=True)
        thread.start()
        time.sleep(SETTLE + rng.uniform(0.0, 0.1))
        release(holder)
        released = time.monotonic()
        thread.join(WAIT_LIMIT)
        if thread.is_alive():
            raise RuntimeError("the waiter did not get the lock within 30 s")
        if "error" in got:
            raise RuntimeError(f"the waiter failed: {got['error']!r}") from got["error"]
        samples.append(got["t"] - released)
    return samples


class System:
    """One system under test; subclasses override what they can do."""

    key = ""
    label = ""
    requires: tuple[str, ...] = ()  # modules that must be importable
    contend_mode: str | None = None  # bench._worker mode for the contention figure
    contend_reason = ""

    def __init__(self, env: Env) -> None:
        self.env = env
        self._names = itertools.count()
        self.rng = random.Random(7)

    def fresh(self, prefix: str) -> str:
        return f"{prefix}-{next(self._names)}"

    def settings(self) -> str:
        return ""

    def op_repeats(self, op: str, default: int) -> int:
        return default

    def operation(self, op: str) -> contextlib.AbstractContextManager[Callable[[], object]]:
        """Set up for ``op``; yield the call that performs it; clean up after."""
        raise Unsupported(f"no {op}")

    def cycles(self, n: int) -> list[float]:
        raise Unsupported("no release")

    def handoffs(self, n: int) -> list[float]:
        raise Unsupported("no hand-off")

    def renewal(self, meter: Meter, locks: int, interval: float, window: float) -> Renewal:
        raise Unsupported("no renewal")

    def close(self) -> None:
        """Release what the adapter holds."""


class _Rounds:
    """When lockheed's held locks were renewed. The renewer renews the locks of
    one locker that fall due together in one exchange, so they renew in step:
    a window that began just before a round would count one renewal more for
    every lock, one that began just after it one less. lockheed's window
    therefore begins half an interval after a round, and holds whole rounds."""

    def __init__(self, locks: int):
        self.locks = locks
        self.renewed: dict[str, float] = {}
        self.all = threading.Event()

    def seen(self, event: Any) -> None:
        from lockheed import EventCode

        if event.code == EventCode.RENEW_OK:
            self.renewed[event.lock] = time.monotonic()
            if len(self.renewed) == self.locks:
                self.all.set()

    def until_mid_round(self, interval: float) -> float:
        """Wait until every lock has renewed once; return the time until half an
        interval after a round."""
        limit = 10 * interval + 30.0
        if not self.all.wait(limit):
            raise RuntimeError(f"the held locks did not all renew within {limit:g} s")
        now = time.monotonic()
        mid = max(self.renewed.values()) + interval / 2
        while mid < now:
            mid += interval
        return mid - now


def _renewal_from(batch: Any, locks: int, interval: float, note: str = "") -> Renewal:
    assert batch.after is not None
    return Renewal(locks, interval, batch.after.at - batch.before.at, batch.requests, note)


# ------------------------------------------------------------------ lockheed


class LockheedSync(System):
    key = "lockheed-sync"
    label = "lockheed (sync)"
    contend_mode: str | None = "lockheed-sync"
    DURATION = 30.0
    RENEW_INTERVAL = 10.0

    LOCKER = "ConfigMapLocker"

    def __init__(self, env: Env):
        super().__init__(env)
        import lockheed

        self.locker = getattr(lockheed, self.LOCKER)(env.namespace, config=str(env.kubeconfig))
        self._warm()

    def settings(self) -> str:
        return (
            f"Lock.with_duration({self.DURATION:g}).with_renew_interval({self.RENEW_INTERVAL:g}); "
            f"one {self.LOCKER} per process"
        )

    def _lock(self, name: str) -> Any:
        from lockheed import Lock

        return (
            Lock(name, self.locker)
            .with_duration(self.DURATION)
            .with_renew_interval(self.RENEW_INTERVAL)
        )

    def _warm(self) -> None:
        lock = self._lock("warm-up")
        lock.acquire()
        lock.release()

    @contextlib.contextmanager
    def operation(self, op: str) -> Iterator[Callable[[], object]]:
        name = self.fresh(op)
        lock = self._lock(name)
        if op == "acquire-new":
            yield lock.acquire
            lock.release()
        elif op == "acquire-free":
            other = self._lock(name)
            other.acquire()
            other.release()
            yield lock.acquire
            lock.release()
        elif op == "renew":
            lock.acquire()
            yield lock.renew
            lock.release()
        elif op == "release":
            lock.acquire()
            yield lock.release
        else:
            raise Unsupported(op)

    def cycles(self, n: int) -> list[float]:
        lock = self._lock(self.fresh("cycle"))
        return timed_cycles(lock.acquire, lock.release, n)

    def handoffs(self, n: int) -> list[float]:
        name = self.fresh("handoff")
        return thread_handoffs(
            n,
            self._lock(name),
            self._lock(name),
            lambda lock: lock.acquire(timeout=WAIT_LIMIT),
            lambda lock: lock.release(),
            self.rng,
        )

    def renewal(self, meter: Meter, locks: int, interval: float, window: float) -> Renewal:
        from lockheed import Lock

        duration = max(10.0, 4 * interval)
        rounds = _Rounds(locks)
        held = [
            Lock(self.fresh("renew"), self.locker)
            .with_duration(duration)
            .with_renew_interval(interval)
            .with_event_handler(rounds.seen)
            for _ in range(locks)
        ]
        for lock in held:
            lock.acquire()
        try:
            time.sleep(rounds.until_mid_round(interval))
            with meter.batch() as batch:
                time.sleep(window)
        finally:
            for lock in held:
                lock.release()
        return _renewal_from(batch, locks, interval, "renewed by the process's renewal thread")

    def close(self) -> None:
        self.locker.close()


class LockheedLease(LockheedSync):
    key = "lockheed-lease"
    label = "lockheed (sync, Lease)"
    LOCKER = "LeaseLocker"
    contend_mode = None
    contend_reason = "measured on ConfigMaps only: the Lease locker shares their core and transport"


class LockheedAsync(System):
    key = "lockheed-async"
    label = "lockheed (async)"
    contend_mode = "lockheed-async"
    DURATION = 30.0
    RENEW_INTERVAL = 10.0

    def __init__(self, env: Env):
        super().__init__(env)
        from lockheed import AsyncConfigMapLocker

        self.loop = asyncio.new_event_loop()
        self.locker = AsyncConfigMapLocker(env.namespace, config=str(env.kubeconfig))
        self.run(self._warm())

    def settings(self) -> str:
        return (
            f"AsyncLock.with_duration({self.DURATION:g}).with_renew_interval("
            f"{self.RENEW_INTERVAL:g}); one AsyncConfigMapLocker per event loop; "
            "contenders are tasks of one process"
        )

    def run(self, work: Awaitable[T]) -> T:
        return self.loop.run_until_complete(work)

    def _lock(self, name: str) -> Any:
        from lockheed import AsyncLock

        return (
            AsyncLock(name, self.locker)
            .with_duration(self.DURATION)
            .with_renew_interval(self.RENEW_INTERVAL)
        )

    async def _warm(self) -> None:
        lock = self._lock("warm-up")
        await lock.acquire()
        await lock.release()

    @contextlib.contextmanager
    def operation(self, op: str) -> Iterator[Callable[[], object]]:
        name = self.fresh(op)
        lock = self._lock(name)
        if op == "acquire-new":
            yield lambda: self.run(lock.acquire())
            self.run(lock.release())
        elif op == "acquire-free":
            other = self._lock(name)
            self.run(other.acquire())
            self.run(other.release())
            yield lambda: self.run(lock.acquire())
            self.run(lock.release())
        elif op == "renew":
            self.run(lock.acquire())
            yield lambda: self.run(lock.renew())
            self.run(lock.release())
        elif op == "release":
            self.run(lock.acquire())
            yield lambda: self.run(lock.release())
        else:
            raise Unsupported(op)

    def cycles(self, n: int) -> list[float]:
        return self.run(self._cycles(n))

    async def _cycles(self, n: int) -> list[float]:
        lock = self._lock(self.fresh("cycle"))
        for _ in range(3):
            await lock.acquire()
            await lock.release()
        samples = []
        for _ in range(n):
            start = time.perf_counter()
            await lock.acquire()
            await lock.release()
            samples.append(time.perf_counter() - start)
        return samples

    def handoffs(self, n: int) -> list[float]:
        return self.run(self._handoffs(n))

    async def _handoffs(self, n: int) -> list[float]:
        name = self.fresh("handoff")
        holder, waiter = self._lock(name), self._lock(name)

        async def wait(got: dict[str, float]) -> None:
            await waiter.acquire(timeout=WAIT_LIMIT)
            got["t"] = time.monotonic()
            await waiter.release()

        samples = []
        for _ in range(n):
            await holder.acquire()
            got: dict[str, float] = {}
            task = asyncio.create_task(wait(got))
            await asyncio.sleep(SETTLE + self.rng.uniform(0.0, 0.1))
            await holder.release()
            released = time.monotonic()
            await asyncio.wait_for(task, WAIT_LIMIT)
            samples.append(got["t"] - released)
        return samples

    def renewal(self, meter: Meter, locks: int, interval: float, window: float) -> Renewal:
        return self.run(self._renewal(meter, locks, interval, window))

    async def _renewal(self, meter: Meter, locks: int, interval: float, window: float) -> Renewal:
        from lockheed import AsyncLock

        from ._metrics import Batch

        duration = max(10.0, 4 * interval)
        rounds = _Rounds(locks)
        held = [
            AsyncLock(self.fresh("renew"), self.locker)
            .with_duration(duration)
            .with_renew_interval(interval)
            .with_event_handler(rounds.seen)
            for _ in range(locks)
        ]
        for lock in held:
            await lock.acquire()
        try:
            await asyncio.sleep(await asyncio.to_thread(rounds.until_mid_round, interval))
            batch = Batch(await asyncio.to_thread(meter.snapshot))
            await asyncio.sleep(window)
            batch.after = await asyncio.to_thread(meter.settle, batch.before)
            batch.requests = meter.diff(batch.before, batch.after)
        finally:
            for lock in held:
                await lock.release()
        return _renewal_from(batch, locks, interval, "renewed by the event loop's renewal task")

    def close(self) -> None:
        self.run(self.locker.aclose())
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        self.run(asyncio.gather(*pending, return_exceptions=True))
        self.loop.close()


# ------------------------------------------------------------------ sherlock


class Sherlock(System):
    key = "sherlock"
    label = "sherlock KubernetesLock"
    requires = ("sherlock", "kubernetes")
    contend_mode = "sherlock"
    # expire= of the lease left to run out for "acquire an existing free lock" (an int:
    # kubernetes 37's models reject a float leaseDurationSeconds)
    EXPIRED = 1

    def __init__(self, env: Env):
        super().__init__(env)
        self._sherlock = _module("sherlock")
        kubernetes = _module("kubernetes")
        self.namespace = env.namespace
        self.api_client = kubernetes.config.new_client_from_config(config_file=str(env.kubeconfig))
        self.coordination = kubernetes.client.CoordinationV1Api(self.api_client)
        self._made: list[Any] = []
        lock = self._lock("warm-up")
        _check(lock.acquire(), "acquire")
        lock.release()

    def settings(self) -> str:
        return (
            f"sherlock {package_version('sherlock')} defaults: expire=60, timeout=10, "
            f"retry_interval=0.1 (a blocked acquire polls); kubernetes "
            f"{package_version('kubernetes')} client; renewal is the caller's renew() calls"
        )

    def _lock(self, name: str, **kwargs: Any) -> Any:
        lock = self._sherlock.KubernetesLock(
            name, self.namespace, client=self.coordination, **kwargs
        )
        self._made.append(lock)  # see close()
        return lock

    @contextlib.contextmanager
    def operation(self, op: str) -> Iterator[Callable[[], object]]:
        name = self.fresh(op)
        lock = self._lock(name)
        if op == "acquire-new":
            yield lambda: _check(lock.acquire(blocking=False), "acquire")
            lock.release()
        elif op == "acquire-free":
            # sherlock deletes the Lease on release, so a released lock is a new one;
            # an existing free lock is a Lease whose holder let it expire.
            other = self._lock(name, expire=self.EXPIRED)
            _check(other.acquire(blocking=False), "acquire")
            time.sleep(self.EXPIRED + 0.3)
            yield lambda: _check(lock.acquire(blocking=False), "acquire")
            lock.release()
        elif op == "renew":
            _check(lock.acquire(blocking=False), "acquire")
            yield lambda: _check(lock.renew(), "renew")
            lock.release()
        elif op == "release":
            _check(lock.acquire(blocking=False), "acquire")
            yield lock.release
        else:
            raise Unsupported(op)

    def cycles(self, n: int) -> list[float]:
        lock = self._lock(self.fresh("cycle"))
        return timed_cycles(lock.acquire, lock.release, n)

    def handoffs(self, n: int) -> list[float]:
        name = self.fresh("handoff")
        return thread_handoffs(
            n,
            self._lock(name),
            self._lock(name),
            lambda lock: _check(lock.acquire(), "acquire"),
            lambda lock: lock.release(),
            self.rng,
        )

    def renewal(self, meter: Meter, locks: int, interval: float, window: float) -> Renewal:
        held = [self._lock(self.fresh("renew")) for _ in range(locks)]
        for lock in held:
            _check(lock.acquire(blocking=False), "acquire")
        try:
            batch = renew_in_threads(meter, [lock.renew for lock in held], interval, window)
        finally:
            for lock in held:
                lock.release()
        return _renewal_from(
            batch, locks, interval, "no background renewal: a thread per lock calls renew()"
        )

    def close(self) -> None:
        # KubernetesLock.__del__ calls release(), which sends a GET (and a DELETE if the
        # lease is still its own) whenever a lock object that ever acquired is
        # collected, even long after its release. Forget the owners so that nothing is
        # sent once the measurements are over.
        for lock in self._made:
            lock._owner = None
        self._made.clear()
        self.api_client.close()


# ----------------------------------------------------------- leader election


def _noop() -> None:
    """A leader-election callback that does nothing."""


class LeaderElection(System):
    key = "leaderelection"
    label = "kubernetes leader election"
    requires = ("kubernetes",)
    contend_reason = (
        "no release: the lock changes hands only when a leader stops renewing and a "
        "candidate has then seen it unchanged for a whole lease"
    )

    def __init__(self, env: Env, election: Election):
        super().__init__(env)
        kubernetes = _module("kubernetes")
        # ConfigMapLock builds its client from the default configuration.
        kubernetes.config.load_kube_config(config_file=str(env.kubeconfig))
        self._elections = _module("kubernetes.leaderelection.leaderelection")
        self._config = _module("kubernetes.leaderelection.electionconfig")
        self._locks = _module("kubernetes.leaderelection.resourcelock.configmaplock")
        self.namespace = env.namespace
        self.election = election
        warm = self._elector(self.fresh("warm-up"), "warm-up")
        self._acquire(warm, election)

    def settings(self) -> str:
        return (
            f"kubernetes {package_version('kubernetes')}, ConfigMapLock, {self.election.describe()}"
        )

    def _elector(self, name: str, identity: str, election: Election | None = None) -> Any:
        e = election or self.election
        lock = self._locks.ConfigMapLock(name, self.namespace, identity)
        config = self._config.Config(
            lock,
            lease_duration=e.lease_duration,
            renew_deadline=e.renew_deadline,
            retry_period=e.retry_period,
            onstarted_leading=_noop,
            onstopped_leading=_noop,
        )
        return self._elections.LeaderElection(config)

    def _acquire(self, elector: Any, election: Election) -> None:
        """``LeaderElection.acquire()``, bounded: try, sleep ``retry_period``, try again."""
        deadline = time.monotonic() + 3 * election.lease_duration + WAIT_LIMIT
        while not elector.try_acquire_or_renew():
            if time.monotonic() + election.retry_period > deadline:
                raise TimeoutError("leader election: not leader before the deadline")
            time.sleep(election.retry_period)

    def op_repeats(self, op: str, default: int) -> int:
        # Taking an existing free lock means waiting out a whole lease: once is enough.
        return 1 if op == "acquire-free" else default

    @contextlib.contextmanager
    def operation(self, op: str) -> Iterator[Callable[[], object]]:
        name = self.fresh(op)
        if op == "release":
            raise Unsupported(
                "no release: a leader renews until its process stops; others then wait "
                "out the lease"
            )
        mine = self._elector(name, f"{name}-a")
        if op == "acquire-new":
            yield lambda: self._acquire(mine, self.election)
        elif op == "acquire-free":
            gone = self._elector(name, f"{name}-gone")
            self._acquire(gone, self.election)  # and never renewed: it runs out
            yield lambda: self._acquire(mine, self.election)
        elif op == "renew":
            self._acquire(mine, self.election)
            yield lambda: _check(mine.try_acquire_or_renew(), "try_acquire_or_renew")
        else:
            raise Unsupported(op)

    def cycles(self, n: int) -> list[float]:
        raise Unsupported("no release: a leader holds the lock until it stops renewing")

    def handoffs(self, n: int) -> list[float]:
        """``n`` hand-offs in parallel on ``n`` locks: a leader stops renewing (its
        "release"), and a waiting candidate takes over once the lease has run out."""
        e = self.election
        out: list[float | BaseException] = [RuntimeError("did not finish")] * n

        def pair(i: int) -> None:
            try:
                name = self.fresh("handoff")
                holder = self._elector(name, f"{name}-holder")
                waiter = self._elector(name, f"{name}-waiter")
                self._acquire(holder, e)
                stop = threading.Event()

                def lead() -> None:  # renew_loop(): renew every retry_period until stopped
                    while not stop.wait(e.retry_period):
                        holder.try_acquire_or_renew()

                leader = threading.Thread(target=lead, daemon=True)
                leader.start()
                got: dict[str, float] = {}

                def candidate() -> None:
                    self._acquire(waiter, e)
                    got["t"] = time.monotonic()

                time.sleep(0.5)
                follower = threading.Thread(target=candidate, daemon=True)
                follower.start()
                time.sleep(e.retry_period + 1 + self.rng.uniform(0.0, e.retry_period))
                stop.set()
                leader.join(WAIT_LIMIT)
                released = time.monotonic()
                follower.join(3 * e.lease_duration + WAIT_LIMIT)
                if "t" not in got:
                    raise RuntimeError("the candidate did not become leader")
                out[i] = got["t"] - released
            except BaseException as exc:
                out[i] = exc

        threads = [threading.Thread(target=pair, args=(i,), daemon=True) for i in range(n)]
        for thread in threads:
            thread.start()
            time.sleep(0.1)
        for thread in threads:
            thread.join(5 * e.lease_duration + 2 * WAIT_LIMIT)
        samples = []
        for value in out:
            if isinstance(value, BaseException):
                raise RuntimeError(f"leader-election hand-off failed: {value!r}") from value
            samples.append(value)
        return samples

    def renewal(self, meter: Meter, locks: int, interval: float, window: float) -> Renewal:
        e = Election(self.election.lease_duration, self.election.renew_deadline, int(interval))
        electors = [self._elector(self.fresh("renew"), "renewer", e) for _ in range(locks)]
        for elector in electors:
            self._acquire(elector, e)
        renewals = [elector.try_acquire_or_renew for elector in electors]
        batch = renew_in_threads(meter, renewals, interval, window)
        return _renewal_from(batch, locks, interval, f"retry_period={int(interval)}s")
