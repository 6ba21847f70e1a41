"""HTTP transport to the Kubernetes API.

Plain JSON over lightkube's configured ``httpx2`` client: every response's
``Date`` header feeds the :class:`~lockheed._clock.ServerClock`, and no model
objects are built on the hot path. Failures leave this module as
:class:`~lockheed.LockError` subclasses: 401 as
:class:`~lockheed.LockUnauthorized` (the credentials were not accepted), 403
as :class:`~lockheed.LockForbidden` naming the verb, resource and namespace,
a missing or malformed kubeconfig as :class:`~lockheed.LockConfigError`
(naming the file, never a credential), anything unexpected as
:class:`~lockheed.LockBackendError`, marked ``transient`` for transport
errors (refused, reset, timed out), 5xx and 429 (with ``retry_after`` from
the ``Retry-After`` header). 404 and 409 are returned as statuses, because
the core decides what they mean.

Requests and watches go through the lean HTTP/1.1 client of
:mod:`lockheed._http1` when this API built its own clients and the
configuration allows (same TLS context and credentials; not for exec plugins
or proxies), and through ``httpx2`` otherwise, or when the environment sets
``LOCKHEED_HTTP1=0``; plain requests also while ``httpx2`` event hooks are
set on ``self.client``, and watches while they are set on
``self.watch_client`` (hooks see every request). Both paths fail in the same
way.
Each request (a watch when it opens or fails to) is reported to the
observers of :mod:`lockheed._observe`, if any: verb, resource and status.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import TYPE_CHECKING, Any

from .. import _observe
from .._clock import ServerClock
from .._errors import LockBackendError, LockError
from .._http1 import ProtocolError, request_target
from .._kubecfg import (
    Answer,
    KubeConfigSource,
    async_http_client,
    forbidden,
    lean_endpoint,
    load_config,
    reason,
    request_timeout,
    retry_after,
)
from .http1 import Http1Pool

if TYPE_CHECKING:
    import httpx2 as httpx

__all__ = ["AsyncKubeAPI"]


class AsyncKubeAPI:
    """A namespaced JSON client for one resource kind."""

    #: Observers of this client's requests (:mod:`lockheed._observe`); None: the process's.
    observer: Any = None

    def __init__(
        self,
        resource: str,
        namespace: str | None = None,
        *,
        config: KubeConfigSource = None,
        client: httpx.AsyncClient | None = None,
        api_path: str = "/api/v1",
        clock: ServerClock | None = None,
    ):
        self.resource = resource
        #: The lightkube ``SingleConfig`` used, when this client built its own connection.
        self.config: Any = None
        watch_client = client
        #: The lean client for plain requests (None: httpx2 serves them).
        self.lean: Http1Pool | None = None
        if client is None or namespace is None:
            cfg = self.config = load_config(config)
            namespace = namespace or cfg.namespace
            if client is None:
                client = async_http_client(cfg)
                watch_client = async_http_client(cfg)
                endpoint = lean_endpoint(cfg)
                if endpoint is not None:
                    self.lean = Http1Pool(endpoint)
        assert namespace is not None and client is not None and watch_client is not None
        self.namespace: str = namespace
        self.client = client
        #: The client for watches: its own pool when this API built its clients.
        self.watch_client = watch_client
        self.clock = clock or ServerClock()
        self.base = f"{api_path}/namespaces/{namespace}/{resource}"

    async def aclose(self) -> None:
        if self.lean is not None:
            await self.lean.aclose()
        await self.client.aclose()
        if self.watch_client is not self.client:
            await self.watch_client.aclose()

    async def request(
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
        sent = self.clock.monotonic()
        resp: Any
        lean = self.lean
        hooks = self.client.event_hooks
        if lean is not None and not hooks["request"] and not hooks["response"]:
            try:
                resp = await lean.request(
                    method,
                    request_target(self.base + path, params),
                    None if content is None else content.encode(),
                    request_timeout(),
                )
            except (OSError, ProtocolError, TimeoutError) as exc:
                if (obs := _observe.of(self)) is not None:
                    obs.request(_observe.verb_of(method, path), self.resource, "error")
                raise LockBackendError(
                    f"{method} {self.resource}{path}: {exc!r}", lock=lock, transient=True
                ) from exc
        else:
            import httpx2 as httpx  # loaded already: it made self.client

            headers = {"Content-Type": "application/json"} if content is not None else None
            try:
                resp = await self.client.request(
                    method,
                    self.base + path,
                    content=content,
                    params=params,
                    headers=headers,
                    timeout=request_timeout(),
                )
            except httpx.HTTPError as exc:
                if (obs := _observe.of(self)) is not None:
                    obs.request(_observe.verb_of(method, path), self.resource, "error")
                raise LockBackendError(
                    f"{method} {self.resource}{path}: {exc!r}",
                    lock=lock,
                    transient=isinstance(exc, httpx.TransportError),
                ) from exc
        return self._answer(method, path, lock, ok, resp, sent, self.clock.monotonic())

    async def request_batch(
        self, requests: Sequence[tuple[str, str, Any, dict[str, str] | None, str | None]]
    ) -> list[tuple[int, Any] | LockError]:
        """Several requests ``(method, path, body, params, lock)``, each as
        :meth:`request` sends it, pipelined on one connection when the lean
        client serves them (else one after another), all within the request
        timeout. Each item is what :meth:`request` would return for it, or the
        :class:`~lockheed.LockError` it would raise (for a request left without
        an answer: transient, its outcome unknown)."""
        lean = self.lean
        hooks = self.client.event_hooks
        if lean is None or hooks["request"] or hooks["response"] or len(requests) < 2:
            out: list[tuple[int, Any] | LockError] = []
            for method, path, body, params, lock in requests:
                try:
                    got = await self.request(method, path, lock=lock, body=body, params=params)
                    out.append(got)
                except LockError as exc:
                    out.append(exc)
            return out
        calls = [
            (
                method,
                request_target(self.base + path, params),
                None if body is None else json.dumps(body, separators=(",", ":")).encode(),
            )
            for method, path, body, params, _ in requests
        ]
        sent = self.clock.monotonic()
        answers = await lean.request_batch(calls, request_timeout())
        received = self.clock.monotonic()
        out = []
        for (method, path, _, _, lock), answer in zip(requests, answers, strict=True):
            if isinstance(answer, Exception):
                if (obs := _observe.of(self)) is not None:
                    obs.request(_observe.verb_of(method, path), self.resource, "error")
                out.append(
                    LockBackendError(
                        f"{method} {self.resource}{path}: {answer!r}", lock=lock, transient=True
                    )
                )
                continue
            try:
                out.append(self._answer(method, path, lock, (200, 201), answer, sent, received))
            except LockError as exc:
                out.append(exc)
        return out

    def _answer(
        self,
        method: str,
        path: str,
        lock: str | None,
        ok: tuple[int, ...],
        resp: Any,
        sent: float,
        received: float,
    ) -> tuple[int, Any]:
        """A response sent at ``sent`` and read by ``received``, as :meth:`request` returns it."""
        self.clock.observe_http_date(resp.headers.get("date"), sent, received)
        status = resp.status_code
        if (obs := _observe.of(self)) is not None:
            obs.request(_observe.verb_of(method, path), self.resource, str(status))
        if status in ok or status in (404, 409):
            return status, resp.json() if status in ok else None
        if status in (401, 403):
            raise forbidden(method, resp, self.resource, self.namespace, lock, watch=False)
        raise LockBackendError(
            f"{method} {self.resource}{path}: HTTP {status}: {reason(resp)}",
            lock=lock,
            transient=status == 429 or status >= 500,
            retry_after=retry_after(resp),
        )

    def watch(
        self,
        name: str,
        version: str | None,
        timeout: float | None,
        *,
        lock: str | None = None,
        opened: Callable[[Any], None] | None = None,
        label: str | None = None,
    ) -> AsyncGenerator[tuple[str, Any], None]:
        """Yield ``(type, object)`` watch events on one object, from ``version``.

        Ends when ``timeout`` seconds pass without an event (None: the server's
        own limit, about five minutes). ``opened`` is called with the streaming
        response once it is established. With ``label``, only the versions that
        carry that label are sent (ADDED when one starts to, DELETED when one
        stops: see :mod:`lockheed._async.sessions`). The lean client reads it
        when it serves this API's requests and no hook watches the watch
        client; ``httpx2`` otherwise.
        """
        params = {"watch": "1", "fieldSelector": f"metadata.name={name}"}
        if label is not None:
            params["labelSelector"] = label
        if version is not None:
            params["resourceVersion"] = version
        params["timeoutSeconds"] = str(300 if timeout is None else max(1, int(timeout) + 1))
        read = None if timeout is None else max(0.001, timeout)
        lean = self.lean
        hooks = self.watch_client.event_hooks
        if lean is not None and not hooks["request"] and not hooks["response"]:
            return self._lean_watch(lean, name, params, read, lock, opened)
        return self._httpx_watch(name, params, read, lock, opened)

    async def _httpx_watch(
        self,
        name: str,
        params: dict[str, str],
        read: float | None,
        lock: str | None,
        opened: Callable[[Any], None] | None,
    ) -> AsyncGenerator[tuple[str, Any], None]:
        import httpx2 as httpx  # loaded already: it made self.watch_client

        tmo = httpx.Timeout(request_timeout(), read=read)
        answered = False
        try:
            async with self.watch_client.stream(
                "GET", self.base, params=params, timeout=tmo
            ) as resp:
                answered = True
                if (obs := _observe.of(self)) is not None:
                    obs.request("watch", self.resource, str(resp.status_code))
                if resp.status_code != 200:
                    await resp.aread()
                    raise self._watch_refused(resp, name, lock)
                if opened is not None:
                    opened(resp)
                async for line in resp.aiter_lines():
                    if line:
                        yield _event(line)
        except httpx.TimeoutException:
            if not answered and (obs := _observe.of(self)) is not None:
                obs.request("watch", self.resource, "error")
            return
        except httpx.HTTPError as exc:
            if not answered and (obs := _observe.of(self)) is not None:
                obs.request("watch", self.resource, "error")
            raise LockBackendError(
                f"watch {self.resource}/{name}: {exc!r}",
                lock=lock,
                transient=isinstance(exc, httpx.TransportError),
            ) from exc

    def _watch_refused(self, resp: Answer, name: str, lock: str | None) -> LockError:
        """The error for a watch that the server answered other than 200."""
        if resp.status_code in (401, 403):
            return forbidden("GET", resp, self.resource, self.namespace, lock, watch=True)
        return LockBackendError(
            f"watch {self.resource}/{name}: HTTP {resp.status_code}: {reason(resp)}",
            lock=lock,
            transient=resp.status_code == 429 or resp.status_code >= 500,
            retry_after=retry_after(resp),
        )

    async def _lean_watch(
        self,
        lean: Http1Pool,
        name: str,
        params: dict[str, str],
        read: float | None,
        lock: str | None,
        opened: Callable[[Any], None] | None,
    ) -> AsyncGenerator[tuple[str, Any], None]:
        """:meth:`watch` on the lean client: a watch's events are small lines
        on one chunked answer, and the general client's machinery per line
        cost a waiter more CPU than the line's JSON."""
        obs = _observe.of(self)
        try:
            resp = await lean.stream(request_target(self.base, params), request_timeout())
        except (OSError, ProtocolError, TimeoutError) as exc:
            if obs is not None:
                obs.request("watch", self.resource, "error")
            raise LockBackendError(
                f"watch {self.resource}/{name}: {exc!r}", lock=lock, transient=True
            ) from exc
        try:
            if obs is not None:
                obs.request("watch", self.resource, str(resp.status_code))
            if resp.status_code != 200:
                await resp.aread()
                raise self._watch_refused(resp, name, lock)
            if opened is not None:
                opened(resp)
            async for line in resp.lines(read):
                if line:
                    yield _event(line)
        except LockError:
            raise  # refused (LockForbidden is also a PermissionError, an OSError)
        except (OSError, ProtocolError) as exc:
            raise LockBackendError(
                f"watch {self.resource}/{name}: {exc!r}", lock=lock, transient=True
            ) from exc
        finally:
            await resp.aclose()


def _event(line: str | bytes) -> tuple[str, Any]:
    """A watch event's type and object, from its line."""
    event = json.loads(line)
    return event.get("type", ""), event.get("object")
