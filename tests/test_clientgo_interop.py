"""Python locks on Leases and client-go's leader election sharing one Lease.

The Go side is ``tests/clientgo``: client-go v0.35.4's ``tools/leaderelection``
with ``resourcelock.LeaseLock``, every decision client-go's own (see its
package comment); it is built and cached by :mod:`clientgo`, and every test is
skipped, with the ``go`` error as the reason, when it cannot be built. Go
processes are killed at the end of each test whatever happens, and every wait
is bounded.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from child_output import Child, Lines
from clientgo import clientgo_binary
from lockheed import LeaseLocker, Lock, LockTimeout
from lockheed._leasecodec import server_stamp
from lockheed._state import parse_time
from support import Requests
from test_go_interop import check_mixed, parse_mixed

# The first test may build client-go from scratch (about 90 s on two busy cores).
pytestmark = [pytest.mark.kube, pytest.mark.timeout(600)]

STARTUP = 30.0  # a process's first line, on a busy host
STEP = 20.0  # one client-go step (a retry period, a request) on a busy host
FAST = ["--retry-period", "250ms"]


def is_event(name: str) -> Callable[[str], bool]:
    return lambda line: line.startswith("{") and json.loads(line).get("event") == name


class GoElector:
    """One client-go program, with its JSON events."""

    def __init__(self, child: Child):
        self.child = child

    def event(self, name: str, timeout: float = STEP) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.child.out.expect(is_event(name), timeout, name))
        return found

    def stop(self) -> None:
        """A line on stdin: client-go's context is cancelled (and it releases)."""
        stdin = self.child.process.stdin
        assert stdin is not None
        stdin.write("stop\n")
        stdin.flush()


