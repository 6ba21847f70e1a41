"""Python lockheed and Go lockheed v0.5.3 sharing locks on the real control plane.

The Go side is ``tests/golockheed``, a small program that runs Go lockheed's
own Acquire, Release, renewal loop and GetLocks (see its package comment); it
is built and cached by :mod:`golockheed`, from a module-proxy directory
holding Go lockheed v0.5.3 (the public proxy refuses that version). Every test
that runs it is skipped, with the ``go`` error as the reason, when it cannot
be built (it fails instead with ``LOCKHEED_REQUIRE_GOLOCKHEED=1``, as in CI);
the tests of Go's reservation protocol write its annotations themselves and
need no Go. Go
processes are killed at the end of each test whatever happens, and every wait
is bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import queue
import random
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from child_output import Child as ChildProcess
from child_output import Lines
from golockheed import golockheed_binary
from line_watch import LineWatch, holders_of, line_of
from lockheed import (
    ConfigMapLocker,
    Lock,
    LockError,
    LockLost,
    LockTimeout,
    LockTypeError,
    Semaphore,
    acquired,
    list_locks,
    tags_contain,
)
from lockheed._core import CLAIM_WINDOW, Read, Replace, Watch
from lockheed._queue import QUEUE_KEY, VIEW_PREFIX, view_label
from lockheed._state import NEVER, Lease, LockState, Record, encode_state, parse_time
from lockheed.testing import FaultProxy, Latency
from support import CROWD, ConfigMapLockers

pytestmark = pytest.mark.lockheed_kube

UTC = timezone.utc
STARTUP = 30.0  # a process's first line, on a busy host
STEP = 30.0  # one Go operation (Go retries a reserved ConfigMap for 5 s)
# How late a Go holder hears each answer in the renewal test below: longer than
# a busy host takes to stop it after a watch event, short of its 1 s renewals.
GO_LAG = 0.3
CLOCK_SLACK = 3.0  # the server clock's one-second uncertainty on both sides, plus scheduling
HANDOFF = 3.0  # from a release to the waiting Python acquire's return
GO_NEVER = "9999-12-31T23:59:59Z"  # Go lockheed's expiry of a lease without duration


# ---------------------------------------------------------------- process output


def is_event(name: str) -> Callable[[str], bool]:
    prefix = '{"event":' + json.dumps(name)
    return lambda line: line.startswith(prefix + ",") or line == prefix + "}"


class Child(ChildProcess):
    """A Go lockheed program or a Python lock worker, with its output."""

    def event(self, name: str, timeout: float = STEP) -> dict[str, Any]:
        """The next JSON event called ``name``."""
        found: dict[str, Any] = json.loads(self.out.expect(is_event(name), timeout, f"{name!r}"))
        return found

    def go_log(self, text: str, timeout: float, *, fresh: bool = False) -> str:
        """The next line Go lockheed logged that contains ``text``; with ``fresh``,
        one logged from now on (lines printed so far are skipped)."""
        if fresh:
            self.out.drain()
        line = self.out.expect(
            lambda raw: is_event("go_log")(raw) and text in json.loads(raw)["message"],
            timeout,
            f"a Go log line with {text!r}",
        )
        message: str = json.loads(line)["message"]
        return message

    def say(self, text: str = "\n") -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text)
        self.process.stdin.flush()


@dataclass(frozen=True)
class GoResult:
    returncode: int
    events: list[dict[str, Any]]
    stderr: str

    def only(self, name: str) -> dict[str, Any]:
        found = [e for e in self.events if e["event"] == name]
        assert len(found) == 1, f"expected one {name!r} event: {self}"
        return found[0]


class Processes:
    """Starts Go lockheed programs (and Python lock workers) on the test's namespace."""

    def __init__(self, binary: Path, kubeconfig: Path, namespace: str, tmp_path: Path):
        self.binary = binary
        self.cluster = ["--kubeconfig", str(kubeconfig), "--namespace", namespace]
        self.namespace = namespace
        self.kubeconfig = kubeconfig
        self.tmp_path = tmp_path
        self.children: list[Child] = []

    def spawn(
        self,
        command: Sequence[str],
        *,
        stdin: bool = False,
        env: dict[str, str] | None = None,
        pass_fds: Sequence[int] = (),
    ) -> Child:
        stderr_path = self.tmp_path / f"child-{len(self.children)}.stderr"
        with stderr_path.open("w") as stderr:
            process = subprocess.Popen(
                list(command),
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env={**os.environ, **(env or {})},
                pass_fds=tuple(pass_fds),
                text=True,
            )
        assert process.stdout is not None
        child = Child(process, Lines(process.stdout), stderr_path)
        self.children.append(child)
        return child

    def go(self, subcommand: str, *args: str, **kwargs: Any) -> Child:
        """Start ``golockheed SUBCOMMAND --kubeconfig .. --namespace .. ARGS``."""
        return self.spawn([str(self.binary), subcommand, *self.cluster, *args], **kwargs)

    def run(
        self, subcommand: str, *args: str, timeout: float = STEP, env: dict[str, str] | None = None
    ) -> GoResult:
        """Run a Go subcommand to completion."""
        done = subprocess.run(
            [str(self.binary), subcommand, *self.cluster, *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
            check=False,
        )
        events = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
        return GoResult(done.returncode, events, done.stderr)

    def acquire(self, name: str, *args: str, env: dict[str, str] | None = None) -> GoResult:
        """Go's Acquire once; the process exits holding the lease if it got it."""
        return self.run("acquire", "--name", name, *args, env=env)

    def list(self, *args: str) -> dict[str, dict[str, Any]]:
        """Go's GetLocks with the given filters: Go's JSON of each lock, by name."""
        result = self.run("list", *args)
        assert result.returncode == 0, result
        locks: list[dict[str, Any]] = result.only("listed")["locks"]
        return {lock["name"]: lock for lock in locks}

    def close(self) -> None:
        for child in self.children:
            if child.process.poll() is None:
                child.process.kill()  # SIGKILL ends a stopped process as well
        for child in self.children:
            child.process.wait(30)
            if child.process.stdin is not None:
                child.process.stdin.close()
            child.out.close()


@pytest.fixture(scope="session")
def go_binary() -> Path:
    """The Go lockheed program; skips the test when it cannot be built."""
    return golockheed_binary()


@pytest.fixture
def procs(
    go_binary: Path, lockheed_kubeconfig: Path, lockheed_namespace: str, tmp_path: Path
) -> Iterator[Processes]:
    """Go processes on the test's namespace. ``go_binary`` comes first, so that a
    test is skipped before the control plane is started for it."""
    made = Processes(go_binary, lockheed_kubeconfig, lockheed_namespace, tmp_path)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def py(configmap_locker: ConfigMapLockers) -> ConfigMapLocker:
    """A Python ConfigMap locker on the test's namespace."""
    return configmap_locker()


@pytest.fixture
def background() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="go-interop")
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------- raw objects


def stored(locker: ConfigMapLocker, name: str) -> Record:
    record: Record | None = locker.execute(Read(name))
    assert record is not None, f"lock {name!r} has no ConfigMap"
    return record


def raw_get(locker: ConfigMapLocker, name: str) -> dict[str, Any]:
    status, obj = locker.api.request("GET", "/" + locker.object_name(name))
    assert status == 200, status
    found: dict[str, Any] = obj
    return found


def raw_put(locker: ConfigMapLocker, obj: dict[str, Any]) -> dict[str, Any]:
    status, written = locker.api.request("PUT", "/" + obj["metadata"]["name"], body=obj)
    assert status == 200, status
    result: dict[str, Any] = written
    return result


def raw_create(locker: ConfigMapLocker, name: str, document: str) -> dict[str, Any]:
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": locker.object_name(name), "labels": {"lockheed/lock": ""}},
        "data": {"lock": document},
    }
    status, written = locker.api.request("POST", body=body)
    assert status == 201, status
    result: dict[str, Any] = written
    return result


