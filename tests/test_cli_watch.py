"""``lockheed watch`` and ``lockheed demo`` as a user runs them: subprocesses against
the real control plane, the live table under a pseudo-terminal.

Every wait is for expected output, with a deadline; nothing sleeps.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any

import pytest
import yaml

from lockheed import ConfigMapLocker, LeaseLocker, Lock, acquired, list_locks
from lockheed._live import Board, Row, Style, render_table
from lockheed.testing import ControlPlane
from support import as_foreground_job, lockheed_argv

DEADLINE = 60.0
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLUMNS", "LINES")}
    return {**env, **extra}


class Lines:
    """The lines a process writes, read in the background."""

    def __init__(self, stream: IO[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._reader.start()

    def join(self) -> None:
        """Once the process has exited: wait for the rest of its output."""
        self._reader.join(DEADLINE)

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def expect(self, pattern: str, deadline: float = DEADLINE) -> re.Match[str]:
        """The first line from now on matching ``pattern``; fails at the deadline."""
        end = time.monotonic() + deadline
        while True:
            left = end - time.monotonic()
            if left <= 0:
                pytest.fail(f"no line matching {pattern!r} within {deadline}s; got {self.seen}")
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                pytest.fail(f"output ended before a line matching {pattern!r}; got {self.seen}")
            self.seen.append(line)
            found = re.search(pattern, line)
            if found:
                return found


@contextlib.contextmanager
def spawn(command: list[str], **kw: Any) -> Iterator[tuple[subprocess.Popen[str], Lines]]:
    """Run ``command`` with its output read as lines; killed (its group) if still running."""
    with as_foreground_job():  # each one is sent Ctrl-C
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=_env(), **kw)
    assert process.stdout is not None
    lines = Lines(process.stdout)
    try:
        yield process, lines
    finally:
        if process.poll() is None:
            if kw.get("start_new_session"):
                os.killpg(process.pid, signal.SIGKILL)
            process.kill()
        process.wait()
        lines.join()
        process.stdout.close()
        if process.stderr is not None:
            process.stderr.close()


class Terminal:
    """A process on a pseudo-terminal; its output, escapes and all, read in the background."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        master, slave = os.openpty()
        with as_foreground_job():
            self.process = subprocess.Popen(
                command, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True
            )
        os.close(slave)
        self._master = master
        self._lock = threading.Lock()
        self._text = ""
        self._changed = threading.Condition(self._lock)
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        while True:
            try:
                data = os.read(self._master, 65536)
            except OSError:  # the process exited: EIO
                data = b""
            with self._changed:
                if not data:
                    self._text += "\0"
                    self._changed.notify_all()
                    return
                self._text += data.decode(errors="replace")
                self._changed.notify_all()

    @property
    def text(self) -> str:
        with self._lock:
            return self._text

    def expect(self, pattern: str, since: int = 0, deadline: float = DEADLINE) -> re.Match[str]:
        """The first match of ``pattern`` in the output from offset ``since``."""
        regex = re.compile(pattern)
        end = time.monotonic() + deadline
        with self._changed:
            while True:
                found = regex.search(self._text, since)
                if found:
                    return found
                left = end - time.monotonic()
                if left <= 0 or self._text.endswith("\0"):
                    tail = self._text[-3000:]
                    pytest.fail(f"no {pattern!r} on the terminal within {deadline}s: {tail!r}")
                self._changed.wait(left)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        os.close(self._master)


def _watch_command(kubeconfig: Path, namespace: str, *args: str) -> list[str]:
    return lockheed_argv("watch", *args, kubeconfig=kubeconfig, namespace=namespace)


@pytest.fixture
def locker(lockheed_kubeconfig: Path, lockheed_namespace: str) -> Iterator[ConfigMapLocker]:
    with ConfigMapLocker(lockheed_namespace, config=lockheed_kubeconfig) as made:
        yield made


def _lock(locker: ConfigMapLocker | LeaseLocker, who: str) -> Lock:
    return Lock("job", locker, instance_id=who).with_duration(30).with_renew_interval(5)


