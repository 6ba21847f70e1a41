"""lockheed's pytest plugin: a real Kubernetes API server for your tests.

It is opt-in: installing lockheed loads nothing into pytest. Enable it with
``pytest -p lockheed.testing.plugin``, or in the top-level ``conftest.py``::

    pytest_plugins = ["lockheed.testing.plugin"]

Every name it gives pytest starts with ``lockheed_``, so it cannot clash with
another plugin's. (Earlier versions loaded it for everyone through an entry
point and named the fixtures ``kube_*`` and the marker ``kube``: see the
migration note in the CHANGELOG.)

Fixtures:

``lockheed_cluster`` (session)
    The running cluster: a local :class:`~lockheed.testing.ControlPlane`
    started on first use and stopped at the end of the session, or, when
    ``$LOCKHEED_TEST_KUBECONFIG`` names a kubeconfig, an
    :class:`~lockheed.testing.ExistingCluster` using it.
``lockheed_namespace``
    A fresh namespace name for the test (deleted afterwards).
``lockheed_kubeconfig``
    Path of the admin kubeconfig: ``KubeConfig.from_file(lockheed_kubeconfig)``.
``lockheed_restricted_user``
    A factory ``make(rules, name=None) -> Path`` returning the kubeconfig of a
    user allowed only ``rules`` (PolicyRule dicts) in ``lockheed_namespace``.
``lockheed_fault_proxy``
    A started :class:`~lockheed.testing.FaultProxy` in front of the API server,
    for this test: ``lockheed_fault_proxy.kubeconfig()`` is the admin kubeconfig
    through it, ``lockheed_fault_proxy.kubeconfig(other)`` any other one's, and
    ``with lockheed_fault_proxy.fault(Blackhole()):`` injects a fault. (On an
    existing cluster, its serving certificate must be valid for 127.0.0.1.)
``lockheed_control_plane``
    The local :class:`~lockheed.testing.ControlPlane`, for tests that restart
    or stop its API server (``restart_apiserver()``, ``apiserver_down()``,
    ``outage(seconds)``); it is running again after the test. Tests using it
    are skipped, with the reason, on an existing cluster.

Tests that name any of them as arguments (directly or through other
fixtures) are marked ``lockheed_kube`` automatically, so
``pytest -m "not lockheed_kube"`` skips them; a test that reaches them only
through ``request.getfixturevalue`` should be marked ``lockheed_kube``
explicitly (e.g. ``pytest.param("x", marks=pytest.mark.lockheed_kube)``).
When a test that used the cluster fails, the tail of the API server log is
added to its report.

Nothing is built or started unless a selected test uses these fixtures.
Missing binaries are built before the first test runs when a selected test is
marked ``lockheed_kube``, so the build does not count against a per-test timeout
(``python -m lockheed.testing build`` does it ahead of time). Its progress
(cached, or what a first run builds, packages compiled, elapsed time, a rough
estimate) and the control plane's start-up steps are written to the terminal
as ``[lockheed] ...`` lines, past pytest's output capture.

Under pytest-xdist (``pytest -n N``) every worker is a session of its own,
with its own control plane. pytest-xdist does not show the workers' terminal
output, so the start-up lines are not seen, and nor is a build's progress:
when binaries are missing the run says so before the workers start (build
them first with ``python -m lockheed.testing build`` to watch it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

import pytest

if TYPE_CHECKING:
    from ._build import Binaries
    from ._cluster import Cluster
    from ._controlplane import ControlPlane
    from ._faults import FaultProxy

__all__ = [
    "FIXTURES",
    "KUBECONFIG_ENV",
    "MARKER",
    "RestrictedUserFactory",
    "lockheed_cluster",
    "lockheed_control_plane",
    "lockheed_fault_proxy",
    "lockheed_kubeconfig",
    "lockheed_namespace",
    "lockheed_restricted_user",
]

KUBECONFIG_ENV = "LOCKHEED_TEST_KUBECONFIG"
FIXTURES = frozenset(
    {
        "lockheed_cluster",
        "lockheed_namespace",
        "lockheed_kubeconfig",
        "lockheed_restricted_user",
        "lockheed_fault_proxy",
        "lockheed_control_plane",
    }
)
MARKER = "lockheed_kube"
_MARKER_LINE = (
    f"{MARKER}: needs a Kubernetes API server (the local control plane or {KUBECONFIG_ENV})"
)
_LOG_LINES = 50
_PROXY_VARIABLES = (
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
)
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost")
_CLUSTER_KEY = pytest.StashKey["Cluster"]()
_USED_KEY = pytest.StashKey[bool]()
_BINARIES_KEY: pytest.StashKey[Binaries] = pytest.StashKey()


class RestrictedUserFactory(Protocol):
    """The type of the ``lockheed_restricted_user`` fixture."""

    def __call__(self, rules: Sequence[Mapping[str, Any]], name: str | None = None) -> Path: ...


# -- hooks -----------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``lockheed_kube`` marker (for projects that do not declare it)."""
    config.addinivalue_line("markers", _MARKER_LINE)


