"""Reading what a child process prints, with a timeout on every wait."""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from collections.abc import Callable
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
