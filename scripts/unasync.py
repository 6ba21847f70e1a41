"""Generate lockheed's sync shells from the asyncio sources.

``src/lockheed/_async/{lock,kube,kubelocker,configmap,lease,listing,sessions,semaphore}.py``
are the sources; this writes their sync twins into ``src/lockheed/_sync/``. With ``--check`` it
writes nothing and fails if a twin differs from what it would generate, so
the two can never drift.

Besides token replacements, the sources may mark async-only code:
a block between ``# unasync: begin async-only`` and ``# unasync: end``, or a
single line ending in ``# unasync: async-only``, is left out of the sync twin.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "src" / "lockheed"
SOURCES = [
    "lock.py",
    "kube.py",
    "kubelocker.py",
    "configmap.py",
    "lease.py",
    "listing.py",
    "sessions.py",
    "semaphore.py",
]

REPLACEMENTS = [
    (r"\basync def\b", "def"),
    (r"\basync with\b", "with"),
    (r"\basync for\b", "for"),
    (r"\bawait ", ""),
    (r"__aenter__", "__enter__"),
    (r"__aexit__", "__exit__"),
    (r"\bAsyncConfigMapLocker\b", "ConfigMapLocker"),
    (r"\bAsyncLeaseLocker\b", "LeaseLocker"),
    (r"\bAsyncKubeAPI\b", "KubeAPI"),
    (r"\bAsyncKubeLocker\b", "KubeLocker"),
    (r"\bAsyncWatches\b", "Watches"),
    (r"\bAsyncLocker\b", "Locker"),
    (r"\bAsyncLock\b", "Lock"),
    (r"\bAsyncSemaphore\b", "Semaphore"),
    (r"\bAsyncIterator\b", "Iterator"),
    (r"\bAsyncGenerator\b", "Generator"),
    (r"\bAsyncClient\b", "Client"),
    (r"\baiter_lines\b", "iter_lines"),
    (r"\baread\b", "read"),
    (r"\baclose\b", "close"),
    (r"\baclosing\b", "closing"),
    (r"\balist_locks\b", "list_locks"),
    (r"\basync_http_client\b", "http_client"),
    (r"\bimport asyncio\b", "import threading"),
    (r"\basyncio\.Lock\b", "threading.RLock"),
    (r"\basyncio\.Event\b", "threading.Event"),
]
HEADER = "# Generated from lockheed/_async/{name} by scripts/unasync.py: do not edit.\n"


def unasync(text: str) -> str:
    out: list[str] = []
    skipping = False
    for line in text.splitlines(keepends=True):
        marker = line.strip()
        if marker == "# unasync: begin async-only":
            skipping = True
            continue
        if marker == "# unasync: end":
            skipping = False
            continue
        if skipping or line.rstrip().endswith("# unasync: async-only"):
            continue
        for pattern, repl in REPLACEMENTS:
            line = re.sub(pattern, repl, line)
        out.append(line)
    # Dropping a block may leave three blank lines in a row; keep at most two.
    return re.sub(r"\n{4,}", "\n\n\n", "".join(out))


def _format(text: str, target: Path) -> str:
    """Format as the project's formatter does, so replacements that shorten
    lines do not leave the twin out of style."""
    for command in (["check", "--fix-only", "--select", "I", "--quiet"], ["format"]):
        text = subprocess.run(
            [sys.executable, "-m", "ruff", *command, "--stdin-filename", str(target), "-"],
            input=text,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if a sync twin is stale")
    args = parser.parse_args()
    stale = []
    for name in SOURCES:
        source = (ROOT / "_async" / name).read_text()
        target = ROOT / "_sync" / name
        generated = _format(HEADER.format(name=name) + unasync(source), target)
        if target.exists() and target.read_text() == generated:
            continue
        if args.check:
            stale.append(str(target.relative_to(ROOT.parent.parent)))
        else:
            target.write_text(generated)
            print(f"wrote {target.relative_to(ROOT.parent.parent)}")
    if stale:
        print("stale sync twins (run: python scripts/unasync.py):", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
