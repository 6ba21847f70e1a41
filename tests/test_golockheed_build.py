"""How tests/golockheed.py finds Go lockheed v0.5.3: the module-proxy directory,
the environment of the build, and what happens when the program cannot be had.

The build itself is exercised by tests/test_go_interop.py; these tests run
``go env`` and, with ``GOPROXY=off``, a ``go mod download`` that fails at
once, so they need the ``go`` tool but no network.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import golockheed
from lockheed.testing._build import BuildError

GO = shutil.which("go")
needs_go = pytest.mark.skipif(GO is None, reason="the 'go' tool is not on PATH")


def test_a_goproxy_dir_that_is_not_a_directory_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(BuildError, match=r"\$LOCKHEED_GOPROXY_DIR=.*missing is not a directory"):
        golockheed.goproxy_dir({golockheed.GOPROXY_DIR_ENV: str(missing)})
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(BuildError, match="is not a directory"):
        golockheed.goproxy_dir({golockheed.GOPROXY_DIR_ENV: str(a_file)})


def test_the_default_goproxy_dir_is_beside_the_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = golockheed.ROOT.parent / "shared" / "goproxy"
    assert expected == golockheed.DEFAULT_GOPROXY_DIR
    monkeypatch.setattr(golockheed, "DEFAULT_GOPROXY_DIR", tmp_path)
    assert golockheed.goproxy_dir({}) == tmp_path
    monkeypatch.setattr(golockheed, "DEFAULT_GOPROXY_DIR", tmp_path / "absent")
    assert golockheed.goproxy_dir({}) is None
    # An explicit directory wins, relative paths made absolute.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mods").mkdir()
    assert golockheed.goproxy_dir({golockheed.GOPROXY_DIR_ENV: "mods"}) == tmp_path / "mods"


@needs_go
def test_the_directory_goes_ahead_of_the_usual_proxy(tmp_path: Path) -> None:
    assert GO is not None
    odd = tmp_path / "mods,1|x y"  # characters that would split GOPROXY's list
    odd.mkdir()
    environ = {
        "PATH": str(Path(GO).parent),
        "HOME": str(tmp_path),
        "GOPROXY": "off",
        "GONOSUMDB": "example.invalid/private",
        "GOFLAGS": "-mod=mod -trimpath",
        golockheed.GOPROXY_DIR_ENV: str(odd),
    }
    env = golockheed.go_env(GO, environ)
    assert env["GOPROXY"] == f"file://{tmp_path}/mods%2C1%7Cx%20y,off"
    assert env["GONOSUMDB"] == "example.invalid/private,github.com/goblain"
    assert env["GOFLAGS"] == "-trimpath"  # the committed go.sum decides: -mod=readonly
    assert env["GOWORK"] == "off"
    assert environ["GOPROXY"] == "off"  # the caller's mapping is left as it was


@needs_go
def test_without_a_directory_the_reason_names_the_proxy_and_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(golockheed, "DEFAULT_GOPROXY_DIR", tmp_path / "absent")
    monkeypatch.delenv(golockheed.GOPROXY_DIR_ENV, raising=False)
    monkeypatch.setenv("LOCKHEED_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("GOMODCACHE", str(tmp_path / "modcache"))
    monkeypatch.setenv("GOPROXY", "off")
    with pytest.raises(BuildError) as raised:
        golockheed._ensure()
    reason = str(raised.value)
    assert "github.com/goblain/lockheed@v0.5.3" in reason
    assert "GOPROXY=off;" in reason
    assert "$LOCKHEED_GOPROXY_DIR is not set" in reason
    assert not (tmp_path / "cache" / "bin" / "golockheed-v0.5.3" / "golockheed").exists()


def test_a_missing_program_skips_or_fails_when_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(golockheed, "_outcome", "Go lockheed v0.5.3 cannot be built: because")
    monkeypatch.delenv(golockheed.REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="because"):
        golockheed.golockheed_binary()
    monkeypatch.setenv(golockheed.REQUIRE_ENV, "0")
    with pytest.raises(pytest.skip.Exception):
        golockheed.golockheed_binary()
    monkeypatch.setenv(golockheed.REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match=r"because.*LOCKHEED_REQUIRE_GOLOCKHEED"):
        golockheed.golockheed_binary()
