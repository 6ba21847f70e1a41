"""Child processes of the control plane that cannot outlive their parent.

Each child runs in its own session (so a Ctrl-C in the terminal reaches only
the parent, which then shuts the children down in order) and, on Linux, asks
the kernel for a signal when its parent dies (``PR_SET_PDEATHSIG``), so a test
run killed with ``SIGKILL`` leaves no orphans behind.

That signal is ``SIGKILL``: the state is disposable, and after ``SIGTERM``
etcd (with the API server still connected) and kube-apiserver (with etcd gone)
took 8 and 14 seconds to exit.

The kernel sends that signal when the *thread* that started the child exits,
so start control planes from a long-lived thread (normally the main thread).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["ChildProcess", "tail_lines"]

_PR_SET_PDEATHSIG = 1
PARENT_DEATH_SIGNAL = signal.SIGKILL
_TAIL_BYTES = 256 * 1024


def tail_lines(path: Path, n: int) -> str:
    """The last ``n`` lines of a text file, or ``""`` if it does not exist."""
    if n <= 0:
        return ""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - _TAIL_BYTES))
            data = handle.read()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-n:])


def _death_signal_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the child killed when we die (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()
    death_signal = int(PARENT_DEATH_SIGNAL)

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, death_signal)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return hook


class ChildProcess:
    """One long-running executable whose output goes to a log file."""

    def __init__(self, name: str, command: Sequence[str], log_path: Path) -> None:
        self.name = name
        self.command = list(command)
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The process id, once started."""
        return self._process.pid if self._process else None

    def start(self) -> None:
        """Launch the process; its stdout and stderr are appended to the log file."""
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.log_path.parent,
                start_new_session=True,
                preexec_fn=_death_signal_hook(),
            )

    def exit_code(self) -> int | None:
        """The exit code if the process has ended, else ``None``."""
        return self._process.poll() if self._process else None

    def running(self) -> bool:
        """Whether the process was started and has not exited."""
        return self._process is not None and self._process.poll() is None

    def stop(self, grace: float) -> None:
        """SIGTERM the process group, wait ``grace`` seconds, then SIGKILL. Idempotent."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        self._signal_group(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            process.wait()

    def kill(self) -> None:
        """SIGKILL the process group and reap it, as a crash would end it. Idempotent."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        self._signal_group(signal.SIGKILL)
        process.wait()

    def _signal_group(self, signum: signal.Signals) -> None:
        assert self._process is not None
        # start_new_session made the child a group leader: its pgid is its pid.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signum)

    def log_tail(self, n: int = 50) -> str:
        """The last ``n`` lines of the log."""
        return tail_lines(self.log_path, n)
