"""The check behind the asyncio tests: blocking calls on the event loop's thread
are caught, and a callback that is only slow (its thread waited for a CPU, or
computed for a while) is not.

Each test runs its own :class:`LoopThread`; the calls it makes on the loop
are real (a real sleep, a real blocking socket read, a real synchronous HTTP
request to the API server).
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lockheed import Lock
from support import ConfigMapLockers, LoopThread


@pytest.fixture
def runner() -> Iterator[LoopThread]:
    made = LoopThread()
    yield made
    made.close()


def on_loop(runner: LoopThread, call: Callable[[], object]) -> list[str]:
    """Run ``call`` inside a coroutine on the loop; the blocking calls it was caught making."""

    async def body() -> None:
        call()

    del runner.blocking[:]
    runner.run(body())
    return list(runner.blocking)


def test_a_sleep_on_the_loop_is_caught(runner: LoopThread) -> None:
    [found] = on_loop(runner, lambda: time.sleep(0.2))
    assert found.startswith("time.sleep(0.2) on the event loop's thread")
    assert f"{Path(__file__).name}:" in found  # where it was called from


def test_a_blocking_socket_read_on_the_loop_is_caught(runner: LoopThread) -> None:
    mine, other = socket.socketpair()
    with mine, other:
        other.sendall(b"x")  # the read returns at once: blocking mode is what counts
        [found] = on_loop(runner, lambda: mine.recv(1))
    assert found.startswith("socket.recv() in blocking mode (timeout=None)")


@pytest.mark.lockheed_kube
def test_a_synchronous_http_request_on_the_loop_is_caught(
    runner: LoopThread, configmap_locker: ConfigMapLockers
) -> None:
    """The sync API called from a coroutine: each request is caught once."""
    lock = Lock("sync-in-async", configmap_locker())
    found = on_loop(runner, lock.acquire)
    assert lock.held
    lock.release()
    assert found, "the sync acquire's requests were not caught"
    # Through httpx2, or through the lean HTTP/1.1 client's blocking socket I/O.
    lean = "lockheed/_sync/http1.py"
    assert all("httpx2.Client.send(" in line or lean in line for line in found), found
    assert any("/configmaps" in line or lean in line for line in found), found


def test_waits_on_other_threads_are_caught(runner: LoopThread) -> None:
    event = threading.Event()
    found = on_loop(runner, lambda: event.wait(0.01))
    assert [line.split(" on ")[0] for line in found] == ["threading.Event.wait(timeout=0.01)"]

    def get() -> None:
        with pytest.raises(queue.Empty):
            queue.Queue().get(timeout=0.01)

    [found_get] = on_loop(runner, get)  # Queue.get waits on its Condition
    assert found_get.startswith("threading.Condition.wait(timeout=0.0"), found_get


def test_calls_that_do_not_wait_are_not_caught(runner: LoopThread) -> None:
    done = threading.Event()
    done.set()

    def quick() -> None:
        time.sleep(0)
        done.wait()
        select.select([], [], [], 0)
        queue.Queue[int]().put(1)
        threading.Event().wait(0)

    assert on_loop(runner, quick) == []


def test_the_same_calls_off_the_loop_are_not_caught(runner: LoopThread) -> None:
    async def body() -> None:
        await asyncio.to_thread(time.sleep, 0.05)  # starts an executor thread, too
        await asyncio.get_running_loop().run_in_executor(None, threading.Event().wait, 0.01)

    runner.run(body())
    time.sleep(0.01)  # this thread is not watched
    assert runner.blocking == []


def test_a_slow_callback_that_blocks_on_nothing_is_not_caught(
    runner: LoopThread, caplog: pytest.LogCaptureFixture
) -> None:
    """A callback that holds the loop 0.25 s without waiting for anything, as one
    does whose thread waits for a CPU on a busy machine. asyncio's debug mode
    calls it slow (the check the tests used before); the blocking check does not."""

    async def compute() -> int:
        end = time.monotonic() + 0.25
        spins = 0
        while time.monotonic() < end:
            spins += 1
        return spins

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        assert runner.run(compute()) > 0
        runner.run(asyncio.sleep(0))  # the warning is logged once the callback returns
    slow = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert any("took" in message and "seconds" in message for message in slow), slow
    assert runner.blocking == []


RESTORE = """
import socket, threading, time
import blocking_calls

original = time.sleep
sink = []
blocking_calls.watch(threading.get_ident(), sink)
blocking_calls.watch(-1, [])  # a second watched thread: one install
assert time.sleep is not original and "recv" in vars(socket.socket)
time.sleep(0.001)
assert len(sink) == 1, sink
blocking_calls.unwatch(threading.get_ident())
assert time.sleep is not original  # still watching the other
blocking_calls.unwatch(-1)
assert time.sleep is original and "recv" not in vars(socket.socket)
assert "accept" in vars(socket.socket)  # a method of socket.socket itself, put back
time.sleep(0.001)
assert len(sink) == 1
print("restored")
"""


def test_the_calls_are_restored_when_no_thread_is_watched() -> None:
    """In a fresh interpreter, where no other loop of the session is watched."""
    tests = Path(__file__).parent
    done = subprocess.run(
        [sys.executable, "-c", RESTORE],
        cwd=tests,
        env={**os.environ, "PYTHONPATH": str(tests)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "restored"), done.stderr
