"""What the ``lockheed`` commands share: kubectl's connection options, the
locker they make, a lock's row as the commands show it, and output formats.

Failure semantics: a kubeconfig that is missing or malformed, or a
``--context`` it does not define, raises :class:`~lockheed.LockConfigError`
naming the file (never its contents); the command then exits 1 with one line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ._async.configmap import AsyncConfigMapLocker
from ._async.lease import AsyncLeaseLocker
from ._errors import LockConfigError
from ._listing import Holder, _info
from ._queue import Waiter, read_queue
from ._state import Record, encode_state, format_time, parse_time
from ._sync.configmap import ConfigMapLocker
from ._sync.lease import LeaseLocker

__all__ = [
    "BACKENDS",
    "EXIT_USAGE",
    "LockRow",
    "add_backend",
    "add_connection",
    "add_output",
    "human_seconds",
    "make_async_locker",
    "make_locker",
    "print_table",
    "rows_of",
]

EXIT_USAGE = 2

BACKENDS: dict[str, type[ConfigMapLocker | LeaseLocker]] = {
    "configmap": ConfigMapLocker,
    "lease": LeaseLocker,
}


# ------------------------------------------------------------------ options


def add_connection(parser: argparse.ArgumentParser, *, all_namespaces: bool = False) -> None:
    """kubectl's ``--kubeconfig``, ``--context``, ``-n/--namespace`` (and ``-A``),
    and lockheed's ``--prefix``."""
    group = parser.add_argument_group("cluster (as kubectl)")
    group.add_argument(
        "--kubeconfig",
        type=Path,
        metavar="PATH",
        help="kubeconfig file (default: in-cluster, $KUBECONFIG, ~/.kube/config)",
    )
    group.add_argument("--context", metavar="NAME", help="kubeconfig context (default: current)")
    group.add_argument(
        "-n", "--namespace", metavar="NS", help="default: the context's or the pod's namespace"
    )
    if all_namespaces:
        group.add_argument(
            "-A",
            "--all-namespaces",
            action="store_true",
            help="every namespace (needs permission across the cluster)",
        )
    group.add_argument(
        "--prefix",
        default="lockheed",
        metavar="P",
        help="object name prefix (default: lockheed)",
    )


def add_backend(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        choices=sorted(BACKENDS),
        default="configmap",
        help="keep locks in ConfigMaps (Go lockheed's format) or Leases (client-go's); "
        "default: configmap",
    )


def add_output(parser: argparse.ArgumentParser, formats: Sequence[str]) -> None:
    parser.add_argument(
        "-o",
        "--output",
        choices=list(formats),
        default=formats[0],
        metavar="FORMAT",
        help=f"{'|'.join(formats)} (default: {formats[0]})",
    )


def _config(args: argparse.Namespace) -> Any:
    """The kubeconfig source for the locker: a path, None, or the ``--context`` chosen."""
    kubeconfig = getattr(args, "kubeconfig", None)
    context = getattr(args, "context", None)
    if context is None:
        return kubeconfig
    from lightkube.core.exceptions import ConfigError

    from ._kubecfg import _read_kubeconfig

    path = kubeconfig or Path(os.environ.get("KUBECONFIG") or "~/.kube/config").expanduser()
    config = _read_kubeconfig(Path(path))
    try:
        return config.get(context_name=context)
    except (ConfigError, KeyError):
        known = ", ".join(sorted(config.contexts)) or "none"
        raise LockConfigError(
            f"kubeconfig {path} has no usable context {context!r} (contexts: {known})"
        ) from None


def make_locker(args: argparse.Namespace) -> ConfigMapLocker | LeaseLocker:
    kind = BACKENDS[getattr(args, "backend", "configmap")]
    return kind(args.namespace, prefix=args.prefix, config=_config(args))


def make_async_locker(args: argparse.Namespace) -> AsyncConfigMapLocker | AsyncLeaseLocker:
    """:func:`make_locker`'s asyncio twin, for the commands that watch (``watch``, ``demo``)."""
    kind: type[AsyncConfigMapLocker | AsyncLeaseLocker] = AsyncConfigMapLocker
    if getattr(args, "backend", "configmap") == "lease":
        kind = AsyncLeaseLocker
    return kind(args.namespace, prefix=args.prefix, config=_config(args))


# ------------------------------------------------------------------ rows


