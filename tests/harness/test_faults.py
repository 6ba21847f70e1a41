"""The fault tools of lockheed.testing do what they say, against the real API server.

Each fault is shown from the client's side (an error, a timeout, a refused
connection) and from the server's (the ambiguous write was stored). Timings are
only ever checked as lower bounds: a busy machine can only make them longer.
"""

from __future__ import annotations

import gc
import socket
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
import yaml
from lightkube import ApiError, Client
from lightkube.config.kubeconfig import KubeConfig
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap

from lockheed.testing import (
    Blackhole,
    Cluster,
    ClusterError,
    ControlPlane,
    DropResponse,
    FaultProxy,
    Latency,
    Refuse,
    Reset,
    _throttle,
    throttled,
)
from lockheed.testing.plugin import RestrictedUserFactory

SHORT_TIMEOUT = 1.0
READ_CONFIGMAPS = [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]


def _client(kubeconfig: Path, namespace: str) -> Client:
    return Client(KubeConfig.from_file(kubeconfig), namespace=namespace, trust_env=False)


@pytest.fixture
def proxied(lockheed_fault_proxy: FaultProxy, lockheed_cluster: Cluster) -> Iterator[httpx2.Client]:
    """An HTTP client of the admin through the proxy, its connection already open."""
    with lockheed_cluster.http_client(lockheed_fault_proxy.kubeconfig()) as http:
        assert http.get("/version").status_code == 200
        yield http
    # A connection reset under httpx2 may leave its socket for the collector;
    # collect it here, where it belongs, not in whichever test runs next.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def _configmap(name: str) -> ConfigMap:
    return ConfigMap(metadata=ObjectMeta(name=name), data={"value": name})


# ---------------------------------------------------------------- input


def test_bad_input_gets_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="to_client"):
        Latency(to_client=-1)
    with pytest.raises(TypeError, match="seconds"):
        Latency(to_server="1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        Latency(to_server=float("inf"))
    with pytest.raises(ValueError, match="connections"):
        Blackhole(connections="some")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="count"):
        DropResponse(count=0)
    with pytest.raises(ValueError, match="skip"):
        DropResponse(skip=-1)
    with pytest.raises(ValueError, match="upstream_port"):
        FaultProxy("127.0.0.1", 0)
    with pytest.raises(ValueError, match="cannot read kubeconfig"):
        FaultProxy.for_kubeconfig(tmp_path / "missing")
    (tmp_path / "empty").write_text("apiVersion: v1\nkind: Config\n")
    with pytest.raises(ValueError, match="no current-context"):
        FaultProxy.for_kubeconfig(tmp_path / "empty")

    proxy = FaultProxy("127.0.0.1", 6443)
    with pytest.raises(ClusterError, match="new"):
        proxy.inject(Blackhole())
    with proxy:
        with pytest.raises(ValueError, match="at least one"):
            proxy.inject()
        with pytest.raises(TypeError, match="not a fault"):
            proxy.inject("blackhole")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="source kubeconfig"):
            proxy.kubeconfig()
    proxy.stop()  # idempotent
    with pytest.raises(ClusterError, match="stopped"):
        proxy.start()


# ---------------------------------------------------------------- passing through


def test_kubeconfig_through_the_proxy_keeps_tls_and_credentials(
    lockheed_fault_proxy: FaultProxy,
    lockheed_kubeconfig: Path,
    lockheed_namespace: str,
    lockheed_restricted_user: RestrictedUserFactory,
) -> None:
    proxied = lockheed_fault_proxy.kubeconfig()
    document = yaml.safe_load(proxied.read_text())
    assert document["clusters"][0]["cluster"]["server"] == lockheed_fault_proxy.url
    assert lockheed_fault_proxy.url == f"https://127.0.0.1:{lockheed_fault_proxy.port}"
    assert proxied.stat().st_mode & 0o777 == 0o600

    with _client(proxied, lockheed_namespace) as admin:
        admin.create(_configmap("through"))
    with _client(lockheed_kubeconfig, lockheed_namespace) as direct:
        assert direct.get(ConfigMap, "through").data == {"value": "through"}
    assert lockheed_fault_proxy.accepted >= 1

    # A restricted user's certificate reaches the server: RBAC still applies.
    reader = lockheed_fault_proxy.kubeconfig(lockheed_restricted_user(READ_CONFIGMAPS))
    with _client(reader, lockheed_namespace) as user:
        assert user.get(ConfigMap, "through").data == {"value": "through"}
        with pytest.raises(ApiError) as denied:
            user.create(_configmap("denied"))
    assert denied.value.status.code == 403


# ---------------------------------------------------------------- faults


