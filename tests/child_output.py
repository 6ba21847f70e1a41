"""Reading what a child process prints, with a timeout on every wait."""

from __future__ import annotations

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
