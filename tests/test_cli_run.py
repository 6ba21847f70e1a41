"""``lockheed run`` on the real control plane: signals, exit statuses, and the
lock released on every way out.

lockheed runs as ``python -m lockheed run`` in a session of its own (so that a
test can signal its process group, and kill whatever is left at the end). The
command it runs reports on its standard output, read with a timeout on every
wait. The lease is long (``--duration 60``), so a lease left behind makes the
check right after lockheed exits fail: the lock must be free at once.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from child_output import Lines
from lockheed import Lock, LockLost, LockTimeout, acquired, list_locks
from lockheed._cli import main
from support import ConfigMapLockers, lockheed_argv

pytestmark = pytest.mark.lockheed_kube

STARTUP = 60.0  # interpreter start, imports and the first requests, on a busy host
WAIT = 30.0  # any other wait; only reached when something is broken

# A command that reports every SIGTERM, SIGINT and SIGHUP it gets, carries on,
# and exits with status 7 once a line arrives on its standard input.
TRAPPING = """
import signal, sys
def report(signum, frame):
    print("got", signal.Signals(signum).name, flush=True)
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(s, report)
print("ready", flush=True)
sys.stdin.readline()
print("exiting", flush=True)
sys.exit(7)
"""


@dataclass
class Run:
    """A running ``lockheed run``, with the lines of its standard output and error."""

    process: subprocess.Popen[str]
    out: Lines
    err: Lines

    def say(self, line: str) -> None:
        """Write ``line`` to the command's standard input."""
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def describe(self) -> str:
        return f"exit {self.process.poll()}; stdout {self.out.drain()}; stderr {self.err.drain()}"


StartRun = Callable[..., Run]


def _require_default_disposition(*signums: int) -> None:
    """Skip when this process ignores a signal: lockheed and its command would
    inherit that and rightly keep ignoring it (e.g. a suite started with nohup)."""
    for signum in signums:
        if signal.getsignal(signum) is signal.SIG_IGN:
            pytest.skip(f"{signal.Signals(signum).name} is ignored by the test process")


@pytest.fixture
def start_run(lockheed_kubeconfig: Path, lockheed_namespace: str) -> Iterator[StartRun]:
    """``start_run(name, *options, command=[...])``; each one's session is killed at the end."""
    runs: list[Run] = []

    def start(name: str, *options: str, command: list[str]) -> Run:
        argv = lockheed_argv(
            "run", name, *options, "--", *command,
            kubeconfig=lockheed_kubeconfig, namespace=lockheed_namespace,
        )  # fmt: skip
        process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert process.stdout is not None and process.stderr is not None
        run = Run(process, Lines(process.stdout), Lines(process.stderr))
        runs.append(run)
        return run

    yield start
    for run in runs:
        with contextlib.suppress(ProcessLookupError):  # lockheed and a command it left behind
            os.killpg(run.process.pid, signal.SIGKILL)
        run.process.wait()
        assert run.process.stdin is not None
        run.process.stdin.close()
        run.out.close()
        run.err.close()


def assert_free(locker: object, name: str) -> None:
    """The lock can be had at once: lockheed left no lease behind."""
    lock = Lock(name, locker)
    try:
        lock.acquire(blocking=False)
    except LockTimeout as exc:
        raise AssertionError(f"lockheed left its lease behind: {exc}") from exc
    lock.release()


def assert_held(locker: object, name: str) -> None:
    with pytest.raises(LockTimeout):
        Lock(name, locker).acquire(blocking=False)


@pytest.mark.parametrize(
    "signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name
)
def test_a_signal_is_passed_on_and_the_lock_released_once_the_command_exits(
    start_run: StartRun, configmap_locker: ConfigMapLockers, signum: signal.Signals
) -> None:
    _require_default_disposition(signum)
    locker = configmap_locker()
    run = start_run("job", "--duration", "60", command=[sys.executable, "-c", TRAPPING])
    run.out.expect("ready", STARTUP)
    run.process.send_signal(signum)
    run.out.expect(f"got {signum.name}", WAIT)
    # The command is still running: lockheed waits for it and still holds the lock.
    assert run.process.poll() is None, run.describe()
    assert_held(locker, "job")
    run.say("go")
    run.out.expect("exiting", WAIT)
    assert run.process.wait(WAIT) == 7, run.describe()  # the command's own status
    assert_free(locker, "job")


