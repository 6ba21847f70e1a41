"""What installing and importing lockheed gives: the opt-in pytest plugin and
its names, ``__version__``, and public names that belong to ``lockheed`` in
reprs, tracebacks and pickles. None of these tests needs an API server.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import pickle
import pickletools
import subprocess
import sys
import traceback
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
import yaml

import lockheed
from lockheed import (
    AsyncConfigMapLocker,
    AsyncLeaseLocker,
    AsyncLock,
    AsyncMemoryLocker,
    Condition,
    ConfigMapLocker,
    Event,
    EventCode,
    Holder,
    LeaderElector,
    LeaseLocker,
    Lock,
    LockBackendError,
    LockConfigError,
    LockConflict,
    LockError,
    LockForbidden,
    LockInfo,
    LockLost,
    LockNotHeld,
    LockStateError,
    LockTimeout,
    LockUnauthorized,
    MemoryLocker,
    Operation,
    acquired,
    tags_contain,
)

PLUGIN = "lockheed.testing.plugin"
INNER = """\
import pytest

def test_uses_the_cluster(lockheed_namespace):
    pass

@pytest.mark.lockheed_kube
def test_marked():
    pass

def test_plain():
    pass
"""

# ------------------------------------------------------------- pytest plugin


def _pytest(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """pytest in ``directory`` (its own rootdir and ini file), as a user runs it:
    entry-point plugins load as usual, and nothing of this run's options leaks in."""
    (directory / "pytest.ini").write_text("[pytest]\n")
    (directory / "test_inner.py").write_text(INNER)
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD"}
    }
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_installing_lockheed_loads_no_pytest_plugin(tmp_path: Path) -> None:
    entry_points = importlib.metadata.entry_points(group="pytest11")
    assert [ep.value for ep in entry_points if ep.value.startswith("lockheed")] == []

    done = _pytest(tmp_path, "test_inner.py")
    strict = _pytest(tmp_path, "--strict-markers", "test_inner.py")

    assert done.returncode == 1, done.stdout + done.stderr
    assert "fixture 'lockheed_namespace' not found" in done.stdout, done.stdout
    assert "2 passed, 1 warning, 1 error" in done.stdout, done.stdout
    assert strict.returncode != 0
    assert "'lockheed_kube' not found in `markers` configuration option" in strict.stdout


@pytest.mark.parametrize("how", ["-p", "pytest_plugins"])
def test_the_plugin_is_enabled_on_request(tmp_path: Path, how: str) -> None:
    """Enabled, the plugin gives the fixture and registers the marker, and marks
    the test that uses the fixture; deselecting those starts no cluster."""
    args = ["--strict-markers", "-m", "not lockheed_kube", "test_inner.py"]
    if how == "-p":
        args = ["-p", PLUGIN, *args]
    else:
        (tmp_path / "conftest.py").write_text(f"pytest_plugins = [{PLUGIN!r}]\n")

    done = _pytest(tmp_path, *args)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed, 2 deselected" in done.stdout, done.stdout


def test_the_plugin_names_cannot_clash(tmp_path: Path) -> None:
    fixtures = _pytest(tmp_path, "-p", PLUGIN, "--fixtures")
    markers = _pytest(tmp_path, "-p", PLUGIN, "--markers")

    assert fixtures.returncode == 0, fixtures.stdout + fixtures.stderr
    section = fixtures.stdout.split(f"fixtures defined from {PLUGIN} ")[1].split("\n-")[0]
    names = {line.split()[0] for line in section.splitlines()[1:] if line[:1].isalpha()}
    assert names == {
        "lockheed_cluster",
        "lockheed_namespace",
        "lockheed_kubeconfig",
        "lockheed_restricted_user",
        "lockheed_fault_proxy",
        "lockheed_control_plane",
    }
    assert markers.returncode == 0, markers.stdout + markers.stderr
    ours = [line for line in markers.stdout.splitlines() if "Kubernetes" in line]
    assert [line.split(":")[0] for line in ours] == ["@pytest.mark.lockheed_kube"]


# ------------------------------------------------------------------- version


def test_version_is_the_installed_distributions() -> None:
    assert lockheed.__version__ == importlib.metadata.version("lockheed")
    assert lockheed.__version__[0].isdigit()


