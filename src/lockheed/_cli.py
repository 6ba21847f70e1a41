"""The ``lockheed`` command line.

``lockheed run NAME -- COMMAND...``
    Hold lock NAME while COMMAND runs (renewed in the background), then release
    it, on every way out (see :mod:`lockheed._runcmd` for signals and loss).
    Exit status:

    * COMMAND's own status; 128+N when it was killed by signal N;
    * 2: bad usage (options, lock name);
    * 73: the lock was not had within ``--timeout``;
    * 75: the lock was lost while COMMAND ran (COMMAND got SIGTERM);
    * 126: COMMAND cannot be run (not executable); 127: not found;
    * 128+N: lockheed got signal N (SIGTERM, SIGINT, SIGHUP) while waiting
      for the lock; COMMAND never started;
    * 1: any other error (the Kubernetes configuration, the API server, a
      failed release), reported on one line.

    ``--shared`` / ``--exclusive`` hold a shared (readers-writer) lock as one
    of its shared holders or as its exclusive holder; ``--limit N`` holds one
    of at most N places of a semaphore. A lock of another kind, or a semaphore
    of another limit, is an error (exit 1), and nothing is changed.
``lockheed list``
    Print the locks of a namespace, filtered by tags and whether they are held;
    shared locks and semaphores show their type and holders (``semaphore 2/3``).
    Malformed lock objects are always printed (as ``MALFORMED``, with the
    error): no filter can tell what they hold.

``run`` and ``list`` take ``--backend configmap|lease``: locks kept in
ConfigMaps (Go lockheed's format, the default) or in Leases (client-go's).
``lockheed demo``
    Start a local control plane (unless ``--kubeconfig`` is given) and let two
    processes take turns on one lock, printing each hand-off and fencing token.

Every error is one ``lockheed: ...`` line on standard error, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._conditions import Condition, LockView, acquired, all_of, tags_contain
from ._elect_cmd import add_elect_parser
from ._errors import LockError
from ._listing import LockInfo
from ._runcmd import EXIT_ERROR, CommandRun, say
from ._shared_core import check_limit
from ._sync.configmap import ConfigMapLocker
from ._sync.lease import LeaseLocker
from ._sync.listing import list_locks
from ._sync.lock import Lock
from ._sync.semaphore import Semaphore

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


BACKENDS: dict[str, type[ConfigMapLocker | LeaseLocker]] = {
    "configmap": ConfigMapLocker,
    "lease": LeaseLocker,
}


def _locker(args: argparse.Namespace) -> ConfigMapLocker | LeaseLocker:
    kind = BACKENDS[getattr(args, "backend", "configmap")]
    return kind(args.namespace, prefix=args.prefix, config=args.kubeconfig)


def _backend(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        choices=sorted(BACKENDS),
        default="configmap",
        help="keep locks in ConfigMaps (Go lockheed's format) or Leases (client-go's); "
        "default: configmap",
    )


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kubeconfig", type=Path, help="default: in-cluster, $KUBECONFIG, ~/.kube/config"
    )
    parser.add_argument("-n", "--namespace", help="default: the context's or the pod's namespace")
    parser.add_argument(
        "--prefix", default="lockheed", help="object name prefix (default: lockheed)"
    )


def _run(args: argparse.Namespace) -> int:
    command: list[str] = args.command
    if not command:
        print("lockheed run: give a command after '--'", file=sys.stderr)
        return EXIT_USAGE
    with _locker(args) as locker:
        lock = (
            Lock(args.name, locker)
            if args.limit is None
            else Semaphore(args.name, locker, args.limit)
        )
        if args.mode is not None:
            lock.with_mode(args.mode)
        lock.with_duration(args.duration).with_tags(args.tag)
        lock.with_renew_interval(args.renew if args.renew is not None else args.duration / 3)
        return CommandRun(lock, command, args.timeout).run()


def _condition(args: argparse.Namespace) -> Condition | None:
    parts = [tags_contain(t) for t in args.tag]
    if args.held is not None:
        parts.append(acquired(args.held))
    return all_of(*parts) if parts else None


def _shown(info: LockInfo, where: Condition | None) -> bool:
    """Whether ``lockheed list`` prints a lock: a malformed one always, since no
    filter can tell what it holds."""
    if where is None or info.error is not None:
        return True
    return where.matches(LockView(frozenset(info.tags), info.acquired))


def _list(args: argparse.Namespace) -> int:
    where = _condition(args)
    with _locker(args) as locker:
        infos = [i for i in list_locks(locker) if _shown(i, where)]
    if args.json:
        out = [
            {
                "name": i.name,
                "type": i.lock_type,
                "holders": [
                    {
                        "instanceID": h.instance_id,
                        "expires": h.expires.isoformat() if h.expires else None,
                        **({"token": h.token} if h.token is not None else {}),
                        **({"exclusive": True} if h.exclusive else {}),
                    }
                    for h in i.holders
                ],
                "tags": list(i.tags),
                "fencingToken": i.fencing_token,
                "error": i.error,
                **({"limit": i.limit} if i.limit is not None else {}),
            }
            for i in infos
        ]
        print(json.dumps(out, indent=2))
        return 0
    for i in infos:
        if i.error:
            print(f"{i.name}\tMALFORMED\t{i.error}")
            continue
        who = ", ".join(
            f"{h.instance_id} until {h.expires.isoformat() if h.expires else 'forever'}"
            for h in i.holders
        )
        kind = ""
        if i.lock_type != "mutex":  # shared locks and semaphores: type and holders/limit
            count = f"{len(i.holders)}/{i.limit}" if i.limit is not None else f"{len(i.holders)}"
            ex = " exclusive" if any(h.exclusive for h in i.holders) else ""
            kind = f"{i.lock_type} {count}{ex}\t"
        print(f"{i.name}\t{kind}{'held by ' + who if who else 'free'}\ttags={','.join(i.tags)}")
    return 0


def _demo_worker(args: argparse.Namespace) -> int:
    with _locker(args) as locker:
        lock = Lock("demo", locker).with_duration(6).with_renew_interval(2).with_tags([args.worker])
        for _ in range(args.rounds):
            asked = time.monotonic()
            token = lock.acquire(timeout=60)
            waited = (time.monotonic() - asked) * 1000
            print(
                f"[{args.worker}] holds 'demo', fencing token {token} (waited {waited:.0f} ms)",
                flush=True,
            )
            time.sleep(args.hold)  # the protected work
            lock.release()
            print(f"[{args.worker}] released", flush=True)
            time.sleep(args.hold)  # work outside the lock, so the other worker gets a turn
    return 0


def _demo(args: argparse.Namespace) -> int:
    plane: Any = None
    kubeconfig = args.kubeconfig
    namespace = args.namespace
    try:
        if kubeconfig is None:
            from .testing import ControlPlane

            print("Starting a local control plane (etcd + kube-apiserver)...", flush=True)
            plane = ControlPlane().start()
            kubeconfig = plane.kubeconfig
            namespace = plane.create_namespace("lockheed-demo")
            print(f"API server {plane.server}; namespace {namespace}", flush=True)
        base = [sys.executable, "-m", "lockheed", "_demo-worker", "--kubeconfig", str(kubeconfig)]
        base += ["--prefix", args.prefix, "--rounds", str(args.rounds), "--hold", str(args.hold)]
        if namespace:
            base += ["--namespace", namespace]
        workers = [subprocess.Popen([*base, "--worker", w]) for w in ("alice", "bob")]
        codes = [w.wait() for w in workers]
        print("Demo finished: fencing tokens increased at every hand-off.", flush=True)
        return max(codes)
    finally:
        if plane is not None:
            plane.stop()


def _seconds(text: str) -> float:
    """An argparse type: a finite, non-negative number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, not {text!r}")
    return value


