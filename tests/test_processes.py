"""The ConfigMap lock across OS processes on the real control plane.

Workers are ``tests/lock_worker.py`` run with this interpreter. Every wait here
is bounded and event-driven (the workers' output lines, a start pipe, waitpid,
the lock object's watch), and the workers are killed in ``finally`` whatever
happens.

The contention run's size: ``PROCESSES`` workers of ``ITERATIONS`` each by
default; ``LOCKHEED_SOAK=1`` (``make contend``) runs ``SOAK_ITERATIONS`` each
instead, and ``LOCKHEED_SOAK=<n>`` n each.
"""

from __future__ import annotations

import bisect
import functools
import os
import random
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from child_output import Child, python_children, soak_size, started_together
from line_watch import LineWatch, holders_of, line_of
from lockheed import Lock, LockTimeout
from lockheed._core import CLAIM_WINDOW, TOKEN_HOLDER_KEY, TOKEN_KEY, Read
from lockheed._state import Record
from support import CROWD, ConfigMapLockers

pytestmark = CROWD

WORKER = Path(__file__).with_name("lock_worker.py")

PROCESSES = 32  # half of them on the asyncio API
ITERATIONS = 63  # 2,016 acquisitions in all
SOAK_ITERATIONS = 320  # 10,240 acquisitions
DURATION = 10.0
RENEW_INTERVAL = 3.0
STARTUP_TIMEOUT = 120.0  # 32 interpreters starting at once, on a busy host
RUN_TIMEOUT = 400.0


def iterations() -> int:
    """Acquisitions per worker: ``ITERATIONS``, or the ``LOCKHEED_SOAK`` size."""
    return soak_size(ITERATIONS, SOAK_ITERATIONS)


SHORT_DURATION = 3.0
SHORT_RENEW_INTERVAL = 1.0
CLOCK_SLACK = 3.0  # the server clock's one-second uncertainty on both sides, plus scheduling


# ---------------------------------------------------------------- workers


