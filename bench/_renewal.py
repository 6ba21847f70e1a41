"""Figure 5: steady renewal load, and one process holding many locks.

* Renewal load: each system holds a few locks renewed every ``interval``
  seconds (its own background renewal where it has one, else the caller's
  loop), and the server counts the requests over the window; the figure is
  requests per second per held lock.
* Many locks: a separate process (so that its memory is only its own) acquires
  ``many_locks`` locks with lockheed's sync API, then holds them for the
  window while the one renewal thread renews them; it reports its CPU time
  over the window (``time.process_time()``, all threads) and its VmRSS/VmHWM
  from ``/proc/self/status``. It runs twice: as lockheed runs by default, and
  with ``LOCKHEED_HTTP1=0`` (every request through ``httpx2``, as before the
  lean HTTP/1.1 client), so that the two costs come from one run.
"""

from __future__ import annotations

import time

from ._metrics import Meter
from ._procs import Workers, worker_command
from ._results import HeldMany
from ._sizes import Sizes
from ._systems import Env

__all__ = ["held_many"]


def held_many(env: Env, meter: Meter, sizes: Sizes, *, lean: bool = True) -> HeldMany:
    command = worker_command(
        "hold-many",
        "--kubeconfig",
        str(env.kubeconfig),
        "--namespace",
        env.namespace,
        "--locks",
        str(sizes.many_locks),
        "--duration",
        str(sizes.many_duration),
        "--interval",
        str(sizes.many_interval),
    )
    with Workers([command], None if lean else {"LOCKHEED_HTTP1": "0"}) as workers:
        workers.wait("READY", 300.0)
        before = meter.snapshot()
        t_end = time.monotonic() + sizes.many_window
        workers.go(t_end)
        (result,) = workers.results(sizes.many_window + 60.0)
        after = meter.snapshot()
        workers.join(10.0)
    return HeldMany(
        locks=int(result["held"]),
        duration=sizes.many_duration,
        interval=sizes.many_interval,
        window=float(result["wall_seconds"]),
        cpu_seconds=float(result["cpu_seconds"]),
        rss_mb=float(result["rss_mb"]),
        hwm_mb=float(result["hwm_mb"]),
        acquire_seconds=float(result["acquire_seconds"]),
        bare_put_cpu=float(result["bare_put_cpu"]),
        renewals=int(result["renewals"]),
        lost=int(result["lost"]),
        requests=meter.diff(before, after),
    )
