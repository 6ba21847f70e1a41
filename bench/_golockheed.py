"""Go lockheed v0.5.3, measured through the Go test program.

The program is ``tests/golockheed`` (its ``serve`` subcommand runs Go
lockheed's own ``Acquire``, ``Renew``, ``Release`` and ``AcquireRetry`` on
commands from stdin and times cycles and hand-offs with Go's monotonic clock;
its ``bench-contend`` subcommand is one contender of the contention figure).
:func:`find_program` uses the lookup of the interoperability tests
(``tests/golockheed.py``, loaded from its file): the binary cached for the
current sources, else a build from a module-proxy directory holding Go
lockheed v0.5.3 (``$LOCKHEED_GOPROXY_DIR``, else ``../shared/goproxy`` beside
the repository; the public proxy refuses that version). When it cannot be
built, Go lockheed stays a column that says why it was not measured.

The adapter, :class:`GoLockheed`, runs one ``serve`` process for the whole
run, so no figure includes a process start. Its settings: ``WithDuration(30s)``
as lockheed's, no renewal loop except in the renewal figure (Go lockheed's own
``WithRenewInterval``), client-go's client-side rate limit off (the Python
clients have none), and a waiter that polls with Go lockheed's ``AcquireRetry``
every :data:`RETRY_DELAY` (go-retry's default delay), Go lockheed having no
blocking acquire. In the contention figure each contender is a process of
its own (``bench-contend``) that retries a failed ``Acquire`` after a random
pause in :data:`CONTEND_BACKOFF`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import queue
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from ._metrics import Meter
from ._results import Renewal
from ._systems import SETTLE, WAIT_LIMIT, Env, System, Unsupported, _renewal_from

__all__ = [
    "CONTEND_BACKOFF",
    "GO_KEY",
    "GO_LABEL",
    "GO_REASON",
    "RETRY_DELAY",
    "GoLockheed",
    "find_program",
]

GO_KEY = "go-lockheed"
GO_LABEL = "Go lockheed v0.5.3"
GO_REASON = "not measured: the Go program tests/golockheed could not be built"
RETRY_DELAY = 1.0  # seconds between a Go waiter's attempts: go-retry's DEFAULT_DELAY
# A contender's pause after a failed Acquire, drawn uniformly from this range
# (seconds): short, so that Go's figure is not set by the pause.
CONTEND_BACKOFF = (0.02, 0.12)
DURATION = 30.0
LOOKUP = Path(__file__).resolve().parent.parent / "tests" / "golockheed.py"
STEP_TIMEOUT = 60.0  # one command (Go retries a reserved ConfigMap for 5 s per step)


def find_program() -> Path | str:
    """The Go program, or the reason (``not measured: ...``) why it cannot be had."""
    if not LOOKUP.exists():
        return f"not measured: {LOOKUP.name} not found"
    spec = importlib.util.spec_from_file_location("bench_golockheed_lookup", LOOKUP)
    if spec is None or spec.loader is None:
        return f"not measured: cannot load {LOOKUP.name}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    found: Path | str = module.find_golockheed()
    if isinstance(found, Path):
        return found
    return f"not measured: {found}"


def _go_duration(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


class GoLockheed(System):
    key = GO_KEY
    label = GO_LABEL
    contend_mode = GO_KEY

    def __init__(self, env: Env, program: Path):
        super().__init__(env)
        self.program = program
        self._err: IO[str] = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed in close())
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._handles = 0
        ns = env.namespace
        self.proc = subprocess.Popen(
            [str(program), "serve", "--kubeconfig", str(env.kubeconfig), "--namespace", ns],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._err,
            text=True,
        )
        threading.Thread(target=self._read, name="bench-go-reader", daemon=True).start()
        try:
            self._answer("ready", STEP_TIMEOUT)
            warm = self._lock("warm-up")
            self._do("acquire", warm)
            self._do("release", warm)
        except BaseException:
            self.close()
            raise

    def settings(self) -> str:
        return (
            f"the Go program tests/golockheed (serve), one KubeLocker; "
            f"NewLock(...).WithDuration({DURATION:g}s), no renewal loop except in the renewal "
            f"figure (WithRenewInterval); a waiter polls with AcquireRetry every "
            f"{RETRY_DELAY:g} s (go-retry's default delay; Go lockheed has no blocking acquire); "
            "client-go's client-side rate limit off; samples timed in Go (time.Since); "
            f"contenders are processes of the Go program (bench-contend) that retry a failed "
            f"Acquire after a random {CONTEND_BACKOFF[0] * 1000:g}-{CONTEND_BACKOFF[1] * 1000:g} "
            "ms pause"
        )

    def contend_command(self, lock: str) -> list[str]:
        """One contender of the contention figure on ``lock`` (bench._worker's protocol)."""
        low, high = CONTEND_BACKOFF
        return [
            str(self.program),
            "bench-contend",
            *("--kubeconfig", str(self.env.kubeconfig), "--namespace", self.env.namespace),
            *("--name", lock, "--duration", _go_duration(DURATION)),
            *("--backoff-min", _go_duration(low), "--backoff-max", _go_duration(high)),
        ]

    # ------------------------------------------------------------- the process

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _stderr(self) -> str:
        self._err.seek(0)
        return self._err.read()[-2000:]

    def _answer(self, event: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"golockheed serve: no answer within {timeout:g} s")
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(f"golockheed serve exited; stderr: {self._stderr()}")
            if not line.startswith("{"):
                continue
            answer: dict[str, Any] = json.loads(line)
            if answer.get("event") == "error":
                raise RuntimeError(f"Go lockheed: {answer.get('error')}")
            if answer.get("event") == event:
                return answer

    def _send(self, *words: str, timeout: float = STEP_TIMEOUT) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(" ".join(words) + "\n")
        self.proc.stdin.flush()
        return self._answer("ok", timeout)

    def _lock(self, name: str, renew_interval: float = 0.0, duration: float = DURATION) -> str:
        self._handles += 1
        handle = f"h{self._handles}"
        self._send("lock", handle, name, _go_duration(duration), _go_duration(renew_interval))
        return handle

    def _do(self, op: str, handle: str) -> None:
        self._send(op, handle)

    # ------------------------------------------------------------- the figures

    @contextlib.contextmanager
    def operation(self, op: str) -> Iterator[Callable[[], object]]:
        name = self.fresh(op)
        lock = self._lock(name)
        if op == "acquire-new":
            yield lambda: self._do("acquire", lock)
            self._do("release", lock)
        elif op == "acquire-free":
            other = self._lock(name)
            self._do("acquire", other)
            self._do("release", other)
            yield lambda: self._do("acquire", lock)
            self._do("release", lock)
        elif op == "renew":
            self._do("acquire", lock)
            yield lambda: self._do("renew", lock)
            self._do("release", lock)
        elif op == "release":
            self._do("acquire", lock)
            yield lambda: self._do("release", lock)
        else:
            raise Unsupported(op)

    def cycles(self, n: int) -> list[float]:
        lock = self._lock(self.fresh("cycle"))
        answer = self._send("cycle", lock, str(n), timeout=STEP_TIMEOUT + n)
        return [float(x) for x in answer["seconds"]]

    def handoffs(self, n: int) -> list[float]:
        name = self.fresh("handoff")
        holder, waiter = self._lock(name), self._lock(name)
        answer = self._send(
            "handoff",
            holder,
            waiter,
            str(n),
            _go_duration(SETTLE),
            _go_duration(0.1),
            _go_duration(RETRY_DELAY),
            timeout=STEP_TIMEOUT + n * (WAIT_LIMIT + 1),
        )
        return [float(x) for x in answer["seconds"]]

    def renewal(self, meter: Meter, locks: int, interval: float, window: float) -> Renewal:
        duration = max(10.0, 4 * interval)
        held = [self._lock(self.fresh("renew"), interval, duration) for _ in range(locks)]
        for lock in held:
            self._do("acquire", lock)
        try:
            time.sleep(min(0.5, interval / 2))
            with meter.batch() as batch:
                time.sleep(window)
        finally:
            for lock in held:
                self._do("release", lock)
        return _renewal_from(
            batch,
            locks,
            interval,
            "renewed by Go lockheed's own loop (Maintain), a goroutine per lock",
        )

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                self.proc.wait(10.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10.0)
        self._err.close()
