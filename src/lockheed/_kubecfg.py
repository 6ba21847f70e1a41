"""Kubernetes connection settings and error translation, shared by both transports.

Settings (kubeconfig, in-cluster service account, exec plugins, TLS) come from
lightkube's configuration layer, which also builds the ``httpx2`` clients.
lightkube is imported on first use (httpx2 is imported by the transports).

Failure semantics: a missing or malformed kubeconfig raises
:class:`~lockheed.LockConfigError` naming the file and the problem's place,
never its text, and so do TLS files or credentials that cannot be used (when
the locker is made, or at a request for a token file or an exec plugin). A
401 becomes :class:`~lockheed.LockUnauthorized`, a 403
:class:`~lockheed.LockForbidden`. The ``SingleConfig`` handed out keeps its
credentials out of ``repr`` and ``str``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ._errors import LockConfigError, LockError, LockForbidden, LockUnauthorized

if TYPE_CHECKING:
    import httpx2 as httpx

__all__ = [
    "Answer",
    "async_http_client",
    "bounded",
    "forbidden",
    "http_client",
    "lean_endpoint",
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


def bounded() -> bool:
    """Whether the requests made now are under a :func:`request_deadline`."""
    return _DEADLINE.get() is not None


def request_timeout() -> float:
    """Seconds a request may take now: the default, or less under a deadline."""
    deadline = _DEADLINE.get()
    if deadline is None:
        return REQUEST_TIMEOUT
    return max(0.05, min(REQUEST_TIMEOUT, deadline - time.monotonic()))


def load_config(source: KubeConfigSource = None) -> Any:
    """A lightkube ``SingleConfig`` from a path, a ``KubeConfig``, a ``SingleConfig``,
    or (None) the in-cluster service account, ``$KUBECONFIG`` or ``~/.kube/config``.

    A missing or malformed configuration raises :class:`~lockheed.LockConfigError`
    naming the file. The result's ``repr`` shows no credentials.
    """
    from lightkube.config.kubeconfig import KubeConfig, SingleConfig
    from lightkube.core.exceptions import ConfigError

    if isinstance(source, SingleConfig):
        return _redacting(source)
    where = "the Kubernetes configuration"
    if source is None:
        try:
            kc = KubeConfig.from_service_account()
        except (ConfigError, KeyError):  # not in a pod (token files or environment missing)
            path = os.environ.get("KUBECONFIG") or "~/.kube/config"
            where = f"kubeconfig {path}"
            kc = _read_kubeconfig(Path(path))
    elif isinstance(source, KubeConfig):
        where = f"kubeconfig {source.fname}" if source.fname else "the given KubeConfig"
        kc = source
    elif isinstance(source, (str, os.PathLike)):
        where = f"kubeconfig {os.fspath(source)}"
        kc = _read_kubeconfig(Path(source))
    else:
        raise TypeError(f"cannot load a Kubernetes configuration from {type(source).__name__}")
    try:
        config = kc.get()
    except ConfigError as exc:
        raise LockConfigError(f"{where}: {exc}") from None
    except KeyError as exc:  # the context names a cluster or user that is not defined
        raise LockConfigError(
            f"{where}: its context {kc.current_context!r} names {exc}, which is not defined"
        ) from None
    if config is None:
        raise LockConfigError(f"{where} has no current context")
    return _redacting(config)


def _read_kubeconfig(path: Path) -> Any:
    """Parse a kubeconfig file; every problem is a LockConfigError naming the file.

    Messages give the place of a syntax error, never the text around it: a
    kubeconfig holds credentials.
    """
    import yaml
    from lightkube.config.kubeconfig import KubeConfig
    from lightkube.core.exceptions import ConfigError

    path = path.expanduser()
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise LockConfigError(f"cannot read kubeconfig {path}: {why}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or type(exc).__name__
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise LockConfigError(f"kubeconfig {path} is not valid YAML: {problem}{at}") from None
    if doc is None:
        raise LockConfigError(f"kubeconfig {path} is empty")
    if not isinstance(doc, dict):
        raise LockConfigError(
            f"kubeconfig {path} is not a kubeconfig: a mapping with clusters, contexts and "
            f"users was expected, not {type(doc).__name__}"
        )
    try:
        return KubeConfig.from_dict(doc, fname=path)
    except ConfigError as exc:
        raise LockConfigError(f"kubeconfig {path}: {exc}") from None
    except KeyError as exc:
        raise LockConfigError(f"kubeconfig {path} is malformed: {exc} is missing") from None
    except (TypeError, ValueError, AttributeError) as exc:
        # msgspec's ValidationError (a ValueError) names the field, never its value
        detail = (
            str(exc)
            if isinstance(exc, ValueError)
            else "clusters, contexts and users must be lists of entries with a name"
        )
        raise LockConfigError(f"kubeconfig {path} is malformed: {detail}") from None


def _redacting(config: Any) -> Any:
    """``config`` as a ``SingleConfig`` whose repr and str show no credentials."""
    cls = _redacting_class()
    return config if isinstance(config, cls) else cls(*config)


@functools.cache
def _redacting_class() -> Any:
    from lightkube.config.kubeconfig import SingleConfig

    class RedactedSingleConfig(SingleConfig):
        """A lightkube ``SingleConfig`` that keeps its credentials out of repr and str."""

        __slots__ = ()

        def __repr__(self) -> str:
            user = self.user
            kinds = []
            if user is not None:
                for attr, kind in _CREDENTIALS:
                    if getattr(user, attr, None):
                        kinds.append(kind)
            held = ", ".join(kinds) or "none"
            return (
                f"SingleConfig(context={self.context_name!r}, server={self.cluster.server!r}, "
                f"namespace={self.namespace!r}, user={self.context.user!r}, "
                f"credentials=<redacted: {held}>, file={str(self.fname) if self.fname else None!r})"
            )

        __str__ = __repr__

    return RedactedSingleConfig


# Attributes of lightkube's User that hold or point to credentials, by kind.
_CREDENTIALS = (
    ("token", "token"),
    ("token_file", "token file"),
    ("password", "password"),
    ("client_cert", "client certificate"),
    ("client_cert_data", "client certificate"),
    ("client_key", "client key"),
    ("client_key_data", "client key"),
    ("exec", "exec plugin"),
    ("auth_provider", "auth provider"),
)


def _params() -> Any:
    import httpx2
    from lightkube.config.client_adapter import ConnectionParams

    return ConnectionParams(timeout=httpx2.Timeout(REQUEST_TIMEOUT))


# Each API gets two clients: one for requests and one for watches. A wait holds
# a connection until the watch ends, and ending it closes that connection
# (HTTP/1.1; over HTTP/2 the client would leave the watch running on the
# server). With its own pool for watches, the write that completes a hand-off
# goes out on a warm connection instead of paying for a new TLS handshake.


def lean_endpoint(config: Any) -> Any:
    """Where the lean HTTP/1.1 client (:mod:`lockheed._http1`) sends the plain
    requests for ``config``: the same server, TLS context and credentials as the
    ``httpx2`` client's; None when only ``httpx2`` can serve it the same way."""
    from lightkube.config.client_adapter import verify_cluster

    from ._http1 import endpoint_for

    if os.environ.get("LOCKHEED_HTTP1", "1") == "0":
        return None
    try:
        verify = None
        if str(config.cluster.server).startswith("https:"):
            verify = verify_cluster(config.cluster, config.user, config.abs_file)
        where = f"context {config.context_name!r}"
        if config.fname:
            where = f"kubeconfig {config.fname}, {where}"
        return endpoint_for(config, verify, where)
    except Exception:  # whatever the lean client cannot use, httpx2 serves (or reports)
        return None