def test_latency_delays_requests_by_at_least_the_injected_time(
    lockheed_fault_proxy: FaultProxy, proxied: httpx2.Client
) -> None:
    with lockheed_fault_proxy.fault(Latency(to_server=0.2, to_client=0.3)) as run:
        began = time.monotonic()
        assert proxied.get("/version").status_code == 200
        took = time.monotonic() - began
    assert took >= 0.5
    assert run.injected >= 2  # the request and the response
    assert not run.active

    # A latency scoped to new connections leaves the open one alone...
    with lockheed_fault_proxy.fault(Latency(to_client=0.2, connections="new")) as run:
        assert proxied.get("/version").status_code == 200
        assert run.injected == 0
        # ...and slows one opened after it started, handshake included.
        with httpx2.Client(base_url=str(proxied.base_url), verify=False, trust_env=False) as fresh:
            began = time.monotonic()
            fresh.get("/version")
            assert time.monotonic() - began >= 0.2
        assert run.injected >= 1


def test_blackhole_makes_a_client_time_out_then_heals(
    lockheed_fault_proxy: FaultProxy, proxied: httpx2.Client
) -> None:
    with lockheed_fault_proxy.fault(Blackhole()) as run:
        with pytest.raises(httpx2.TimeoutException):
            proxied.get("/version", timeout=SHORT_TIMEOUT)
        assert lockheed_fault_proxy.open_connections >= 1  # kept, not closed
        assert run.injected >= 1
        # A new connection is accepted but its TLS handshake gets nowhere.
        with pytest.raises(httpx2.TimeoutException):
            proxied.get("/version", timeout=SHORT_TIMEOUT)
    assert proxied.get("/version").status_code == 200


def test_blackhole_delivers_what_it_held_when_it_ends(lockheed_fault_proxy: FaultProxy) -> None:
    with socket.create_connection(("127.0.0.1", lockheed_fault_proxy.port), timeout=10) as raw:
        with lockheed_fault_proxy.fault(Blackhole()):
            raw.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")  # plain HTTP to a TLS port
            raw.settimeout(SHORT_TIMEOUT)
            with pytest.raises(socket.timeout):
                raw.recv(100)
        raw.settimeout(10)
        # The server got the bytes after all: it answers plain HTTP on its TLS port with a 400.
        assert raw.recv(100).startswith(b"HTTP/1.0 400")


def test_reset_breaks_open_and_new_connections(
    lockheed_fault_proxy: FaultProxy, proxied: httpx2.Client
) -> None:
    with socket.create_connection(("127.0.0.1", lockheed_fault_proxy.port), timeout=10) as raw:
        with lockheed_fault_proxy.fault(Reset()) as run:
            with pytest.raises(ConnectionResetError):
                raw.recv(100)
            with pytest.raises(httpx2.TransportError) as failed:
                proxied.get("/version")
            assert not isinstance(failed.value, httpx2.TimeoutException)
        assert run.injected >= 3  # the raw and the HTTP connection, then the new one
    assert proxied.get("/version").status_code == 200


def test_refuse_closes_the_port_and_opens_it_again(
    lockheed_fault_proxy: FaultProxy, proxied: httpx2.Client
) -> None:
    address = ("127.0.0.1", lockheed_fault_proxy.port)
    with (
        socket.create_connection(address, timeout=10) as kept,
        lockheed_fault_proxy.fault(Refuse()) as run,
    ):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(address, timeout=10).close()
        assert run.injected == 1
        # Open connections are left alone: the server still answers on this one.
        assert proxied.get("/version").status_code == 200
        kept.setblocking(False)
        with pytest.raises(BlockingIOError):
            kept.recv(1)  # nothing to read, and not closed
    with socket.create_connection(address, timeout=10):
        pass


def test_refuse_and_reset_together_are_an_outage_at_the_proxy(
    lockheed_fault_proxy: FaultProxy, proxied: httpx2.Client
) -> None:
    with lockheed_fault_proxy.fault(Refuse(), Reset()), pytest.raises(httpx2.ConnectError):
        proxied.get("/version")
    assert proxied.get("/version").status_code == 200


def test_dropped_response_is_an_ambiguous_write(
    lockheed_fault_proxy: FaultProxy, lockheed_kubeconfig: Path, lockheed_namespace: str
) -> None:
    with _client(lockheed_fault_proxy.kubeconfig(), lockheed_namespace) as client:
        with pytest.raises(ApiError):
            client.get(ConfigMap, "ambiguous")  # opens the connection
        with (
            lockheed_fault_proxy.fault(DropResponse()) as run,
            pytest.raises(httpx2.TransportError),
        ):
            client.create(_configmap("ambiguous"))
        assert run.injected == 1

        # skip=1: the read passes, the write after it is dropped. The fault acts on
        # connections open when it starts: the reset one was replaced by a new one.
        assert client.get(ConfigMap, "ambiguous").data == {"value": "ambiguous"}
        with lockheed_fault_proxy.fault(DropResponse(skip=1)) as run:
            assert client.get(ConfigMap, "ambiguous").data == {"value": "ambiguous"}
            with pytest.raises(httpx2.TransportError):
                client.create(_configmap("second"))
        assert run.injected == 1

    with _client(lockheed_kubeconfig, lockheed_namespace) as direct:
        assert direct.get(ConfigMap, "ambiguous").data == {"value": "ambiguous"}
        assert direct.get(ConfigMap, "second").data == {"value": "second"}


