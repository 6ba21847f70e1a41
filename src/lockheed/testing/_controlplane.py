"""A real, local Kubernetes control plane: etcd and kube-apiserver on loopback ports.

There is no controller-manager, scheduler or kubelet: objects are stored and
watched, RBAC is enforced, but nothing reconciles them (a deleted namespace
stays ``Terminating``). That is all a lock library needs, and it starts in a
few seconds.

Example::

    with ControlPlane() as cp:
        namespace = cp.create_namespace("demo")
        client = cp.client(namespace=namespace)
        cp.restart_apiserver()          # same port and etcd: kubeconfigs keep working
        with cp.apiserver_down():       # requests fail until the block ends
            ...

Restarts keep etcd and its data; requests in flight when the API server goes
down fail, and watches end. Starting it again waits for ``/readyz`` and raises
:class:`~lockheed.testing.ClusterError` (with the log's tail) if it does not
come up, for example because another process took its port meanwhile.

Progress: a ``progress`` callable given to :class:`ControlPlane` receives the
build's progress (see :func:`~lockheed.testing.ensure_binaries`) and then each
start-up step with its timing (etcd up, kube-apiserver healthy, ready); the
restarts of a running control plane are not reported.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import ssl
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx2
from lightkube.models.rbac_v1 import Subject

from ._build import Binaries, ensure_binaries, format_duration
from ._certs import (
    ADMIN_GROUP,
    ADMIN_USER,
    CertificateAuthority,
    client_cert,
    new_ca,
    service_account_keys,
    serving_cert,
)
from ._cluster import Cluster, ClusterError, Rule, unique_name
from ._kubeconfig import cert_user, write_kubeconfig
from ._process import ChildProcess

__all__ = ["ControlPlane"]

LOOPBACK = "127.0.0.1"
_POLL_INTERVAL = 0.05
_STOP_GRACE = 5.0
_PORT_ATTEMPTS = 3
_ERROR_TAIL_LINES = 40
_RBAC_READY_CHECK = "poststarthook/rbac/bootstrap-roles ok"
_WORKDIR_PREFIX = "lockheed-kube-"
_OWNER_FILE = "owner"


class _PortInUse(ClusterError):
    """A child could not bind its port (another process took it first)."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


def _owner_tag() -> str:
    return f"{socket.gethostname()} {os.getpid()}"


def _owner_alive(tag: str) -> bool:
    host, _, pid = tag.rpartition(" ")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # not ours to judge
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep_stale_workdirs() -> None:
    """Remove work directories of control planes whose owning process was killed."""
    for path in Path(tempfile.gettempdir()).glob(f"{_WORKDIR_PREFIX}*"):
        try:
            tag = (path / _OWNER_FILE).read_text()
        except OSError:
            continue  # not ours, or still being set up
        if not _owner_alive(tag):
            shutil.rmtree(path, ignore_errors=True)


@dataclass(frozen=True)
class _Pki:
    """Paths of the certificates and keys written for one control plane."""

    ca: CertificateAuthority
    ca_file: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    sa_private: Path
    sa_public: Path


def _write_pki(directory: Path) -> _Pki:
    directory.mkdir(mode=0o700)
    ca = new_ca()
    serving = serving_cert(ca, (LOOPBACK, "localhost"))
    admin = client_cert(ca, ADMIN_USER, [ADMIN_GROUP])
    sa_private, sa_public = service_account_keys().write(directory)
    serving_paths = serving.write(directory, "apiserver")
    admin_paths = admin.write(directory, "admin")
    return _Pki(ca, ca.write(directory), *serving_paths, *admin_paths, sa_private, sa_public)


def _etcd_command(binary: Path, data_dir: Path, client_port: int, peer_port: int) -> list[str]:
    client = f"http://{LOOPBACK}:{client_port}"
    peer = f"http://{LOOPBACK}:{peer_port}"
    return [
        str(binary),
        "--name=lockheed",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=lockheed={peer}",
        "--unsafe-no-fsync=true",
    ]


