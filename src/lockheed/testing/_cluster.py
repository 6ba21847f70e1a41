"""What tests need from a Kubernetes API server, and an existing cluster that provides it.

:class:`Cluster` holds what the local :class:`~lockheed.testing.ControlPlane`
and :class:`ExistingCluster` have in common: an admin kubeconfig, fresh
namespaces, users restricted to a set of RBAC rules, and API clients.
"""

from __future__ import annotations

import abc
import base64
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, cast

import httpx2
import lightkube
from lightkube.config.client_adapter import Client as _adapter_client
from lightkube.config.client_adapter import ConnectionParams
from lightkube.config.kubeconfig import KubeConfig, SingleConfig
from lightkube.core.exceptions import ApiError
from lightkube.models.authentication_v1 import TokenRequestSpec
from lightkube.models.authorization_v1 import ResourceAttributes, SubjectAccessReviewSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.models.rbac_v1 import PolicyRule, RoleRef, Subject
from lightkube.resources.authorization_v1 import SubjectAccessReview
from lightkube.resources.core_v1 import Namespace, ServiceAccount, ServiceAccountToken
from lightkube.resources.rbac_authorization_v1 import Role, RoleBinding

from ._kubeconfig import token_user, write_kubeconfig

__all__ = ["Cluster", "ClusterError", "ExistingCluster", "Rule", "unique_name"]

Rule = Mapping[str, Any]
"""A PolicyRule as a dict, e.g. ``{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}``."""

FIELD_MANAGER = "lockheed-testing"
CREATED_BY_LABEL = "app.kubernetes.io/created-by"
_RBAC_GROUP = "rbac.authorization.k8s.io"
_RBAC_PROPAGATION_TIMEOUT = 15.0
_POLL_INTERVAL = 0.02
_TOKEN_SECONDS = 24 * 3600
_NAME_MAX = 63
_SUFFIX_LEN = 8

_ClusterT = TypeVar("_ClusterT", bound="Cluster")


class ClusterError(RuntimeError):
    """The cluster did not do what the harness needed."""


def _label_prefix(text: str) -> str:
    """``text`` reduced to characters allowed in a DNS-1123 label, short enough for a suffix."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-") or "test"
    return cleaned[: _NAME_MAX - _SUFFIX_LEN - 1].rstrip("-")


def unique_name(prefix: str) -> str:
    """A fresh DNS-1123 label that starts with a sanitised ``prefix``."""
    return f"{_label_prefix(prefix)}-{secrets.token_hex(_SUFFIX_LEN // 2)}"


def _rule_checks(rules: Iterable[Rule]) -> list[ResourceAttributes]:
    """One access check per rule (its first group, resource, verb and name)."""
    checks = []
    for rule in rules:
        resources = rule.get("resources") or []
        verbs = rule.get("verbs") or []
        if not resources or not verbs:
            continue  # non-resource rules do not apply to namespaced Roles
        resource, _, subresource = str(resources[0]).partition("/")
        names = rule.get("resourceNames") or [None]
        groups = rule.get("apiGroups") or [""]
        checks.append(
            ResourceAttributes(
                group=groups[0],
                resource=resource,
                subresource=subresource or None,
                verb=verbs[0],
                name=names[0],
            )
        )
    return checks


class Cluster(abc.ABC):
    """An API server the tests may use, reached through an admin kubeconfig."""

    _trust_env = True

    def __init__(self) -> None:
        self._kubeconfig: Path | None = None
        self._admin: lightkube.Client | None = None

    # -- lifecycle -------------------------------------------------------

    def start(self: _ClusterT) -> _ClusterT:
        """Make the cluster usable; returns ``self``."""
        return self

    def stop(self) -> None:
        """Release what the harness holds. Safe to call more than once."""
        if self._admin is not None:
            self._admin.close()
            self._admin = None

    def __enter__(self: _ClusterT) -> _ClusterT:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- access ----------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        """Path of a kubeconfig with cluster-admin rights."""
        if self._kubeconfig is None:
            raise ClusterError(f"{type(self).__name__} is not started")
        return self._kubeconfig

    @property
    def server(self) -> str:
        """The API server URL."""
        return self._single_config(self.kubeconfig).cluster.server

    def log_tail(self, n: int = 50) -> str:
        """The last ``n`` lines of the API server log, if the harness has it."""
        return ""

    def _single_config(self, kubeconfig: Path) -> SingleConfig:
        config = KubeConfig.from_file(kubeconfig).get()
        if config is None:
            raise ClusterError(f"{kubeconfig} has no current context")
        return config

    def client(
        self, kubeconfig: Path | None = None, *, namespace: str | None = None
    ) -> lightkube.Client:
        """A new lightkube client for ``kubeconfig`` (default: the admin one)."""
        return lightkube.Client(
            KubeConfig.from_file(kubeconfig or self.kubeconfig),
            namespace=namespace,
            field_manager=FIELD_MANAGER,
            trust_env=self._trust_env,
        )

    def http_client(self, kubeconfig: Path | None = None) -> httpx2.Client:
        """An HTTP client with the server URL, TLS and credentials of ``kubeconfig``."""
        config = self._single_config(kubeconfig or self.kubeconfig)
        return _adapter_client(config, ConnectionParams(trust_env=self._trust_env))

    def _admin_client(self) -> lightkube.Client:
        if self._admin is None:
            self._admin = self.client()
        return self._admin

    # -- namespaces and users ---------------------------------------------

    def create_namespace(self, prefix: str = "test") -> str:
        """Create a namespace with a unique name starting with ``prefix``; return the name."""
        name = unique_name(prefix)
        metadata = ObjectMeta(name=name, labels={CREATED_BY_LABEL: FIELD_MANAGER})
        self._admin_client().create(Namespace(metadata=metadata))
        return name

    def delete_namespace(self, name: str) -> None:
        """Delete a namespace (without a controller-manager it stays ``Terminating``)."""
        try:
            self._admin_client().delete(Namespace, name)
        except ApiError as error:
            if error.status.code != 404:
                raise

    @abc.abstractmethod
    def mint_user(self, name: str, namespace: str, rules: Sequence[Rule]) -> Path:
        """Create a user allowed only ``rules`` in ``namespace``; return its kubeconfig path."""

    def _grant(self, namespace: str, rules: Sequence[Rule], subject: Subject) -> None:
        """Bind ``subject`` to a new Role holding ``rules`` in ``namespace``."""
        admin = self._admin_client()
        role = admin.create(
            Role(
                metadata=ObjectMeta(
                    generateName=f"{_label_prefix(subject.name)}-", namespace=namespace
                ),
                rules=[cast(PolicyRule, PolicyRule.from_dict(dict(rule))) for rule in rules],
            )
        )
        role_name = role.metadata.name if role.metadata else None
        if not role_name:
            raise ClusterError("the API server returned a Role without a name")
        admin.create(
            RoleBinding(
                metadata=ObjectMeta(name=role_name, namespace=namespace),
                roleRef=RoleRef(apiGroup=_RBAC_GROUP, kind="Role", name=role_name),
                subjects=[subject],
            )
        )

    def _wait_until_authorized(
        self, namespace: str, rules: Sequence[Rule], user: str, groups: Sequence[str]
    ) -> None:
        """Wait until the authorizer's cache reflects the new RoleBinding."""
        deadline = time.monotonic() + _RBAC_PROPAGATION_TIMEOUT
        for check in _rule_checks(rules):
            check.namespace = namespace
            review = SubjectAccessReview(
                spec=SubjectAccessReviewSpec(
                    user=user, groups=list(groups), resourceAttributes=check
                )
            )
            while not self._allowed(review):
                if time.monotonic() > deadline:
                    raise ClusterError(f"RBAC rules for {user} in {namespace} did not take effect")
                time.sleep(_POLL_INTERVAL)

    def _allowed(self, review: SubjectAccessReview) -> bool:
        result = self._admin_client().create(review)
        return bool(result.status and result.status.allowed)


