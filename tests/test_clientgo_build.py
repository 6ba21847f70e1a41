"""The client-go test program (tests/clientgo.py): the version it pins, and what
happens when it cannot be had. The program itself is exercised by
tests/test_clientgo_interop.py; these tests need neither ``go`` nor the network.
"""

from __future__ import annotations

import re

import pytest

import clientgo
import golockheed
from lockheed.testing._build import KUBE_VERSION


def required_versions() -> dict[str, str]:
    """The module versions tests/clientgo/go.mod requires, by module path."""
    text = (clientgo.SOURCE_DIR / "go.mod").read_text()
    return dict(re.findall(r"^\s*(k8s\.io/[\w./-]+) (v\S+)", text, flags=re.MULTILINE))


def test_client_go_is_the_control_planes_kubernetes_version() -> None:
    """client-go v0.X.Y is the client of Kubernetes v1.X.Y: the program must be
    built against the release of the kube-apiserver the tests run."""
    major, minor, patch = KUBE_VERSION.lstrip("v").split(".")
    assert major == "1"
    assert f"v0.{minor}.{patch}" == clientgo.CLIENT_GO_VERSION
    versions = required_versions()
    for module in ("k8s.io/client-go", "k8s.io/api", "k8s.io/apimachinery"):
        assert versions.get(module) == clientgo.CLIENT_GO_VERSION, (module, versions)


def test_a_missing_client_go_program_skips_or_fails_when_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(clientgo, "_outcome", "client-go v0.35.4 test program cannot be built: x")
    monkeypatch.delenv(golockheed.REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="cannot be built: x"):
        clientgo.clientgo_binary()
    monkeypatch.setenv(golockheed.REQUIRE_ENV, "0")
    with pytest.raises(pytest.skip.Exception):
        clientgo.clientgo_binary()
    monkeypatch.setenv(golockheed.REQUIRE_ENV, "1")  # as .ci/run sets it in CI
    with pytest.raises(pytest.fail.Exception, match=r"cannot be built: x.*REQUIRE_GOLOCKHEED"):
        clientgo.clientgo_binary()


def test_the_command_line_names_the_program_or_why_not(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``python tests/clientgo.py`` (run by .ci/run before the tests) exits 1 with
    the reason when the program cannot be had, and prints its path when it can."""
    monkeypatch.setattr(clientgo, "_outcome", "client-go v0.35.4 test program cannot be built: x")
    assert clientgo.main() == 1
    assert "cannot be built: x" in capsys.readouterr().err
    monkeypatch.setattr(clientgo, "_outcome", clientgo.SOURCE_DIR / "clientgo")
    assert clientgo.main() == 0
    assert capsys.readouterr().out.strip() == str(clientgo.SOURCE_DIR / "clientgo")