def http_client(config: Any) -> httpx.Client:
    from lightkube.config.client_adapter import Client

    client: httpx.Client = _guarded(Client, config)
    return client


def async_http_client(config: Any) -> httpx.AsyncClient:
    from lightkube.config.client_adapter import AsyncClient

    client: httpx.AsyncClient = _guarded(AsyncClient, config)
    return client


def _guarded(make: Any, config: Any) -> Any:
    """A client from ``make``; TLS files or credentials it cannot use, now or when
    a request needs them (a token file, an exec plugin), raise LockConfigError."""
    from lightkube.core.exceptions import ConfigError

    where = f"context {config.context_name!r}"
    if config.fname:
        where = f"kubeconfig {config.fname}, {where}"
    try:
        client = make(config, _params())
    except (ConfigError, OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise LockConfigError(
            f"{where}: cannot use its certificate authority, client certificate or key, or "
            f"credentials: {exc}"
        ) from None
    if client.auth is not None:
        client.auth = _credential_errors()(client.auth, where)
    return client


@functools.cache
def _credential_errors() -> Any:
    import httpx2
    from lightkube.core.exceptions import ConfigError

    class CredentialErrors(httpx2.Auth):
        """Delegates to lightkube's auth; its ConfigError becomes LockConfigError."""

        def __init__(self, inner: Any, where: str):
            self.inner, self.where = inner, where
            self.requires_request_body = inner.requires_request_body
            self.requires_response_body = inner.requires_response_body

        def _error(self, exc: Exception) -> LockConfigError:
            return LockConfigError(f"{self.where}: cannot get credentials: {exc}")

        def sync_auth_flow(self, request: Any) -> Any:
            try:
                return (yield from self.inner.sync_auth_flow(request))
            except ConfigError as exc:
                raise self._error(exc) from None

        async def async_auth_flow(self, request: Any) -> Any:
            flow = self.inner.async_auth_flow(request)
            try:
                outgoing = await flow.__anext__()
                while True:
                    response = yield outgoing
                    outgoing = await flow.asend(response)
            except StopAsyncIteration:
                return
            except ConfigError as exc:
                raise self._error(exc) from None
            finally:
                await flow.aclose()

    return CredentialErrors


class Answer(Protocol):
    """What the error helpers read of an answer (an ``httpx2.Response``, or the
    lean client's :class:`~lockheed._http1.Response` or stream)."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def text(self) -> str: ...

    def json(self) -> Any: ...


def reason(resp: Answer) -> str:
    try:
        status = resp.json()
    except ValueError:
        return resp.text[:200]
    if isinstance(status, dict):
        return str(status.get("message") or status.get("reason") or status)[:300]
    return str(status)[:300]


def retry_after(resp: Answer) -> float | None:
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
    method: str, resp: Answer, resource: str, namespace: str, lock: str | None, watch: bool
) -> LockError:
    """The error for a 401 (:class:`LockUnauthorized`, a login failure) or a 403
    (:class:`LockForbidden`, naming the verb, resource and namespace needed)."""
    if resp.status_code == 401:
        return LockUnauthorized(
            "401 Unauthorized from the API server: it did not accept lockheed's credentials "
            "(a token or client certificate that is wrong, expired or revoked; check the "
            f"kubeconfig's user or the service account token) ({reason(resp)})",
            lock=lock,
        )
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