def test_version_falls_back_when_lockheed_is_not_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def missing(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    monkeypatch.delitem(vars(lockheed), "__version__", raising=False)

    assert lockheed.__version__ == "0+unknown"
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        lockheed.no_such_name  # type: ignore[attr-defined]  # noqa: B018


# ------------------------------------------------- public names are lockheed's


def _pickled_globals(obj: Any) -> list[str]:
    """The ``module name`` pairs a pickle refers to (protocol 2 names them inline)."""
    data = pickle.dumps(obj, protocol=2)
    return [str(arg) for op, arg, _ in pickletools.genops(data) if op.name == "GLOBAL"]


@pytest.mark.parametrize("name", lockheed.__all__)
def test_every_public_name_belongs_to_lockheed(name: str) -> None:
    obj = getattr(lockheed, name)

    assert obj.__module__ == "lockheed"
    assert _pickled_globals(obj) == [f"lockheed {name}"]
    assert pickle.loads(pickle.dumps(obj)) is obj
    if isinstance(obj, type) and not issubclass(obj, Enum):  # an enum's is <enum 'Name'>
        assert repr(obj) == f"<class 'lockheed.{name}'>"


# ------------------------------------------------------- what import loads

# What ``import lockheed`` must leave unloaded: a thread that only takes a lock
# needs none of it (the HTTP client until a locker connects, asyncio and the
# asyncio API, the leader electors, urllib.request for proxy settings).
DEFERRED = (
    "httpx2",
    "lightkube",
    "asyncio",
    "urllib.request",
    "lockheed._election",
    "lockheed._async",
    "lockheed._sync.election",
    "importlib.metadata",
)
_LOADED = """
import sys, lockheed
print(sorted(m for m in sys.modules if m in {deferred!r} or m.startswith("lockheed._async.")))
"""


def test_import_leaves_the_heavy_modules_unloaded() -> None:
    code = _LOADED.format(deferred=set(DEFERRED))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert done.stdout.strip() == "[]"


def test_lazy_names_are_the_private_ones_and_listed() -> None:
    code = (
        "import sys, lockheed\n"
        "from lockheed._async.lock import AsyncLock\n"
        "from lockheed._sync.election import LeaderElector\n"
        "assert set(lockheed.__all__) <= set(dir(lockheed)), 'dir() misses public names'\n"
        "assert lockheed.AsyncLock is AsyncLock and lockheed.LeaderElector is LeaderElector\n"
        "assert 'AsyncLock' in vars(lockheed)\n"
        "assert AsyncLock.__module__ == LeaderElector.__module__ == 'lockheed'\n"
        "ns = {}\n"
        "exec('from lockheed import *', ns)\n"
        "assert sorted(k for k in ns if k != '__builtins__') == sorted(lockheed.__all__)\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)

    assert (done.returncode, done.stdout.strip()) == (0, "ok"), done.stderr


WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
ERRORS = [
    LockError("m", lock="a", holder="h"),
    LockTimeout("m", lock="a", holder="h", expires=WHEN),
    LockLost("m", lock="a"),
    LockNotHeld("m", lock="a"),
    LockBackendError("m", lock="a", holder="h", transient=True, retry_after=1.5),
    LockConfigError("m", lock="a", transient=False),
    LockConflict("m", lock="a"),
    LockStateError("m", lock="a", holder="h"),
    LockForbidden("m", lock="a", verb="update", resource="configmaps", namespace="ns"),
    LockUnauthorized("m", lock="a"),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_errors_pickle_with_their_fields_as_lockheed_names(error: LockError) -> None:
    name = type(error).__name__

    copy = pickle.loads(pickle.dumps(error))

    assert type(copy) is type(error)
    assert vars(copy) == vars(error) and str(copy) == str(error)
    assert f"lockheed {name}" in _pickled_globals(error)
    assert not [g for g in _pickled_globals(error) if g.endswith(f" {name}") and "._" in g]
    shown = traceback.format_exception_only(type(error), error)
    assert shown == [f"lockheed.{name}: m\n"]


def _kubeconfig(path: Path) -> Path:
    """A kubeconfig for a server that is never contacted."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
        "users": [{"name": "u", "user": {"token": "never-sent"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def test_reprs_name_public_classes_only(tmp_path: Path) -> None:
    config = _kubeconfig(tmp_path / "config")
    memory = MemoryLocker()
    lock = Lock("reprs", memory)
    lockers: list[Any] = [
        memory,
        ConfigMapLocker("ns", config=config),
        LeaseLocker("ns", config=config),
    ]
    alockers: list[Any] = [
        AsyncMemoryLocker(),
        AsyncConfigMapLocker("ns", config=config),
        AsyncLeaseLocker("ns", config=config),
    ]
    condition = tags_contain("a") & acquired(True)
    values: list[Any] = [
        *lockers,
        *alockers,
        lock,
        AsyncLock("reprs", alockers[0]),
        LeaderElector(Lock("elected", memory)),
        condition,
        Condition(operation="contains", field="tags", value="x"),  # type: ignore[arg-type]
        Event(EventCode.LOST, "reprs", "me", "lost"),
        LockInfo("reprs", "mutex", (Holder("me", WHEN),), ("a",), 7, "12"),
    ]
    try:
        for value in values:
            shown = repr(value)
            assert shown.startswith(f"{type(value).__name__}("), shown
            assert "lockheed._" not in shown and " object at 0x" not in shown, shown
        assert repr(lock).startswith("Lock('reprs', MemoryLocker(")
        assert repr(condition).startswith("Condition(operation=<Operation.AND: 'and'>")
        assert pickle.loads(pickle.dumps(condition)) == condition
        assert pickle.loads(pickle.dumps(Operation.OR)) is Operation.OR
    finally:
        for locker in lockers[1:]:
            locker.close()
        asyncio.run(_aclose(alockers[1:]))


async def _aclose(lockers: list[Any]) -> None:
    for locker in lockers:
        await locker.aclose()