class ExistingCluster(Cluster):
    """A cluster reached through an existing admin kubeconfig (for example kind or a CI cluster).

    Minted users are service accounts with a token from the TokenRequest API,
    because the harness cannot sign client certificates for an unknown CA.
    Their kubeconfigs are written to a temporary directory removed by
    :meth:`stop`. Proxy environment variables are honoured.
    """

    def __init__(self, kubeconfig: Path | str) -> None:
        super().__init__()
        self._kubeconfig = Path(kubeconfig).expanduser()
        self._single_config(self._kubeconfig)  # fail early on a broken file
        self._users_dir = Path(tempfile.mkdtemp(prefix="lockheed-users-"))

    def stop(self) -> None:
        """Close the admin client and remove the minted kubeconfigs."""
        super().stop()
        shutil.rmtree(self._users_dir, ignore_errors=True)

    def mint_user(self, name: str, namespace: str, rules: Sequence[Rule]) -> Path:
        """Create a ServiceAccount allowed only ``rules``; return a kubeconfig with its token."""
        account = unique_name(name)
        admin = self._admin_client()
        admin.create(ServiceAccount(metadata=ObjectMeta(name=account, namespace=namespace)))
        subject = Subject(kind="ServiceAccount", name=account, namespace=namespace)
        self._grant(namespace, rules, subject)
        request = ServiceAccountToken(
            metadata=ObjectMeta(name=account, namespace=namespace),
            spec=TokenRequestSpec(audiences=[], expirationSeconds=_TOKEN_SECONDS),
        )
        issued = admin.create(request, account, namespace=namespace)
        if issued.status is None or not issued.status.token:
            raise ClusterError(f"TokenRequest for {namespace}/{account} returned no token")
        self._wait_until_authorized(
            namespace,
            rules,
            user=f"system:serviceaccount:{namespace}:{account}",
            groups=["system:serviceaccounts", f"system:serviceaccounts:{namespace}"],
        )
        return self._write_user_kubeconfig(account, namespace, issued.status.token)

    def _write_user_kubeconfig(self, account: str, namespace: str, token: str) -> Path:
        source = self._single_config(self.kubeconfig)
        cluster = source.cluster
        ca_pem: bytes | None = None
        if cluster.certificate_auth_data:
            ca_pem = base64.b64decode(cluster.certificate_auth_data)
        elif cluster.certificate_auth:
            ca_pem = Path(source.abs_file(cluster.certificate_auth)).read_bytes()
        return write_kubeconfig(
            self._users_dir / f"{account}.{namespace}.kubeconfig",
            server=cluster.server,
            user_name=account,
            user=token_user(token),
            namespace=namespace,
            ca_pem=ca_pem,
            insecure=cluster.insecure,
        )
