"""A soak of lockheed under every fault at once; writes its figures to RELIABILITY.md.

``make soak`` runs ``python tests/soak.py`` (it is not part of the test suite):
a local control plane, and worker processes (tests/fault_worker.py, half of
them asyncio, each a user of its own behind a fault proxy of its own, with a
wall clock an hour ahead, behind or right) contend for one lock until
``--acquisitions`` holds were logged or ``--minutes`` passed. Meanwhile one
fault at a time (each kind once per round, in a random order) hits the current
holder or anyone: SIGSTOP past its lease, SIGKILL (and a new worker in its
place), blackhole, slow answers, a blip of reset and refused connections, a
dropped answer (an ambiguous write), 429s from the API server, a storm of
foreign writes (409s), and an API-server restart (at most one a minute).

Checked from the workers' logs (see fault_worker.py for what a hold records):
no two holds overlap, where a hold lasts from ``acquire`` returning to the
last moment the worker believed it held the lock; tokens increase. Measured:
the margin from a lost holder's loss (``held`` turning False, and its
``on_lost`` call) to the next holder's write, and how long the line took to
move after a holder was killed. Exits 1 if any hold overlapped or a token went
backwards.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from child_output import Child, Lines
from lockheed._codec import decode_configmap
from lockheed.testing import (
    Blackhole,
    ControlPlane,
    DropResponse,
    FaultProxy,
    Latency,
    Refuse,
    Reset,
    throttled,
)

HERE = Path(__file__).parent
WORKER = HERE / "fault_worker.py"
LOCK = "soak"
RULES = [
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create", "update", "watch"]}
]
OFFSETS = (-3600.0, 0.0, 3600.0)


def say(message: str) -> None:
    print(f"[soak] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- workers


@dataclass
class Worker:
    index: int
    api: str
    user: Path
    proxy: FaultProxy
    kubeconfig: Path
    generation: int = 0
    offset: float = 0.0
    child: Child | None = None

    @property
    def instance(self) -> str:
        return f"soak-{self.index}-{self.generation}"

    @property
    def pid(self) -> int:
        assert self.child is not None
        return self.child.pid


@dataclass
class Soak:
    args: argparse.Namespace
    plane: ControlPlane
    namespace: str
    workdir: Path
    random: random.Random
    workers: list[Worker] = field(default_factory=list)
    episodes: Counter[str] = field(default_factory=Counter)
    kills: list[tuple[float, int]] = field(default_factory=list)  # of holders: (monotonic, pid)
    pauses: list[tuple[int, float, float]] = field(default_factory=list)  # (pid, from, to)
    crashes: list[str] = field(default_factory=list)  # what workers that died on their own said
    offsets: Counter[float] = field(default_factory=Counter)  # clock offsets of workers started
    last_restart: float = 0.0

    @property
    def log(self) -> Path:
        return self.args.log or self.workdir / "holds.log"

    def spawn(self, worker: Worker) -> None:
        worker.generation += 1
        worker.offset = self.random.choice(OFFSETS)
        self.offsets[worker.offset] += 1
        stderr_path = self.workdir / f"{worker.instance}.stderr"
        with stderr_path.open("w") as stderr:
            process = subprocess.Popen(
                [
                    sys.executable,
                    str(WORKER),
                    "soak",
                    *("--kubeconfig", str(worker.kubeconfig), "--namespace", self.namespace),
                    *("--lock", LOCK, "--instance-id", worker.instance, "--api", worker.api),
                    *("--duration", str(self.args.duration)),
                    *("--renew-interval", str(self.args.renew_interval)),
                    *("--acquire-timeout", "30", "--clock-offset", str(worker.offset)),
                    *("--log", str(self.log), "--seed", str(self.random.getrandbits(32))),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        assert process.stdout is not None
        worker.child = Child(process, Lines(process.stdout), stderr_path)

    def holder(self) -> Worker | None:
        """The worker whose lease is in the lock object now, if any."""
        path = f"/api/v1/namespaces/{self.namespace}/configmaps/lockheed-{LOCK}"
        with self.plane.http_client() as http:
            try:
                response = http.get(path, timeout=5)
            except Exception:
                return None
        if response.status_code != 200:
            return None
        state = decode_configmap(LOCK, response.json()).state
        ids = set(state.leases) if state is not None else set()
        return next((w for w in self.workers if w.instance in ids), None)

    def target(self) -> Worker:
        return self.holder() or self.random.choice(self.workers)

    def holds_logged(self) -> int:
        try:
            with self.log.open("rb") as handle:
                return sum(1 for line in handle if line.startswith(b"HOLD"))
        except FileNotFoundError:
            return 0


# ---------------------------------------------------------------- faults


def _for(soak: Soak, low: float, high: float) -> None:
    time.sleep(soak.random.uniform(low, high))  # how long the fault lasts


def pause(soak: Soak) -> None:
    worker, lease = soak.target(), soak.args.duration
    began = time.monotonic()
    os.kill(worker.pid, signal.SIGSTOP)
    try:
        _for(soak, lease + 0.5, lease + 2)
    finally:
        os.kill(worker.pid, signal.SIGCONT)
        soak.pauses.append((worker.pid, began, time.monotonic()))


def kill(soak: Soak) -> None:
    worker = soak.target()
    assert worker.child is not None
    worker.child.process.kill()
    worker.child.process.wait(30)
    killed = time.monotonic()
    if soak.holder() is worker:  # it died holding the lock (not just after releasing it)
        soak.kills.append((killed, worker.pid))
    worker.child.out.close()
    soak.spawn(worker)


def blackhole(soak: Soak) -> None:
    with soak.target().proxy.fault(Blackhole()):
        _for(soak, 1, soak.args.duration + 2)


def latency(soak: Soak) -> None:
    lease = soak.args.duration
    slow = Latency(to_server=soak.random.uniform(0, 0.5), to_client=soak.random.uniform(0.5, lease))
    with soak.target().proxy.fault(slow):
        _for(soak, 1, 5)


def blip(soak: Soak) -> None:
    with soak.random.choice(soak.workers).proxy.fault(Reset(), Refuse()):
        _for(soak, 0.5, 2)


def drop_response(soak: Soak) -> None:
    with soak.target().proxy.fault(DropResponse()):
        _for(soak, 1, 3)


def throttle(soak: Soak) -> None:
    with throttled(soak.plane, soak.target().user):
        _for(soak, 1, 3)


def storm(soak: Soak) -> None:
    path = f"/api/v1/namespaces/{soak.namespace}/configmaps/lockheed-{LOCK}"
    patch = {"Content-Type": "application/merge-patch+json"}
    with soak.plane.http_client() as http:
        for i in range(20):
            body = {"metadata": {"annotations": {"soak/noise": str(i)}}}
            http.patch(path, json=body, headers=patch)


def restart(soak: Soak) -> None:
    if time.monotonic() - soak.last_restart < soak.args.restart_every:
        return
    soak.plane.restart_apiserver()
    soak.last_restart = time.monotonic()


FAULTS: dict[str, Callable[[Soak], None]] = {
    "pause": pause,
    "kill": kill,
    "blackhole": blackhole,
    "latency": latency,
    "blip": blip,
    "drop_response": drop_response,
    "throttle": throttle,
    "storm": storm,
    "restart": restart,
}


def respawn_crashed(soak: Soak) -> None:
    """A worker must never exit on its own: note what it said, and replace it."""
    for worker in soak.workers:
        assert worker.child is not None
        if worker.child.process.poll() is not None:
            soak.crashes.append(f"{worker.instance}: {worker.child.describe()}")
            say(f"worker {worker.instance} exited: {worker.child.describe()}")
            worker.child.out.close()
            soak.spawn(worker)


def run_faults(soak: Soak) -> None:
    """Faults one at a time, in rounds of every kind in a random order, until done."""
    began = time.monotonic()
    next_report = began
    kinds: list[str] = []
    while True:
        logged = soak.holds_logged()
        elapsed = time.monotonic() - began
        if logged >= soak.args.acquisitions or elapsed >= soak.args.minutes * 60:
            return
        if time.monotonic() >= next_report:
            say(f"{logged} holds after {elapsed:.0f} s; faults {dict(soak.episodes)}")
            next_report = time.monotonic() + 15
        time.sleep(soak.random.uniform(0.5, 1.5) * soak.args.fault_every)  # pacing
        respawn_crashed(soak)
        if not kinds:
            kinds = soak.random.sample(list(FAULTS), len(FAULTS))
        kind = kinds.pop()
        before = soak.last_restart
        try:
            FAULTS[kind](soak)
        except ProcessLookupError:  # the target exited meanwhile; the next round notices
            continue
        if kind != "restart" or soak.last_restart != before:
            soak.episodes[kind] += 1


# ---------------------------------------------------------------- analysis


@dataclass(frozen=True)
class Hold:
    pid: int
    instance: str
    token: int
    start: float
    end: float
    write: float
    deadline: float
    notice: float
    release: float
    outcome: str


def parse(log: Path) -> tuple[list[Hold], Counter[str]]:
    holds: list[Hold] = []
    failures: Counter[str] = Counter()
    for line in log.read_text().splitlines():
        fields = line.split()
        if fields[0] == "HOLD":
            pid, instance, token, *times, outcome = fields[1:]
            start, end, write, deadline, notice, release = (int(t) / 1e9 for t in times)
            holds.append(
                Hold(
                    *(int(pid), instance, int(token), start, end, write),
                    *(deadline, notice, release, outcome),
                )
            )
        elif fields[0] == "FAIL":
            failures[fields[4]] += 1
    return holds, failures


def overlaps(holds: list[Hold]) -> tuple[int, int]:
    """(overlapping holds, token inversions), in the order holds began."""
    ordered = sorted(holds, key=lambda h: h.start)
    overlapping = inversions = 0
    latest: Hold | None = None
    for previous, hold in zip([None, *ordered], ordered, strict=False):
        if previous is not None and (
            hold.token < previous.token
            # The same token again is right only for the same instance taking its
            # own lease back (its release had failed and nobody held it since).
            or (hold.token == previous.token and hold.instance != previous.instance)
        ):
            inversions += 1
        if hold.end < hold.start:
            continue  # never believed held after acquire returned
        if latest is not None and hold.start <= latest.end:
            overlapping += 1
        if latest is None or hold.end > latest.end:
            latest = hold
    return overlapping, inversions


def _paused(soak: Soak, pid: int, low: float, high: float) -> bool:
    return any(p == pid and a < high and b > low for p, a, b in soak.pauses)


def margins(soak: Soak, holds: list[Hold]) -> tuple[list[float], list[float], int]:
    """For each lost hold: next holder's write minus (``held`` turning False), and minus
    the ``on_lost`` call when that came before ``release`` and the holder was not
    stopped meanwhile; and how many losses only ``release`` found (it was called
    in time, its write was held up while the lease ran out)."""
    by_token = sorted(holds, key=lambda h: h.token)
    held: list[float] = []
    notice: list[float] = []
    at_release = 0
    for hold, successor in itertools.pairwise(by_token):
        if hold.outcome != "lost" or not hold.deadline:
            continue
        # The successor got the lock by its own write, or, when its last write came
        # before this release (it had only joined the line), by this release's
        # hand-off, written just after the release began.
        taken = successor.write if successor.write > hold.release else hold.release
        # The holder stopped believing at its deadline, or when it chose to release.
        held.append(taken - min(hold.deadline, hold.release))
        if not hold.notice or hold.notice >= hold.release:
            at_release += 1
        elif not _paused(soak, hold.pid, hold.start, successor.write):
            notice.append(successor.write - hold.notice)
    return held, notice, at_release


def line_moves(soak: Soak, holds: list[Hold]) -> list[float]:
    moves = []
    for killed_at, pid in soak.kills:
        later = [h.write for h in holds if h.write > killed_at and h.pid != pid]
        if later:
            moves.append(min(later) - killed_at)
    return moves


def spread(values: list[float], with_max: bool = False) -> str:
    if not values:
        return "n/a"
    parts = [min(values), statistics.median(values), *([max(values)] if with_max else [])]
    return " / ".join(f"{v:.3f} s" for v in parts)


def report(soak: Soak, holds: list[Hold], failures: Counter[str], wall: float) -> tuple[str, bool]:
    overlapping, inversions = overlaps(holds)
    held, notice, at_release = margins(soak, holds)
    moves = line_moves(soak, holds)
    outcomes = Counter(h.outcome for h in holds)
    effects: Counter[str] = Counter()
    for worker in soak.workers:
        effects.update(worker.proxy.injected)
    args = soak.args
    others = [f"{k} {v}" for k, v in outcomes.items() if k not in ("ok", "lost")]
    rows = [
        ("acquisitions (holds logged)", f"{len(holds)}"),
        ("overlapping holds", f"{overlapping}"),
        ("token inversions", f"{inversions}"),
        ("holds ended by a loss", f"{outcomes['lost']} ({at_release} found by `release`)"),
        ("margin, `held` False → next holder's write (min / p50)", spread(held)),
        ("margin, `on_lost` → next holder's write, holder running (min / p50)", spread(notice)),
        ("line moved after a holder was killed (min / p50 / max)", spread(moves, True)),
        ("failed acquires", ", ".join(f"{k} {v}" for k, v in failures.most_common()) or "0"),
        ("releases that failed otherwise", ", ".join(others) or "0"),
        ("workers that exited on their own", f"{len(soak.crashes)}"),
    ]
    done = ", ".join(f"{kind} {count}" for kind, count in sorted(effects.items())) or "none"
    lines = [
        "# Reliability",
        "",
        f"`make soak` (tests/soak.py), run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC:",
        f"{args.workers} worker processes ({(args.workers + 1) // 2} sync, {args.workers // 2} "
        f"asyncio; wall clocks -1 h, right or +1 h; each a user of its own behind a fault proxy) "
        f"contend for one lock with a {args.duration:g} s lease renewed every "
        f"{args.renew_interval:g} s, for {wall / 60:.1f} min, one fault every "
        f"~{args.fault_every:g} s. A hold lasts from `acquire` returning to the last moment the "
        "worker believed it held the lock; margins are on the host's monotonic clock.",
        "",
        "| figure | value |",
        "| --- | --- |",
        *(f"| {name} | {value} |" for name, value in rows),
        "",
        "## Faults injected",
        "",
        "| fault | episodes |",
        "| --- | --- |",
        *(f"| {kind} | {soak.episodes[kind]} |" for kind in FAULTS),
        "",
        f"What the proxies did: {done} (chunks held or delayed, connections reset, "
        "answers dropped, listeners closed). Wall clocks of the workers started: "
        + ", ".join(f"{offset:+g} s {n}" for offset, n in sorted(soak.offsets.items()))
        + ".",
        "",
        "Failed acquires are `acquire(timeout=30)` calls that raised while a fault lasted; "
        "a restarting API server answers 403 (LockForbidden) until its RBAC caches are "
        "filled. A loss found by `release` is one whose lease ran out while the holder was "
        "stopped or its release held up: `held` had turned False on time, and `on_lost` "
        "came with `release`'s answer.",
        "",
    ]
    return "\n".join(lines), overlapping == 0 and inversions == 0


# ---------------------------------------------------------------- main


def _stop_workers(soak: Soak) -> None:
    for worker in soak.workers:
        if worker.child is not None and worker.child.process.poll() is None:
            os.kill(worker.pid, signal.SIGCONT)
            worker.child.process.terminate()
    deadline = time.monotonic() + 45  # a worker finishes its acquire (30 s at most) first
    for worker in soak.workers:
        if worker.child is None:
            continue
        try:
            worker.child.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.child.process.kill()
            worker.child.process.wait(10)
        worker.child.out.close()


def _workers(soak: Soak) -> Iterator[Worker]:
    for index in range(soak.args.workers):
        user = soak.plane.mint_user(f"soak-{index}", soak.namespace, RULES)
        proxy = FaultProxy.for_kubeconfig(user).start()
        api = ("sync", "async")[index % 2]
        yield Worker(index, api, user, proxy, proxy.kubeconfig())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--acquisitions", type=int, default=10_000)
    parser.add_argument("--minutes", type=float, default=120.0, help="stop after this long")
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument("--duration", type=float, default=4.0, help="lease, seconds")
    parser.add_argument("--renew-interval", type=float, default=1.0)
    parser.add_argument("--fault-every", type=float, default=3.0, help="seconds between faults")
    parser.add_argument("--restart-every", type=float, default=60.0, help="at most one per")
    parser.add_argument("--report", type=Path, default=HERE.parent / "RELIABILITY.md")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--log", type=Path, default=None, help="keep the workers' log here")
    args = parser.parse_args(argv)
    if args.acquisitions < 1 or args.minutes <= 0 or args.workers < 2 or args.duration <= 0:
        parser.error("need --acquisitions >= 1, --minutes > 0, --workers >= 2, --duration > 0")

    with (
        ControlPlane(progress=say) as plane,
        tempfile.TemporaryDirectory(prefix="lockheed-soak-") as tmp,
    ):
        soak = Soak(
            args, plane, plane.create_namespace("soak"), Path(tmp), random.Random(args.seed)
        )
        try:
            soak.workers = list(_workers(soak))
            for worker in soak.workers:
                soak.spawn(worker)
            for worker in soak.workers:
                assert worker.child is not None
                worker.child.out.expect("READY", 120)
            say(f"{len(soak.workers)} workers ready; control plane {plane.server}")
            began = time.monotonic()
            run_faults(soak)
            wall = time.monotonic() - began
        finally:
            _stop_workers(soak)
            for worker in soak.workers:
                worker.proxy.stop()
        holds, failures = parse(soak.log)
        text, safe = report(soak, holds, failures, wall)
    args.report.write_text(text)
    print(text)
    say(f"wrote {args.report}")
    return 0 if safe else 1


if __name__ == "__main__":
    sys.exit(main())