Worker = Child


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Start ``lock_worker.py`` with arguments; every worker is killed at the end."""
    with python_children(WORKER, tmp_path) as start:
        yield start


def record(request: pytest.FixtureRequest, key: str, value: object) -> None:
    """Attach a figure to the test's report (``user_properties``).

    This is where the ``record_property`` fixture puts them, but that fixture
    warns when ``--junitxml`` uses the default xunit2 family, and
    ``filterwarnings = error`` turns the warning into a setup error.
    """
    request.node.user_properties.append((key, value))


def cluster_args(namespace: str, kubeconfig: Path, lock: str) -> list[str]:
    return ["--kubeconfig", str(kubeconfig), "--namespace", namespace, "--lock", lock]


# ---------------------------------------------------------------- checking holds


@dataclass(frozen=True)
class Hold:
    token: int
    start: int
    end: int
    pid: int
    called: int = 0  # when acquire was called (monotonic ns)
    joined: int = 0  # version of the write that put it in line; 0: it never joined


@dataclass(frozen=True)
class Verdict:
    holds: int
    overlaps: list[tuple[Hold, Hold]]  # (a hold, an earlier one still open when it began)
    token_inversions: list[tuple[Hold, Hold]]  # (a hold, the one before it) not increasing


def parse_holds(text: str) -> list[Hold]:
    """Lines ``token start end pid [called joined]``."""
    return [Hold(*(int(field) for field in line.split())) for line in text.splitlines()]


def check_holds(holds: Sequence[Hold]) -> Verdict:
    """Holds sorted by start must be disjoint, with strictly increasing tokens."""
    ordered = sorted(holds, key=lambda h: (h.start, h.end))
    overlaps: list[tuple[Hold, Hold]] = []
    inversions: list[tuple[Hold, Hold]] = []
    previous: Hold | None = None
    latest: Hold | None = None  # of the earlier holds, the one that ends last
    for hold in ordered:
        if latest is not None and hold.start <= latest.end:
            overlaps.append((hold, latest))
        if previous is not None and hold.token <= previous.token:
            inversions.append((hold, previous))
        if latest is None or hold.end > latest.end:
            latest = hold
        previous = hold
    return Verdict(len(ordered), overlaps, inversions)


def overtakers(holds: Sequence[Hold]) -> dict[Hold, list[Hold]]:
    """For each hold that waited in line: the holds of others given the lock
    after it joined the line and before it got the lock.

    A hold's token is the version that the write giving it the lock (its own,
    or the hand-off in a release) replaced, so a hold whose token is at least
    another's ``joined`` version was given the lock after that join. In a
    first-come, first-served line those are the waiters that were ahead when it
    joined: each other process at most once, so at most one fewer than the
    processes.
    """
    by_token = sorted(holds, key=lambda h: h.token)
    tokens = [h.token for h in by_token]
    found: dict[Hold, list[Hold]] = {}
    for hold in holds:
        if not hold.joined:
            continue
        first = bisect.bisect_left(tokens, hold.joined)
        last = bisect.bisect_left(tokens, hold.token)
        found[hold] = [h for h in by_token[first:last] if h.pid != hold.pid]
    return found


def unfair(holds: Sequence[Hold], processes: int) -> list[tuple[Hold, list[Hold]]]:
    """The holds overtaken by more than ``processes - 1`` others, or twice by one."""
    out = []
    for hold, ahead in overtakers(holds).items():
        pids = Counter(h.pid for h in ahead)
        if len(ahead) > processes - 1 or any(n > 1 for n in pids.values()):
            out.append((hold, ahead))
    return out


def test_fairness_checker_finds_a_process_overtaken_twice() -> None:
    # pid 1 joins at version 10 and gets the lock at 40; pids 2 and 3 before it.
    fair = [Hold(20, 0, 1, 2), Hold(30, 2, 3, 3), Hold(40, 4, 5, 1, joined=10)]
    assert overtakers(fair) == {fair[2]: fair[:2]}
    assert unfair(fair, 3) == []
    assert unfair(fair, 2) == [(fair[2], fair[:2])]  # more than processes - 1
    twice = [*fair, Hold(35, 3, 4, 2, joined=21)]  # pid 2 again, ahead of pid 1
    assert unfair(twice, 3) == [(twice[2], [twice[0], twice[1], twice[3]])]
    # Given the lock by a write that replaced the join's version: after the join.
    edge = [Hold(8, 0, 1, 1, joined=5), Hold(5, 2, 3, 2), Hold(4, 4, 5, 3)]
    assert overtakers(edge) == {edge[0]: [edge[1]]}


def test_checker_finds_overlaps_and_token_inversions() -> None:
    good = [Hold(5, 10, 20, 1), Hold(9, 21, 30, 2), Hold(12, 31, 31, 1)]
    verdict = check_holds(list(reversed(good)))
    assert (verdict.holds, verdict.overlaps, verdict.token_inversions) == (3, [], [])

    nested = [Hold(1, 0, 100, 1), Hold(2, 10, 20, 2), Hold(3, 50, 60, 3)]
    assert [h.token for h, _ in check_holds(nested).overlaps] == [2, 3]
    touching = [Hold(1, 0, 10, 1), Hold(2, 10, 20, 2)]
    assert len(check_holds(touching).overlaps) == 1

    inverted = [Hold(7, 0, 1, 1), Hold(7, 2, 3, 2), Hold(6, 4, 5, 3)]
    assert [h.token for h, _ in check_holds(inverted).token_inversions] == [7, 6]


# ---------------------------------------------------------------- the tests


@pytest.mark.timeout(RUN_TIMEOUT + 2 * STARTUP_TIMEOUT)
def test_mutual_exclusion_across_processes(
    spawn: Callable[..., Worker],
    lockheed_namespace: str,
    lockheed_kubeconfig: Path,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """32 processes, half sync and half asyncio, take turns on one lock: no two
    holds overlap, tokens strictly increase, no increment of the shared counter
    is lost, and the line is first come, first served (see :func:`overtakers`)."""
    each = iterations()
    total = PROCESSES * each
    test_start = time.monotonic()
    log, counter = tmp_path / "holds.log", tmp_path / "counter"
    log.touch()
    counter.touch()
    args = [
        "contend",
        *cluster_args(lockheed_namespace, lockheed_kubeconfig, "contended"),
        *("--duration", str(DURATION), "--renew-interval", str(RENEW_INTERVAL)),
        *("--iterations", str(each), "--log", str(log), "--counter", str(counter)),
        *("--acquire-timeout", str(RUN_TIMEOUT)),
        *("--start-timeout", str(2 * STARTUP_TIMEOUT)),
    ]
    # Half the workers use the sync API, half the asyncio API: they must exclude each other.
    # All wait behind one start barrier, and begin contending at once.
    workers, _ = started_together(
        spawn,
        [[*args, "--api", ("sync", "async")[i % 2]] for i in range(PROCESSES)],
        "READY",
        STARTUP_TIMEOUT,
    )
    ready = time.monotonic()

    go = time.monotonic()
    deadline = go + RUN_TIMEOUT
    for worker in workers:
        try:
            worker.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pytest.fail(f"not finished within {RUN_TIMEOUT} s: {worker.describe()}")
    wall = time.monotonic() - go

    for worker in workers:
        assert worker.process.returncode == 0, worker.describe()
        worker.out.expect("DONE", 10)

    holds = parse_holds(log.read_text())
    verdict = check_holds(holds)
    acquisitions = verdict.holds
    waits = sorted((h.start - h.called) / 1e9 for h in holds)
    ahead = [len(a) for a in overtakers(holds).values()]
    figures = {
        "processes": PROCESSES,
        "iterations": each,
        "acquisitions": acquisitions,
        "overlaps": len(verdict.overlaps),
        "token_inversions": len(verdict.token_inversions),
        "queued": len(ahead),
        "max_overtakers": max(ahead, default=0),
        "wait_median_s": round(waits[len(waits) // 2], 3),
        "wait_max_s": round(waits[-1], 3),
        "startup_s": round(ready - test_start, 2),
        "wall_s": round(wall, 2),
        "acquisitions_per_s": round(acquisitions / wall, 1),
    }
    for key, value in figures.items():
        record(request, key, value)
    print("\nmutual exclusion:", ", ".join(f"{key}={value}" for key, value in figures.items()))

    assert acquisitions == total >= 2000 or each != ITERATIONS
    assert Counter(h.pid for h in holds) == {worker.pid: each for worker in workers}
    assert verdict.overlaps == [], f"{len(verdict.overlaps)} overlaps, first {verdict.overlaps[:3]}"
    assert verdict.token_inversions == [], verdict.token_inversions[:3]
    assert int(counter.read_bytes()) == total  # no lost increment
    # The line was used (a held lock makes contenders join it) and kept its order.
    assert len(ahead) > total // 2
    overtaken = unfair(holds, PROCESSES)
    assert overtaken == [], f"{len(overtaken)} holds overtaken out of turn, first {overtaken[:1]}"


def lease_record(lock: Lock) -> Record:
    record: Record | None = lock.locker.execute(Read(lock.name))
    assert record is not None and record.state is not None
    return record


@pytest.mark.timeout(300)
def test_stopped_holder_loses_lock_and_release_reports_it(
    spawn: Callable[..., Worker],
    lockheed_namespace: str,
    lockheed_kubeconfig: Path,
    configmap_locker: ConfigMapLockers,
    request: pytest.FixtureRequest,
) -> None:
    a_id = f"stopped-{uuid.uuid4()}"
    a = spawn(
        [
            "hold",
            *cluster_args(lockheed_namespace, lockheed_kubeconfig, "stopped"),
            *("--duration", str(SHORT_DURATION), "--renew-interval", str(SHORT_RENEW_INTERVAL)),
            *("--instance-id", a_id, "--lost-timeout", "120"),
        ]
    )
    _, token, held_by = a.out.expect("HELD", STARTUP_TIMEOUT).split()
    a_token = int(token)
    assert held_by == a_id

    os.kill(a.pid, signal.SIGSTOP)
    stopped = time.monotonic()
    _, status = os.waitpid(a.pid, os.WUNTRACED)  # returns once A is stopped (does not reap)
    assert os.WIFSTOPPED(status), f"A did not stop: {a.describe()}"

    b = Lock("stopped", configmap_locker()).with_duration(60)
    with pytest.raises(LockTimeout) as busy:
        b.acquire(blocking=False)
    assert busy.value.holder == a_id  # A's lease was live when it stopped
    b_token = b.acquire(timeout=SHORT_DURATION + 15)
    taken_after = time.monotonic() - stopped
    record(request, "takeover_s", round(taken_after, 2))
    print(f"\nSIGSTOP: takeover {taken_after:.2f} s after the stop, tokens A={a_token} B={b_token}")
    assert taken_after <= SHORT_DURATION + CLOCK_SLACK
    assert b_token > a_token
    before = lease_record(b)

    os.kill(a.pid, signal.SIGCONT)
    lost = a.out.expect("LOST", 30)
    released = a.out.expect("RELEASE", 30)
    assert a.process.wait(30) == 0, a.describe()
    print(f"A reported: {lost!r}, then {released!r}")
    assert released.startswith("RELEASE-RAISED LockLost"), a.describe()

    after = lease_record(b)
    assert after.state is not None
    assert list(after.state.leases) == [b.instance_id]
    assert after.state.leases[b.instance_id].expires == b.expires_at
    assert after.version == before.version  # A's release wrote nothing
    assert after.meta[TOKEN_KEY] == str(b_token) and after.meta[TOKEN_HOLDER_KEY] == b.instance_id
    assert b.held
    b.release()


# ---------------------------------------------------------------- dead waiters

LINE_WAITERS = 8
KILLED = 3
LINE_DURATION = 60.0  # a lease: how long the line would stall without the claim window
# Beyond CLAIM_WINDOW per dead waiter: the server clock's uncertainty (the dead
# waiter's short lease is judged expired on the earliest server time), the
# hand-off to a live waiter, and a busy host. Well below LINE_DURATION, so a
# line that stalled for a lease fails.
LINE_SLACK = 15.0


@pytest.mark.timeout(300)
def test_dead_waiters_hold_the_line_up_only_briefly(
    spawn: Callable[..., Worker],
    lockheed_namespace: str,
    lockheed_kubeconfig: Path,
    configmap_locker: ConfigMapLockers,
    request: pytest.FixtureRequest,
) -> None:
    """Waiters SIGKILLed in line keep their entries; the line still moves: every
    live waiter gets the lock, in the order they joined, each dead waiter
    costing at most about CLAIM_WINDOW although leases last a minute."""
    seed = int(os.environ.get("LOCKHEED_SEED") or random.randrange(2**32))
    killed = sorted(random.Random(seed).sample(range(LINE_WAITERS), KILLED))
    holder = Lock("line", configmap_locker()).with_duration(LINE_DURATION)
    holder.acquire()
    line = LineWatch(configmap_locker(), "line")
    starts: list[int] = []
    try:
        # The interpreters start together; each is then let go in turn, and
        # joins the line behind the one before.
        waiters = []
        for i in range(LINE_WAITERS):
            start_read, start_write = os.pipe()
            starts.append(start_write)
            try:
                worker = spawn(
                    [
                        "wait",
                        *cluster_args(lockheed_namespace, lockheed_kubeconfig, "line"),
                        *("--duration", str(LINE_DURATION), "--renew-interval", "20"),
                        *("--instance-id", f"waiter-{i}", "--acquire-timeout", "240"),
                        *("--start-fd", str(start_read)),
                    ],
                    pass_fds=[start_read],
                )
            finally:
                os.close(start_read)
            waiters.append(worker)
        for worker in waiters:
            worker.out.expect("READY", STARTUP_TIMEOUT)
        for i, start_write in enumerate(starts):
            os.write(start_write, b"g")
            line.until(functools.partial(lambda n, r: line_of(r)[-1:] == [n], f"waiter-{i}"))
        assert line_of(line.record) == [f"waiter-{i}" for i in range(LINE_WAITERS)]

        for i in killed:
            os.kill(waiters[i].pid, signal.SIGKILL)
            waiters[i].process.wait(30)
        still = line_of(line.locker.execute(Read("line")))
        assert still == [f"waiter-{i}" for i in range(LINE_WAITERS)]  # the dead keep their place

        holder.release()
        released = time.monotonic_ns()
        order: list[int] = []
        gaps: list[tuple[int, float]] = []  # (dead waiters passed, seconds)
        previous = -1
        for i, worker in enumerate(waiters):
            if i in killed:
                continue
            # The next live waiter's HELD: whoever holds the lock prints it first.
            _, _, acquired = worker.out.expect("HELD", 4 * LINE_DURATION).split()
            gaps.append((sum(previous < k < i for k in killed), (int(acquired) - released) / 1e9))
            released = int(worker.out.expect("RELEASED", 30).split()[1])
            assert worker.process.wait(30) == 0, worker.describe()
            order.append(i)
            previous = i
    finally:
        line.close()
        for start_write in starts:
            os.close(start_write)

    figures = {
        "seed": seed,
        "killed": killed,
        "delays_s": [(dead, round(gap, 2)) for dead, gap in gaps],
    }
    for key, value in figures.items():
        record(request, key, value)
    print("\ndead waiters:", ", ".join(f"{key}={value}" for key, value in figures.items()))
    assert order == [i for i in range(LINE_WAITERS) if i not in killed]
    for dead, gap in gaps:
        assert gap < dead * CLAIM_WINDOW + LINE_SLACK, (seed, gaps)
    final = configmap_locker().execute(Read("line"))
    killed_ids = {f"waiter-{i}" for i in killed}
    # Every live waiter's entry is consumed. Dead waiters after the last live one
    # keep theirs (the last release hands the lock to the first of them): only a
    # later contender passes them, each costing at most about CLAIM_WINDOW.
    assert set(line_of(final)) <= killed_ids
    # Only a dead waiter's short handed lease can be left; it runs out soon.
    assert set(holders_of(final)) <= killed_ids
    after = Lock("line", configmap_locker()).with_duration(LINE_DURATION)
    after.acquire(timeout=(len(line_of(final)) + 1) * CLAIM_WINDOW + LINE_SLACK)
    after.release()