def _uses_kube(item: pytest.Item) -> bool:
    """Whether the test asks for a kube fixture by name or is marked ``lockheed_kube``."""
    static = not FIXTURES.isdisjoint(getattr(item, "fixturenames", ()))
    return static or item.get_closest_marker(MARKER) is not None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses a lockheed fixture with ``lockheed_kube``."""
    for item in items:
        if not FIXTURES.isdisjoint(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.lockheed_kube)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under pytest-xdist, say before the workers start that they must build first.

    The workers build missing binaries as a single run would (one build, under
    a file lock), but pytest-xdist does not show a worker's terminal output,
    so their progress cannot be seen.
    """
    config = session.config
    if not config.pluginmanager.has_plugin("dsession") or os.environ.get(KUBECONFIG_ENV):
        return
    from ._build import missing_binaries

    missing = missing_binaries()
    if missing:
        _progress(config)(
            f"{' and '.join(missing)}: not built yet; the first pytest-xdist worker that "
            "needs them builds them (minutes, once) and its progress is not shown; "
            "`python -m lockheed.testing build` builds them with progress"
        )


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
    """Build missing binaries before the first test, so the build is not timed out."""
    if session.config.option.collectonly or os.environ.get(KUBECONFIG_ENV):
        return
    if not any(_uses_kube(item) for item in session.items):
        return
    from ._build import BuildError, ensure_binaries

    # A failure is reported by the lockheed_cluster fixture, to the tests that need it.
    with contextlib.suppress(BuildError):
        session.config.stash[_BINARIES_KEY] = ensure_binaries(_progress(session.config))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Append the API server log tail to the report of a failed kube test."""
    report = yield
    if report.failed and (_uses_kube(item) or item.stash.get(_USED_KEY, False)):
        cluster = item.config.stash.get(_CLUSTER_KEY, None)
        tail = cluster.log_tail(_LOG_LINES) if cluster is not None else ""
        if tail:
            report.sections.append((f"kube-apiserver log (last {_LOG_LINES} lines)", tail))
    return report


# -- helpers ---------------------------------------------------------------


def _progress(config: pytest.Config) -> Callable[[str], None]:
    """Write build progress to the terminal, bypassing output capture."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")

    def write(message: str) -> None:
        if reporter is None:
            return
        uncaptured = capture.global_and_fixture_disabled() if capture else contextlib.nullcontext()
        with uncaptured:
            reporter.write_line(f"[lockheed] {message}")

    return write


@contextlib.contextmanager
def _loopback_bypasses_proxy() -> Iterator[None]:
    """Add 127.0.0.1 and localhost to NO_PROXY while a proxy is configured."""
    if not any(os.environ.get(name) for name in _PROXY_VARIABLES):
        yield
        return
    with pytest.MonkeyPatch.context() as patch:
        for variable in ("NO_PROXY", "no_proxy"):
            entries = [e.strip() for e in os.environ.get(variable, "").split(",") if e.strip()]
            missing = [host for host in _LOOPBACK_HOSTS if host not in entries]
            if missing:
                patch.setenv(variable, ",".join([*entries, *missing]))
        yield


