"""Starting :mod:`bench._worker` processes together and talking to them.

:class:`Workers` starts the processes, reads their stdout lines in threads (so
every wait has a timeout), sends them all the start signal at once, collects
their ``RESULT`` lines, and kills whatever is still running when it is closed.
Each worker's stderr goes to a temporary file, quoted in the error if it fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

__all__ = ["WorkerError", "Workers", "worker_command"]

ROOT = Path(__file__).resolve().parent.parent


class WorkerError(RuntimeError):
    """A worker failed, printed ``ERROR``, or did not answer in time."""


def worker_command(mode: str, *options: str) -> list[str]:
    return [sys.executable, "-m", "bench._worker", mode, *options]


class Workers:
    """``with Workers(commands) as w: w.wait("READY"); w.go(t_end); w.results()``."""

    def __init__(self, commands: Sequence[list[str]], env: Mapping[str, str] | None = None):
        self.commands = list(commands)
        self.env = None if env is None else {**os.environ, **env}
        self.procs: list[subprocess.Popen[str]] = []
        self._errs: list[IO[str]] = []
        self._lines: queue.Queue[tuple[int, str | None]] = queue.Queue()
        self._seen: list[list[str]] = [[] for _ in self.commands]
        self._ended: set[int] = set()
        self._readers: list[threading.Thread] = []

    def __enter__(self) -> Workers:
        try:
            for i, command in enumerate(self.commands):
                err = tempfile.TemporaryFile("w+")
                self._errs.append(err)
                proc = subprocess.Popen(
                    command,
                    cwd=ROOT,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=err,
                    text=True,
                    bufsize=1,
                    env=self.env,
                )
                self.procs.append(proc)
                reader = threading.Thread(target=self._read, args=(i, proc), daemon=True)
                reader.start()
                self._readers.append(reader)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _read(self, i: int, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self._lines.put((i, line.rstrip("\n")))
        self._lines.put((i, None))

    def _stderr(self, i: int) -> str:
        err = self._errs[i]
        err.seek(0)
        return "".join(err.readlines()[-20:])

    def wait(self, word: str, timeout: float) -> list[str]:
        """The first line starting with ``word`` of every worker, in worker order."""
        deadline = time.monotonic() + timeout
        found: dict[int, str] = {}
        for i, lines in enumerate(self._seen):
            for line in lines:
                if line.startswith(word) and i not in found:
                    found[i] = line
        while len(found) < len(self.commands):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                missing = [i for i in range(len(self.commands)) if i not in found]
                raise WorkerError(
                    f"workers {missing} did not print {word} within {timeout:g}s; "
                    f"stderr of #{missing[0]}:\n{self._stderr(missing[0])}"
                )
            try:
                i, got = self._lines.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                continue
            if got is None:
                self._ended.add(i)
                if i not in found:
                    code = self.procs[i].wait(5)
                    raise WorkerError(
                        f"worker #{i} exited with {code} before {word}; "
                        f"output {self._seen[i][-3:]}; stderr:\n{self._stderr(i)}"
                    )
                continue
            self._seen[i].append(got)
            if got.startswith("ERROR"):
                raise WorkerError(f"worker #{i}: {got}; stderr:\n{self._stderr(i)}")
            if got.startswith(word) and i not in found:
                found[i] = got
        return [found[i] for i in range(len(self.commands))]

    def go(self, t_end: float) -> None:
        """Send every worker the start signal, as close together as possible."""
        message = f"GO {t_end!r}\n"
        for proc in self.procs:
            assert proc.stdin is not None
            try:
                proc.stdin.write(message)
                proc.stdin.flush()
            except BrokenPipeError:  # it died; wait() reports why
                pass

    def results(self, timeout: float) -> list[Any]:
        lines = self.wait("RESULT", timeout)
        return [json.loads(line.split(" ", 1)[1]) for line in lines]

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        for reader in self._readers:
            reader.join(2.0)
        for proc in self.procs:
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        for err in self._errs:
            err.close()
