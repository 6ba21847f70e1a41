"""Reading what a child process prints, with a timeout on every wait."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO


class Lines:
    """The lines a child prints, read by a thread so that every wait can time out."""

    def __init__(self, stream: IO[str]):
        self.stream = stream
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._ended = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self.stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def expect(
        self, match: str | Callable[[str], bool], timeout: float, what: str | None = None
    ) -> str:
        """The next line that starts with ``match`` (or for which it is true);
        fails after ``timeout`` seconds or at the end of the output."""
        if isinstance(match, str):
            prefix = match
            what = what or f"a {prefix!r} line"

            def match(line: str) -> bool:
                return line.startswith(prefix)

        deadline = time.monotonic() + timeout
        while not self._ended:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                self._ended = True
                break
            self.seen.append(line)
            if match(line):
                return line
        end = "output ended" if self._ended else f"{timeout} s passed"
        raise AssertionError(f"{end} before {what}; printed: {self.seen}")

    def drain(self) -> list[str]:
        """Everything printed so far, without waiting."""
        while not self._ended:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is None:
                self._ended = True
            else:
                self.seen.append(line)
        return self.seen

    def until_end(self, timeout: float) -> list[str]:
        """Everything printed, once the output has ended (the child exited);
        fails after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not self._ended:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"output went on for {timeout} s: {self.seen}") from None
            if line is None:
                self._ended = True
            else:
                self.seen.append(line)
        return self.seen

    def close(self) -> None:
        self._thread.join(10)
        self.stream.close()


@dataclass
class Child:
    """A child process of a test, with its output read by :class:`Lines` and its
    standard error in a file."""

    process: subprocess.Popen[str]
    out: Lines
    stderr_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-4000:]

    def describe(self) -> str:
        return (
            f"process {self.pid} exited {self.process.poll()}; "
            f"stdout {self.out.drain()}; stderr:\n{self.stderr()}"
        )


@contextmanager
def python_children(script: Path, tmp_path: Path) -> Iterator[Callable[..., Child]]:
    """``start(args, pass_fds=())`` runs ``script`` with this Python, its output read
    by :class:`Lines` and its standard error in a file of ``tmp_path``; every
    child still running at the end is killed (SIGKILL ends a stopped one too)."""
    children: list[Child] = []

    def start(args: Sequence[str], pass_fds: Sequence[int] = ()) -> Child:
        stderr_path = tmp_path / f"{script.stem}-{len(children)}.stderr"
        with stderr_path.open("w") as stderr:
            process = subprocess.Popen(
                [sys.executable, str(script), *args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                pass_fds=tuple(pass_fds),
                text=True,
            )
        assert process.stdout is not None
        child = Child(process, Lines(process.stdout), stderr_path)
        children.append(child)
        return child

    try:
        yield start
    finally:
        for child in children:
            if child.process.poll() is None:
                child.process.kill()
        for child in children:
            child.process.wait(30)
            child.out.close()


def started_together(
    spawn: Callable[..., Child],
    commands: Sequence[Sequence[str]],
    ready: str | Callable[[str], bool],
    timeout: float,
) -> tuple[list[Child], list[str]]:
    """Start one child per argument list behind one start barrier: each gets
    ``--start-fd FD`` of one pipe (``spawn(args, pass_fds=...)``, e.g. the
    ``start`` of :func:`python_children`) and waits for a byte on it once it
    has printed its ``ready`` line. When every child has, one write of a byte
    each (atomic: fewer than PIPE_BUF) sets them all off at once. Returns the
    children and their ready lines; a child that never gets ready fails the
    caller after ``timeout`` seconds, and the barrier's end of file aborts the
    children already waiting (the caller's cleanup kills them)."""
    start_read, start_write = os.pipe()
    try:
        children = [
            spawn([*command, "--start-fd", str(start_read)], pass_fds=[start_read])
            for command in commands
        ]
        os.close(start_read)
        start_read = -1
        lines = [child.out.expect(ready, timeout) for child in children]
        os.write(start_write, b"g" * len(children))
    finally:
        os.close(start_write)
        if start_read >= 0:
            os.close(start_read)
    return children, lines


def soak_size(default: int, soak: int) -> int:
    """A size of the multi-process runs: ``default``, or with ``LOCKHEED_SOAK=1``
    (``make contend``) ``soak``, or with ``LOCKHEED_SOAK=<n>`` n."""
    value = os.environ.get("LOCKHEED_SOAK", "")
    if not value or value == "0":
        return default
    if value == "1":
        return soak
    if not value.isdigit():
        raise ValueError(f"LOCKHEED_SOAK must be 1 or a number of iterations, not {value!r}")
    return int(value)
