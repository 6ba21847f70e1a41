"""Figure 4: contended throughput and fairness on one lock.

``n`` greedy contenders take and release one lock as fast as they can for a
fixed window, all starting on one signal: processes for lockheed (sync) and
sherlock; for lockheed (asyncio), ``n`` tasks in one process, or spread over
``processes`` processes (the 128-task row); for Go lockheed, ``n`` processes
of the Go program (see :meth:`bench._golockheed.GoLockheed.contend_command`).
lockheed is run waiting in line (its default) and, for the before/after,
racing (``with_fair(False)``).

Every acquisition is stamped with ``time.monotonic()`` (CLOCK_MONOTONIC, one
clock for all processes of the host, read by the Go contenders too) when its
contender began to ask (Python contenders only) and when it got the lock.
Reported: acquisitions per second, hand-offs per second (acquisitions by a
different contender than the one before; a releaser that immediately wins
again is not a hand-off), the API requests per acquisition and per hand-off,
counted by the server from the start signal until every contender has
exited, and the fairness of who was served when (:class:`bench._results.Fairness`:
overtakes, Jain's index of acquisitions per contender, waits). On the shared
rows (a semaphore, a readers-writer lock), where several hold at once, an
overtake is an entry served before an earlier-asked waiter that could not
have entered beside the holders (:func:`shared_overtakes`).
"""

from __future__ import annotations

import bisect
import itertools
import math
import threading
import time
from collections import Counter
from collections.abc import Sequence

from ._golockheed import GoLockheed
from ._host import cpu_times, steal_share
from ._metrics import Meter
from ._procs import Workers, worker_command
from ._results import Contention, Fairness
from ._systems import System

__all__ = ["contend", "fairness", "jain", "overtakes", "shared_overtakes"]

STARTUP_TIMEOUT = 240.0  # interpreters, imports and a first request, 32 at once on 2 cores

Stamp = tuple[float, float, str]  # asked, got, contender


def overtakes(stamps: Sequence[tuple[float, float]]) -> int:
    """How many acquisitions ``(asked, got)`` were served while an acquisition
    that had asked strictly earlier was still waiting (it got the lock later)."""
    ordered = sorted(stamps)
    count = 0
    latest_got = -math.inf  # the latest `got` among acquisitions that asked strictly earlier
    for _, group in itertools.groupby(ordered, key=lambda s: s[0]):
        same = list(group)
        count += sum(1 for _, got in same if got < latest_got)
        latest_got = max(latest_got, *(got for _, got in same))
    return count


Entry = tuple[float, float, float, bool, int]  # asked, got, released, exclusive, token


def shared_overtakes(entries: Sequence[Entry], limit: int | None) -> int:
    """Overtakes among the holders of a shared lock or semaphore: how many
    acquisitions X were served while an acquisition Y that had asked strictly
    earlier was still waiting *and could not have entered beside the holders*
    X joined (X itself included): Y exclusive beside anyone, anyone beside an
    exclusive X, or, on a semaphore of ``limit``, X taking the last free place.
    Readers entering together beside readers, or into places that were free
    for both, are not overtakes.

    The order of service is that of the writes that let each in, which the
    fencing tokens give (X before Y: X's token is smaller; those admitted by
    one write share a token and are served together); the processes' clock
    stamps of a busy host lag those writes by as much as a hand-off takes.
    The holders at X's entry are the acquisitions whose ``[got, released]``
    spans hold the moment X got it; the stamps are taken after each call
    returns, so the spans are a little long and the count errs towards more
    overtakes."""
    if not entries:
        return 0
    by_asked = sorted(entries)
    spans = sorted((got, released, exclusive) for _, got, released, exclusive, _ in entries)
    starts = [span[0] for span in spans]
    longest = max(released - got for _, got, released, _, _ in entries)
    longest_wait = max(got - asked for asked, got, _, _, _ in entries)
    count = 0
    for i, (asked, got, _, exclusive, token) in enumerate(by_asked):
        holders = []  # whether each holder at X's entry is exclusive
        k = bisect.bisect_right(starts, got)
        while k > 0 and spans[k - 1][0] >= got - longest:
            k -= 1
            if got < spans[k][1]:
                holders.append(spans[k][2])
        barred = exclusive or any(holders) or (limit is not None and len(holders) >= limit)
        k = i
        while k > 0 and by_asked[k - 1][0] > got - longest_wait - 1.0:  # who could still wait
            k -= 1
            y_asked, _, _, y_exclusive, y_token = by_asked[k]
            if y_asked < asked and y_token > token and (barred or y_exclusive):
                count += 1
                break
    return count


def jain(counts: Sequence[int]) -> float:
    """Jain's fairness index: 1 when every contender got as many, 1/n when one got all."""
    total, squares = sum(counts), sum(c * c for c in counts)
    return total * total / (len(counts) * squares) if squares else math.nan