def stored_document(locker: ConfigMapLocker, name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(raw_get(locker, name)["data"]["lock"])
    return document


def go_time(stamp: datetime, zone: timezone = UTC, *, fraction: bool = True) -> str:
    """``stamp`` as Go's time.Time writes it: RFC 3339 in the local zone (``Z`` for
    UTC), with a trimmed fraction (RFC3339Nano, JSON) or none (RFC3339)."""
    local = stamp.astimezone(zone)
    text = local.replace(tzinfo=None).isoformat(timespec="microseconds" if fraction else "seconds")
    if fraction:
        text = text.rstrip("0").rstrip(".")
    offset = local.utcoffset() or timedelta(0)
    if not offset:
        return text + "Z"
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    return f"{text}{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def wall() -> datetime:
    return datetime.now(UTC)


def names(infos: Sequence[Any]) -> list[str]:
    return [info.name for info in infos]


# ---------------------------------------------------------------- exclusion


def go_holding(procs: Processes, name: str, duration: str) -> Child:
    """A Go lockheed process (instance ``go-holder``) that holds ``name`` with a
    lease of ``duration`` until told to release (:meth:`Child.say`)."""
    go = procs.go(
        "acquire",
        *("--name", name, "--duration", duration, "--instance-id", "go-holder"),
        "--wait-stdin",
        stdin=True,
    )
    go.event("acquired", STARTUP)
    return go


def release_to_acquired(go: Child, taking: Future[tuple[int, int]]) -> float:
    """Tell the Go holder to release; seconds from its release to the waiting
    acquire's return (``taking`` gives the token and ``time.monotonic_ns()``)."""
    go.say()
    released = go.event("released")["mono_ns"]
    _, took = taking.result(4 * STEP)
    return float(took - released) / 1e9


def seeing_go(py: ConfigMapLocker) -> threading.Event:
    """An event set once ``py`` answers an effect with a version that Go
    lockheed (instance ``go-holder``) holds."""
    saw_go = threading.Event()
    execute = py.execute

    def seen(effect: Any) -> Any:
        result = execute(effect)
        if isinstance(result, Record) and "go-holder" in holders_of(result):
            saw_go.set()
        return result

    py.execute = seen  # type: ignore[method-assign]
    return saw_go


def test_python_holder_refuses_go(procs: Processes, py: ConfigMapLocker) -> None:
    holder = Lock("shared", py).with_duration(30)
    holder.acquire(blocking=False)
    before = stored(py, "shared")

    refused = procs.acquire("shared", "--duration", "10s")
    assert refused.returncode == 3, refused
    failed = refused.only("acquire_failed")
    assert failed["error"] == f"Mutex lock is already held by {holder.instance_id}"

    after = stored(py, "shared")
    assert after.state == before.state  # Go wrote nothing but its reservation...
    assert "reserved/by" not in after.meta  # ...which it removed again
    holder.renew()
    holder.release()

    got = procs.acquire("shared", "--duration", "30s", "--instance-id", "go-after-python")
    assert got.returncode == 0, got
    with pytest.raises(LockTimeout) as busy:
        Lock("shared", py).acquire(blocking=False)
    assert busy.value.holder == "go-after-python"


def test_python_waits_for_go_release(
    procs: Processes, py: ConfigMapLocker, background: ThreadPoolExecutor
) -> None:
    go = go_holding(procs, "handoff", "30s")
    waiter = Lock("handoff", py).with_duration(30)
    with pytest.raises(LockTimeout) as busy:
        waiter.acquire(blocking=False)
    assert busy.value.holder == "go-holder"
    assert busy.value.expires is not None
    assert busy.value.expires > wall() + timedelta(seconds=20)

    def take() -> int:
        waiter.acquire(timeout=STEP)
        return time.monotonic_ns()

    taking = background.submit(take)
    time.sleep(1.0)
    assert not taking.done(), "acquired while Go held the lock"
    asked = time.monotonic_ns()
    go.say()
    released = go.event("released")["mono_ns"]
    took = taking.result(STEP)
    print(
        f"\nGo release -> Python acquire: {(took - released) / 1e9:.3f} s "
        f"({(took - asked) / 1e9:.3f} s after asking Go to release)"
    )
    assert took > asked
    assert (took - released) / 1e9 < HANDOFF
    assert waiter.held
    assert go.process.wait(STEP) == 0, go.describe()
    waiter.release()


def labels_of(record: Record | None) -> set[str]:
    """The view labels of a ConfigMap as read (``lockheed/w.*``)."""
    assert record is not None
    labels = (record.raw or {}).get("metadata", {}).get("labels") or {}
    return {k for k in labels if k.startswith(VIEW_PREFIX)}


def test_go_keeps_the_line_on_its_own_writes(
    procs: Processes,
    py: ConfigMapLocker,
    configmap_locker: ConfigMapLockers,
    background: ThreadPoolExecutor,
) -> None:
    """Go v0.5.3 keeps the annotation ``lockheed/queue`` and the view labels
    (``lockheed/w.*``) as they are on every write of its own: the reservation
    and release of a Go holder with a Python waiter in line, and a refused Go
    acquire (reserve, then unreserve) while a Python holder has a waiter in
    line."""
    go = go_holding(procs, "line", "30s")
    line = LineWatch(configmap_locker(), "line")
    try:
        first = Lock("line", py).with_duration(30)
        taking = background.submit(first.acquire, timeout=STEP)
        joined = line.until(lambda r: line_of(r) == [first.instance_id])
        stored_line, stored_labels = joined.meta[QUEUE_KEY], labels_of(joined)
        assert view_label(first.instance_id) in stored_labels  # the first in line
        go.say()  # Go releases: its reservation write, then its release write
        go.event("released")
        taking.result(STEP)  # first in line takes the free lock
        took = line.until(lambda r: holders_of(r) == [first.instance_id])
        by_go = line.history[line.history.index(joined) + 1 : line.history.index(took)]
        assert len(by_go) >= 2, [(holders_of(r), r.meta) for r in by_go if r is not None]
        for record in by_go:
            assert record is not None and record.meta.get(QUEUE_KEY) == stored_line, record
            assert labels_of(record) == stored_labels, record

        second = Lock("line", configmap_locker()).with_duration(30)
        waiting = background.submit(second.acquire, timeout=STEP)
        joined = line.until(lambda r: line_of(r) == [second.instance_id])
        stored_line, stored_labels = joined.meta[QUEUE_KEY], labels_of(joined)
        assert view_label(first.instance_id) in stored_labels  # the holder
        assert view_label(second.instance_id) not in stored_labels  # behind ours: out of view
        refused = procs.acquire("line", "--duration", "30s")
        assert refused.returncode == 3, refused
        assert line_of(py.execute(Read("line"))) == [second.instance_id]
        first.renew()  # a version of ours after Go's: every one of Go's is seen before it
        now = stored(py, "line").version
        renewed = line.until(lambda r: r is not None and r.version == now)
        by_go = line.history[line.history.index(joined) + 1 : line.history.index(renewed)]
        assert len(by_go) >= 2, by_go  # Go reserved the ConfigMap and removed the reservation
        for record in by_go:
            assert record is not None and record.meta.get(QUEUE_KEY) == stored_line, record
            assert labels_of(record) == stored_labels, record
        first.release()  # hands the lock to the waiter in line
        waiting.result(STEP)
        assert second.held
        second.release()
    finally:
        line.close()


DEAD_FIRST_SLACK = 3.0  # seconds past CLAIM_WINDOW; a look out of view would take 5 more


def test_a_waiter_sees_a_go_release_past_a_dead_first_waiter(
    procs: Processes,
    py: ConfigMapLocker,
    configmap_locker: ConfigMapLockers,
    background: ThreadPoolExecutor,
) -> None:
    """A Go holder's release is a write that labels nobody anew. Behind a Go
    holder the second in line is labelled too, so when the first died in line
    the second still sees the release at once and takes the lock after
    CLAIM_WINDOW, as it would from a dead first waiter behind a lockheed holder
    (not only at its next look, out of view, and CLAIM_WINDOW after that)."""
    go = go_holding(procs, "dead-first", "60s")
    line = LineWatch(configmap_locker(), "dead-first")
    try:
        first = lock_worker(
            procs,
            "wait",
            "dead-first",
            *("--duration", "60", "--renew-interval", "20"),
            *("--instance-id", "dead-first-waiter", "--acquire-timeout", "240"),
        )
        line.until(lambda r: line_of(r) == ["dead-first-waiter"], STARTUP)
        second = Lock("dead-first", py).with_duration(60)
        taking = background.submit(lambda: (second.acquire(timeout=4 * STEP), time.monotonic_ns()))
        joined = line.until(lambda r: line_of(r) == ["dead-first-waiter", second.instance_id])
        assert view_label(second.instance_id) in labels_of(joined)  # behind a Go holder
        first.process.kill()
        first.process.wait(STEP)
        # Go releases: the lock is free, the first in line is dead
        waited = release_to_acquired(go, taking)
    finally:
        line.close()
    print(f"\nGo release -> the second in line holds, past a dead first: {waited:.2f} s")
    assert waited < CLAIM_WINDOW + DEAD_FIRST_SLACK
    assert second.held
    second.release()
    assert go.process.wait(STEP) == 0, go.describe()


def lock_worker(procs: Processes, mode: str, lock: str, *args: str) -> Child:
    """tests/lock_worker.py in ``mode`` on the test's namespace."""
    worker = Path(__file__).with_name("lock_worker.py")
    return procs.spawn(
        [
            *(sys.executable, str(worker), mode),
            *("--kubeconfig", str(procs.kubeconfig), "--namespace", procs.namespace),
            *("--lock", lock, *args),
        ]
    )


def test_the_first_waiter_out_of_view_sees_a_go_release_after_a_go_takeover(
    procs: Processes,
    py: ConfigMapLocker,
    configmap_locker: ConfigMapLockers,
    background: ThreadPoolExecutor,
) -> None:
    """Behind a lockheed holder nobody in line is labelled. When Go lockheed
    takes the lock from that holder by force, the labels stay the lockheed
    holder's (Go's writes keep them), so neither the takeover nor Go's
    release is sent to the first waiter. It must find the release by reading
    (every CLAIM_WINDOW), not wait for the end of Go's lease, which never
    comes."""
    lock = "forced-line"
    holder = Lock(lock, configmap_locker()).with_duration(60).with_tags(["go-may-force"])
    holder.acquire(blocking=False)
    line = LineWatch(configmap_locker(), lock)
    try:
        first = Lock(lock, py).with_duration(60)
        saw_go = seeing_go(py)  # the first judged a version with Go holding
        taking = background.submit(lambda: (first.acquire(timeout=4 * STEP), time.monotonic_ns()))
        joined = line.until(lambda r: line_of(r) == [first.instance_id])
        assert view_label(first.instance_id) not in labels_of(joined)  # a lockheed holder
        go = procs.go(
            "acquire",
            *("--name", lock, "--duration", "0s", "--instance-id", "go-holder"),
            *("--force-tag", "go-may-force", "--wait-stdin"),
            stdin=True,
        )
        go.event("acquired", STARTUP)
        taken = line.until(lambda r: holders_of(r) == ["go-holder"])
        assert line_of(taken) == [first.instance_id]
        assert view_label(first.instance_id) not in labels_of(taken)  # Go kept the labels
        assert saw_go.wait(2 * CLAIM_WINDOW), "the first never read the lock held by Go"
        assert not taking.done()
        waited = release_to_acquired(go, taking)  # a write that labels nobody anew
    finally:
        line.close()
    print(f"\nGo release -> the first in line, out of view, holds: {waited:.2f} s")
    assert waited < CLAIM_WINDOW + DEAD_FIRST_SLACK  # its next read, at most CLAIM_WINDOW on
    assert first.held
    first.release()
    assert go.process.wait(STEP) == 0, go.describe()
    with pytest.raises(LockLost):
        holder.release()


def test_a_waiter_out_of_view_sees_a_go_release_past_a_dead_holder_and_first(
    procs: Processes,
    py: ConfigMapLocker,
    configmap_locker: ConfigMapLockers,
    background: ThreadPoolExecutor,
) -> None:
    """Behind a lockheed holder the second in line is not labelled. When that
    holder and the first waiter die and Go lockheed takes the lock once the
    lease runs out, no lockheed write labels the second before Go's release,
    and Go's lease never ends: the second must still find the release by
    reading (every CLAIM_WINDOW), not wait for the end of Go's lease."""
    lock = "dead-holder-first"
    holder = lock_worker(procs, "hold", lock, "--duration", "4", "--renew-interval", "1")
    holder.out.expect("HELD", STARTUP)
    line = LineWatch(configmap_locker(), lock)
    try:
        first = lock_worker(
            procs,
            "wait",
            lock,
            *("--duration", "60", "--renew-interval", "20"),
            *("--instance-id", "dead-first-waiter", "--acquire-timeout", "240"),
        )
        line.until(lambda r: line_of(r) == ["dead-first-waiter"], STARTUP)
        second = Lock(lock, py).with_duration(60)
        saw_go = seeing_go(py)  # the second judged a version with Go holding
        taking = background.submit(lambda: (second.acquire(timeout=4 * STEP), time.monotonic_ns()))
        joined = line.until(lambda r: line_of(r) == ["dead-first-waiter", second.instance_id])
        assert view_label(second.instance_id) not in labels_of(joined)  # a lockheed holder
        for child in (holder, first):
            child.process.kill()
            child.process.wait(STEP)
        go = procs.go(
            "acquire",
            *("--name", lock, "--duration", "0s", "--instance-id", "go-holder"),
            *("--retry-for", str(STEP), "--wait-stdin"),
            stdin=True,
        )
        go.event("acquired", 2 * STEP)  # once the dead holder's lease ran out
        # The second reads at that lease's end, and again after its patience
        # with the dead first waiter: it finds Go holding, a lease without end.
        assert saw_go.wait(2 * STEP), "the second never read the lock held by Go"
        assert not taking.done(), "the second took the lock ahead of Go"
        # A write that labels nobody anew; Go's lease would never end.
        waited = release_to_acquired(go, taking)
    finally:
        line.close()
    print(f"\nGo release -> the second in line, out of view, holds: {waited:.2f} s")
    # Its next read (at most CLAIM_WINDOW after its last), then its patience
    # with the dead first waiter.
    assert waited < 2 * CLAIM_WINDOW + DEAD_FIRST_SLACK
    assert second.held
    second.release()
    assert go.process.wait(STEP) == 0, go.describe()


def test_python_takes_over_after_killed_go_lease_expires(
    procs: Processes, py: ConfigMapLocker
) -> None:
    duration = 4.0
    go = procs.go(
        "acquire",
        *("--name", "killed", "--duration", f"{duration}s", "--renew-interval", "1s"),
        *("--instance-id", "go-killed", "--wait-stdin"),
        stdin=True,
    )
    go.event("acquired", STARTUP)
    contender = Lock("killed", py).with_duration(10)
    # Go's renewal loop keeps the lease alive past its first duration.
    with pytest.raises(LockTimeout) as busy:
        contender.acquire(timeout=duration + 1)
    assert busy.value.holder == "go-killed"

    # Kill just after a renewal completed, so not between Go's reservation and its write.
    go.go_log("renewal successful", STEP, fresh=True)
    os.kill(go.pid, signal.SIGKILL)
    killed = time.monotonic()
    go.process.wait(STEP)
    lease = stored(py, "killed")
    assert lease.state is not None
    expires = lease.state.leases["go-killed"].expires

    # Go may have reserved the ConfigMap again before the kill landed: a
    # reservation Go never removes holds the lock off until it runs out.
    contender.acquire(timeout=STEP + duration + 10)
    after = time.monotonic() - killed
    print(f"\nSIGKILL: Python took over {after:.2f} s after the kill (lease {duration} s)")
    assert wall() >= expires  # never before the dead holder's lease ran out
    contender.release()


# ---------------------------------------------------------------- tags


def test_tags_written_by_either_side_are_seen_and_filtered(
    procs: Processes, py: ConfigMapLocker
) -> None:
    go_id = "go-tagger"
    got = procs.acquire(
        "go-tagged", "--duration", "60s", "--tags", "alpha,shared", "--instance-id", go_id
    )
    assert got.returncode == 0, got
    py_held = Lock("py-tagged", py).with_duration(60).with_tags(["beta", "shared"])
    py_held.acquire(blocking=False)
    with Lock("py-free", py).with_duration(60).with_tags(["beta"]):
        pass

    # Python sees and filters what Go wrote.
    assert names(list_locks(py, tags_contain("alpha"))) == ["go-tagged"]
    assert names(list_locks(py, tags_contain("shared"))) == ["go-tagged", "py-tagged"]
    assert names(list_locks(py, acquired(True))) == ["go-tagged", "py-tagged"]
    assert names(list_locks(py, tags_contain("beta") & acquired(False))) == ["py-free"]
    [go_info] = list_locks(py, tags_contain("alpha") & acquired(True))
    assert go_info.tags == ("alpha", "shared")
    assert [h.instance_id for h in go_info.holders] == [go_id]
    assert go_info.fencing_token is None  # Go holders have none

    # Go sees and filters what Python wrote.
    assert set(procs.list("--tag", "beta")) == {"py-free", "py-tagged"}
    assert set(procs.list("--tag", "shared", "--acquired", "true")) == {"go-tagged", "py-tagged"}
    assert set(procs.list("--acquired", "false")) == {"py-free"}
    everything = procs.list()
    assert everything["py-tagged"]["tags"] == ["beta", "shared"]
    assert list(everything["py-tagged"]["leases"]) == [py_held.instance_id]
    assert everything["py-tagged"]["acquired"] is True
    assert "tags" in everything["py-free"]
    assert everything["go-tagged"]["tags"] == ["alpha", "shared"]

    # Tags accumulate (union) whoever adds them.
    added = procs.acquire("py-free", "--duration", "60s", "--tags", "gamma,beta", "--hold", "0")
    assert added.returncode == 0, added
    [free] = list_locks(py, tags_contain("gamma"))
    assert free.tags == ("beta", "gamma")
    assert procs.run("release", "--name", "go-tagged", "--instance-id", go_id).returncode == 0
    with Lock("go-tagged", py).with_duration(60).with_tags(["delta"]):
        pass
    assert procs.list("--tag", "delta")["go-tagged"]["tags"] == ["alpha", "shared", "delta"]
    py_held.release()


def test_reset_tags_from_either_side(procs: Processes, py: ConfigMapLocker) -> None:
    def go_tags() -> list[str] | None:
        tags: list[str] | None = procs.list()["reset"].get("tags")
        return tags

    def py_tags() -> tuple[str, ...]:
        [info] = list_locks(py)
        return info.tags

    first = procs.acquire("reset", "--duration", "60s", "--tags", "a,b", "--hold", "0")
    assert first.returncode == 0, first
    assert py_tags() == ("a", "b")

    lock = Lock("reset", py).with_duration(60).with_tags(["c"]).with_reset_tags()
    lock.acquire(blocking=False)
    assert go_tags() == ["c"]
    lock.release()
    assert go_tags() == ["c"]

    again = procs.acquire("reset", "--tags", "d", "--reset-tags", "--hold", "0")
    assert again.returncode == 0, again
    assert py_tags() == ("d",)

    # Reset to nothing, from either side: the "tags" field is omitted.
    with Lock("reset", py).with_duration(60).with_reset_tags():
        pass
    assert go_tags() is None
    assert "tags" not in stored_document(py, "reset")
    assert procs.acquire("reset", "--tags", "e", "--hold", "0").returncode == 0
    assert py_tags() == ("e",)
    assert procs.acquire("reset", "--reset-tags", "--hold", "0").returncode == 0
    assert py_tags() == ()
    assert "tags" not in stored_document(py, "reset")


# ---------------------------------------------------------------- forced takeover


def test_go_force_takes_over_and_python_holder_reports_loss(
    procs: Processes, py: ConfigMapLocker
) -> None:
    renew_interval = 1.0
    lost: list[LockLost] = []
    reported = threading.Event()

    def on_lost(error: LockLost) -> None:
        lost.append(error)
        reported.set()

    victim = (
        Lock("force", py)
        .with_duration(20)
        .with_renew_interval(renew_interval)
        .with_tags(["forceme"])
        .on_lost(on_lost)
    )
    victim.acquire(blocking=False)

    unmatched = procs.acquire("force", "--force-tag", "other", "--duration", "30s")
    assert unmatched.returncode == 3, unmatched
    assert "already held" in unmatched.only("acquire_failed")["error"]
    assert victim.held

    forced = procs.acquire(
        "force", "--force-tag", "forceme", "--duration", "30s", "--instance-id", "go-forcer"
    )
    assert forced.returncode == 0, forced
    taken = time.monotonic()
    assert reported.wait(STEP), "the Python holder was not told"
    print(f"\nPython holder reported the loss {time.monotonic() - taken:.2f} s after Go's force")
    assert lost[0].holder == "go-forcer"
    assert not victim.held
    before = stored(py, "force")
    with pytest.raises(LockLost):
        victim.release()
    after = stored(py, "force")
    assert after.version == before.version  # the loser's release wrote nothing
    assert after.state is not None and list(after.state.leases) == ["go-forcer"]
    assert list(procs.list("--acquired", "true")["force"]["leases"]) == ["go-forcer"]


def test_python_force_takes_over_and_go_holder_reports_failed_renewal(
    procs: Processes, py: ConfigMapLocker
) -> None:
    """Go's holder learns of the loss only as a failed renewal in its log. That
    failed Renew also leaves its reservation on the ConfigMap (Go returns before
    removing it) for 30 s, and a live Go process keeps reserving; the Python
    holder renews its own live lease through it rather than lose the lock."""
    go = procs.go(
        "acquire",
        *("--name", "force", "--duration", "20s", "--renew-interval", "1s", "--tags", "forceme"),
        *("--instance-id", "go-victim", "--wait-stdin"),
        stdin=True,
    )
    go.event("acquired", STARTUP)
    go.go_log("renewal successful", 5, fresh=True)
    with pytest.raises(LockTimeout):
        Lock("force", py).with_duration(60).acquire(blocking=False)

    renew_interval = 2.0
    lost: list[LockLost] = []
    taker = (
        Lock("force", py)
        .with_duration(60)
        .with_renew_interval(renew_interval)
        .with_force(tags_contain("forceme"))
        .on_lost(lost.append)
    )
    taker.acquire(timeout=5)  # waits out a renewal of Go's in progress, if any
    forced = time.monotonic()

    go.go_log("renewal failed", STEP)
    error = go.go_log("Error:", STEP)
    print(f"\nGo holder logged {error!r} {time.monotonic() - forced:.2f} s after the force")
    assert error == "Error: No lease to renew for go-victim"
    record = stored(py, "force")
    assert record.meta.get("reserved/by") == "go-victim"  # left behind by the failed Renew
    reserved_until = parse_time(record.meta["reserved/expires"])

    # The Python holder renews while Go's stale reservation is still in force.
    first_expiry = taker.expires_at
    deadline = time.monotonic() + STEP
    while time.monotonic() < deadline and taker.expires_at == first_expiry:
        time.sleep(0.1)
    assert taker.expires_at != first_expiry, "the holder did not renew through the reservation"
    assert wall() < reserved_until, "the reservation had already expired: nothing was shown"
    assert taker.held and not lost

    # Go's Release is refused by its own stale reservation (5 attempts, 1 s apart).
    go.say()
    refused = go.event("release_failed", STEP)
    assert "reserved by go-victim" in refused["error"]
    os.kill(go.pid, signal.SIGKILL)
    go.process.wait(STEP)
    renewed = stored(py, "force")
    assert renewed.state is not None and list(renewed.state.leases) == [taker.instance_id]
    taker.release()


# ---------------------------------------------------------------- infinite leases


def test_infinite_lease_written_by_go_is_honoured(
    procs: Processes, py: ConfigMapLocker, background: ThreadPoolExecutor
) -> None:
    go = procs.go(
        "acquire",
        *("--name", "forever", "--duration", "0", "--instance-id", "go-forever", "--wait-stdin"),
        stdin=True,
    )
    go.event("acquired", STARTUP)
    document = stored_document(py, "forever")
    assert document["leases"]["go-forever"]["expires"] == GO_NEVER
    [info] = list_locks(py, acquired(True))
    assert [(h.instance_id, h.expires) for h in info.holders] == [("go-forever", None)]

    waiter = Lock("forever", py).with_duration(30)
    began = time.monotonic()
    with pytest.raises(LockTimeout) as busy:
        waiter.acquire(timeout=2)
    assert busy.value.expires == NEVER
    assert time.monotonic() - began < STEP  # gave up, did not hang

    taking: Future[int] = background.submit(waiter.acquire, timeout=STEP)
    time.sleep(0.5)
    assert not taking.done()
    go.say()
    go.event("released")
    assert taking.result(STEP) > 0
    waiter.release()


def test_infinite_lease_written_by_python_is_honoured(
    procs: Processes, py: ConfigMapLocker
) -> None:
    holder = Lock("forever", py).with_duration(0)
    holder.acquire(blocking=False)
    assert stored_document(py, "forever")["leases"][holder.instance_id]["expires"] == GO_NEVER

    refused = procs.acquire("forever", "--duration", "10s")
    assert refused.returncode == 3, refused
    assert holder.instance_id in refused.only("acquire_failed")["error"]
    seen = procs.list("--acquired", "true")["forever"]
    assert seen["leases"][holder.instance_id]["expires"] == GO_NEVER

    holder.release()
    assert procs.acquire("forever", "--duration", "10s", "--hold", "0").returncode == 0


# ---------------------------------------------------------------- Go's reservation


@pytest.mark.parametrize("zone", [UTC, timezone(timedelta(hours=5, minutes=30))], ids=str)
def test_python_honours_a_go_reservation(
    py: ConfigMapLocker, background: ThreadPoolExecutor, zone: timezone
) -> None:
    """The reserved/* annotations as Go writes them between its two updates
    (reserve, then the new state with the reservation removed)."""
    with Lock("reserved", py).with_duration(30):
        pass

    def reserve(seconds: int) -> datetime:
        obj = raw_get(py, "reserved")
        until = (wall() + timedelta(seconds=seconds)).replace(microsecond=0)
        obj["metadata"]["annotations"] = {
            **(obj["metadata"].get("annotations") or {}),
            "reserved/by": "go-reserver",
            "reserved/expires": go_time(until, zone, fraction=False),  # Go's RFC3339
        }
        raw_put(py, obj)
        return until

    # 1. Reserved, then Go's second update writes its lease and drops the reservation.
    reserve(20)
    waiter = Lock("reserved", py).with_duration(30)
    with pytest.raises(LockTimeout) as busy:
        waiter.acquire(blocking=False)
    assert busy.value.holder == "go-reserver"
    taking: Future[int] = background.submit(waiter.acquire, timeout=STEP)
    time.sleep(1.0)
    assert not taking.done(), "acquired over a live reservation"
    obj = raw_get(py, "reserved")
    lease_until = wall() + timedelta(seconds=3)
    document = json.loads(obj["data"]["lock"])
    document["leases"] = {
        "go-reserver": {"instanceID": "go-reserver", "expires": go_time(lease_until, zone)}
    }
    obj["data"]["lock"] = json.dumps(document, separators=(",", ":"))
    for key in ("reserved/by", "reserved/expires"):
        obj["metadata"]["annotations"].pop(key)
    raw_put(py, obj)
    taking.result(STEP)
    assert wall() >= lease_until  # the lease written in Go's second update was honoured
    waiter.release()

    # 2. A Go process that died between its two updates: the reservation runs out.
    until = reserve(4)
    began = time.monotonic()
    waiter.acquire(timeout=STEP)
    assert wall() >= until
    assert time.monotonic() - began < STEP  # not held off past the reservation for long
    assert stored(py, "reserved").meta.get("reserved/by") == "go-reserver"  # never removed
    waiter.release()

    # 3. A holder renews and releases its own live lease through a reservation: its
    #    writes are conditional on the resourceVersion, so a Go update still to come
    #    fails instead of being overwritten, and a stale reservation cannot cost it the lock.
    holder = Lock("reserved", py).with_duration(20).with_renew_interval(0.5)
    holder.acquire(blocking=False)
    first = holder.expires_at
    until = reserve(20)
    deadline = time.monotonic() + STEP
    while time.monotonic() < deadline and holder.expires_at == first:
        time.sleep(0.05)
    assert holder.expires_at != first and wall() < until
    assert holder.held
    holder.release()
    after = stored(py, "reserved")
    assert after.state is not None and after.state.leases == {}
    assert after.meta.get("reserved/by") == "go-reserver"  # Go's to clear, not ours


class Recorded:
    """A real locker that also puts each effect on a queue as it is asked for,
    and each read's answer once it has come, to see what an operation does."""

    def __init__(self, inner: ConfigMapLocker):
        self.inner = inner
        self.seen: queue.Queue[Any] = queue.Queue()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def execute(self, effect: Any) -> Any:
        self.seen.put(effect)
        result = self.inner.execute(effect)
        if isinstance(effect, Read):
            self.seen.put((effect, result))
        return result

    def clear(self) -> None:
        while not self.seen.empty():
            self.seen.get()

    def next(self, match: Callable[[Any], bool], timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while not match(item := self.seen.get(timeout=max(0.0, deadline - time.monotonic()))):
            pass
        return item


def test_a_waiter_leaving_the_line_waits_out_a_go_renewal_under_way(
    procs: Processes,
    py: ConfigMapLocker,
    background: ThreadPoolExecutor,
    lockheed_fault_proxy: FaultProxy,
) -> None:
    """A Go holder renews in two updates (reserve, then its new lease). A Python
    waiter that gives up between them must not write: Go's second update would
    fail, Go would keep its own stale reservation for 30 s, and its lease would
    run out while it went on working (Go never tells a holder of a failed renewal).

    Go talks to the API server through a proxy that delays every answer to it by
    ``GO_LAG``: its second update cannot follow the first sooner, so the test,
    told of the first by its watch, stops Go between them even on a busy host."""
    through_proxy = ["--kubeconfig", str(lockheed_fault_proxy.kubeconfig())]
    go = procs.go(
        "acquire",
        *("--name", "leave", "--duration", "30s", "--renew-interval", "1s"),
        *("--instance-id", "go-holder", "--wait-stdin", *through_proxy),
        stdin=True,
    )
    go.event("acquired", STARTUP)
    lockheed_fault_proxy.inject(Latency(to_client=GO_LAG))
    recorded = Recorded(py)
    line = LineWatch(py, "leave")

    def reserved_by_go(record: Record | None) -> bool:
        return record is not None and record.meta.get("reserved/by") == "go-holder"

    try:
        for _ in range(10):  # until a leave reads Go's first update before its second
            stop = threading.Event()
            waiter = Lock("leave", recorded).with_duration(10).with_stop(stop)
            waiting: Future[int] = background.submit(waiter.acquire, timeout=10 * STEP)
            line.until(lambda r: waiter.instance_id in line_of(r), STEP)  # noqa: B023
            line.until(reserved_by_go, STEP)  # Go's next renewal has reserved the object
            os.kill(go.pid, signal.SIGSTOP)  # before its second update (GO_LAG)
            go.out.drain()
            recorded.clear()
            stop.set()  # the waiter gives up: it reads, and leaves the line
            _, read = recorded.next(lambda item: isinstance(item, tuple), STEP)
            between = reserved_by_go(read)
            if between:  # it must wait for Go's update, not write
                leave = recorded.next(lambda item: not isinstance(item, (Read, tuple)), STEP)
                assert not isinstance(leave, Replace), "left the line through Go's reservation"
                assert isinstance(leave, Watch), leave
            os.kill(go.pid, signal.SIGCONT)
            renewal = go.go_log("renewal", STEP)
            assert "renewal successful" in renewal, go.out.seen
            with pytest.raises(LockError, match="stopped"):
                waiting.result(STEP)
            after = line.until(lambda r: waiter.instance_id not in line_of(r), STEP)  # noqa: B023
            assert holders_of(after) == ["go-holder"]
            if between:
                break
        else:
            pytest.fail("no leave read the object between Go's two updates in 10 tries")
    finally:
        os.kill(go.pid, signal.SIGCONT)
        line.close()
    assert lockheed_fault_proxy.accepted > 0  # Go's requests went through the proxy
    go.say()  # Go releases
    go.event("released", STEP)


# ---------------------------------------------------------------- formats


@dataclass(frozen=True)
class Case:
    name: str
    document: str
    live: bool  # whether a lease is live
    leases: dict[str, datetime] = field(default_factory=dict)


def python_cases(now: datetime) -> list[Case]:
    """Documents in the forms Python writes (its own encoder), and Go's initial form."""
    later = now.replace(microsecond=0) + timedelta(seconds=120)
    earlier = now.replace(microsecond=0) - timedelta(seconds=120)
    cases = []
    for label, stamp, live in [
        ("whole-seconds", later, True),
        ("one-digit", later.replace(microsecond=500000), True),
        ("three-digits", later.replace(microsecond=123000), True),
        ("six-digits", later.replace(microsecond=123456), True),
        ("expired", earlier.replace(microsecond=654321), False),
        ("never", NEVER, True),
    ]:
        holder = f"py-{label}"
        state = LockState(label, "mutex", tags=("fmt",)).with_leases([Lease(holder, stamp)])
        cases.append(Case(label, encode_state(state), live, {holder: stamp}))
    released = encode_state(LockState("released", "mutex"))  # after a release: "leases":{}
    cases.append(Case("released", released, False))
    go_initial = json.dumps({"name": "go-initial", "lockType": "", "leases": None})
    cases.append(Case("go-initial", go_initial, False))
    return cases


def test_go_accepts_every_state_python_writes(procs: Processes, py: ConfigMapLocker) -> None:
    cases = python_cases(wall())
    assert '"expires":"9999-12-31T23:59:59Z"' in cases[5].document
    assert '"leases":{}' in cases[6].document
    for case in cases:
        raw_create(py, case.name, case.document)

    # One GetLocks decodes every document (it fails on the first it cannot read).
    seen = procs.list()
    assert set(seen) == {case.name for case in cases}
    py_view = {info.name: info for info in list_locks(py)}
    for case in cases:
        go_lock = seen[case.name]
        go_leases = {
            key: parse_time(lease["expires"]) for key, lease in (go_lock["leases"] or {}).items()
        }
        assert go_leases == case.leases, case.name
        assert go_lock["acquired"] is case.live, case.name
        assert py_view[case.name].acquired is case.live, case.name
        assert py_view[case.name].error is None

    for case in cases:
        result = procs.acquire(case.name, "--duration", "30s", "--hold", "0")
        assert result.returncode == (3 if case.live else 0), (case.name, result)

    # Go's initial form, taken by Python and written back in Python's form, then Go again.
    with Lock("go-initial", py).with_duration(30):
        pass
    document = stored_document(py, "go-initial")
    assert (document["lockType"], document["leases"]) == ("mutex", {})
    assert procs.acquire("go-initial", "--duration", "30s", "--hold", "0").returncode == 0


@pytest.mark.parametrize("tz", ["Asia/Kolkata", "America/St_Johns"])
def test_python_reads_go_timestamps_in_any_zone(
    procs: Processes, py: ConfigMapLocker, tz: str
) -> None:
    """Go writes expiry in its local zone with nanoseconds, e.g. ``...+05:30``."""
    duration = 3.0
    got = procs.acquire(
        "zoned", "--duration", f"{duration}s", "--instance-id", "go-zoned", env={"TZ": tz}
    )
    assert got.returncode == 0, got
    written = wall()
    text = stored_document(py, "zoned")["leases"]["go-zoned"]["expires"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?[+-]\d\d:\d\d", text), text
    assert not text.endswith(("Z", "+00:00"))
    [info] = list_locks(py, acquired(True))
    [holder] = info.holders
    assert holder.expires is not None
    assert abs((holder.expires - written).total_seconds() - duration) < CLOCK_SLACK

    contender = Lock("zoned", py).with_duration(10)
    with pytest.raises(LockTimeout):
        contender.acquire(blocking=False)
    contender.acquire(timeout=duration + 10)
    assert wall() >= parse_time(text)
    contender.release()


# ---------------------------------------------------------------- mixed contention


GO_CONTENDERS = 3
PY_CONTENDERS = 3
# Go lockheed is the slow side: it polls, sleeps 1 s whenever its reservation
# meets a write, and each of its attempts that finds the lock held by Python
# may cost a 30 s stall (see after_go_reservation). So Go makes few of the 300
# acquisitions and Python, woken by its watch, most of them; Go still gets the
# lock among Python's holds (MIN_SIDE_SWITCHES).
GO_ITERATIONS = 8
PY_ITERATIONS = 92
MIXED_TIMEOUT = 400.0
# Each Python hold pauses up to HOLD_MAX between reading and writing the shared
# counter (Go's up to 5 ms), long enough that a Go attempt that finds it held
# is mostly over before the release. Go contenders poll (Go lockheed cannot
# wait) with a short random backoff. Python contenders pause up to
# PY_PAUSE_MAX after each release; without the pause they hand the lock among
# themselves so tightly that Go seldom gets it while they run.
HOLD_MAX = 0.03
PY_PAUSE_MAX = 0.3
GO_CONTEND_ARGS = ["--backoff-min", "20ms", "--backoff-max", "100ms", "--hold-max", "5ms"]
# Hand-offs between a Go and a Python holder: 21-26 in local runs, 8 in a full
# suite beside two CPU-bound processes (Go, polling, then takes the lock it
# just freed ahead of Python's slower waiters, several times in a row). At
# least two Go visits among Python's holds show that the sides contended.
MIN_SIDE_SWITCHES = 4


def python_contender(argv: Sequence[str]) -> int:
    """The Python side of the mixed run, in its own process (see ``spawn_python_contender``).

    Like tests/lock_worker.py's ``contend`` mode: prints ``ready``, waits for
    one byte on ``--start-fd``, then takes the lock ``--iterations`` times; in
    each hold it increments the shared counter (pausing up to HOLD_MAX between
    read and write), and after each release it appends
    ``py <token> <start_ns> <end_ns> <pid>`` to the shared log in one
    ``O_APPEND`` write. ``start_ns`` is taken when ``acquire`` has returned and
    ``end_ns`` before ``release`` is called, from ``time.monotonic_ns`` (Linux's
    CLOCK_MONOTONIC, which the Go contenders read too).
    """
    parser = argparse.ArgumentParser(prog="python_contender")
    for flag in ("--kubeconfig", "--namespace", "--lock", "--log", "--counter"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--iterations", type=int, required=True)
    parser.add_argument("--start-fd", type=int, required=True)
    parser.add_argument("--acquire-timeout", type=float, required=True)
    args = parser.parse_args(argv)

    def say(event: str, **fields: Any) -> None:
        print(json.dumps({"event": event, **fields}, separators=(",", ":")), flush=True)

    pid = os.getpid()
    log = os.open(args.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    counter = os.open(args.counter, os.O_RDWR)
    locker = ConfigMapLocker(args.namespace, config=args.kubeconfig)
    try:
        lock = Lock(args.lock, locker).with_duration(10).with_renew_interval(3)
        locker.execute(Read(args.lock))  # connect before the start
        say("ready", pid=pid, instance_id=lock.instance_id)
        ready, _, _ = select.select([args.start_fd], [], [], STARTUP * 4)
        if not ready or os.read(args.start_fd, 1) != b"g":
            say("aborted", pid=pid)
            return 2
        for _ in range(args.iterations):
            token = lock.acquire(timeout=args.acquire_timeout)
            start = time.monotonic_ns()
            value = int(os.pread(counter, 32, 0) or b"0")
            time.sleep(random.uniform(0, HOLD_MAX))
            os.pwrite(counter, b"%-31d\n" % (value + 1), 0)
            end = time.monotonic_ns()
            try:
                after_go_reservation(locker, args.lock)
                lock.release()
            finally:  # a hold that ended in LockLost is logged too, then fails the process
                os.write(log, f"py {token} {start} {end} {pid}\n".encode())
            time.sleep(random.uniform(0, PY_PAUSE_MAX))
        say("done", pid=pid, count=args.iterations)
        return 0
    finally:
        locker.close()
        os.close(counter)
        os.close(log)


def go_reserved(record: Record | None) -> float:
    """Seconds left of a Go reservation of ``record`` (0: none, or run out)."""
    if record is None or "reserved/by" not in record.meta:
        return 0.0
    until = parse_time(record.meta.get("reserved/expires", ""))
    return max(0.0, (until - wall()).total_seconds())


def after_go_reservation(locker: ConfigMapLocker, name: str) -> None:
    """Return once the lock's object has no live Go reservation.

    Go lockheed v0.5.3 that finds the lock held takes its reservation off with
    a read and a write whose failure it ignores (``ReleaseConfigMap``): a
    release landing between the two leaves the reservation in place until it
    runs out, 30 s later, and Go lockheed and every Python acquire wait for
    that. A Python holder that meets a pending reservation therefore lets Go
    take it off before it releases (one round trip of Go's). That makes such
    stalls rare, not impossible: a Go reservation made between this read and
    the release still meets it. A reservation left behind is waited out.
    """
    record = locker.execute(Read(name))
    if not go_reserved(record):
        return
    line = LineWatch(locker, name)
    try:
        while (left := go_reserved(line.record)) > 0:
            try:
                line.next(left)
            except AssertionError:  # no change until the reservation ran out
                return
    finally:
        line.close()


@dataclass(frozen=True)
class MixedHold:
    side: str  # "go" or "py"
    holder: str  # Go: instance ID; Python: fencing token
    start: int
    end: int
    pid: int

    @property
    def token(self) -> int | None:
        return int(self.holder) if self.side == "py" else None


def parse_mixed(text: str) -> list[MixedHold]:
    """Lines ``<side> <token or instance ID> <start_ns> <end_ns> <pid>``."""
    holds = []
    for line in text.splitlines():
        side, holder, start, end, pid = line.split()
        assert side in ("go", "py"), line
        holds.append(MixedHold(side, holder, int(start), int(end), int(pid)))
    return holds


@dataclass(frozen=True)
class MixedVerdict:
    holds: int
    overlaps: list[tuple[MixedHold, MixedHold]]  # (a hold, an earlier one still open)
    token_inversions: list[tuple[MixedHold, MixedHold]]  # among Python's holds
    side_switches: int  # hand-offs between a Go and a Python holder


def check_mixed(holds: Sequence[MixedHold]) -> MixedVerdict:
    """Holds sorted by start must be disjoint; Python's tokens must increase.

    The pattern of tests/test_processes.py's checker. Go holders have no
    fencing token, but a Python token is larger than every earlier Python
    token even when Go held the lock in between.
    """
    ordered = sorted(holds, key=lambda h: (h.start, h.end))
    overlaps: list[tuple[MixedHold, MixedHold]] = []
    inversions: list[tuple[MixedHold, MixedHold]] = []
    switches = sum(a.side != b.side for a, b in itertools.pairwise(ordered))
    latest: MixedHold | None = None
    previous_token: int | None = None
    previous_py: MixedHold | None = None
    for hold in ordered:
        if latest is not None and hold.start <= latest.end:
            overlaps.append((hold, latest))
        if latest is None or hold.end > latest.end:
            latest = hold
        token = hold.token
        if token is not None:
            if previous_py is not None and previous_token is not None and token <= previous_token:
                inversions.append((hold, previous_py))
            previous_py, previous_token = hold, token
    return MixedVerdict(len(ordered), overlaps, inversions, switches)


def test_mixed_checker_finds_overlaps_and_inversions() -> None:
    good = parse_mixed("go a 10 20 1\npy 5 21 30 2\ngo b 31 40 3\npy 9 41 41 2\n")
    verdict = check_mixed(list(reversed(good)))
    assert (verdict.holds, verdict.overlaps, verdict.token_inversions) == (4, [], [])
    assert verdict.side_switches == 3
    overlapping = parse_mixed("go a 0 100 1\npy 5 50 60 2\ngo b 100 110 3\n")
    pairs = [(h.side, other.side) for h, other in check_mixed(overlapping).overlaps]
    assert pairs == [("py", "go"), ("go", "go")]
    inverted = parse_mixed("py 7 0 1 1\ngo a 2 3 2\npy 6 4 5 1\n")
    assert [h.token for h, _ in check_mixed(inverted).token_inversions] == [6]


def spawn_python_contender(procs: Processes, args: Sequence[str], start_fd: int) -> Child:
    tests = str(Path(__file__).parent)
    path = os.pathsep.join(filter(None, [tests, os.environ.get("PYTHONPATH")]))
    code = "import sys, test_go_interop as t; sys.exit(t.python_contender(sys.argv[1:]))"
    return procs.spawn(
        [sys.executable, "-c", code, *args], env={"PYTHONPATH": path}, pass_fds=[start_fd]
    )


@CROWD
@pytest.mark.timeout(MIXED_TIMEOUT + 120)
def test_mixed_go_and_python_contention(
    procs: Processes,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    configmap_locker: ConfigMapLockers,
    background: ThreadPoolExecutor,
) -> None:
    """Go contenders race fair Python waiters (who wait in line) on one lock: no
    overlap, Python's tokens increase, and everyone finishes (no deadlock or
    livelock): Go may take a free lock ahead of the line, a Python release
    hands the lock to the first Python waiter in line."""
    stop = threading.Event()
    log, counter = tmp_path / "holds.log", tmp_path / "counter"
    log.touch()
    counter.touch()
    shared = ["--log", str(log), "--counter", str(counter)]
    start_read, start_write = os.pipe()
    try:
        start = ["--start-fd", str(start_read)]
        go_args = ["--name", "mixed", "--duration", "10s", "--iterations", str(GO_ITERATIONS)]
        gos = [
            procs.go(
                "contend",
                *go_args,
                *shared,
                *start,
                *("--acquire-timeout", f"{MIXED_TIMEOUT}s"),
                *GO_CONTEND_ARGS,
                pass_fds=[start_read],
            )
            for _ in range(GO_CONTENDERS)
        ]
        py_args = [
            *("--kubeconfig", str(procs.kubeconfig), "--namespace", procs.namespace),
            *("--lock", "mixed", "--iterations", str(PY_ITERATIONS)),
            *("--acquire-timeout", str(MIXED_TIMEOUT)),
        ]
        pys = [
            spawn_python_contender(procs, [*py_args, *shared, *start], start_read)
            for _ in range(PY_CONTENDERS)
        ]
        os.close(start_read)
        start_read = -1
        python_ids = set()
        for child in [*gos, *pys]:
            ready = child.event("ready", STARTUP)
            if child in pys:
                python_ids.add(ready["instance_id"])
        os.write(start_write, b"g" * (GO_CONTENDERS + PY_CONTENDERS))  # atomic: < PIPE_BUF
    finally:
        os.close(start_write)
        if start_read >= 0:
            os.close(start_read)

    began = time.monotonic()
    deadline = began + MIXED_TIMEOUT
    everyone = [*gos, *pys]
    observer = background.submit(follow, LineWatch(configmap_locker(), "mixed"), stop)
    for child in everyone:
        try:
            child.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pytest.fail(f"not finished within {MIXED_TIMEOUT} s: {child.describe()}")
    wall_s = time.monotonic() - began
    stop.set()
    versions = observer.result(STEP)
    for child in everyone:
        assert child.process.returncode == 0, child.describe()
    done = [go.event("done", 10) for go in gos]
    for worker in pys:
        worker.event("done", 10)
    line = line_figures(versions, python_ids)

    holds = parse_mixed(log.read_text())
    verdict = check_mixed(holds)
    sides = Counter(h.side for h in holds)
    figures = {
        "go_processes": GO_CONTENDERS,
        "python_processes": PY_CONTENDERS,
        "acquisitions": verdict.holds,
        "go_acquisitions": sides["go"],
        "python_acquisitions": sides["py"],
        "overlaps": len(verdict.overlaps),
        "token_inversions": len(verdict.token_inversions),
        "side_switches": verdict.side_switches,
        "go_attempts": sum(d["attempts"] for d in done),
        "go_release_retries": sum(d["release_retries"] for d in done),
        **line,
        "wall_s": round(wall_s, 2),
    }
    for key, value in figures.items():
        request.node.user_properties.append((key, value))
    print("\nmixed contention:", ", ".join(f"{key}={value}" for key, value in figures.items()))

    expected = GO_CONTENDERS * GO_ITERATIONS + PY_CONTENDERS * PY_ITERATIONS
    assert expected >= 300
    assert verdict.holds == expected
    assert sides == {"go": GO_CONTENDERS * GO_ITERATIONS, "py": PY_CONTENDERS * PY_ITERATIONS}
    assert Counter(h.pid for h in holds) == {
        **{go.pid: GO_ITERATIONS for go in gos},
        **{worker.pid: PY_ITERATIONS for worker in pys},
    }
    assert verdict.overlaps == [], f"{len(verdict.overlaps)} overlaps, first {verdict.overlaps[:3]}"
    assert verdict.token_inversions == [], verdict.token_inversions[:3]
    assert int(counter.read_bytes()) == expected  # no lost increment
    assert verdict.side_switches >= MIN_SIDE_SWITCHES  # the sides did contend with each other
    # Python waited in line, and releases handed the lock over in line.
    assert line["max_line"] >= 1 and line["python_handoffs"] >= 1, line


def follow(line: LineWatch, stop: threading.Event) -> list[Record | None]:
    """Every version of the lock's object until ``stop`` is set."""
    try:
        while not stop.is_set():
            with contextlib.suppress(AssertionError):  # no change for a while
                line.next(1.0)
        return line.history
    finally:
        line.close()


def line_figures(versions: Sequence[Record | None], python_ids: set[str]) -> dict[str, int]:
    """What the line did during a mixed run, from every version of the object:
    its longest length; Go taking the lock while Python waiters were in line
    (ahead of the line); releases handing the lock to a Python waiter in line."""
    figures = {"max_line": 0, "go_ahead_of_line": 0, "python_handoffs": 0, "versions": 0}
    for before, after in itertools.pairwise(versions):
        figures["versions"] += 1
        figures["max_line"] = max(figures["max_line"], len(line_of(after)))
        had, has = holders_of(before), holders_of(after)
        if has == had or not has:
            continue
        if has[0] not in python_ids and line_of(before):
            figures["go_ahead_of_line"] += 1
        elif has[0] in python_ids and has[0] in line_of(before) and had:
            figures["python_handoffs"] += 1  # one write: the release and the hand-off
    return figures


# ---------------------------------------------------------------- shared locks and semaphores


def lockheed_meta(locker: ConfigMapLocker, name: str) -> dict[str, str]:
    """The object's annotations of lockheed (and Go's reservation, if any)."""
    meta = raw_get(locker, name)["metadata"].get("annotations") or {}
    return {k: v for k, v in meta.items() if k.startswith(("lockheed/", "reserved/"))}


def shared_lock(py: ConfigMapLocker, name: str, kind: str) -> Lock:
    if kind == "semaphore":
        return Semaphore(name, py, 3).with_duration(30)
    return Lock(name, py).with_duration(30).with_shared()


def shared_holders(py: ConfigMapLocker, name: str, kind: str, count: int = 2) -> list[Lock]:
    """``count`` Python holders of a shared lock or a semaphore of 3."""
    made = [shared_lock(py, name, kind) for _ in range(count)]
    for lock in made:
        lock.acquire(timeout=STEP)
    return made


@pytest.mark.parametrize("kind", ["shared", "semaphore", "free shared"])
def test_go_refuses_shared_locks_and_semaphores_and_changes_nothing(
    procs: Processes, py: ConfigMapLocker, kind: str
) -> None:
    """Go lockheed v0.5.3 implements only mutexes: its Acquire reserves the object,
    reads a lockType other than "" or "mutex", refuses ("Non-mutex locks not
    implemented yet") and removes its reservation, even with a force condition
    that matches, and even when the lock has room or no holder at all."""
    name = kind.replace(" ", "-")
    kind = "semaphore" if kind == "semaphore" else "shared"
    held = shared_holders(py, name, kind)
    if name == "free-shared":
        for lock in held:
            lock.release()
    lock = shared_lock(py, name, kind).with_tags(["go-may-force"])
    lock.acquire(timeout=STEP)  # the lock has the tag Go's force condition asks for
    lock.release()
    before, before_meta = stored(py, name).state, lockheed_meta(py, name)
    for force in ([], ["--force-tag", "go-may-force"]):
        refused = procs.acquire(name, "--duration", "10s", "--instance-id", "go-intruder", *force)
        assert refused.returncode == 3, refused
        assert refused.only("acquire_failed")["error"] == "Non-mutex locks not implemented yet"
        after = stored(py, name)
        assert after.state == before, "Go changed the lock state"
        assert lockheed_meta(py, name) == before_meta, "Go left its reservation or lost ours"
        assert after.state is not None and "go-intruder" not in after.state.leases
    for holder in held:
        if holder.held:
            holder.renew()
            holder.release()


def test_a_go_release_rewrites_a_semaphore_without_harm(
    procs: Processes, py: ConfigMapLocker, background: ThreadPoolExecutor
) -> None:
    """Go's Release of an instance that holds nothing still rewrites ``data.lock``
    (only name, lockType, leases and tags survive its JSON); lockheed keeps the
    limit, the exclusive holder and the tokens in annotations, which Go keeps, so
    the semaphore, its holders and its line come through whole. Go lists it with
    its type and every lease."""
    name = "go-release-sem"
    held = shared_holders(py, name, "semaphore", 3)
    waiter = Semaphore(name, py, 3).with_duration(30)
    waiting: Future[int] = background.submit(waiter.acquire, True, STEP)
    line = LineWatch(py, name)
    try:
        line.until(lambda r: waiter.instance_id in line_of(r))
    finally:
        line.close()
    before, before_meta = stored(py, name), lockheed_meta(py, name)
    released = procs.run(
        "release", "--name", name, "--instance-id", "go-bystander", "--tags", "from-go"
    )
    assert released.returncode == 0, released
    after = stored(py, name)
    assert after.version != before.version  # Go did write
    assert after.state is not None and before.state is not None
    assert after.state.lock_type == "semaphore"
    assert after.state.leases == before.state.leases
    assert after.state.tags == ("from-go",)
    assert lockheed_meta(py, name) == before_meta
    listed = procs.list()[name]
    assert listed["lockType"] == "semaphore"
    assert set(listed["leases"]) == {h.instance_id for h in held}
    for holder in held:
        holder.renew()
    held[0].release()
    assert waiting.result(STEP) > 0 and waiter.held
    with pytest.raises(LockTypeError):
        Semaphore(name, py, 4).acquire(blocking=False)
    for holder in (*held[1:], waiter):
        holder.release()
