"""Shared locks and semaphores across OS processes on the real control plane,
with holders SIGSTOPped and SIGKILLed at random.

Workers are ``tests/shared_worker.py``: ``PROCESSES`` of them, half on the
asyncio API; half take a readers-writer lock (``WRITERS`` of those
exclusively, the rest shared) and half a semaphore of ``LIMIT``. While they
run, the test picks a live holder from the lock's object every few seconds
and stops it (for less or more than its lease) or kills it. The checker then
holds every hold, each ending when its holder stopped believing it held the
lock (its release, its loss deadline, or its death), to:

* never more than ``LIMIT`` semaphore holders at once;
* never an exclusive holder together with anyone else on the shared lock;
* fencing tokens: an exclusive holder's token is larger than that of every
  hold that began before it and smaller than that of every hold that began
  after it; any hold's token is larger than that of every hold that ended
  before its acquire was called;
* no waiter starves: every worker that was not killed does all its
  acquisitions (an acquire that waited too long would time out).

The size: ``ITERATIONS`` acquisitions per worker (at least 1,000 in all);
``LOCKHEED_SOAK=1`` (``make contend``) runs ``SOAK_ITERATIONS`` each, and
``LOCKHEED_SOAK=<n>`` n each.
"""

from __future__ import annotations

import bisect
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from child_output import Child, python_children, soak_size, started_together
from lockheed import ConfigMapLocker
from lockheed._core import Read
from lockheed._shared_core import EXCLUSIVE_KEY
from support import CROWD

pytestmark = CROWD

WORKER = Path(__file__).with_name("shared_worker.py")
PROCESSES = 16
WRITERS = 2  # of the PROCESSES // 2 on the readers-writer lock
LIMIT = 3  # the semaphore's (shared_worker.LIMIT)
ITERATIONS = 80  # 1,280 acquisitions; two early kills still leave more than 1,000
SOAK_ITERATIONS = 320  # 5,120
DURATION = 3.0
RENEW_INTERVAL = 1.0
STOPS = 8
KILLS = 2
STARTUP_TIMEOUT = 120.0
RUN_TIMEOUT = 600.0


def iterations() -> int:
    return soak_size(ITERATIONS, SOAK_ITERATIONS)


# ---------------------------------------------------------------- checking holds


@dataclass
class Hold:
    pid: int
    kind: str  # shared, exclusive, semaphore
    token: int
    called: int
    start: int
    end: int = -1  # when its holder stopped believing; -1: not known (yet)
    lost: bool = False

    @property
    def began(self) -> int:
        """When its holder began to believe, at the latest. ``start`` is stamped
        after ``acquire`` returned: a process stopped in between, until past its
        loss deadline, stamps it after its ``end``, and believed (if at all)
        before that deadline."""
        return self.start if self.end < 0 else min(self.start, self.end)


@dataclass
class Verdict:
    holds: int
    too_many: list[tuple[int, list[Hold]]] = field(default_factory=list)
    beside_exclusive: list[tuple[Hold, Hold]] = field(default_factory=list)
    token_disorder: list[tuple[Hold, Hold]] = field(default_factory=list)


def parse_log(text: str, killed: dict[int, int]) -> list[Hold]:
    """The holds of the log; a killed process's open hold ends when it began
    to release it (``R``), or else at its kill."""
    open_holds: dict[int, Hold] = {}
    holds: list[Hold] = []
    for line in text.splitlines():
        fields = line.split()
        if fields[0] == "S":
            pid, kind, token, called, start = fields[1:]
            hold = Hold(int(pid), kind, int(token), int(called), int(start))
            open_holds[hold.pid] = hold
            holds.append(hold)
        elif fields[0] == "R":  # its holder stopped believing, and is releasing
            pid, token, end = fields[1:]
            hold = open_holds[int(pid)]
            assert hold.token == int(token), line
            hold.end = int(end)
        else:
            pid, token, end, lost = fields[1:]
            hold = open_holds.pop(int(pid))
            assert hold.token == int(token), line
            hold.end, hold.lost = int(end), lost == "1"
    for who, hold in open_holds.items():
        assert who in killed, f"process {who} left a hold open without being killed"
        if hold.end < 0:  # killed while it held
            hold.end = killed[who]
    return holds


