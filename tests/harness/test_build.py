"""Finding and caching the control-plane binaries, without running a build."""

from __future__ import annotations

from pathlib import Path

import pytest

from lockheed.testing import Binaries, BuildError, _build, ensure_binaries


def _executables(directory: Path, *names: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = directory / name
        path.write_text("#!/bin/sh\nexit 0\n")
        path.chmod(0o755)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No asset variables, an empty cache directory, and no ``go`` on PATH."""
    for variable in (_build.ASSETS_ENV, _build.ENVTEST_ASSETS_ENV, "XDG_CACHE_HOME"):
        monkeypatch.delenv(variable, raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv(_build.CACHE_ENV, str(cache))
    monkeypatch.setenv("PATH", str(tmp_path / "empty-path"))
    return cache


def test_assets_directory_is_used_without_building(
    clean_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assets = tmp_path / "assets"
    _executables(assets, "etcd", "kube-apiserver")
    monkeypatch.setenv(_build.ASSETS_ENV, str(assets))

    assert ensure_binaries() == Binaries(assets / "etcd", assets / "kube-apiserver")
    assert not clean_env.exists()


def test_envtest_assets_are_the_fallback(
    clean_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assets = tmp_path / "envtest"
    _executables(assets, "etcd", "kube-apiserver", "kubectl")
    monkeypatch.setenv(_build.ENVTEST_ASSETS_ENV, str(assets))

    assert ensure_binaries().kube_apiserver == assets / "kube-apiserver"


def test_incomplete_assets_directory_is_an_error(
    clean_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assets = tmp_path / "assets"
    _executables(assets, "etcd")
    monkeypatch.setenv(_build.ASSETS_ENV, str(assets))

    with pytest.raises(BuildError, match="kube-apiserver"):
        ensure_binaries()


def test_cached_binaries_are_returned_without_building(clean_env: Path) -> None:
    etcd = clean_env / "bin" / f"etcd-{_build.ETCD_VERSION}"
    apiserver = clean_env / "bin" / f"kube-apiserver-{_build.KUBE_VERSION}"
    _executables(etcd, "etcd")
    _executables(apiserver, "kube-apiserver")
    messages: list[str] = []

    found = ensure_binaries(messages.append)

    assert found == Binaries(etcd / "etcd", apiserver / "kube-apiserver")
    assert messages == [
        f"etcd {_build.ETCD_VERSION} and kube-apiserver {_build.KUBE_VERSION}: "
        f"cached in {clean_env / 'bin'}, no build needed"
    ]


def test_missing_go_is_a_clear_error(clean_env: Path) -> None:
    with pytest.raises(BuildError, match="'go' tool is not on PATH"):
        ensure_binaries()


def test_cache_dir_follows_xdg(
    clean_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(_build.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))

    assert (
        _build.binary_path("etcd", "v1")
        == tmp_path / "xdg" / "lockheed" / "bin" / "etcd-v1" / "etcd"
    )


def test_pinned_versions_match_the_wrapper_modules() -> None:
    for component in (_build._ETCD, _build._KUBE_APISERVER):
        _build._verify_pinned_version(component)


def test_go_build_output_counts_packages() -> None:
    messages: list[str] = []
    progress = _build._BuildProgress("etcd", messages.append)
    for line in [
        "go: downloading go.etcd.io/bbolt v1.4.3",
        *[f"example.com/p{i}" for i in range(45)],
    ]:
        progress.line(line)

    assert progress.packages == 45
    assert messages == [
        "building etcd: downloading Go modules (go.etcd.io/bbolt v1.4.3)",
        "building etcd: compiling, first package example.com/p0",
    ]