class Spawner:
    def __init__(self, binary: Path, kubeconfig: Path, namespace: str, tmp_path: Path):
        self.binary = binary
        self.cluster = ["--kubeconfig", str(kubeconfig), "--namespace", namespace]
        self.tmp_path = tmp_path
        self.children: list[Child] = []

    def go(self, command: str, lease: str, identity: str, *args: str) -> GoElector:
        stderr_path = self.tmp_path / f"clientgo-{len(self.children)}.stderr"
        argv = [str(self.binary), command, *self.cluster, "--name", lease, "--identity", identity]
        with stderr_path.open("w") as stderr:
            process = subprocess.Popen(
                [*argv, *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        assert process.stdout is not None
        child = Child(process, Lines(process.stdout), stderr_path)
        self.children.append(child)
        elector = GoElector(child)
        elector.event("ready", STARTUP)
        return elector

    def close(self) -> None:
        for child in self.children:
            if child.process.poll() is None:
                child.process.kill()
            child.process.wait(10)
            if child.process.stdin is not None:
                child.process.stdin.close()
            child.out.close()


@pytest.fixture(scope="session")
def clientgo_program() -> Path:
    """The client-go program; skips the test when it cannot be built."""
    return clientgo_binary()


@pytest.fixture
def spawn(
    clientgo_program: Path, kube_kubeconfig: Path, kube_namespace: str, tmp_path: Path
) -> Iterator[Spawner]:
    """client-go processes on the test's namespace. ``clientgo_program`` comes
    first, so that a test is skipped before the control plane is started for it."""
    spawner = Spawner(clientgo_program, kube_kubeconfig, kube_namespace, tmp_path)
    yield spawner
    spawner.close()


@pytest.fixture
def py(kube_namespace: str, kube_kubeconfig: Path) -> Iterator[LeaseLocker]:
    with LeaseLocker(kube_namespace, config=kube_kubeconfig) as locker:
        yield locker


def lease_of(locker: LeaseLocker, name: str) -> dict[str, Any]:
    status, obj = locker.api.request("GET", "/" + locker.object_name(name))
    assert status == 200
    found: dict[str, Any] = obj
    return found


def held_by_log(holder: str) -> Callable[[str], bool]:
    def match(line: str) -> bool:
        if not is_event("log")(line):
            return False
        entry = json.loads(line)["entry"]
        return bool(
            entry.get("msg", "").startswith("Lease is held by") and entry.get("holder") == holder
        )

    return match


def test_client_go_does_not_lead_while_a_python_lock_holds(spawn: Spawner, py: LeaseLocker) -> None:
    """client-go sees the Python holder and keeps finding its lease valid for more
    than two lease durations (it takes a lease left unrenewed for one); after the
    release it leads at its next retry."""
    lock = Lock("shared", py).with_duration(3).with_renew_interval(1)
    lock.acquire()
    go = spawn.go(
        "elect",
        "lockheed-shared",
        "go-1",
        "--lease-duration",
        "3s",
        "--renew-deadline",
        "2s",
        *FAST,
    )
    assert go.event("new_leader")["leader"] == lock.instance_id
    first = json.loads(go.child.out.expect(held_by_log(lock.instance_id), STEP))["mono"]
    late = go.child.out.expect(
        lambda line: (
            held_by_log(lock.instance_id)(line) and json.loads(line)["mono"] > first + 2 * 3 * 10**9
        ),
        STEP + 2 * 3,
        "a client-go attempt more than two lease durations later that found it held",
    )
    assert late
    assert not [s for s in go.child.out.seen if is_event("started")(s)], "client-go led"
    assert lock.held and lock.lost is None
    lock.release()
    released = time.monotonic_ns()
    started = go.event("started", 10)  # at its next retry: a release frees it at once
    assert started["mono"] > released
    spec = lease_of(py, "shared")["spec"]
    assert spec["holderIdentity"] == "go-1"
    go.stop()
    go.event("exited")
    assert lease_of(py, "shared")["spec"]["holderIdentity"] == ""  # ReleaseOnCancel


def test_python_waits_while_client_go_leads_and_gets_it_on_release(
    spawn: Spawner, py: LeaseLocker
) -> None:
    """Python's acquire waits (by watch) while client-go renews a 15 s lease, and
    has the lock within 10 s of client-go's ReleaseOnCancel: only the release can
    have freed it."""
    before = Lock("handed", py).with_duration(30)
    first_token = before.acquire()
    before.release()
    go = spawn.go(
        "elect",
        "lockheed-handed",
        "go-2",
        "--lease-duration",
        "15s",
        "--renew-deadline",
        "10s",
        *FAST,
    )
    go.event("started")
    lock = Lock("handed", py).with_duration(30)
    with pytest.raises(LockTimeout) as info:
        lock.acquire(blocking=False)
    assert info.value.holder == "go-2"
    transitions = lease_of(py, "handed")["spec"]["leaseTransitions"]
    requests = Requests(py)
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(lambda: (lock.acquire(timeout=STEP + 10), time.monotonic_ns()))
        deadline = time.monotonic() + STEP
        while requests.counts["watch"] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)  # until the acquire is parked on its watch
        assert requests.counts["watch"] > 0 and not waiting.done()
        go.stop()
        token, acquired = waiting.result(STEP + 15)
    work_done = go.event("work_done")["mono"]
    go.event("exited")
    assert acquired > work_done  # never two holders
    assert token > first_token  # fencing tokens increase across client-go's tenure
    spec = lease_of(py, "handed")["spec"]
    assert spec["holderIdentity"] == lock.instance_id
    assert spec["leaseTransitions"] == transitions + 1
    lock.release()


def test_python_takes_over_once_a_killed_client_go_lease_runs_out(
    spawn: Spawner, py: LeaseLocker
) -> None:
    go = spawn.go(
        "elect",
        "lockheed-killed",
        "go-3",
        "--lease-duration",
        "3s",
        "--renew-deadline",
        "2s",
        *FAST,
    )
    go.event("started")
    # client-go's renewals are stamped by the server too (its entry, its time)
    first = lease_of(py, "killed")
    time.sleep(1.1)  # stamps have whole seconds
    second = lease_of(py, "killed")
    managers = {e["manager"] for e in second["metadata"]["managedFields"]}
    assert managers == {"clientgo"}
    stamp1, stamp2 = server_stamp(first["metadata"]), server_stamp(second["metadata"])
    assert stamp1 is not None and stamp2 is not None and stamp2 > stamp1

    lock = Lock("killed", py).with_duration(30)
    with pytest.raises(LockTimeout):
        lock.acquire(blocking=False)
    os.kill(go.child.pid, signal.SIGKILL)
    go.child.process.wait(10)
    last = lease_of(py, "killed")["spec"]
    assert last["holderIdentity"] == "go-3"
    lock.acquire(timeout=STEP)
    spec = lease_of(py, "killed")["spec"]
    assert spec["holderIdentity"] == lock.instance_id
    assert spec["leaseTransitions"] == last["leaseTransitions"] + 1
    # Both stamps are this host's clock: ours from the server clock's latest bound,
    # client-go's from its wall clock. We took it only after its lease had run out.
    taken, renewed = parse_time(spec["acquireTime"]), parse_time(last["renewTime"])
    assert taken >= renewed + timedelta(seconds=last["leaseDurationSeconds"])
    lock.release()


# ------------------------------------------------------------- a mixed run

PY_ROUNDS = 10
GO_ROUNDS = 10


def python_contender(locker: LeaseLocker, log: list[str], rounds: int, rng: random.Random) -> None:
    lock = Lock("mixed", locker).with_duration(10).with_renew_interval(3)
    for _ in range(rounds):
        token = lock.acquire(timeout=60)
        start = time.monotonic_ns()
        time.sleep(rng.uniform(0, 0.1))
        end = time.monotonic_ns()
        lock.release()
        log.append(f"py {token} {start} {end} {os.getpid()}")
        time.sleep(rng.uniform(0, 0.4))  # outside the lock: client-go's turn


def test_python_and_client_go_never_hold_at_once(
    spawn: Spawner, py: LeaseLocker, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A short mixed run; the holds both sides logged (CLOCK_MONOTONIC) never overlap."""
    go_log = tmp_path / "go-holds.log"
    go = spawn.go(
        "contend", "lockheed-mixed", "go-mixed",
        "--rounds", str(GO_ROUNDS), "--log", str(go_log),
        "--lease-duration", "2s", "--renew-deadline", "1500ms", "--retry-period", "100ms",
        "--hold-max", "100ms", "--pause-max", "300ms",
    )  # fmt: skip
    py_log: list[str] = []
    thread = threading.Thread(
        target=python_contender, args=(py, py_log, PY_ROUNDS, random.Random(11)), daemon=True
    )
    go.stop()  # the start signal
    thread.start()
    go.event("done", 60)
    thread.join(60)
    assert not thread.is_alive()
    holds = parse_mixed(go_log.read_text() + "\n".join(py_log) + "\n")
    verdict = check_mixed(holds)
    sides = Counter(h.side for h in holds)
    figures = {"holds": verdict.holds, "side_switches": verdict.side_switches}
    request.node.user_properties.extend(figures.items())
    print("\nmixed Lease run:", ", ".join(f"{k}={v}" for k, v in figures.items()))
    assert sides == {"go": GO_ROUNDS, "py": PY_ROUNDS}
    assert verdict.overlaps == [], verdict.overlaps[:3]
    assert verdict.token_inversions == []
    assert verdict.side_switches >= 3  # the two sides did hand the Lease to each other
