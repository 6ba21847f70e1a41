"""Figure: leader election, lockheed's ``LeaderElector`` beside the kubernetes
client's ``LeaderElection``, both over a ConfigMap, and client-go's
``tools/leaderelection`` (v0.35.4, ``ReleaseOnCancel``) over a Lease (client-go
has no ConfigMap lock any more), all with the same timing (``sizes.election``:
the kubernetes client example's 17/15/5 s by default). client-go is the
program ``tests/clientgo`` (built and cached by ``tests/clientgo.py``; not
measured when it cannot be built): its leader and its candidate are both
processes, its stamps CLOCK_MONOTONIC, which is ``time.monotonic()``.

* Time to a new leader: a leader process (``bench._worker elect``) leads; a
  candidate in this process campaigns (lockheed: until it has seen the leader,
  from its watch; kubernetes: after its first try, which starts its lease
  clock); after a random pause of up to one retry period the leader gets
  SIGTERM (a clean exit: lockheed's elector releases, the kubernetes client
  has no release) or SIGKILL. The sample is the candidate's
  ``time.monotonic()`` when it starts leading minus the one just before the
  signal was sent. ``election_pairs`` pairs run at once, on locks of their own.
* Requests of a steady leader: one leader process, alone and then beside one
  campaigning candidate process, for ``election_window`` seconds, counted by
  the API server; shown per second.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from ._metrics import Meter
from ._procs import ROOT, Workers, worker_command
from ._results import ElectionRun, Latency, Renewal
from ._sizes import Election, Sizes
from ._systems import Env, Unsupported

__all__ = ["CLIENT_GO_KEY", "ELECTORS", "election"]

CLIENT_GO_KEY = "client-go"
#: bench system key -> the worker's ``--elector`` (client-go: its own program)
ELECTORS = {
    "lockheed-sync": "lockheed",
    "leaderelection": "leaderelection",
    CLIENT_GO_KEY: "client-go",
}
STARTUP = 120.0
CLIENT_GO_LOOKUP = ROOT / "tests" / "clientgo.py"
#: the first line of each step, by elector: (campaigning, leading)
_WORDS = {CLIENT_GO_KEY: ('{"event":"ready"', '{"event":"started"')}
_PYTHON_WORDS = ("READY", "LEADING")


def find_clientgo() -> Path:
    """The client-go program (built once and cached); Unsupported when it cannot be had."""
    tests = str(CLIENT_GO_LOOKUP.parent)
    if tests not in sys.path:
        sys.path.append(tests)  # tests/clientgo.py imports its neighbour golockheed
    spec = importlib.util.spec_from_file_location("bench_clientgo_lookup", CLIENT_GO_LOOKUP)
    if spec is None or spec.loader is None:
        raise Unsupported(f"not measured: cannot load {CLIENT_GO_LOOKUP.name}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    found: Path | str = module.find_clientgo()
    if isinstance(found, str):
        raise Unsupported(f"not measured: {found}")
    return found


def _go_duration(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


def _timing(e: Election) -> dict[str, Any]:
    return {
        "lease_duration": e.lease_duration,
        "renew_deadline": e.renew_deadline,
        "retry_period": e.retry_period,
    }


def _leader_command(env: Env, elector: str, lock: str, identity: str, e: Election) -> list[str]:
    if elector == "client-go":
        return [
            str(find_clientgo()), "elect",
            *("--kubeconfig", str(env.kubeconfig), "--namespace", env.namespace),
            *("--name", lock, "--identity", identity, "--release-on-cancel=true"),
            *("--lease-duration", _go_duration(e.lease_duration)),
            *("--renew-deadline", _go_duration(e.renew_deadline)),
            *("--retry-period", _go_duration(e.retry_period)),
        ]  # fmt: skip
    return worker_command(
        "elect",
        *("--elector", elector, "--kubeconfig", str(env.kubeconfig)),
        *("--namespace", env.namespace, "--lock", lock, "--identity", identity),
        *("--lease-duration", str(e.lease_duration), "--renew-deadline", str(e.renew_deadline)),
        *("--retry-period", str(e.retry_period)),
    )


# ------------------------------------------------------------------ candidates


Candidate = Callable[[threading.Event, "Future[float]"], None]


def _lockheed_candidate(locker: Any, lock: str, e: Election) -> Candidate:
    """Campaign with a LeaderElector; set ``seen`` once the leader is seen, then
    resolve with the time it leads (and resign at once)."""
    from lockheed import LeaderElector, Lock

    def campaign(seen: threading.Event, led: Future[float]) -> None:
        me = f"candidate-{lock}"

        def started() -> None:
            led.set_result(time.monotonic())
            elector.stop()

        def new_leader(who: str) -> None:
            if who != me:
                seen.set()

        elector = LeaderElector(
            Lock(lock, locker, instance_id=me),
            **_timing(e),
            on_new_leader=new_leader,
            on_started_leading=started,
        )
        elector.run()

    return campaign


def _kubernetes_candidate(env: Env, lock: str, e: Election) -> Candidate:
    """The steps of ``LeaderElection.acquire()`` (try, sleep ``retry_period``), bounded."""
    elections: Any = importlib.import_module("kubernetes.leaderelection.leaderelection")
    configs: Any = importlib.import_module("kubernetes.leaderelection.electionconfig")
    locks: Any = importlib.import_module("kubernetes.leaderelection.resourcelock.configmaplock")

    def campaign(seen: threading.Event, led: Future[float]) -> None:
        config = configs.Config(
            locks.ConfigMapLock(lock, env.namespace, f"candidate-{lock}"),
            lease_duration=e.lease_duration,
            renew_deadline=e.renew_deadline,
            retry_period=e.retry_period,
            onstarted_leading=lambda: None,
            onstopped_leading=lambda: None,
        )
        elector = elections.LeaderElection(config)
        deadline = time.monotonic() + 5 * e.lease_duration + STARTUP
        while not elector.try_acquire_or_renew():
            seen.set()  # its first try has seen the leader's record
            if time.monotonic() > deadline:
                raise TimeoutError("the kubernetes candidate never led")
            time.sleep(e.retry_period)
        led.set_result(time.monotonic())

    return campaign


def _clientgo_candidate(env: Env, lock: str, e: Election) -> Candidate:
    """A client-go process campaigning: ``seen`` at its first OnNewLeader (the
    leader), resolved with the CLOCK_MONOTONIC time of its OnStartedLeading."""

    def campaign(seen: threading.Event, led: Future[float]) -> None:
        command = _leader_command(env, "client-go", lock, f"candidate-{lock}", e)
        with Workers([command]) as candidate:
            candidate.wait('{"event":"new_leader"', STARTUP)
            seen.set()
            started = candidate.wait('{"event":"started"', 5 * e.lease_duration + STARTUP)[0]
            led.set_result(json.loads(started)["mono"] / 1e9)
            stdin = candidate.procs[0].stdin
            assert stdin is not None
            stdin.write("stop\n")  # release, as the other candidates resign
            stdin.flush()
            candidate.join(STARTUP)

    return campaign


def _takeovers(
    env: Env,
    key: str,
    e: Election,
    pairs: int,
    signum: int,
    candidate: Callable[[str], Candidate],
    rng: random.Random,
) -> Latency:
    tag = "exit" if signum == signal.SIGTERM else "kill"
    names = [f"{tag}-{i}" for i in range(pairs)]
    commands = [_leader_command(env, ELECTORS[key], n, f"leader-{n}", e) for n in names]
    with Workers(commands) as workers:
        workers.wait(_WORDS.get(key, _PYTHON_WORDS)[1], STARTUP)
        pauses = [rng.uniform(0.0, e.retry_period) for _ in names]
        samples: list[Future[float]] = [Future() for _ in names]

        def pair(i: int) -> None:
            seen = threading.Event()
            led: Future[float] = Future()

            def run() -> None:
                try:
                    candidate(names[i])(seen, led)
                except BaseException as exc:
                    if not led.done():
                        led.set_exception(exc)
                    seen.set()

            campaign = threading.Thread(target=run, name=f"bench-candidate-{i}", daemon=True)
            campaign.start()
            try:
                if not seen.wait(STARTUP):
                    raise TimeoutError("the candidate did not see the leader")
                time.sleep(pauses[i])
                sent = time.monotonic()
                os.kill(workers.procs[i].pid, signum)
                taken = led.result(5 * e.lease_duration + STARTUP) - sent
                campaign.join(STARTUP)  # lockheed's candidate resigns before it returns
                samples[i].set_result(taken)
            except BaseException as exc:
                samples[i].set_exception(exc)

        threads = [threading.Thread(target=pair, args=(i,), daemon=True) for i in range(pairs)]
        for thread in threads:
            thread.start()
        return Latency(tuple(s.result(10 * e.lease_duration + 2 * STARTUP) for s in samples))


def _steady(
    env: Env, key: str, e: Election, meter: Meter, window: float, candidates: int
) -> Renewal:
    leader = [_leader_command(env, ELECTORS[key], f"steady-{candidates}", "leader", e)]
    others = [
        _leader_command(env, ELECTORS[key], f"steady-{candidates}", f"candidate-{i}", e)
        for i in range(candidates)
    ]
    ready, leading = _WORDS.get(key, _PYTHON_WORDS)
    with Workers(leader) as lead:
        lead.wait(leading, STARTUP)
        with Workers(others) as follow:  # started once the leader leads
            follow.wait(ready, STARTUP)
            time.sleep(e.retry_period + 0.5)  # every candidate has tried (or watches) by now
            with meter.batch() as batch:
                time.sleep(window)
    assert batch.after is not None
    who = "the leader alone" if not candidates else f"the leader and {candidates} candidate"
    return Renewal(1, e.retry_period, batch.after.at - batch.before.at, batch.requests, who)


def election(
    key: str,
    env: Env,
    meter: Meter,
    sizes: Sizes,
    attempt: Callable[[str, Callable[[], Any]], Any],
    log: Callable[[str], None],
) -> ElectionRun:
    """Every election figure of one system (a key of :data:`ELECTORS`)."""
    e = sizes.election
    rng = random.Random(11)
    locker: Any = None
    if key == CLIENT_GO_KEY:
        find_clientgo()  # or Unsupported: not measured

        def candidate(lock: str) -> Candidate:
            return _clientgo_candidate(env, lock, e)

    elif key == "lockheed-sync":
        from lockheed import ConfigMapLocker

        locker = ConfigMapLocker(env.namespace, config=str(env.kubeconfig))

        def candidate(lock: str) -> Candidate:
            return _lockheed_candidate(locker, lock, e)

    else:
        kubernetes: Any = importlib.import_module("kubernetes")
        kubernetes.config.load_kube_config(config_file=str(env.kubeconfig))

        def candidate(lock: str) -> Candidate:
            return _kubernetes_candidate(env, lock, e)

    try:
        n = sizes.election_pairs
        log(f"leader election, {key}: {n} new leaders after a clean exit, in parallel")
        exits = attempt(
            f"election exit {key}",
            lambda: _takeovers(env, key, e, n, signal.SIGTERM, candidate, rng),
        )
        log(f"leader election, {key}: {n} new leaders after kill -9, in parallel")
        kills = attempt(
            f"election kill {key}",
            lambda: _takeovers(env, key, e, n, signal.SIGKILL, candidate, rng),
        )
    finally:
        if locker is not None:
            locker.close()
    w = sizes.election_window
    log(f"leader election, {key}: requests of a steady leader, {w:g}s alone and with a candidate")
    alone = attempt(f"election leader {key}", lambda: _steady(env, key, e, meter, w, 0))
    paired = attempt(f"election candidate {key}", lambda: _steady(env, key, e, meter, w, 1))
    return ElectionRun(e.describe(), exits, kills, alone, paired)