def test_a_second_signal_kills_a_command_that_carries_on(
    start_run: StartRun, configmap_locker: ConfigMapLockers
) -> None:
    run = start_run("job", "--duration", "60", command=[sys.executable, "-c", TRAPPING])
    run.out.expect("ready", STARTUP)
    run.process.send_signal(signal.SIGTERM)
    run.out.expect("got SIGTERM", WAIT)  # passed on; the command carries on
    run.process.send_signal(signal.SIGTERM)
    assert run.process.wait(WAIT) == 128 + signal.SIGKILL, run.describe()
    assert "killing the command" in "\n".join(run.err.drain())
    assert_free(configmap_locker(), "job")


def test_ctrl_c_to_the_process_group_releases_the_lock(
    start_run: StartRun, configmap_locker: ConfigMapLockers
) -> None:
    _require_default_disposition(signal.SIGINT)
    run = start_run("job", "--duration", "60", command=["sh", "-c", "echo ready; exec sleep 60"])
    run.out.expect("ready", STARTUP)
    os.killpg(run.process.pid, signal.SIGINT)  # lockheed and its command both get it
    assert run.process.wait(WAIT) == 128 + signal.SIGINT, run.describe()
    assert_free(configmap_locker(), "job")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_signal_while_waiting_stops_the_wait_and_leaves_no_lease(
    start_run: StartRun, configmap_locker: ConfigMapLockers, signum: signal.Signals
) -> None:
    _require_default_disposition(signum)
    locker = configmap_locker()
    holder = Lock("busy", locker).with_duration(60)
    holder.acquire()
    run = start_run("busy", "--duration", "60", command=["echo", "the command ran"])
    run.err.expect(
        lambda line: "waiting" in line and holder.instance_id in line,
        STARTUP,
        "a line saying it waits for the holder",
    )
    run.process.send_signal(signum)
    assert run.process.wait(WAIT) == 128 + signum, run.describe()
    assert run.out.drain() == []  # the command never started
    (info,) = list_locks(locker)
    assert [h.instance_id for h in info.holders] == [holder.instance_id]
    holder.release()  # still ours: raises if lockheed had disturbed the lease


NOT_EXECUTABLE = "not-executable.sh"