def _apiserver_command(
    binary: Path, workdir: Path, pki: _Pki, etcd_url: str, port: int, extra: Sequence[str]
) -> list[str]:
    return [
        str(binary),
        f"--etcd-servers={etcd_url}",
        f"--bind-address={LOOPBACK}",
        f"--advertise-address={LOOPBACK}",
        f"--secure-port={port}",
        f"--cert-dir={workdir / 'apiserver-certs'}",
        f"--tls-cert-file={pki.serving_cert}",
        f"--tls-private-key-file={pki.serving_key}",
        f"--client-ca-file={pki.ca_file}",
        "--authorization-mode=RBAC",
        "--service-cluster-ip-range=10.0.0.0/24",
        "--allow-privileged=true",
        "--disable-admission-plugins=ServiceAccount",
        # The "kubernetes" Service cannot point at a loopback address; skip it.
        "--endpoint-reconciler-type=none",
        f"--service-account-issuer=https://{LOOPBACK}:{port}",
        f"--service-account-key-file={pki.sa_public}",
        f"--service-account-signing-key-file={pki.sa_private}",
        *extra,
    ]


def _get(http: httpx2.Client, url: str) -> httpx2.Response | None:
    try:
        return http.get(url)
    except httpx2.TransportError:
        return None


def _etcd_healthy(http: httpx2.Client, url: str) -> bool:
    response = _get(http, f"{url}/health")
    return response is not None and response.status_code == 200 and '"true"' in response.text


def _apiserver_ready(http: httpx2.Client) -> bool:
    response = _get(http, "/readyz?verbose=1")
    if response is None or response.status_code != 200:
        return False
    if _RBAC_READY_CHECK not in response.text:
        raise ClusterError(f"/readyz does not report {_RBAC_READY_CHECK!r}:\n{response.text}")
    # The system namespaces are created asynchronously after the server is ready.
    namespace = _get(http, "/api/v1/namespaces/default")
    return namespace is not None and namespace.status_code == 200