def fairness(
    stamps: Sequence[Stamp],
    contenders: Sequence[str],
    t_end: float,
    shared: Sequence[Entry] | None = None,
    limit: int | None = None,
) -> Fairness:
    """The fairness figures; ``shared`` (the entries of a shared lock or
    semaphore of ``limit``) counts overtakes by :func:`shared_overtakes`."""
    inside = [s for s in stamps if s[1] <= t_end]
    per = Counter(who for _, _, who in inside)
    if shared is None:
        count = overtakes([(asked, got) for asked, got, _ in stamps])
    else:
        count = shared_overtakes(shared, limit)
    return Fairness(
        acquisitions=len(stamps),
        contenders=len(contenders),
        overtakes=count,
        jain=jain([per.get(who, 0) for who in contenders]),
        waits=tuple(got - asked for asked, got, _ in inside),
    )


def _commands(
    system: System,
    lock: str,
    contenders: int,
    fair: bool,
    processes: int,
    kind: Sequence[str] = (),
) -> list[list[str]]:
    mode, env = system.contend_mode, system.env
    common = ["--kubeconfig", str(env.kubeconfig), "--namespace", env.namespace, "--lock", lock]
    common += kind
    if not fair:
        common.append("--unfair")
    if isinstance(system, GoLockheed):
        return [system.contend_command(lock)] * contenders
    assert mode is not None
    if mode == "lockheed-async":
        shares = [contenders // processes + (i < contenders % processes) for i in range(processes)]
        return [
            worker_command("contend", "--system", mode, "--tasks", str(k), *common) for k in shares
        ]
    return [worker_command("contend", "--system", mode, *common)] * contenders


def _limit(kind: Sequence[str]) -> int | None:
    """The semaphore's limit among the worker's options (None: not a semaphore)."""
    options = list(kind)
    return int(options[options.index("--limit") + 1]) if "--limit" in options else None


def _lost(results: Sequence[dict[str, object]]) -> int:
    return sum(int(str(r.get("lost", 0))) for r in results)


def contend(
    system: System,
    meter: Meter,
    contenders: int,
    window: float,
    *,
    fair: bool = True,
    processes: int = 1,
    kind: Sequence[str] = (),
) -> Contention:
    """``contenders`` greedy contenders on one fresh lock for ``window`` seconds
    (``processes``: how many processes the asyncio tasks are spread over;
    ``kind``: the worker's options for a semaphore, ``--limit N``, or a shared
    lock, ``--readers FRACTION``)."""
    lock = f"contended-{contenders}{'' if fair else '-racing'}{'-'.join(('', *kind))}"
    lock = lock.replace(".", "")
    commands = _commands(system, lock, contenders, fair, processes, kind)
    with Workers(commands) as workers:
        workers.wait("READY", STARTUP_TIMEOUT)
        before = meter.snapshot()
        t_end = time.monotonic() + window
        host = [cpu_times()]
        closing = threading.Timer(window, lambda: host.append(cpu_times()))
        closing.daemon = True
        closing.start()
        workers.go(t_end)
        results = workers.results(window + 90.0)
        closing.join()
        workers.join(30.0)
    after = meter.settle(before)
    raw = [stamp for r in results for stamp in r["stamps"]]
    # (got, contender): Go's stamps are just that; the others begin with when they asked
    got = sorted(
        (float(s[-2]), str(s[-1])) if len(s) == 2 else (float(s[1]), str(s[2])) for s in raw
    )
    inside = [s for s in got if s[0] <= t_end]
    handoffs = sum(1 for a, b in itertools.pairwise(inside) if a[1] != b[1])
    fair_figures = None
    if raw and all(len(s) in (3, 6) for s in raw):
        who = [str(w) for r in results for w in r.get("contenders", ())]
        stamps = [(float(s[0]), float(s[1]), str(s[2])) for s in raw]
        shared = None
        if all(len(s) == 6 for s in raw):
            shared = [(float(s[0]), float(s[1]), float(s[3]), s[4] == "x", int(s[5])) for s in raw]
        fair_figures = fairness(
            stamps, who or sorted({s[2] for s in stamps}), t_end, shared, _limit(kind)
        )
    if isinstance(system, GoLockheed) or system.contend_mode != "lockheed-async":
        how = "processes"
    elif processes == 1:
        how = "tasks in one process"
    else:
        how = f"tasks in {processes} processes"
    return Contention(
        contenders=contenders,
        window=window,
        acquisitions=len(inside),
        handoffs=handoffs,
        all_acquisitions=len(got),
        requests=meter.diff(before, after),
        conflicts=sum(int(r.get("conflicts", 0)) for r in results),
        mode=how
        + ("" if fair else ", racing: with_fair(False)")
        + (f" ({' '.join(kind)})" if kind else "")
        + (f", {lost} releases raised LockLost" if (lost := _lost(results)) else ""),
        fairness=fair_figures,
        steal=steal_share(host[0], host[-1]),
    )
