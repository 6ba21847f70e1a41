"""A real, local Kubernetes control plane for testing code that uses the API server.

:class:`ControlPlane` runs etcd and kube-apiserver (built once from Go modules
and cached, see :func:`ensure_binaries`) on loopback ports with RBAC enforced;
:class:`ExistingCluster` offers the same interface on top of an existing
kubeconfig. The pytest plugin in :mod:`lockheed.testing.plugin` (opt-in:
``pytest -p lockheed.testing.plugin``) provides the ``lockheed_*`` fixtures, and
``python -m lockheed.testing up`` runs a control plane in the foreground.

Faults: :class:`FaultProxy` sits between clients and the API server and
injects :class:`Latency`, :class:`Blackhole`, :class:`Reset`, :class:`Refuse`
and :class:`DropResponse` (an ambiguous write); :meth:`ControlPlane.restart_apiserver`,
:meth:`ControlPlane.apiserver_down` and :meth:`ControlPlane.outage` take the
API server away; :func:`throttled` makes it answer one user with 429.

Importing this package is cheap: the heavy modules load on first attribute use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._build import Binaries, BuildError, ensure_binaries
    from ._cluster import Cluster, ClusterError, ExistingCluster
    from ._controlplane import ControlPlane
    from ._faults import (
        Blackhole,
        DropResponse,
        Fault,
        FaultProxy,
        FaultRun,
        Latency,
        Refuse,
        Reset,
    )
    from ._throttle import throttled

__all__ = [
    "Binaries",
    "Blackhole",
    "BuildError",
    "Cluster",
    "ClusterError",
    "ControlPlane",
    "DropResponse",
    "ExistingCluster",
    "Fault",
    "FaultProxy",
    "FaultRun",
    "Latency",
    "Refuse",
    "Reset",
    "ensure_binaries",
    "throttled",
]

_HOMES = {
    "Binaries": "._build",
    "BuildError": "._build",
    "ensure_binaries": "._build",
    "Cluster": "._cluster",
    "ClusterError": "._cluster",
    "ExistingCluster": "._cluster",
    "ControlPlane": "._controlplane",
    "Blackhole": "._faults",
    "DropResponse": "._faults",
    "Fault": "._faults",
    "FaultProxy": "._faults",
    "FaultRun": "._faults",
    "Latency": "._faults",
    "Refuse": "._faults",
    "Reset": "._faults",
    "throttled": "._throttle",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
