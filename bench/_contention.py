"""Figure 4: contended throughput on one lock.

``n`` contenders (processes; for asyncio, ``n`` tasks in one process; for Go
lockheed, ``n`` processes of the Go program, see
:meth:`bench._golockheed.GoLockheed.contend_command`) take and release one
lock as fast as they can for a fixed window, all starting on one signal.
Every acquisition is stamped with ``time.monotonic()`` (CLOCK_MONOTONIC, one
clock for all processes of the host, read by the Go contenders too).
Reported: acquisitions per second, hand-offs per second (acquisitions by a
different contender than the one before; a releaser that immediately wins
again is not a hand-off), and the API requests per acquisition, counted by
the server from the start signal until every contender has exited.
"""

from __future__ import annotations

import itertools
import time

from ._golockheed import GoLockheed
from ._metrics import Meter
from ._procs import Workers, worker_command
from ._results import Contention
from ._systems import System

__all__ = ["contend"]

STARTUP_TIMEOUT = 240.0  # interpreters, imports and a first request, 32 at once on 2 cores


def contend(system: System, meter: Meter, contenders: int, window: float) -> Contention:
    mode, env = system.contend_mode, system.env
    lock = f"contended-{contenders}"
    common = ["--kubeconfig", str(env.kubeconfig), "--namespace", env.namespace, "--lock", lock]
    if isinstance(system, GoLockheed):
        commands = [system.contend_command(lock)] * contenders
    elif mode == "lockheed-async":
        commands = [
            worker_command("contend", "--system", mode, "--tasks", str(contenders), *common)
        ]
    else:
        assert mode is not None
        commands = [worker_command("contend", "--system", mode, *common)] * contenders
    with Workers(commands) as workers:
        workers.wait("READY", STARTUP_TIMEOUT)
        before = meter.snapshot()
        t_end = time.monotonic() + window
        workers.go(t_end)
        results = workers.results(window + 90.0)
        workers.join(30.0)
    after = meter.settle(before)
    stamps = sorted((float(t), str(who)) for r in results for t, who in r["stamps"])
    inside = [s for s in stamps if s[0] <= t_end]
    handoffs = sum(1 for a, b in itertools.pairwise(inside) if a[1] != b[1])
    return Contention(
        contenders=contenders,
        window=window,
        acquisitions=len(inside),
        handoffs=handoffs,
        all_acquisitions=len(stamps),
        requests=meter.diff(before, after),
        conflicts=sum(int(r.get("conflicts", 0)) for r in results),
        mode="tasks in one process" if mode == "lockheed-async" else "processes",
    )