# ---------------------------------------------------------------- the API server


def test_restart_keeps_the_port_the_data_and_old_kubeconfigs_working(
    lockheed_control_plane: ControlPlane, lockheed_namespace: str
) -> None:
    kubeconfig, server = lockheed_control_plane.kubeconfig, lockheed_control_plane.server
    before = lockheed_control_plane.apiserver_pid
    with _client(kubeconfig, lockheed_namespace) as client:
        client.create(_configmap("survivor"))

    down = lockheed_control_plane.restart_apiserver()

    assert down > 0
    assert lockheed_control_plane.apiserver_pid != before
    assert lockheed_control_plane.server == server
    assert lockheed_control_plane.running()
    with _client(kubeconfig, lockheed_namespace) as client:
        assert client.get(ConfigMap, "survivor").data == {"value": "survivor"}


def test_requests_fail_during_an_outage_and_succeed_after(
    lockheed_control_plane: ControlPlane,
) -> None:
    with lockheed_control_plane.http_client() as http:
        assert http.get("/version").status_code == 200
        with lockheed_control_plane.apiserver_down():
            assert not lockheed_control_plane.apiserver_running()
            with pytest.raises(httpx2.TransportError):
                http.get("/version")
        assert http.get("/version").status_code == 200

        assert lockheed_control_plane.outage(0.5, graceful=True) >= 0.5
        assert http.get("/version").status_code == 200
    with pytest.raises(ValueError, match="seconds"):
        lockheed_control_plane.outage(-1)


def test_throttled_user_gets_429_and_others_do_not(
    lockheed_cluster: Cluster,
    lockheed_namespace: str,
    lockheed_restricted_user: RestrictedUserFactory,
) -> None:
    user = lockheed_restricted_user(READ_CONFIGMAPS, name="throttled")
    path = f"/api/v1/namespaces/{lockheed_namespace}/configmaps/missing"
    with lockheed_cluster.http_client(user) as http, lockheed_cluster.http_client() as admin:
        assert http.get(path).status_code == 404
        with throttled(lockheed_cluster, user) as name:
            response = http.get(path)
            assert response.status_code == 429
            assert response.headers.get("retry-after")
            assert admin.get(path).status_code == 404
        assert name.endswith("throttled")
        assert http.get(path).status_code == 404


def _rejected(admin: httpx2.Client) -> int:
    """Requests the API server rejected at the throttling priority level."""
    dump = admin.get("/debug/api_priority_and_fairness/dump_priority_levels")
    assert dump.status_code == 200, dump.text
    header, *rows = (line.split(",") for line in dump.text.splitlines() if line.strip())
    column = [field.strip() for field in header].index("RejectedRequests")
    (count,) = (int(r[column]) for r in rows if r[0].startswith("lockheed-throttle-"))
    return count


def test_throttled_replaces_a_stalled_request_that_was_turned_away(
    lockheed_cluster: Cluster,
    lockheed_restricted_user: RestrictedUserFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stalled request that arrives while another request of the user holds
    the seat is answered 429 at once, which the client reads only after its
    body: the holder must notice and send another, or the user is served."""
    user = lockheed_restricted_user(READ_CONFIGMAPS, name="turned-away")
    holders: list[_throttle._SeatHolder] = []

    class Recorded(_throttle._SeatHolder):
        def __init__(self, cluster: Cluster, kubeconfig: Path) -> None:
            super().__init__(cluster, kubeconfig)
            holders.append(self)

    monkeypatch.setattr(_throttle, "_SeatHolder", Recorded)
    admin = lockheed_cluster.http_client()
    http = lockheed_cluster.http_client(user)
    with admin, http, throttled(lockheed_cluster, user):
        (first,) = holders
        before = _rejected(admin)
        second = _throttle._SeatHolder(lockheed_cluster, user)
        try:
            deadline = time.monotonic() + 30
            while _rejected(admin) == before:  # the second's request was turned away
                assert time.monotonic() < deadline, "the second request was not turned away"
                time.sleep(0.05)
            first.finish(30)  # the seat is free; only the second can take it again
            _throttle._wait_until(http, 30, "turned-away", "throttled again", _is_429)
            assert second.turned_away >= 1
        finally:
            second.finish(30)


def _is_429(response: httpx2.Response) -> bool:
    return response.status_code == 429