class ControlPlane(Cluster):
    """etcd plus kube-apiserver, started from cached binaries in a temporary directory.

    ``start()`` (or ``with ControlPlane() as cp:``) builds the binaries if they
    are not cached, starts both servers on free loopback ports, waits until the
    API server is ready and RBAC is bootstrapped, and writes an admin kubeconfig
    (user ``lockheed-admin`` in ``system:masters``, namespace ``default``).
    ``stop()`` terminates both servers and removes the temporary directory; it
    is idempotent and also registered with :mod:`atexit`.

    :meth:`restart_apiserver`, :meth:`apiserver_down` and :meth:`outage` stop
    and start kube-apiserver on the same port and etcd, for tests of what
    clients do meanwhile.

    Clients made by this class ignore proxy environment variables; a client
    you make yourself from :attr:`kubeconfig` needs ``127.0.0.1`` in
    ``NO_PROXY`` if a proxy is configured (the pytest plugin sees to that).
    """

    _trust_env = False

    def __init__(
        self,
        binaries: Binaries | None = None,
        *,
        start_timeout: float = 60.0,
        progress: Callable[[str], None] | None = None,
        apiserver_args: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self._binaries = binaries
        self._start_timeout = start_timeout
        self._progress = progress
        self._apiserver_args = list(apiserver_args)
        self._state = "new"
        self._pki: _Pki | None = None
        self._etcd: ChildProcess | None = None
        self._apiserver: ChildProcess | None = None
        self._apiserver_command: list[str] = []
        # Restarted API servers are started from this thread: a child is killed
        # when the thread that started it ends (PR_SET_PDEATHSIG).
        self._launcher: ThreadPoolExecutor | None = None
        self._server: str | None = None
        self.workdir: Path | None = None
        """Temporary directory with certificates, data, logs and kubeconfigs."""
        self.start_seconds: float | None = None
        """Seconds ``start()`` took, excluding any build of the binaries."""

    def __repr__(self) -> str:
        return f"<ControlPlane {self._state} server={self._server} workdir={self.workdir}>"

    # -- lifecycle -------------------------------------------------------

    def start(self) -> ControlPlane:
        """Start etcd and kube-apiserver and wait until they are ready; returns ``self``."""
        if self._state != "new":
            raise ClusterError(f"a ControlPlane can be started once (it is {self._state})")
        binaries = self._binaries or ensure_binaries(self._progress)
        self._state = "running"
        _sweep_stale_workdirs()
        began = time.monotonic()
        self.workdir = Path(tempfile.mkdtemp(prefix=_WORKDIR_PREFIX))
        atexit.register(self.stop)
        try:
            (self.workdir / _OWNER_FILE).write_text(_owner_tag())
            self._pki = _write_pki(self.workdir / "pki")
            self._launch_with_retries(binaries, self._pki)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        self._say(
            f"control plane ready in {format_duration(self.start_seconds)}: "
            f"API server {self._server}"
        )
        return self

    def _say(self, message: str) -> None:
        if self._progress is not None:
            self._progress(message)

    def stop(self) -> None:
        """Terminate both servers (SIGTERM, then SIGKILL) and delete the temporary directory."""
        if self._state != "running":
            return
        self._state = "stopped"
        atexit.unregister(self.stop)
        super().stop()
        self._stop_processes()
        if self._launcher is not None:
            self._launcher.shutdown(wait=False)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _stop_processes(self) -> None:
        for child in (self._apiserver, self._etcd):
            if child is not None:
                child.stop(_STOP_GRACE)

    def _launch_with_retries(self, binaries: Binaries, pki: _Pki) -> None:
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            try:
                self._launch(binaries, pki)
                return
            except _PortInUse:
                self._stop_processes()
                if attempt == _PORT_ATTEMPTS:
                    raise

    def _launch(self, binaries: Binaries, pki: _Pki) -> None:
        assert self.workdir is not None
        etcd_url = self._launch_etcd(binaries.etcd)
        port = _free_port()
        command = _apiserver_command(
            binaries.kube_apiserver, self.workdir, pki, etcd_url, port, self._apiserver_args
        )
        self._apiserver_command = command
        self._apiserver = ChildProcess(
            "kube-apiserver", command, self.workdir / "kube-apiserver.log"
        )
        began = time.monotonic()
        self._say(f"starting kube-apiserver on {LOOPBACK}:{port}")
        self._apiserver.start()
        self._server = f"https://{LOOPBACK}:{port}"
        self._wait_for_apiserver(pki)
        took = format_duration(time.monotonic() - began)
        self._say(f"kube-apiserver healthy in {took} (RBAC bootstrapped)")
        self._write_admin_kubeconfig(pki)

    def _wait_for_apiserver(self, pki: _Pki) -> None:
        assert self._apiserver is not None
        apiserver = self._apiserver
        with self._admin_http(pki) as http:
            self._wait_for(apiserver, lambda: _apiserver_ready(http))

    def _launch_etcd(self, binary: Path) -> str:
        assert self.workdir is not None
        client_port, peer_port = _free_port(), _free_port()
        data_dir = self.workdir / "etcd-data"
        shutil.rmtree(data_dir, ignore_errors=True)  # left over from a failed attempt
        command = _etcd_command(binary, data_dir, client_port, peer_port)
        self._etcd = ChildProcess("etcd", command, self.workdir / "etcd.log")
        began = time.monotonic()
        self._say(f"starting etcd on {LOOPBACK}:{client_port}")
        self._etcd.start()
        url = f"http://{LOOPBACK}:{client_port}"
        with httpx2.Client(trust_env=False, timeout=2.0) as http:
            self._wait_for(self._etcd, lambda: _etcd_healthy(http, url))
        self._say(f"etcd up in {format_duration(time.monotonic() - began)}")
        return url

    def _admin_http(self, pki: _Pki) -> httpx2.Client:
        context = ssl.create_default_context(cafile=str(pki.ca_file))
        context.load_cert_chain(pki.admin_cert, pki.admin_key)
        return httpx2.Client(
            base_url=self._server or "", verify=context, trust_env=False, timeout=2.0
        )

    def _wait_for(self, child: ChildProcess, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self._start_timeout
        while not ready():
            code = child.exit_code()
            if code is not None:
                tail = child.log_tail(_ERROR_TAIL_LINES)
                error = _PortInUse if "address already in use" in tail else ClusterError
                raise error(
                    f"{child.name} exited with code {code} while starting; "
                    f"last lines of {child.log_path}:\n{tail}"
                )
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"{child.name} was not ready within {self._start_timeout:g}s; "
                    f"last lines of {child.log_path}:\n{child.log_tail(_ERROR_TAIL_LINES)}"
                )
            time.sleep(_POLL_INTERVAL)

    def _write_admin_kubeconfig(self, pki: _Pki) -> None:
        assert self.workdir is not None
        assert self._server is not None
        self._kubeconfig = write_kubeconfig(
            self.workdir / "admin.kubeconfig",
            server=self._server,
            user_name=ADMIN_USER,
            user=cert_user(pki.admin_cert.read_bytes(), pki.admin_key.read_bytes()),
            namespace="default",
            ca_pem=pki.ca.cert_pem,
        )

    # -- API server restarts and outages -----------------------------------

    def stop_apiserver(self, *, graceful: bool = False) -> None:
        """Stop kube-apiserver; etcd keeps running. It is killed (SIGKILL, a
        crash) unless ``graceful``, which sends SIGTERM first. Idempotent."""
        self._check_running()
        assert self._apiserver is not None
        if graceful:
            self._apiserver.stop(_STOP_GRACE)
        else:
            self._apiserver.kill()

    def start_apiserver(self) -> float:
        """Start kube-apiserver again on the same port and etcd, and wait until
        it is ready; return the seconds that took. Does nothing if it runs."""
        self._check_running()
        assert self._apiserver is not None and self._pki is not None
        if self._apiserver.running():
            return 0.0
        began = time.monotonic()
        child = ChildProcess("kube-apiserver", self._apiserver_command, self._apiserver.log_path)
        if self._launcher is None:
            self._launcher = ThreadPoolExecutor(1, thread_name_prefix="lockheed-launcher")
        self._launcher.submit(child.start).result()
        self._apiserver = child
        self._wait_for_apiserver(self._pki)
        return time.monotonic() - began

    def restart_apiserver(self, *, graceful: bool = False) -> float:
        """Stop kube-apiserver and start it again (see :meth:`stop_apiserver`);
        return the seconds it was down."""
        began = time.monotonic()
        self.stop_apiserver(graceful=graceful)
        self.start_apiserver()
        return time.monotonic() - began

    @contextlib.contextmanager
    def apiserver_down(self, *, graceful: bool = False) -> Iterator[None]:
        """``with cp.apiserver_down():`` the API server is stopped for the block
        and ready again after it (even if the block raised)."""
        self.stop_apiserver(graceful=graceful)
        try:
            yield
        finally:
            self.start_apiserver()

    def outage(self, seconds: float, *, graceful: bool = False) -> float:
        """Stop the API server, wait ``seconds``, start it again and wait until it
        is ready; return how long it was down in all (at least ``seconds``)."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            raise ValueError(f"outage needs a number of seconds >= 0, not {seconds!r}")
        began = time.monotonic()
        with self.apiserver_down(graceful=graceful):
            time.sleep(seconds)  # the length of the outage, not a synchronisation
        return time.monotonic() - began

    def apiserver_running(self) -> bool:
        """Whether kube-apiserver runs (it may still be starting)."""
        return self._apiserver is not None and self._apiserver.running()

    def _check_running(self) -> None:
        if self._state != "running" or self._apiserver is None:
            raise ClusterError(f"the ControlPlane is {self._state}")

    # -- information -----------------------------------------------------

    @property
    def server(self) -> str:
        """The API server URL, ``https://127.0.0.1:<port>``."""
        if self._server is None:
            raise ClusterError("ControlPlane is not started")
        return self._server

    @property
    def etcd_pid(self) -> int | None:
        """Process id of etcd, once started."""
        return self._etcd.pid if self._etcd else None

    @property
    def apiserver_pid(self) -> int | None:
        """Process id of kube-apiserver, once started."""
        return self._apiserver.pid if self._apiserver else None

    def running(self) -> bool:
        """Whether both servers are running."""
        children = (self._etcd, self._apiserver)
        return self._state == "running" and all(c is not None and c.running() for c in children)

    def log_tail(self, n: int = 50) -> str:
        """The last ``n`` lines of the kube-apiserver log (``""`` once stopped)."""
        return self._apiserver.log_tail(n) if self._apiserver else ""

    # -- users -----------------------------------------------------------

    def mint_user(self, name: str, namespace: str, rules: Sequence[Rule]) -> Path:
        """Create user ``name`` allowed only ``rules`` in ``namespace``; return its kubeconfig.

        The user authenticates with a client certificate (CN=``name``, no
        groups) and is bound to a new Role by a RoleBinding. The call returns
        once the API server's authorizer sees the binding.
        """
        if self._pki is None or self.workdir is None:
            raise ClusterError("ControlPlane is not started")
        ca = self._pki.ca
        self._grant(
            namespace, rules, Subject(kind="User", name=name, apiGroup="rbac.authorization.k8s.io")
        )
        pair = client_cert(ca, name)
        self._wait_until_authorized(namespace, rules, user=name, groups=())
        return write_kubeconfig(
            self.workdir / "users" / f"{unique_name(name)}.kubeconfig",
            server=self.server,
            user_name=name,
            user=cert_user(pair.cert_pem, pair.key_pem),
            namespace=namespace,
            ca_pem=ca.cert_pem,
        )
