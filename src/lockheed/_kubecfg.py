"""Kubernetes connection settings and error translation, shared by both transports.

Settings (kubeconfig, in-cluster service account, exec plugins, TLS) come from
lightkube's configuration layer, which also builds the ``httpx2`` clients.
lightkube is imported on first use (httpx2 is imported by the transports).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import LockBackendError, LockForbidden

if TYPE_CHECKING:
    import httpx2 as httpx

__all__ = [
    "async_http_client",
    "forbidden",
    "http_client",
    "load_config",
    "reason",
    "request_deadline",
    "request_timeout",
    "retry_after",
]

KubeConfigSource = Any  # a path, a lightkube KubeConfig or SingleConfig, or None
_VERBS = {"GET": "get", "POST": "create", "PUT": "update", "DELETE": "delete", "PATCH": "patch"}
REQUEST_TIMEOUT = 30.0


# A monotonic time by which requests of the current thread or task must give up:
# a renewal must not outlive the lease it is trying to save.
_DEADLINE: ContextVar[float | None] = ContextVar("lockheed_request_deadline", default=None)


@contextlib.contextmanager
def request_deadline(deadline: float | None) -> Iterator[None]:
    """Bound every request made inside the block by monotonic time ``deadline``."""
    token = _DEADLINE.set(deadline)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def request_timeout() -> float:
    """Seconds a request may take now: the default, or less under a deadline."""
    deadline = _DEADLINE.get()
    if deadline is None:
        return REQUEST_TIMEOUT
    return max(0.05, min(REQUEST_TIMEOUT, deadline - time.monotonic()))


def load_config(source: KubeConfigSource = None) -> Any:
    """A lightkube ``SingleConfig`` from a path, a ``KubeConfig``, a ``SingleConfig``,
    or (None) the in-cluster service account, ``$KUBECONFIG`` or ``~/.kube/config``."""
    from lightkube.config.kubeconfig import KubeConfig, SingleConfig
    from lightkube.core.exceptions import ConfigError

    if isinstance(source, SingleConfig):
        return source
    try:
        if source is None:
            kc = KubeConfig.from_env()
        elif isinstance(source, KubeConfig):
            kc = source
        elif isinstance(source, (str, os.PathLike)):
            kc = KubeConfig.from_file(Path(source))
        else:
            raise TypeError(f"cannot load a Kubernetes configuration from {type(source).__name__}")
    except (ConfigError, OSError) as exc:
        raise LockBackendError(f"cannot load the Kubernetes configuration: {exc}") from exc
    config = kc.get()
    if config is None:
        raise LockBackendError("the kubeconfig has no current context")
    return config


def _params() -> Any:
    import httpx2
    from lightkube.config.client_adapter import ConnectionParams

    return ConnectionParams(timeout=httpx2.Timeout(REQUEST_TIMEOUT))


# Each API gets two clients: one for requests and one for watches. A wait holds
# a connection until the watch ends, and ending it closes that connection
# (HTTP/1.1; over HTTP/2 the client would leave the watch running on the
# server). With its own pool for watches, the write that completes a hand-off
# goes out on a warm connection instead of paying for a new TLS handshake.


def http_client(config: Any) -> httpx.Client:
    from lightkube.config.client_adapter import Client

    return Client(config, _params())


def async_http_client(config: Any) -> httpx.AsyncClient:
    from lightkube.config.client_adapter import AsyncClient

    return AsyncClient(config, _params())


def reason(resp: httpx.Response) -> str:
    try:
        status = resp.json()
    except ValueError:
        return resp.text[:200]
    if isinstance(status, dict):
        return str(status.get("message") or status.get("reason") or status)[:300]
    return str(status)[:300]


def retry_after(resp: httpx.Response) -> float | None:
    """The ``Retry-After`` header in seconds (the delay form; at most a minute)."""
    value = resp.headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return min(60.0, seconds) if seconds >= 0 else None


def forbidden(
    method: str, resp: httpx.Response, resource: str, namespace: str, lock: str | None, watch: bool
) -> LockForbidden:
    """The error for a 401/403, naming the verb, resource and namespace needed."""
    verb = "watch" if watch else _VERBS.get(method, method.lower())
    if method == "GET" and lock is None and not watch:
        verb = "list"
    return LockForbidden(
        f"{resp.status_code} from the API server: lockheed needs permission to '{verb}' "
        f"{resource} in namespace {namespace!r} ({reason(resp)})",
        lock=lock,
        verb=verb,
        resource=resource,
        namespace=namespace,
    )