def check(holds: Sequence[Hold], limit: int | None) -> Verdict:
    """The invariants over the holds of one lock (``limit``: a semaphore's)."""
    verdict = Verdict(len(holds))
    # At most `limit` at once: sweep the starts and ends (an end at the very
    # nanosecond of a start counts as still holding).
    if limit is not None:
        points = sorted(
            [(h.began, 0, i) for i, h in enumerate(holds)]
            + [(h.end, 1, i) for i, h in enumerate(holds)]
        )
        inside: set[int] = set()
        for _, what, i in points:
            if what == 0:
                inside.add(i)
                if len(inside) > limit:
                    verdict.too_many.append((holds[i].began, [holds[j] for j in inside]))
            else:
                inside.discard(i)
    by_start = sorted(holds, key=lambda h: h.began)
    for x in by_start:
        if x.kind != "exclusive":
            continue
        for g in by_start:
            if g is x:
                continue
            if g.began <= x.end and x.began <= g.end:
                verdict.beside_exclusive.append((x, g))
            if (g.began < x.began) != (g.token < x.token):
                verdict.token_disorder.append((x, g))
    # Larger than every hold that ended before this acquire was called.
    by_end = sorted(holds, key=lambda h: h.end)
    ends = [h.end for h in by_end]
    highest: list[int] = []
    for h in by_end:
        highest.append(max(h.token, highest[-1] if highest else 0))
    for h in holds:
        before = bisect.bisect_left(ends, h.called)
        if before and highest[before - 1] >= h.token:
            earlier = next(g for g in by_end[:before] if g.token >= h.token)
            verdict.token_disorder.append((h, earlier))
    return verdict


def test_a_holder_stopped_before_its_start_stamp_is_placed_by_its_end() -> None:
    """A writer stopped after its acquire returned and before it stamped the start,
    until past its loss deadline: it believed before that deadline, so it comes
    before the writer that took over from it (a larger token), and it is counted
    out of a semaphore at its end, not kept in for good."""
    stopped = Hold(1, "exclusive", 10, called=0, start=500, end=300, lost=True)
    after = Hold(2, "exclusive", 12, called=100, start=400, end=450)
    assert check([stopped, after], None).token_disorder == []
    behind = Hold(2, "exclusive", 9, called=100, start=400, end=450)  # a smaller token
    assert check([stopped, behind], None).token_disorder != []
    overlapping = Hold(2, "exclusive", 12, called=100, start=250, end=450)
    assert check([stopped, overlapping], None).beside_exclusive != []
    sem = [replace(stopped, kind="semaphore")] + [
        Hold(3 + i, "semaphore", 20 + i, called=600, start=700, end=800) for i in range(2)
    ]
    assert check(sem, 2).too_many == []
    assert check([*sem, replace(sem[1], pid=9)], 2).too_many != []


def test_a_killed_process_held_until_it_began_to_release_or_else_until_its_kill() -> None:
    log = "\n".join(
        [
            "S 1 semaphore 10 0 5",
            "R 1 10 20",
            "E 1 10 20 0",
            "S 1 semaphore 30 25 26",
            "R 1 30 40",  # killed while releasing: its release may have landed
            "S 2 semaphore 31 0 27",  # killed while holding
        ]
    )
    holds = parse_log(log, {1: 90, 2: 95})
    assert [(h.pid, h.token, h.start, h.end) for h in holds] == [
        (1, 10, 5, 20),
        (1, 30, 26, 40),
        (2, 31, 27, 95),
    ]


def test_the_checker_finds_every_kind_of_violation() -> None:
    ok = [
        Hold(1, "shared", 10, 0, 1, 50),
        Hold(2, "shared", 11, 0, 2, 40),
        Hold(3, "exclusive", 20, 0, 60, 70),
        Hold(1, "shared", 30, 55, 80, 90),
    ]
    assert check(ok, None) == Verdict(4)
    beside = [*ok, Hold(4, "shared", 15, 0, 65, 66)]
    verdict = check(beside, None)
    assert [(x.pid, g.pid) for x, g in verdict.beside_exclusive] == [(3, 4)]
    assert [(x.pid, g.pid) for x, g in verdict.token_disorder] == [(3, 4)]
    small = [*ok[:3], Hold(1, "shared", 11, 55, 80, 90)]
    assert len(check(small, None).token_disorder) == 2  # after the writer, and after pid 2's end
    sem = [Hold(i, "semaphore", 10 + i, 0, i, 100) for i in range(4)]
    assert len(check(sem, 3).too_many) == 1
    assert check([*sem[:3], Hold(9, "semaphore", 20, 101, 102, 103)], 3) == Verdict(4)