def _limit(text: str) -> int:
    try:
        return check_limit(int(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"invalid limit {text!r}: {exc}") from None


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="lockheed", description="Distributed locks kept in Kubernetes."
    )
    sub = top.add_subparsers(dest="cmd", required=True)

    run = sub.add_parser("run", help="hold a lock while a command runs")
    _common(run)
    _backend(run)
    run.add_argument("name", help="lock name")
    run.add_argument("--duration", type=_seconds, default=30.0, help="lease seconds (default 30)")
    run.add_argument("--renew", type=_seconds, help="renew interval (default duration/3)")
    run.add_argument("--timeout", type=_seconds, help="give up after this many seconds")
    run.add_argument("--tag", action="append", default=[], help="tag the lock (repeatable)")
    kind = run.add_mutually_exclusive_group()
    kind.add_argument(
        "--shared", dest="mode", action="store_const", const="shared", help="a shared holder"
    )
    kind.add_argument(
        "--exclusive",
        dest="mode",
        action="store_const",
        const="exclusive",
        help="the exclusive holder of a shared lock",
    )
    kind.add_argument(
        "--limit", type=_limit, help="a semaphore of at most LIMIT holders (an integer from 1)"
    )
    run.epilog = "The command and its arguments follow '--'."
    run.set_defaults(func=_run)

    add_elect_parser(sub, _locker, _common, _backend)

    ls = sub.add_parser("list", help="list locks")
    _common(ls)
    _backend(ls)
    ls.add_argument("--tag", action="append", default=[], help="only locks with this tag")
    group = ls.add_mutually_exclusive_group()
    group.add_argument("--held", dest="held", action="store_const", const=True, default=None)
    group.add_argument("--free", dest="held", action="store_const", const=False)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_list)

    demo = sub.add_parser("demo", help="two processes take turns on a lock")
    _common(demo)
    demo.add_argument("--rounds", type=int, default=5)
    demo.add_argument("--hold", type=float, default=0.3, help="seconds each turn lasts")
    demo.set_defaults(func=_demo)

    worker = sub.add_parser("_demo-worker")
    _common(worker)
    worker.add_argument("--worker", required=True)
    worker.add_argument("--rounds", type=int, default=5)
    worker.add_argument("--hold", type=float, default=0.3)
    worker.set_defaults(func=_demo_worker)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    command: list[str] = []
    if "--" in words:  # everything after '--' is the command, never lockheed's options
        cut = words.index("--")
        words, command = words[:cut], words[cut + 1 :]
    args = parser().parse_args(words)
    args.command = command
    try:
        code: int = args.func(args)
    except LockError as exc:
        say(exc)
        return EXIT_ERROR
    except (ValueError, TypeError) as exc:  # bad input found past argparse, e.g. a lock name
        say(exc)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        say(f"unexpected error: {type(exc).__name__}: {exc}")
        return EXIT_ERROR
    return code
