"""Writing small, self-contained kubeconfig files."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

__all__ = ["cert_user", "token_user", "write_kubeconfig"]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def cert_user(cert_pem: bytes, key_pem: bytes) -> dict[str, str]:
    """A kubeconfig ``user`` entry that authenticates with an embedded client certificate."""
    return {"client-certificate-data": _b64(cert_pem), "client-key-data": _b64(key_pem)}


def token_user(token: str) -> dict[str, str]:
    """A kubeconfig ``user`` entry that authenticates with a bearer token."""
    return {"token": token}


def write_kubeconfig(
    path: Path,
    *,
    server: str,
    user_name: str,
    user: dict[str, str],
    namespace: str,
    ca_pem: bytes | None = None,
    insecure: bool = False,
    cluster_name: str = "lockheed",
) -> Path:
    """Write a kubeconfig with a single cluster, user and (current) context.

    The file is created with mode 0600 because it holds credentials.
    """
    cluster: dict[str, Any] = {"server": server}
    if ca_pem is not None:
        cluster["certificate-authority-data"] = _b64(ca_pem)
    if insecure:
        cluster["insecure-skip-tls-verify"] = True
    context_name = f"{user_name}@{cluster_name}"
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster_name, "cluster": cluster}],
        "users": [{"name": user_name, "user": user}],
        "contexts": [
            {
                "name": context_name,
                "context": {"cluster": cluster_name, "user": user_name, "namespace": namespace},
            }
        ],
        "current-context": context_name,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path