# ---------------------------------------------------------------- the run


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Child]]:
    with python_children(WORKER, tmp_path) as start:
        yield start


@dataclass
class Worker:
    child: Child
    lock: str
    kind: str
    instance_id: str = ""
    stopped_until: float | None = None
    killed_at: int | None = None


def live_holders(locker: ConfigMapLocker, name: str) -> list[str]:
    record = locker.execute(Read(name))
    if record is None or record.state is None:
        return []
    earliest, _ = locker.clock.bounds()
    ids = [le.instance_id for le in record.state.live_leases(earliest)]
    exclusive = record.meta.get(EXCLUSIVE_KEY)
    return [exclusive] if exclusive in ids else ids


@pytest.mark.timeout(RUN_TIMEOUT + 2 * STARTUP_TIMEOUT)
def test_shared_locks_and_semaphores_across_processes_under_stops_and_kills(
    spawn: Callable[..., Child],
    lockheed_namespace: str,
    lockheed_kubeconfig: Path,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    seed = int(os.environ.get("LOCKHEED_SEED") or random.randrange(2**32))
    rng = random.Random(seed)
    each = iterations()
    log = tmp_path / "holds.log"
    log.touch()
    common = [
        *("--kubeconfig", str(lockheed_kubeconfig), "--namespace", lockheed_namespace),
        *("--duration", str(DURATION), "--renew-interval", str(RENEW_INTERVAL)),
        *("--iterations", str(each), "--log", str(log)),
        *("--acquire-timeout", str(RUN_TIMEOUT), "--start-timeout", str(2 * STARTUP_TIMEOUT)),
    ]
    plan: list[tuple[str, str]] = []
    for i in range(PROCESSES // 2):
        plan.append(("rw", "exclusive" if i < WRITERS else "shared"))
        plan.append(("sem", "semaphore"))
    children, ready = started_together(
        spawn,
        [
            [*common, "--lock", lock, "--kind", kind, "--api", ("sync", "async")[i % 2]]
            for i, (lock, kind) in enumerate(plan)
        ],
        "READY",
        STARTUP_TIMEOUT,
    )
    workers = [
        Worker(child, lock, kind, line.split()[2])
        for child, (lock, kind), line in zip(children, plan, ready, strict=True)
    ]

    go = time.monotonic()
    by_id = {w.instance_id: w for w in workers}
    locker = ConfigMapLocker(lockheed_namespace, config=lockheed_kubeconfig)
    pause = threading.Event()  # never set: paces the chaos without busy-waiting
    stops = kills = 0
    chaos: list[tuple[str, int, int]] = []  # (what, pid, monotonic ns): for a failure's report
    next_chaos = go + rng.uniform(1.0, 3.0)
    try:
        while any(w.child.process.poll() is None for w in workers):
            now = time.monotonic()
            assert now - go < RUN_TIMEOUT, "the run did not finish in time"
            for w in workers:
                if w.stopped_until is not None and now >= w.stopped_until:
                    os.kill(w.child.pid, signal.SIGCONT)
                    chaos.append(("resumed", w.child.pid, time.monotonic_ns()))
                    w.stopped_until = None
            if now >= next_chaos and (stops < STOPS or kills < KILLS):
                name = rng.choice(["rw", "sem"])
                candidates = [
                    by_id[i]
                    for i in live_holders(locker, name)
                    if i in by_id
                    and by_id[i].stopped_until is None
                    and by_id[i].child.process.poll() is None
                ]
                if candidates:
                    # Paced only once it hits: a look that finds no holder looks
                    # again at the next tick, so a run that ends in a few seconds
                    # still meets both kinds of chaos.
                    next_chaos = now + rng.uniform(1.0, 3.0)
                    victim = rng.choice(candidates)
                    # A kill first, then stops with a kill among them: both kinds
                    # of chaos happen however few holders it finds.
                    kill = kills < KILLS and (stops >= STOPS or kills * 4 <= stops)
                    if kill:
                        victim.killed_at = time.monotonic_ns()
                        chaos.append(("killed", victim.child.pid, victim.killed_at))
                        victim.child.process.kill()
                        victim.child.process.wait(30)
                        kills += 1
                    else:
                        os.kill(victim.child.pid, signal.SIGSTOP)
                        chaos.append(("stopped", victim.child.pid, time.monotonic_ns()))
                        victim.stopped_until = now + rng.uniform(0.5, 2 * DURATION)
                        stops += 1
            pause.wait(0.1)
    finally:
        for w in workers:
            if w.stopped_until is not None and w.child.process.poll() is None:
                os.kill(w.child.pid, signal.SIGCONT)
        locker.close()
    wall = time.monotonic() - go

    for w in workers:
        if w.killed_at is None:
            assert w.child.process.returncode == 0, w.child.describe()
            w.child.out.expect("DONE", 10)
    killed = {w.child.pid: w.killed_at for w in workers if w.killed_at is not None}
    holds = parse_log(log.read_text(), killed)
    rw = [h for h in holds if h.kind != "semaphore"]
    sem = [h for h in holds if h.kind == "semaphore"]
    verdicts = {"rw": check(rw, None), "sem": check(sem, LIMIT)}
    waits = sorted((h.start - h.called) / 1e9 for h in holds)
    most = max(  # the most holds of the same lock that began while one acquire waited
        (sum(1 for h in grp if g.called < h.start < g.start) for grp in (rw, sem) for g in grp),
        default=0,
    )
    figures = {
        "seed": seed,
        "processes": PROCESSES,
        "acquisitions": len(holds),
        "exclusive": sum(h.kind == "exclusive" for h in holds),
        "shared": sum(h.kind == "shared" for h in holds),
        "semaphore": len(sem),
        "stops": stops,
        "kills": kills,
        "lost_releases": sum(h.lost for h in holds),
        "too_many": sum(len(v.too_many) for v in verdicts.values()),
        "beside_exclusive": sum(len(v.beside_exclusive) for v in verdicts.values()),
        "token_disorder": sum(len(v.token_disorder) for v in verdicts.values()),
        "max_shared_at_once": max_overlap(rw),
        "max_semaphore_at_once": max_overlap(sem),
        "wait_median_s": round(waits[len(waits) // 2], 3),
        "wait_max_s": round(waits[-1], 3),
        "most_entered_during_one_wait": most,
        "wall_s": round(wall, 1),
        "acquisitions_per_s": round(len(holds) / wall, 1),
    }
    for key, value in figures.items():
        request.node.user_properties.append((key, value))
    print("\nshared/semaphore run:", ", ".join(f"{k}={v}" for k, v in figures.items()))
    # In full (an assertion's message is cut short): the holds at fault, and
    # every stop, resume and kill of the run.
    faults = [
        f"{name} {what}: {case!r}"
        for name, verdict in verdicts.items()
        for what in ("too_many", "beside_exclusive", "token_disorder")
        for case in getattr(verdict, what)[:2]
    ]
    if faults:
        print(*faults, f"chaos: {chaos}", sep="\n")
    for name, verdict in verdicts.items():
        assert verdict.too_many == [], (seed, name, verdict.too_many[:2])
        assert verdict.beside_exclusive == [], (seed, name, verdict.beside_exclusive[:2])
        assert verdict.token_disorder == [], (seed, name, verdict.token_disorder[:2])
    assert len(holds) >= 1000 or each != ITERATIONS
    assert stops > 0 and kills > 0, "the chaos never hit a holder"
    assert figures["max_shared_at_once"] > 1 and figures["max_semaphore_at_once"] > 1


def max_overlap(holds: Sequence[Hold]) -> int:
    points = sorted([(h.start, 1) for h in holds] + [(h.end, -1) for h in holds])
    best = now = 0
    for _, step in points:
        now += step
        best = max(best, now)
    return best