@pytest.mark.parametrize(
    ("command", "status"),
    [
        (["/no/such/command"], 127),
        ([NOT_EXECUTABLE], 126),
        ([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"], 137),
        ([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"], 143),
    ],
    ids=["not-found", "not-executable", "killed", "terminated"],
)
def test_exit_statuses_and_the_lock_released(
    lockheed_kubeconfig: Path,
    lockheed_namespace: str,
    configmap_locker: ConfigMapLockers,
    tmp_path: Path,
    command: list[str],
    status: int,
) -> None:
    if command == [NOT_EXECUTABLE]:
        script = tmp_path / NOT_EXECUTABLE
        script.write_text("#!/bin/sh\necho should not run\n")
        script.chmod(0o644)
        command = [str(script)]
    argv = lockheed_argv(
        "run", "job", "--duration", "60", "--", *command,
        kubeconfig=lockheed_kubeconfig, namespace=lockheed_namespace,
    )  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=STARTUP, check=False)
    assert done.returncode == status, done.stderr
    assert "Traceback" not in done.stderr
    if status in (126, 127):
        (line,) = done.stderr.splitlines()
        assert line.startswith(f"lockheed: {command[0]}: ")
        assert done.stdout == ""
    assert_free(configmap_locker(), "job")


def test_an_unexpected_error_is_one_line_and_the_lock_is_released(
    lockheed_kubeconfig: Path,
    lockheed_namespace: str,
    configmap_locker: ConfigMapLockers,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(subprocess, "Popen", broken)  # fails once the lock is held
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    argv = [
        "run",
        "job",
        "--kubeconfig",
        str(lockheed_kubeconfig),
        "--namespace",
        lockheed_namespace,
    ]
    code = main([*argv, "--duration", "60", "--", "true"])  # in this process
    assert code == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line == "lockheed: unexpected error: RuntimeError: simulated failure"
    assert_free(configmap_locker(), "job")
    assert {s: signal.getsignal(s) for s in handlers} == handlers  # restored


# Prints what lockheed put in its environment, then waits for a line on stdin.
SHOW_ENV = """
import os, sys
print(*(os.environ[k] for k in ("LOCKHEED_LOCK_NAME", "LOCKHEED_INSTANCE_ID",
                                 "LOCKHEED_FENCING_TOKEN")), flush=True)
sys.stdin.readline()
"""


def test_the_command_gets_the_lock_name_its_holder_id_and_token(
    start_run: StartRun, configmap_locker: ConfigMapLockers
) -> None:
    locker = configmap_locker()
    run = start_run("report", "--duration", "60", command=[sys.executable, "-c", SHOW_ENV])
    line = run.out.expect(lambda text: text.startswith("report "), STARTUP, "the environment")
    name, instance, token = line.split()
    (info,) = list_locks(locker)  # what the cluster says while the command runs
    assert name == info.name
    assert [h.instance_id for h in info.holders] == [instance]
    assert int(token) == info.fencing_token
    run.say("done")
    assert run.process.wait(WAIT) == 0, run.describe()


def test_no_wait_gives_up_at_once_when_the_lock_is_held(
    lockheed_kubeconfig: Path, lockheed_namespace: str, configmap_locker: ConfigMapLockers
) -> None:
    locker = configmap_locker()
    holder = Lock("busy", locker).with_duration(60)
    holder.acquire()
    argv = lockheed_argv(
        "run", "busy", "--no-wait", "--", "echo", "the command ran",
        kubeconfig=lockheed_kubeconfig, namespace=lockheed_namespace,
    )  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=STARTUP, check=False)
    assert done.returncode == 73
    assert done.stdout == ""  # the command never ran
    (line,) = done.stderr.splitlines()
    assert line.startswith("lockheed: lock 'busy' is held by " + holder.instance_id)
    both = subprocess.run(
        [*argv[:-3], "--no-wait", "--timeout", "5", "--", "true"],
        capture_output=True,
        text=True,
        timeout=STARTUP,
        check=False,
    )
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    holder.release()  # still ours
    free = subprocess.run(argv, capture_output=True, text=True, timeout=STARTUP, check=False)
    assert free.returncode == 0, free.stderr
    assert free.stdout == "the command ran\n"


def test_verbose_says_whom_it_waits_for_and_each_change(
    start_run: StartRun, configmap_locker: ConfigMapLockers
) -> None:
    locker = configmap_locker()
    first = Lock("busy", locker).with_duration(600)
    first.acquire()
    run = start_run("busy", "--verbose", "--duration", "60", command=["echo", "the command ran"])
    run.err.expect(
        lambda line: (
            line.startswith(f"lockheed: waiting for busy held by {first.instance_id} ")
            and re.search(r"\(expires in \d+ s\)$", line) is not None
        ),
        STARTUP,
        "a line naming the holder and its lease",
    )
    second = Lock("busy", locker).with_duration(600).with_force(acquired(True))
    second.acquire(timeout=WAIT)  # takes the lock over, ahead of the line
    run.err.expect(
        lambda line: (
            line.startswith(f"lockheed: busy is now held by {second.instance_id} ")
            and line.endswith("; waiting")
        ),
        WAIT,
        "a line naming the new holder",
    )
    second.release()  # hands the lock to lockheed, first in line
    run.err.expect(
        lambda line: (
            re.fullmatch(r"lockheed: holding busy \(fencing token \d+\); starting echo", line)
            is not None
        ),
        WAIT,
        "a line saying it holds the lock",
    )
    run.out.expect("the command ran", WAIT)
    assert run.process.wait(WAIT) == 0, run.describe()
    assert_free(locker, "busy")


def test_force_if_takes_over_only_when_the_condition_holds(
    lockheed_kubeconfig: Path, lockheed_namespace: str, configmap_locker: ConfigMapLockers
) -> None:
    locker = configmap_locker()
    holder = Lock("batch", locker).with_duration(600).with_tags(["preemptible"])
    lost = threading.Event()
    holder.on_lost(lambda exc: lost.set())
    holder.with_renew_interval(0.5).acquire()
    argv = lockheed_argv(
        "run", "batch", "--no-wait", kubeconfig=lockheed_kubeconfig, namespace=lockheed_namespace
    )

    def run(*options: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*argv, *options, "--", "echo", "the command ran"],
            capture_output=True,
            text=True,
            timeout=STARTUP,
            check=False,
        )

    kept = run("--force-if", "tags contains urgent")
    assert kept.returncode == 73 and kept.stdout == ""
    bad = run("--force-if", "acquired and expires < 30s")
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.splitlines()[0] == (
        "lockheed run: --force-if: 'expires' has no equivalent in Go lockheed's conditions "
        "(tags contains, acquired, and, or) at column 14:"
    )
    assert not lost.is_set()
    taken = run("--force-if", "tags contains preemptible and acquired")
    assert taken.returncode == 0, taken.stderr
    assert taken.stdout == "the command ran\n"
    assert lost.wait(WAIT)  # the holder learnt at its next renewal
    with pytest.raises(LockLost):
        holder.release()
    assert_free(locker, "batch")