def _wait_in_line(lock: Lock) -> threading.Thread:
    waiter = threading.Thread(target=lambda: lock.acquire(timeout=DEADLINE), daemon=True)
    waiter.start()
    return waiter


def test_watch_prints_one_timestamped_line_per_change_off_a_terminal(
    lockheed_kubeconfig: Path, lockheed_namespace: str, locker: ConfigMapLocker
) -> None:
    alice, bob, carol = (_lock(locker, who) for who in ("alice", "bob", "carol"))
    first = alice.acquire()
    command = _watch_command(lockheed_kubeconfig, lockheed_namespace)
    with spawn(command, stderr=subprocess.PIPE) as (watch, lines):
        lines.expect(rf"^{STAMP} job HELD by alice, token {first}, expires in \d+s$")
        waiter = _wait_in_line(bob)
        lines.expect(rf"^{STAMP} job LINE waiting in line: bob$")

        alice.release()  # hands the lock to bob, first in line
        waiter.join(DEADLINE)
        assert bob.held
        lines.expect(
            rf"^{STAMP} job HANDED-OFF handed off alice -> bob \(token {bob.fencing_token}\)$"
        )

        token = carol.with_force(acquired(True)).acquire(timeout=DEADLINE)
        lines.expect(rf"^{STAMP} job TAKEN-OVER taken over from bob by carol \(token {token}\)$")
        carol.release()
        lines.expect(rf"^{STAMP} job RELEASED released by carol$")
        watch.send_signal(signal.SIGINT)
        assert watch.wait(DEADLINE) == 0
        assert watch.stderr is not None
        assert watch.stderr.read() == ""
    assert not any("HANDED-OFF" in line for line in lines.seen if "carol" in line)


def test_watch_backend_lease_follows_the_lease_locks_only(
    lockheed_kubeconfig: Path, lockheed_namespace: str, locker: ConfigMapLocker
) -> None:
    """``--backend lease`` watches the Lease locks: their changes, and not the
    ConfigMap lock of the same name."""
    with LeaseLocker(lockheed_namespace, config=lockheed_kubeconfig) as leases:
        alice, bob = (_lock(leases, who) for who in ("alice", "bob"))
        on_configmap = _lock(locker, "carol")
        first = alice.acquire()
        on_configmap.acquire()
        command = _watch_command(lockheed_kubeconfig, lockheed_namespace, "--backend", "lease")
        with spawn(command, stderr=subprocess.PIPE) as (watch, lines):
            lines.expect(rf"^{STAMP} job HELD by alice, token {first}, expires in \d+s$")
            waiter = _wait_in_line(bob)
            lines.expect(rf"^{STAMP} job LINE waiting in line: bob$")
            alice.release()
            waiter.join(DEADLINE)
            assert bob.held
            token = bob.fencing_token
            lines.expect(rf"^{STAMP} job HANDED-OFF handed off alice -> bob \(token {token}\)$")
            bob.release()
            lines.expect(rf"^{STAMP} job RELEASED released by bob$")
            watch.send_signal(signal.SIGINT)
            assert watch.wait(DEADLINE) == 0
            assert watch.stderr is not None
            assert watch.stderr.read() == ""
        on_configmap.release()
    assert not any("carol" in line for line in lines.seen)


