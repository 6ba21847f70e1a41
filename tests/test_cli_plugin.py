"""The ``lockheed`` command as a user meets it: ``--help`` and ``--version``,
``kubectl lockheed`` (kubectl's plugin mechanism, with a real kubectl), and
shell completion in real bash, zsh and fish."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from lockheed import ConfigMapLocker, Lock
from lockheed._cli import parser
from lockheed._cli_complete import _commands
from lockheed.testing._build import cache_dir
from support import lockheed_argv

BIN = Path(sys.executable).parent
PUBLIC = ["run", "elect", "list", "show", "break", "watch", "demo", "completion"]


def lockheed(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        lockheed_argv(*args),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def with_scripts_on_path() -> dict[str, str]:
    """The environment with this virtualenv's console scripts first on PATH."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def test_help_lists_the_public_commands_only() -> None:
    done = lockheed("--help")
    assert done.returncode == 0
    listed = [
        line.split()[0]
        for line in done.stdout.split("positional arguments:")[1].split("options:")[0].splitlines()
        if line.startswith("    ") and not line.startswith("     ")
    ]
    assert listed == PUBLIC
    assert "_demo" not in done.stdout
    assert "Exit statuses" in done.stdout


def test_every_option_of_every_command_is_documented() -> None:
    commands = _commands(parser())
    assert list(commands) == PUBLIC
    for name, (sub, text) in commands.items():
        assert text, name
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help and action.help != argparse.SUPPRESS, (name, action.dest)


def test_version() -> None:
    done = lockheed("--version")
    assert done.returncode == 0
    assert done.stdout == f"lockheed {version('lockheed')}\n"


def _kubectl() -> str | None:
    """lockheed's cached kubectl (built for the benchmark), else one on PATH."""
    cached = sorted((cache_dir() / "bin").glob("kubectl-*/kubectl"))
    if cached:
        return str(cached[-1])
    return shutil.which("kubectl")


@pytest.mark.lockheed_kube
def test_kubectl_lockheed(lockheed_kubeconfig: Path, lockheed_namespace: str) -> None:
    plugin = BIN / "kubectl-lockheed"
    assert plugin.exists(), "the kubectl-lockheed console script is not installed (make setup)"
    with ConfigMapLocker(lockheed_namespace, config=lockheed_kubeconfig) as locker:
        holder = Lock("nightly", locker).with_duration(600).with_tags(["nightly"])
        holder.acquire()
        try:
            where = ["--kubeconfig", str(lockheed_kubeconfig), "-n", lockheed_namespace]
            direct = subprocess.run(
                [str(plugin), "list", *where], capture_output=True, text=True, check=False
            )
            assert direct.returncode == 0, direct.stderr
            assert direct.stdout.splitlines()[1].split()[:3] == [
                "nightly",
                "mutex",
                holder.instance_id,
            ]
            usage = subprocess.run(
                [str(plugin), "--help"], capture_output=True, text=True, check=False
            )
            assert usage.stdout.startswith("usage: kubectl lockheed ")
            kubectl = _kubectl()
            if kubectl is None:
                pytest.skip("no kubectl (neither lockheed's cached one nor on PATH)")
            env = with_scripts_on_path()
            via = subprocess.run(
                [kubectl, "lockheed", "list", *where],
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
                check=False,
            )
            assert via.returncode == 0, via.stderr
            header, row = via.stdout.splitlines()
            assert header == direct.stdout.splitlines()[0]
            assert row.split()[:3] == ["nightly", "mutex", holder.instance_id]
            plugins = subprocess.run(
                [kubectl, "plugin", "list"], capture_output=True, text=True, env=env, check=False
            )
            assert str(plugin) in plugins.stdout
        finally:
            holder.release()


# ------------------------------------------------------------------ completion

SHELLS = {
    # each prints the completions of the words given as its arguments, one per line
    "bash": [
        "bash",
        "-c",
        'source <(lockheed completion bash); COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); '
        '_lockheed; printf "%s\\n" "${COMPREPLY[@]}"',
        "bash",
    ],
    # zsh runs the bash function through bashcompinit, with bash's array indexing;
    # its compgen leaves matching the typed prefix to zsh (compadd), as done here
    "zsh": [
        "zsh",
        "-c",
        "autoload -U compinit && compinit -u; source <(lockheed completion zsh); "
        '[[ $_comps[lockheed] == "_bash_complete -o default -F _lockheed" ]] || exit 9; '
        'setopt ksharrays; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _lockheed; '
        'for w in "${COMPREPLY[@]}"; do [[ $w == "${COMP_WORDS[COMP_CWORD]}"* ]] && '
        "print -r -- $w; done; true",
        "zsh",
    ],
    "fish": [
        "fish",
        "-c",
        "lockheed completion fish | source; "
        'for line in (complete -C (string join " " -- $argv)); '
        "echo (string split -f1 \\t -- $line); end",
    ],
}


def complete(shell: str, *words: str) -> list[str]:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    done = subprocess.run(
        [*SHELLS[shell], *words],
        capture_output=True,
        text=True,
        env=with_scripts_on_path(),
        timeout=60,
        check=False,
        cwd=Path(__file__).parent,  # files in the output would show up as completions
    )
    assert done.returncode == 0, done.stderr
    return sorted(line for line in done.stdout.splitlines() if line)


@pytest.mark.parametrize("shell", list(SHELLS))
def test_completion_offers_commands_options_and_choices(shell: str) -> None:
    assert complete(shell, "lockheed", "br") == ["break"]
    assert "completion" in complete(shell, "lockheed", "")
    assert "_demo-worker" not in complete(shell, "lockheed", "")
    assert complete(shell, "lockheed", "list", "-o", "") == [
        "json",
        "name",
        "table",
        "wide",
        "yaml",
    ]
    assert complete(shell, "lockheed", "show", "-o", "") == ["json", "text", "yaml"]
    assert complete(shell, "lockheed", "list", "--backend", "") == ["configmap", "lease"]
    assert complete(shell, "lockheed", "completion", "") == ["bash", "fish", "zsh"]
    assert "--no-wait" in complete(shell, "lockheed", "run", "--no")
    # watch's options, those it shares with the other commands and its own
    offered = complete(shell, "lockheed", "watch", "--")
    for option in ("--where", "--selector", "--tag", "--events", "--context", "--kubeconfig"):
        assert option in offered, (option, offered)
    assert {"--all-namespaces", "--namespace", "--backend", "--prefix"} <= set(offered)
    assert complete(shell, "lockheed", "watch", "--backend", "") == ["configmap", "lease"]
    assert complete(shell, "lockheed", "demo", "--con") == ["--context"]


@pytest.mark.lockheed_kube
@pytest.mark.parametrize("shell", list(SHELLS))
def test_completion_offers_the_lock_names(
    shell: str, lockheed_kubeconfig: Path, lockheed_namespace: str
) -> None:
    with ConfigMapLocker(lockheed_namespace, config=lockheed_kubeconfig) as locker:
        for name in ("nightly", "hourly"):
            with Lock(name, locker):
                pass
    typed = ["lockheed", "show", "--kubeconfig", str(lockheed_kubeconfig), "-n", lockheed_namespace]
    assert complete(shell, *typed, "") == ["hourly", "nightly"]
    assert complete(shell, *typed, "ni") == ["nightly"]
    assert complete(shell, "kubectl-lockheed", *typed[1:], "ho") == ["hourly"]
