"""Figure 1: API requests per operation, as the API server counted them.

For each operation (acquire a new lock, acquire an existing free lock, renew,
release) the adapter sets the scene, and only the operation itself runs
between the two ``/metrics`` scrapes. Each is repeated and the repeat with the
median total is kept, so a stray request of the server's own cannot decide it.
"""

from __future__ import annotations

from ._metrics import Meter
from ._results import NotMeasured, OpCount, Requests
from ._systems import OPS, System, Unsupported

__all__ = ["OP_LABELS", "measure_ops"]

OP_LABELS = {
    "acquire-new": "acquire a new lock",
    "acquire-free": "acquire an existing free lock",
    "renew": "renew",
    "release": "release",
}


def measure_ops(system: System, meter: Meter, repeats: int) -> dict[str, OpCount | NotMeasured]:
    out: dict[str, OpCount | NotMeasured] = {}
    for op in OPS:
        n = system.op_repeats(op, repeats)
        runs: list[Requests] = []
        try:
            for _ in range(n):
                with system.operation(op) as perform, meter.batch() as batch:
                    perform()
                runs.append(batch.requests)
        except Unsupported as exc:
            out[op] = NotMeasured(str(exc))
            continue
        except Exception as exc:
            out[op] = NotMeasured(f"failed: {exc!r}")
            continue
        runs.sort(key=lambda r: r.total)
        out[op] = OpCount(runs[(len(runs) - 1) // 2], n, tuple(r.total for r in runs))
    return out
