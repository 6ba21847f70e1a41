"""The API server the benchmark runs against, and its namespaces.

By default a local :class:`~lockheed.testing.ControlPlane` (etcd and
kube-apiserver on loopback) is started with the ``APIServerIdentity`` feature
off, so that the server renews no Lease of its own during the measurements
(otherwise it writes one every ten seconds, which would be counted against the
systems that use Leases). With ``--kubeconfig`` an existing cluster is used as
it is; its own background requests are measured and subtracted.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from lockheed.testing import Cluster, ControlPlane, ExistingCluster

__all__ = ["BenchCluster"]

APISERVER_ARGS = ("--feature-gates=APIServerIdentity=false",)


def _progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


class BenchCluster:
    """A started control plane, or an existing cluster reached by ``kubeconfig``."""

    def __init__(self, kubeconfig: Path | None = None):
        self._given = kubeconfig
        self._cluster: Cluster | None = None
        self._namespaces: list[str] = []
        self.own = kubeconfig is None

    def start(self) -> BenchCluster:
        # Clients made from the kubeconfig (lockheed's, the kubernetes client's, the
        # workers') must not send loopback traffic to a proxy.
        loopback = "127.0.0.1,localhost,::1"
        for var in ("NO_PROXY", "no_proxy"):
            current = os.environ.get(var, "")
            os.environ[var] = f"{current},{loopback}" if current else loopback
        if self._given is None:
            self._cluster = ControlPlane(apiserver_args=APISERVER_ARGS, progress=_progress).start()
        else:
            self._cluster = ExistingCluster(self._given).start()
        return self

    @property
    def cluster(self) -> Cluster:
        if self._cluster is None:
            raise RuntimeError("BenchCluster is not started")
        return self._cluster

    @property
    def kubeconfig(self) -> Path:
        return self.cluster.kubeconfig

    @property
    def server(self) -> str:
        return self.cluster.server

    def namespace(self, prefix: str) -> str:
        name = self.cluster.create_namespace(f"bench-{prefix}")
        self._namespaces.append(name)
        return name

    def http(self) -> Any:
        """A new httpx2 client with the admin kubeconfig's server, TLS and credentials."""
        return self.cluster.http_client()

    def async_http(self) -> Any:
        from lightkube.config.client_adapter import AsyncClient, ConnectionParams
        from lightkube.config.kubeconfig import KubeConfig

        config = KubeConfig.from_file(self.kubeconfig).get()
        if config is None:
            raise RuntimeError(f"{self.kubeconfig} has no current context")
        return AsyncClient(config, ConnectionParams(trust_env=not self.own))

    def version(self) -> str:
        with self.http() as http:
            resp = http.get("/version")
            return str(resp.json().get("gitVersion", "?")) if resp.status_code == 200 else "?"

    def stop(self) -> None:
        if self._cluster is None:
            return
        if not self.own:
            for name in self._namespaces:
                try:
                    self._cluster.delete_namespace(name)
                except Exception as exc:  # leave the rest to the cluster's owner
                    _progress(f"could not delete namespace {name}: {exc!r}")
        self._cluster.stop()
        self._cluster = None