@dataclass(frozen=True)
class LockRow:
    """One lock as the commands show it, judged at the server's time ``now``."""

    name: str
    namespace: str
    object_name: str
    lock_type: str
    holders: tuple[Holder, ...]
    limit: int | None  # a semaphore's
    fencing_token: int | None
    tags: tuple[str, ...]
    waiters: tuple[Waiter, ...]
    created: datetime | None
    version: str
    error: str | None
    now: datetime
    record: Record

    @property
    def expires_in(self) -> float | None:
        """Seconds left on the soonest live lease; inf if it never expires; None: free."""
        if not self.holders:
            return None
        left = [
            math.inf if h.expires is None else (h.expires - self.now).total_seconds()
            for h in self.holders
        ]
        return max(0.0, min(left))

    @property
    def kind(self) -> str:
        """The TYPE cell: ``mutex``; a shared lock's or a semaphore's type with its
        holders (``shared 2``, ``shared 1 exclusive``, ``semaphore 2/3``)."""
        if self.lock_type == "mutex":
            return "mutex"
        count = f"{len(self.holders)}" + ("" if self.limit is None else f"/{self.limit}")
        exclusive = " exclusive" if any(h.exclusive for h in self.holders) else ""
        return f"{self.lock_type} {count}{exclusive}"

    def to_dict(self, raw: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "namespace": self.namespace,
            "object": self.object_name,
            "type": self.lock_type,
            "holders": [
                {
                    "instanceID": h.instance_id,
                    "expires": format_time(h.expires) if h.expires else None,
                    "expiresIn": _seconds_or_none(h.expires, self.now),
                    **({"token": h.token} if h.token is not None else {}),
                    **({"exclusive": True} if h.exclusive else {}),
                }
                for h in self.holders
            ],
            "tags": list(self.tags),
            "fencingToken": self.fencing_token,
            **({"limit": self.limit} if self.limit is not None else {}),
            "waiters": [
                {
                    "instanceID": w.instance_id,
                    "duration": None if w.duration is None else w.duration.total_seconds(),
                }
                for w in self.waiters
            ],
            "created": format_time(self.created) if self.created else None,
            "resourceVersion": self.version,
            "error": self.error,
        }
        if raw:
            state = self.record.state
            out["state"] = json.loads(encode_state(state)) if state is not None else None
            out["annotations"] = dict(self.record.meta)
            out["raw"] = _without_managed_fields(self.record.raw)
        return out


def _seconds_or_none(expires: datetime | None, now: datetime) -> float | None:
    if expires is None:
        return None
    return round(max(0.0, (expires - now).total_seconds()), 3)


def _without_managed_fields(raw: Any) -> Any:
    if not isinstance(raw, dict):
        return raw
    meta = {k: v for k, v in (raw.get("metadata") or {}).items() if k != "managedFields"}
    return {**raw, "metadata": meta}


def rows_of(records: Sequence[Record], now: datetime, default_namespace: str) -> list[LockRow]:
    """Rows of ``records`` sorted by namespace and name; ``now`` is the server's time."""
    rows = []
    for record in records:
        info = _info(record, now)
        metadata = (record.raw or {}).get("metadata") or {} if isinstance(record.raw, dict) else {}
        created = None
        with contextlib.suppress(ValueError):
            created = parse_time(metadata.get("creationTimestamp", ""))
        rows.append(
            LockRow(
                name=record.name,
                namespace=metadata.get("namespace") or default_namespace,
                object_name=metadata.get("name") or "",
                lock_type=info.lock_type,
                holders=info.holders,
                limit=info.limit,
                fencing_token=info.fencing_token,
                tags=info.tags,
                waiters=read_queue(record.meta),
                created=created,
                version=record.version,
                error=info.error,
                now=now,
                record=record,
            )
        )
    return sorted(rows, key=lambda r: (r.namespace, r.name))


# ------------------------------------------------------------------ output


def human_seconds(seconds: float | None) -> str:
    """kubectl's short durations: 45s, 3m12s, 2h5m, 4d3h; ``never`` for inf."""
    if seconds is None:
        return "-"
    if math.isinf(seconds):
        return "never"
    total = int(seconds)
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs}s" if secs and minutes < 10 else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes}m" if minutes and hours < 10 else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h" if hours and days < 10 else f"{days}d"


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Columns as kubectl prints them: left-aligned, three spaces apart."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    for line in (header, *rows):
        cells = [str(c).ljust(w) for c, w in zip(line, widths, strict=True)]
        print("   ".join(cells).rstrip())


def dump(data: Any, output: str) -> None:
    """``data`` as ``json`` or ``yaml`` on standard output."""
    if output == "json":
        print(json.dumps(data, indent=2))
        return
    import yaml

    sys.stdout.write(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))
