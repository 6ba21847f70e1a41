"""The local control plane behaves like a real API server (storage, conflicts, RBAC, watches)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from lightkube import ApiError, Client
from lightkube.config.kubeconfig import KubeConfig
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap

from lockheed.testing import Cluster, ControlPlane, ExistingCluster
from lockheed.testing.plugin import KUBECONFIG_ENV, RestrictedUserFactory

WATCH_TIMEOUT = 20.0
READ_CONFIGMAPS = [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]


def _client(kubeconfig: Path, namespace: str) -> Client:
    # Loopback: do not send the requests to a proxy from the environment.
    return Client(KubeConfig.from_file(kubeconfig), namespace=namespace, trust_env=False)


@pytest.fixture
def admin(lockheed_kubeconfig: Path, lockheed_namespace: str) -> Iterator[Client]:
    client = _client(lockheed_kubeconfig, lockheed_namespace)
    yield client
    client.close()


def _configmap(name: str, value: str) -> ConfigMap:
    return ConfigMap(metadata=ObjectMeta(name=name), data={"value": value})


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_create_and_get_configmap(admin: Client) -> None:
    created = admin.create(_configmap("settings", "one"))

    fetched = admin.get(ConfigMap, "settings")

    assert fetched.data == {"value": "one"}
    assert created.metadata is not None
    assert fetched.metadata is not None
    assert fetched.metadata.resourceVersion == created.metadata.resourceVersion


def test_replace_with_stale_resource_version_conflicts(admin: Client) -> None:
    stale = admin.create(_configmap("contended", "one"))
    current = admin.get(ConfigMap, "contended")
    current.data = {"value": "two"}
    admin.replace(current)

    stale.data = {"value": "three"}
    with pytest.raises(ApiError) as raised:
        admin.replace(stale)

    assert raised.value.status.code == 409
    assert raised.value.status.reason == "Conflict"
    assert admin.get(ConfigMap, "contended").data == {"value": "two"}


def test_restricted_user_gets_only_what_its_rules_allow(
    admin: Client, lockheed_namespace: str, lockheed_restricted_user: RestrictedUserFactory
) -> None:
    admin.create(_configmap("readable", "one"))
    kubeconfig = lockheed_restricted_user(READ_CONFIGMAPS, name="reader")

    with _client(kubeconfig, lockheed_namespace) as reader:
        assert reader.get(ConfigMap, "readable").data == {"value": "one"}
        with pytest.raises(ApiError) as raised:
            reader.create(_configmap("forbidden", "two"))

    assert raised.value.status.code == 403


def test_watch_with_field_selector_sees_update(
    admin: Client, lockheed_kubeconfig: Path, lockheed_namespace: str
) -> None:
    admin.create(_configmap("unwatched", "one"))
    created = admin.create(_configmap("watched", "one"))
    assert created.metadata is not None
    after = created.metadata.resourceVersion
    seen: list[tuple[str, str, str]] = []
    updated = threading.Event()
    errors: list[BaseException] = []

    def watch() -> None:
        try:
            with _client(lockheed_kubeconfig, lockheed_namespace) as watcher:
                events = watcher.watch(
                    ConfigMap,
                    fields={"metadata.name": "watched"},
                    resource_version=after,
                )
                for kind, obj in events:
                    assert obj.metadata is not None
                    assert obj.data is not None
                    seen.append((kind, str(obj.metadata.name), obj.data["value"]))
                    if kind == "MODIFIED":
                        updated.set()
                        return
        except BaseException as error:  # reported by the test thread
            errors.append(error)
            updated.set()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    # Events after created's resourceVersion are delivered even if the watch
    # connects after this write, so no further synchronisation is needed.
    admin.patch(ConfigMap, "unwatched", {"data": {"value": "two"}})
    admin.patch(ConfigMap, "watched", {"data": {"value": "two"}})

    assert updated.wait(WATCH_TIMEOUT), "the watch saw no update"
    thread.join(WATCH_TIMEOUT)
    assert errors == []
    assert seen == [("MODIFIED", "watched", "two")]


@pytest.mark.skipif(bool(os.environ.get(KUBECONFIG_ENV)), reason="starts a local control plane")
def test_stop_ends_processes_and_removes_workdir() -> None:
    control_plane = ControlPlane().start()
    assert control_plane.start_seconds is not None
    pids = [control_plane.etcd_pid, control_plane.apiserver_pid]
    workdir = control_plane.workdir
    assert workdir is not None
    assert workdir.is_dir()
    assert all(pid is not None and _pid_alive(pid) for pid in pids)

    control_plane.stop()
    control_plane.stop()  # idempotent

    assert not any(pid is not None and _pid_alive(pid) for pid in pids)
    assert not workdir.exists()
    assert not control_plane.running()
    assert control_plane.log_tail() == ""


def test_existing_cluster_mints_token_users(
    lockheed_cluster: Cluster, lockheed_namespace: str
) -> None:
    with ExistingCluster(lockheed_cluster.kubeconfig) as existing:
        kubeconfig = existing.mint_user("token-reader", lockheed_namespace, READ_CONFIGMAPS)
        with existing.client(namespace=lockheed_namespace) as admin:
            admin.create(_configmap("readable", "one"))
        with existing.client(kubeconfig, namespace=lockheed_namespace) as reader:
            assert reader.get(ConfigMap, "readable").data == {"value": "one"}
            with pytest.raises(ApiError) as raised:
                reader.create(_configmap("forbidden", "two"))
        assert existing.log_tail() == ""

    assert raised.value.status.code == 403
    assert not kubeconfig.exists()