@pytest.mark.parametrize("no_color", [False, True], ids=["color", "NO_COLOR"])
def test_watch_table_marks_a_hand_off_and_a_takeover_under_a_terminal(
    lockheed_kubeconfig: Path, lockheed_namespace: str, locker: ConfigMapLocker, no_color: bool
) -> None:
    alice, bob, carol = (_lock(locker, who) for who in ("alice", "bob", "carol"))
    alice.acquire()
    extra = {"TERM": "xterm", "COLUMNS": "160", "LINES": "30"}
    if no_color:
        extra["NO_COLOR"] = "1"
    terminal = Terminal(_watch_command(lockheed_kubeconfig, lockheed_namespace), _env(**extra))
    try:
        header = terminal.expect(r"NAME +HOLDER +TOKEN +EXPIRES IN +WAITERS +CHANGE")
        terminal.expect(r"\n  job +alice +\d+ +\d+s +-\x1b\[K", header.end())
        waiter = _wait_in_line(bob)
        queued = terminal.expect(r"job +alice +\d+ +\d+s +bob", header.end())

        alice.release()
        waiter.join(DEADLINE)
        assert bob.held
        green = "" if no_color else re.escape("\x1b[1;32m")
        row = rf"{green}> job +bob +{bob.fencing_token} +\d+s +- +handed off alice -> bob"
        handed = terminal.expect(row, queued.end())

        token = carol.with_force(acquired(True)).acquire(timeout=DEADLINE)
        red = "" if no_color else re.escape("\x1b[1;31m")
        terminal.expect(rf"{red}! job +carol +{token} +\d+s +- +taken over from bob", handed.end())
        carol.release()

        # Ctrl-C, or SIGTERM: either ends it cleanly
        terminal.process.send_signal(signal.SIGTERM if no_color else signal.SIGINT)
        assert terminal.process.wait(DEADLINE) == 0
        terminal.expect(re.escape("\x1b[?25h"), handed.end())  # the cursor is shown again
        colored = "\x1b[1;3" in terminal.text
        assert colored is not no_color
    finally:
        terminal.close()


def test_watch_survives_an_api_server_restart(
    lockheed_control_plane: ControlPlane, lockheed_namespace: str, locker: ConfigMapLocker
) -> None:
    alice = _lock(locker, "alice")
    alice.acquire()
    command = _watch_command(lockheed_control_plane.kubeconfig, lockheed_namespace)
    with spawn(command, stderr=subprocess.PIPE) as (watch, lines):
        assert watch.stderr is not None
        complaints = Lines(watch.stderr)
        lines.expect(rf"^{STAMP} job HELD by alice, ")
        with lockheed_control_plane.apiserver_down():  # the watch breaks; listing fails
            complaints.expect(r"^lockheed watch: cannot reach the API server, retrying: ")
        complaints.expect(r"^lockheed watch: reached the API server again$")
        alice.release()  # seen by the new watch
        lines.expect(rf"^{STAMP} job RELEASED released by alice$")
        watch.send_signal(signal.SIGINT)
        assert watch.wait(DEADLINE) == 0
        complaints.join()


def test_watch_all_namespaces_names_the_namespace(
    lockheed_kubeconfig: Path, lockheed_namespace: str, locker: ConfigMapLocker
) -> None:
    token = _lock(locker, "alice").acquire()
    command = lockheed_argv("watch", "-A", "job", kubeconfig=lockheed_kubeconfig)
    with spawn(command) as (watch, lines):
        lines.expect(rf"^{STAMP} {lockheed_namespace}/job HELD by alice, token {token}, ")
        watch.send_signal(signal.SIGINT)
        assert watch.wait(DEADLINE) == 0


