"""HTTP transport to the Kubernetes API (sync), and translation of its errors.

Connection settings (kubeconfig, in-cluster service account, exec plugins,
TLS) come from lightkube's configuration layer; requests are plain JSON over
its ``httpx2`` client, so every response's ``Date`` header can feed the
:class:`~lockheed._clock.ServerClock` and no model objects are built on the hot
path. Every HTTP or transport failure leaves this module as a
:class:`~lockheed.LockError` subclass: 403/401 as :class:`LockForbidden`
naming the verb, resource and namespace; anything unexpected as
:class:`LockBackendError`. 404 and 409 are returned to the caller as values,
because the core decides what they mean.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Union

import httpx2 as httpx

from ._clock import ServerClock
from ._errors import LockBackendError, LockForbidden

__all__ = ["KubeAPI", "KubeConfigSource", "load_config"]

KubeConfigSource = Union[str, "os.PathLike[str]", Any, None]

_VERBS = {"GET": "get", "POST": "create", "PUT": "update", "DELETE": "delete", "PATCH": "patch"}


def load_config(source: KubeConfigSource = None) -> Any:
    """A lightkube ``SingleConfig`` from a path, a ``KubeConfig``, a ``SingleConfig``,
    or (None) the in-cluster service account, ``$KUBECONFIG`` or ``~/.kube/config``."""
    from lightkube.config.kubeconfig import KubeConfig, SingleConfig

    if isinstance(source, SingleConfig):
        return source
    if source is None:
        kc = KubeConfig.from_env()
    elif isinstance(source, KubeConfig):
        kc = source
    elif isinstance(source, (str, os.PathLike)):
        kc = KubeConfig.from_file(Path(source))
    else:
        raise TypeError(f"cannot load a Kubernetes configuration from {type(source).__name__}")
    config = kc.get()
    if config is None:
        raise LockBackendError("the kubeconfig has no current context")
    return config


def _http_client(config: Any) -> httpx.Client:
    from lightkube.config.client_adapter import Client, ConnectionParams

    return Client(config, ConnectionParams(timeout=httpx.Timeout(30.0)))


class KubeAPI:
    """A namespaced JSON client for one core/v1 resource kind."""

    def __init__(
        self,
        resource: str,
        namespace: str | None = None,
        *,
        config: KubeConfigSource = None,
        client: httpx.Client | None = None,
        api_path: str = "/api/v1",
        clock: ServerClock | None = None,
    ):
        self.resource = resource
        if client is None or namespace is None:
            cfg = load_config(config)
            namespace = namespace or cfg.namespace
            client = client or _http_client(cfg)
        assert namespace is not None
        self.namespace = namespace
        self.client = client
        self.clock = clock or ServerClock()
        self.base = f"{api_path}/namespaces/{namespace}/{resource}"

    def close(self) -> None:
        self.client.close()

    def _forbidden(self, method: str, resp: httpx.Response, lock: str | None) -> LockForbidden:
        verb = "watch" if "watch=1" in str(resp.request.url) else _VERBS.get(method, method)
        if method == "GET" and lock is None:
            verb = "list"
        return LockForbidden(
            f"{resp.status_code} from the API server: lockheed needs permission to '{verb}' "
            f"{self.resource} in namespace {self.namespace!r} ({_reason(resp)})",
            lock=lock,
            verb=verb,
            resource=self.resource,
            namespace=self.namespace,
        )

    def request(
        self,
        method: str,
        path: str = "",
        *,
        lock: str | None = None,
        body: Any = None,
        params: dict[str, str] | None = None,
        ok: tuple[int, ...] = (200, 201),
    ) -> tuple[int, Any]:
        """Send one request; return ``(status, json)`` for statuses in ``ok``, 404 or 409."""
        content = None if body is None else json.dumps(body, separators=(",", ":"))
        headers = {"Content-Type": "application/json"} if content is not None else None
        sent = self.clock.monotonic()
        try:
            resp = self.client.request(
                method, self.base + path, content=content, params=params, headers=headers
            )
        except httpx.HTTPError as exc:
            raise LockBackendError(f"{method} {self.resource}{path}: {exc!r}", lock=lock) from exc
        self.clock.observe_http_date(resp.headers.get("date"), sent, self.clock.monotonic())
        status = resp.status_code
        if status in ok or status in (404, 409):
            return status, resp.json() if status in ok else None
        if status in (401, 403):
            raise self._forbidden(method, resp, lock)
        raise LockBackendError(
            f"{method} {self.resource}{path}: HTTP {status}: {_reason(resp)}", lock=lock
        )

    def watch(
        self, name: str, version: str | None, timeout: float | None, *, lock: str | None = None
    ) -> Iterator[tuple[str, Any]]:
        """Yield ``(type, object)`` watch events on one object, from ``version``.

        Ends without an event when ``timeout`` seconds pass (None: the server's
        own limit, about five minutes).
        """
        params = {"watch": "1", "fieldSelector": f"metadata.name={name}"}
        if version is not None:
            params["resourceVersion"] = version
        server_limit = 300 if timeout is None else max(1, int(timeout) + 1)
        params["timeoutSeconds"] = str(server_limit)
        read = None if timeout is None else max(0.001, timeout)
        tmo = httpx.Timeout(30.0, read=read)
        try:
            with self.client.stream("GET", self.base, params=params, timeout=tmo) as resp:
                if resp.status_code in (401, 403):
                    resp.read()
                    raise self._forbidden("GET", resp, lock)
                if resp.status_code != 200:
                    resp.read()
                    raise LockBackendError(
                        f"watch {self.resource}/{name}: HTTP {resp.status_code}: {_reason(resp)}",
                        lock=lock,
                    )
                for line in resp.iter_lines():
                    if line:
                        event = json.loads(line)
                        yield event.get("type", ""), event.get("object")
        except httpx.TimeoutException:
            return
        except httpx.HTTPError as exc:
            raise LockBackendError(f"watch {self.resource}/{name}: {exc!r}", lock=lock) from exc


def _reason(resp: httpx.Response) -> str:
    try:
        status = resp.json()
    except ValueError:
        return resp.text[:200]
    if isinstance(status, dict):
        return str(status.get("message") or status.get("reason") or status)[:300]
    return str(status)[:300]