@contextlib.contextmanager
def _stop_on_sigterm(cluster: Cluster) -> Iterator[None]:
    """On SIGTERM, stop the cluster first, then let the signal have its usual effect.

    SIGINT needs nothing: it raises KeyboardInterrupt, after which pytest tears
    the session fixtures down (and :mod:`atexit` is a second line of defence).
    """
    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread() or previous == signal.SIG_IGN:
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        cluster.stop()
        signal.signal(signum, previous or signal.SIG_DFL)
        if callable(previous):
            previous(signum, frame)
        else:
            os.kill(os.getpid(), signum)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGTERM) is handler:
            signal.signal(signal.SIGTERM, previous or signal.SIG_DFL)


def _new_cluster(config: pytest.Config) -> Cluster:
    existing = os.environ.get(KUBECONFIG_ENV)
    if existing:
        from ._cluster import ExistingCluster

        return ExistingCluster(existing)
    from ._controlplane import ControlPlane

    binaries = config.stash.get(_BINARIES_KEY, None)  # found already: not reported again
    return ControlPlane(binaries, progress=_progress(config))


# -- fixtures --------------------------------------------------------------


@pytest.fixture(scope="session")
def lockheed_cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """The Kubernetes cluster for this test session (started on first use)."""
    cluster = _new_cluster(request.config)
    stash = request.config.stash
    with contextlib.ExitStack() as stack:
        if not os.environ.get(KUBECONFIG_ENV):
            stack.enter_context(_loopback_bypasses_proxy())
        stack.enter_context(_stop_on_sigterm(cluster))
        stack.enter_context(cluster)
        stash[_CLUSTER_KEY] = cluster
        stack.callback(stash.__delitem__, _CLUSTER_KEY)
        yield cluster


@pytest.fixture
def lockheed_namespace(lockheed_cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace created for this test, named after it."""
    request.node.stash[_USED_KEY] = True
    name = lockheed_cluster.create_namespace(request.node.name)
    yield name
    lockheed_cluster.delete_namespace(name)


@pytest.fixture
def lockheed_kubeconfig(lockheed_cluster: Cluster, request: pytest.FixtureRequest) -> Path:
    """Path of the cluster-admin kubeconfig."""
    request.node.stash[_USED_KEY] = True
    return lockheed_cluster.kubeconfig


@pytest.fixture
def lockheed_restricted_user(
    lockheed_cluster: Cluster, lockheed_namespace: str
) -> RestrictedUserFactory:
    """Factory for kubeconfigs of users that have only the given rules in ``lockheed_namespace``."""
    from ._cluster import unique_name

    def make(rules: Sequence[Mapping[str, Any]], name: str | None = None) -> Path:
        return lockheed_cluster.mint_user(
            name or unique_name("restricted"), lockheed_namespace, rules
        )

    return make


@pytest.fixture
def lockheed_fault_proxy(
    lockheed_cluster: Cluster, request: pytest.FixtureRequest
) -> Iterator[FaultProxy]:
    """A fault proxy in front of the API server; ``.kubeconfig()`` is the admin's through it."""
    from ._faults import FaultProxy

    request.node.stash[_USED_KEY] = True
    with FaultProxy.for_kubeconfig(lockheed_cluster.kubeconfig) as proxy:
        yield proxy


@pytest.fixture
def lockheed_control_plane(
    lockheed_cluster: Cluster, request: pytest.FixtureRequest
) -> Iterator[ControlPlane]:
    """The local control plane, whose API server the test may stop and restart."""
    from ._controlplane import ControlPlane

    if not isinstance(lockheed_cluster, ControlPlane):
        pytest.skip(
            f"needs the local control plane to restart its API server; ${KUBECONFIG_ENV} "
            "names an existing cluster"
        )
    request.node.stash[_USED_KEY] = True
    yield lockheed_cluster
    if not lockheed_cluster.apiserver_running():
        lockheed_cluster.start_apiserver()  # a test that failed during an outage