def test_watch_refuses_bad_input_with_a_clear_error(
    lockheed_kubeconfig: Path, lockheed_namespace: str
) -> None:
    bad = subprocess.run(
        _watch_command(lockheed_kubeconfig, lockheed_namespace, "Not_A_Name"),
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr.startswith("lockheed: ") and "Not_A_Name" in bad.stderr


@pytest.mark.parametrize(
    "option",
    [
        ("--where", "tags contains nightly and expires < soon"),
        ("--where", "acquired or"),
        ("-l", "nightly,,weekly"),
        ("-l", "nightly,!"),
    ],
)
def test_watch_refuses_a_bad_selection_exactly_as_list_does(
    lockheed_kubeconfig: Path, lockheed_namespace: str, option: tuple[str, str]
) -> None:
    def run(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            lockheed_argv(
                command, *option, kubeconfig=lockheed_kubeconfig, namespace=lockheed_namespace
            ),
            capture_output=True, text=True, timeout=DEADLINE, check=False,
        )  # fmt: skip

    watched, listed = run("watch"), run("list")
    assert watched.returncode == listed.returncode == 2
    assert watched.stdout == listed.stdout == ""
    assert watched.stderr.startswith(f"lockheed watch: {option[0]}: ")
    assert watched.stderr == listed.stderr.replace("lockheed list: ", "lockheed watch: ", 1)
    # the caret sits under the bad token of the expression shown above it
    *_, shown, caret = watched.stderr.rstrip("\n").split("\n")
    assert shown == f"  {option[1]}" and caret.strip() == "^"
    assert len(caret) - 1 <= len(shown)


def test_watch_where_and_selector_apply_to_each_lock_as_it_changes(
    lockheed_kubeconfig: Path, lockheed_namespace: str, locker: ConfigMapLocker
) -> None:
    """``--where acquired -l nightly``: a lock appears with the change that makes it
    match (diffed against the version it had while left out), is reported with
    the change that makes it stop matching, and locks that never match are silent."""

    def lock(name: str, who: str, tags: list[str]) -> Lock:
        return Lock(name, locker, instance_id=who).with_duration(30).with_tags(tags)

    alice = lock("job", "alice", ["nightly"])
    bob = lock("report", "bob", ["nightly", "weekly"])
    carol = lock("hourly", "carol", ["hourly"])
    first = alice.acquire()
    with Lock("report", locker).with_tags(["nightly", "weekly"]):
        pass  # exists, free: left out by --where acquired
    carol.acquire()  # held, but not nightly: left out by -l
    command = _watch_command(
        lockheed_kubeconfig, lockheed_namespace, "--where", "acquired", "-l", "nightly,!daily"
    )
    with spawn(command, stderr=subprocess.PIPE) as (watch, lines):
        lines.expect(rf"^{STAMP} job HELD by alice, token {first}, expires in \d+s$")
        token = bob.acquire()  # report comes to match, with the change that made it
        lines.expect(rf"^{STAMP} report ACQUIRED acquired by bob \(token {token}\)$")
        carol.release()  # never matches: nothing said
        alice.release()  # stops matching: said, then left out
        lines.expect(rf"^{STAMP} job RELEASED released by alice$")
        with Lock("job", locker, instance_id="dave").with_tags(["daily"]):
            pass  # free and now daily: changes unseen
        again = alice.acquire()  # held again but daily: still left out
        alice.release()
        bob.release()
        lines.expect(rf"^{STAMP} report RELEASED released by bob$")
        assert again > first
        watch.send_signal(signal.SIGINT)
        assert watch.wait(DEADLINE) == 0
        assert watch.stderr is not None
        assert watch.stderr.read() == ""
    assert not [line for line in lines.seen if " hourly " in line or "dave" in line]
    assert [line.split()[1:3] for line in lines.seen] == [
        ["job", "HELD"],
        ["report", "ACQUIRED"],
        ["job", "RELEASED"],
        ["report", "RELEASED"],
    ]


def _with_contexts(kubeconfig: Path, namespace: str, into: Path) -> Path:
    """A copy of ``kubeconfig`` whose current context points at no server, and a
    context ``ops`` (the real cluster, ``namespace``): only ``--context ops`` works."""
    config = yaml.safe_load(kubeconfig.read_text())
    (context,) = config["contexts"]
    (cluster,) = config["clusters"]
    config["clusters"].append(
        {"name": "nowhere", "cluster": {**cluster["cluster"], "server": "https://127.0.0.1:9"}}
    )
    config["contexts"] += [
        {"name": "ops", "context": {**context["context"], "namespace": namespace}},
        {"name": "broken", "context": {**context["context"], "cluster": "nowhere"}},
    ]
    config["current-context"] = "broken"
    into.write_text(yaml.safe_dump(config))
    return into


def test_watch_and_demo_take_context(
    tmp_path: Path, lockheed_kubeconfig: Path, lockheed_namespace: str, locker: ConfigMapLocker
) -> None:
    kubeconfig = _with_contexts(lockheed_kubeconfig, lockheed_namespace, tmp_path / "config")
    token = _lock(locker, "alice").acquire()
    base = lockheed_argv("watch", kubeconfig=kubeconfig)
    with spawn([*base, "--context", "ops"]) as (watch, lines):  # the context's namespace
        lines.expect(rf"^{STAMP} job HELD by alice, token {token}, ")
        watch.send_signal(signal.SIGINT)
        assert watch.wait(DEADLINE) == 0
    # the demo's workers are given the context (the current one reaches no server)
    done = subprocess.run(
        _demo_command(
            "--kubeconfig", str(kubeconfig), "--context", "ops", "--events",
            "--workers", "2", "--rounds", "1", "--hold", "0.2", "--no-crash",
        ),
        capture_output=True, text=True, timeout=110, check=False, env=_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Fencing tokens increased at every change of holder" in done.stdout
    turns = {line.split()[-3] for line in done.stdout.splitlines() if " ACQUIRED " in line}
    turns |= {line.split()[-3] for line in done.stdout.splitlines() if " HANDED-OFF " in line}
    assert {"alice", "bob"} <= turns, done.stdout
    with ConfigMapLocker(lockheed_namespace, config=lockheed_kubeconfig) as same:
        names = sorted(info.name for info in list_locks(same))
    assert names == ["demo", "job"]  # in the context's namespace
    unknown = subprocess.run(
        [*base, "--context", "nope"], capture_output=True, text=True, timeout=DEADLINE, check=False
    )
    assert unknown.returncode == 1
    assert "no usable context 'nope'" in unknown.stderr


def _demo_command(*args: str) -> list[str]:
    return lockheed_argv("demo", *args)


def test_demo_shows_turns_a_crash_and_rising_tokens(
    lockheed_kubeconfig: Path, lockheed_namespace: str
) -> None:
    done = subprocess.run(
        _demo_command(
            "--kubeconfig", str(lockheed_kubeconfig), "-n", lockheed_namespace,
            "--workers", "3", "--rounds", "2", "--hold", "0.5",
        ),
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
        env=_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert any(
        re.match(rf"{STAMP} demo HANDED-OFF handed off \w+ -> \w+ \(token", x) for x in lines
    )
    # carol exits holding the lock: the view shows her lease running out, even
    # when that was the last turn
    assert any(re.match(rf"{STAMP} demo EXPIRED carol's lease ran out", x) for x in lines), lines
    assert "Fencing tokens increased at every change of holder" in lines[-1]


def test_demo_shows_the_live_table_under_a_terminal(
    lockheed_kubeconfig: Path, lockheed_namespace: str
) -> None:
    command = _demo_command("--kubeconfig", str(lockheed_kubeconfig), "-n", lockheed_namespace)
    command += ["--workers", "2", "--rounds", "2", "--hold", "0.5", "--no-crash"]
    env = _env(TERM="xterm", COLUMNS="140", LINES="30")
    terminal = Terminal(command, env)
    try:
        title = terminal.expect(r"lockheed demo: 2 workers take turns on lock 'demo'")
        green = re.escape("\x1b[1;32m")
        terminal.expect(rf"{green}> demo +\w+ +\d+ +\d+s .*handed off \w+ -> \w+", title.end())
        terminal.expect(r"Fencing tokens increased at every change of holder", title.end())
        assert terminal.process.wait(DEADLINE) == 0
    finally:
        terminal.close()


def _running_demo(
    *args: str,
) -> contextlib.AbstractContextManager[tuple[subprocess.Popen[str], Lines]]:
    # its own process group, as a terminal's foreground job
    command = _demo_command(*args, "--hold", "2", "--no-crash")
    return spawn(command, stderr=subprocess.STDOUT, start_new_session=True)


def test_demo_ctrl_c_releases_the_lock(lockheed_kubeconfig: Path, lockheed_namespace: str) -> None:
    with _running_demo("--kubeconfig", str(lockheed_kubeconfig), "-n", lockheed_namespace) as (
        demo,
        lines,
    ):
        lines.expect(r" demo ACQUIRED acquired by \w+")
        os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C: the whole foreground group
        assert demo.wait(DEADLINE) == 0
        lines.expect(r"^Stopped: the workers released the lock\.$")
    with ConfigMapLocker(lockheed_namespace, config=lockheed_kubeconfig) as locker:
        [info] = list_locks(locker)
    assert info.name == "demo"
    assert info.holders == ()  # released, not left to expire


@pytest.mark.skipif(bool(os.environ.get("LOCKHEED_TEST_KUBECONFIG")), reason="local only")
def test_demo_ctrl_c_stops_the_control_plane_it_started(lockheed_cluster: object) -> None:
    with _running_demo() as (demo, lines):
        lines.expect(r"^\[lockheed\] control plane ready in ")
        lines.expect(r" demo ACQUIRED acquired by \w+")
        temp = Path(tempfile.gettempdir())
        owned = [p for p in temp.glob("lockheed-kube-*") if _owner(p) == demo.pid]
        assert len(owned) == 1
        os.killpg(demo.pid, signal.SIGINT)
        assert demo.wait(DEADLINE) == 0
        lines.expect(r"^\[lockheed\] stopping the control plane$")
        assert not owned[0].exists()


def _owner(workdir: Path) -> int | None:
    try:
        return int((workdir / "owner").read_text().rpartition(" ")[2])
    except (OSError, ValueError):
        return None


# -- the view's decisions, without a cluster ----------------------------------

UTC = timezone.utc
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _row(holder: str | None, *, left: float = 10, waiters: tuple[str, ...] = ()) -> Row:
    expires = T0 + timedelta(seconds=left) if holder else None
    return Row("ns", "job", holder=holder, token=7, expires=expires, waiters=waiters)


def _kinds(board: Board, row: Row | None, at: datetime = T0) -> list[str]:
    return [c.kind for c in board.apply(("ns", "job"), row, at, 0.0)]


def test_the_board_tells_a_hand_off_from_a_takeover_and_an_expiry() -> None:
    board = Board()
    assert _kinds(board, _row(None)) == ["CREATED"]
    assert _kinds(board, _row("alice")) == ["ACQUIRED"]
    assert _kinds(board, _row("alice", waiters=("bob",))) == ["LINE"]
    assert _kinds(board, _row("bob")) == ["HANDED-OFF"]  # bob was first in line
    assert _kinds(board, _row("bob", left=20)) == []  # a renewal changes nothing shown
    assert _kinds(board, _row("mallory")) == ["TAKEN-OVER"]  # not in line, lease live
    late = T0 + timedelta(seconds=9.5)  # within a second of the end: the taker may be right
    assert _kinds(board, _row("mallory", waiters=("alice",))) == ["LINE"]
    # alice took the lock from the line when mallory's lease ran out: no LINE news
    assert _kinds(board, _row("alice"), late) == ["EXPIRED", "ACQUIRED"]
    [expired] = board.expire(T0 + timedelta(seconds=11), 0.0)
    assert expired.kind == "EXPIRED" and expired.alarm
    assert board.expire(T0 + timedelta(seconds=12), 0.0) == []  # said once
    assert _kinds(board, None) == ["DELETED"]


def test_the_table_marks_changes_for_a_while_and_honours_no_color() -> None:
    board = Board()
    board.apply(("ns", "job"), _row("alice", waiters=("bob",)), T0, 0.0)
    board.apply(("ns", "job"), _row("bob"), T0, 100.0)
    plain = render_table(board, T0, 101.0, style=Style(color=False))
    assert plain[0].split() == ["NAME", "HOLDER", "TOKEN", "EXPIRES", "IN", "WAITERS", "CHANGE"]
    assert plain[1].split()[:6] == [">", "job", "bob", "7", "10s", "-"]
    assert plain[1].endswith("handed off alice -> bob, 1s ago")
    assert "\x1b" not in "".join(plain)
    colored = render_table(board, T0, 101.0, style=Style(color=True))
    assert colored[1].startswith("\x1b[1;32m> job")
    later = render_table(board, T0, 200.0, style=Style(color=True))
    assert later[1].startswith("  job")  # the mark is gone, the note stays

    late = T0 + timedelta(seconds=9.5)  # bob's lease ran out and carol took the lock
    board.apply(("ns", "job"), _row("carol"), late, 300.0)
    [row] = render_table(board, late, 300.0, style=Style(color=False))[1:]
    assert row.split()[:3] == ["!", "job", "carol"]  # the loss is what the mark shows
    assert row.endswith("bob's lease ran out unrenewed; acquired by carol, just now")
