"""``lockheed run``: hold a lock while a command runs.

One :class:`CommandRun` owns the lock, the command's process and the signal
handling, and releases the lock on every way out.

Failure semantics:

* The command starts only once the lock is held; its environment has
  ``LOCKHEED_LOCK_NAME`` (the lock's name), ``LOCKHEED_INSTANCE_ID`` (the
  holder's instance ID, as ``lockheed list`` shows it) and
  ``LOCKHEED_FENCING_TOKEN``. lockheed exits with the command's status, or
  128+N when the command was killed by signal N.
* A held lock is waited for (one line on standard error says for whom), up
  to ``timeout`` (None: for ever; 0, ``--no-wait``: not at all); not had in
  time, lockheed exits 73 and the command never runs. With ``verbose``, every
  change of holder while waiting is a line (``waiting for NAME held by X
  (expires in 12 s)``), and so is the acquisition.
* SIGTERM, SIGINT or SIGHUP while the command runs is passed on to the command
  (its process, not its children: a shell script should ``exec`` its last
  command or pass signals on itself); lockheed waits for it to exit, then
  releases the lock. A second such signal kills the command (SIGKILL). A
  signal that lockheed and its command both got (Ctrl-C to the process group)
  is passed on too; it is still one signal for lockheed.
* Such a signal while waiting for the lock stops the wait (within about a
  second, see ``Lock.with_stop``); the command never starts, no lease of ours
  is left behind, and lockheed exits 128+N. A signal that is ignored when
  lockheed starts (``nohup``) stays ignored, for lockheed and its command.
* If the lock is lost while the command runs, the command gets SIGTERM and
  lockheed exits 75 once it has exited.
* The lock is released whenever it was acquired, also when the command cannot
  be started (127: not found, 126: not executable) and after an unexpected
  error (reported on one line, status 1); a command still running at that
  point is killed first, so it never runs without the lock.
* A release that fails (other than by loss) is reported and gives status 1;
  the lease then ends at its expiry.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from types import FrameType
from typing import Any

from ._core import Watch
from ._errors import LockError, LockLost, LockNotHeld, LockTimeout
from ._state import NEVER
from ._sync.lock import Lock

__all__ = [
    "EXIT_ERROR",
    "EXIT_LOST",
    "EXIT_NOT_EXECUTABLE",
    "EXIT_NOT_FOUND",
    "EXIT_TIMEOUT",
    "CommandRun",
    "say",
]

EXIT_ERROR = 1
EXIT_TIMEOUT = 73  # EX_CANTCREAT: the lock was not had within --timeout
EXIT_LOST = 75  # EX_TEMPFAIL: the lock was lost while the command ran
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127

FORWARDED: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def say(message: object) -> None:
    """One line on standard error: ``lockheed: message``."""
    text = " ".join(str(message).split())
    print(f"lockheed: {text}", file=sys.stderr, flush=True)


def exit_status(returncode: int) -> int:
    """A shell's exit status for a child's ``returncode`` (-N: killed by signal N)."""
    return 128 - returncode if returncode < 0 else returncode


def _signal_name(signum: int) -> str:
    return signal.Signals(signum).name


@contextmanager
def signals_caught(handler: Callable[[int, FrameType | None], Any]) -> Iterator[None]:
    """Catch the forwarded signals with ``handler`` in this block; restore the
    handlers after.

    Signals can be caught only in the main thread; elsewhere (called from a
    thread) they keep their handlers. Ignored signals stay ignored, so that the
    command inherits that.
    """
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in FORWARDED:
            current = signal.getsignal(signum)
            if current is not signal.SIG_IGN:
                previous[signum] = signal.SIG_DFL if current is None else current
                signal.signal(signum, handler)
    try:
        yield
    finally:
        for caught, restored in previous.items():
            signal.signal(caught, restored)


class CommandRun:
    """Hold ``lock`` while ``command`` runs; :meth:`run` returns the exit status.

    Everything that happens while the command runs arrives as one event on one
    queue, read by the main thread: a signal (from the handler), the lock's
    loss (from the renewer), the command's exit (from a waiting thread).
    """

    def __init__(
        self, lock: Lock, command: Sequence[str], timeout: float | None, verbose: bool = False
    ):
        self.lock = lock
        self.command = list(command)
        self.timeout = timeout
        self.verbose = verbose
        self._seen: tuple[str | None] | None = None  # the holder last reported
        self.stop = threading.Event()  # set by the first signal: stops a waiting acquire
        self.first_signal: int | None = None
        self.child: subprocess.Popen[bytes] | None = None
        self._events: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        lock.with_stop(self.stop)
        lock.on_lost(lambda exc: self._events.put(("lost", exc)))

    def run(self) -> int:
        code = EXIT_ERROR
        with self._signals():
            try:
                code = self._acquire_and_run()
            except LockError as exc:
                say(exc)
            except Exception as exc:
                say(f"unexpected error: {type(exc).__name__}: {exc}")
            finally:
                self._stop_child()
                code = self._release(code)
        return code

    # ------------------------------------------------------------ the steps

    def _acquire_and_run(self) -> int:
        try:
            token = self._acquire()
        except LockError as exc:
            if self.first_signal is not None:  # the wait was stopped
                return 128 + self.first_signal
            if isinstance(exc, LockTimeout):
                say(exc)
                return EXIT_TIMEOUT
            raise
        finally:
            self.lock.with_stop(None)  # from here on a signal must not stop renewal
        if self.first_signal is not None:  # came just as the lock was had
            return 128 + self.first_signal
        if self.verbose:
            say(f"holding {self.lock.name} (fencing token {token}); starting {self.command[0]}")
        env = {
            **os.environ,
            "LOCKHEED_LOCK_NAME": self.lock.name,
            "LOCKHEED_INSTANCE_ID": self.lock.instance_id,
            "LOCKHEED_FENCING_TOKEN": str(token),
        }
        try:
            self.child = subprocess.Popen(self.command, env=env)
        except FileNotFoundError as exc:
            say(f"{self.command[0]}: command not found ({exc.strerror})")
            return EXIT_NOT_FOUND
        except OSError as exc:
            say(f"{self.command[0]}: cannot run it ({exc.strerror})")
            return EXIT_NOT_EXECUTABLE
        return self._supervise(self.child)

    def _acquire(self) -> int:
        """Take the lock, saying once on standard error when it has to wait."""
        started = time.monotonic()
        try:
            return self.lock.acquire(blocking=False)
        except LockTimeout as exc:
            if self.timeout == 0 or self.first_signal is not None:
                raise
            if not self.verbose:
                say(f"{exc}; waiting" + (f" up to {self.timeout:g} s" if self.timeout else ""))
        left = None if self.timeout is None else max(0.0, started + self.timeout - time.monotonic())
        if self.verbose:
            self.lock._on_watch = self._on_watch
        try:
            return self.lock.acquire(timeout=left)
        finally:
            self.lock._on_watch = None

    def _on_watch(self, watch: Watch) -> None:
        """``--verbose``: one line each time the holder we wait for changes."""
        if self._seen is not None and self._seen[0] == watch.holder:
            return  # the same holder (renewed, or others joined the line)
        first, self._seen = self._seen is None, (watch.holder,)
        name = self.lock.name
        if watch.holder is None:
            say(f"waiting for {name}: waiters ahead of us in line")
            return
        if watch.expires is None or watch.expires >= NEVER:
            left = "never expires"
        else:
            earliest, _ = self.lock.locker.clock.bounds()
            left = f"expires in {max(0.0, (watch.expires - earliest).total_seconds()):.0f} s"
        if first:
            say(f"waiting for {name} held by {watch.holder} ({left})")
        else:
            say(f"{name} is now held by {watch.holder} ({left}); waiting")

    def _supervise(self, child: subprocess.Popen[bytes]) -> int:
        """Wait for the command to exit, passing signals on and stopping it on loss."""
        threading.Thread(
            target=lambda: self._events.put(("exit", child.wait())),
            name="lockheed-run-wait",
            daemon=True,
        ).start()
        signals = 0
        while True:
            kind, value = self._events.get()
            if kind == "exit":
                return EXIT_LOST if self.lock.lost is not None else exit_status(value)
            if kind == "lost":
                say(f"{value}; stopping the command (SIGTERM)")
                child.terminate()
            elif kind == "signal":
                signals += 1
                if signals == 1:
                    say(f"{_signal_name(value)}: passed on to the command; waiting for it to exit")
                    child.send_signal(value)
                else:
                    say(f"{_signal_name(value)} again: killing the command")
                    child.kill()

    def _stop_child(self) -> None:
        """Never leave the command running without the lock (after an unexpected error)."""
        child = self.child
        if child is not None and child.poll() is None:
            say("killing the command before releasing the lock")
            child.kill()
            child.wait()

    def _release(self, code: int) -> int:
        try:
            self.lock.release()
        except LockNotHeld:
            pass  # never acquired
        except LockLost as exc:
            say(f"lock lost while the command ran: {exc}")
            return EXIT_LOST
        except LockError as exc:
            say(f"could not release the lock (its lease ends at its expiry): {exc}")
            return EXIT_ERROR
        return code

    # ------------------------------------------------------------ signals

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.first_signal is None:
            self.first_signal = signum
        self.stop.set()
        self._events.put(("signal", signum))

    def _signals(self) -> AbstractContextManager[None]:
        return signals_caught(self._on_signal)
