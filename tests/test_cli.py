"""The ``lockheed`` command against the real control plane."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lockheed import ConfigMapLocker, LeaseLocker, Lock, tags_contain
from lockheed._codec import LABEL
from lockheed.testing import Cluster

pytestmark = pytest.mark.lockheed_kube


def cli(
    kubeconfig: Path, namespace: str, *args: str, **kw: Any
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "lockheed", args[0], "--kubeconfig", str(kubeconfig)]
    command += ["--namespace", namespace, *args[1:]]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False, **kw)


def test_run_passes_the_token_and_the_exit_status(
    lockheed_kubeconfig: Path, lockheed_namespace: str
) -> None:
    show = "import os; print(os.environ['LOCKHEED_FENCING_TOKEN'])"
    done = cli(
        lockheed_kubeconfig, lockheed_namespace, "run", "job", "--", sys.executable, "-c", show
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 0
    failed = cli(
        lockheed_kubeconfig, lockheed_namespace, "run", "job", "--", sys.executable, "-c", "exit(3)"
    )
    assert failed.returncode == 3
    with ConfigMapLocker(lockheed_namespace, config=lockheed_kubeconfig) as locker:
        assert Lock("job", locker).acquire(blocking=False)  # released after each run


def test_run_times_out_on_a_held_lock(lockheed_kubeconfig: Path, lockheed_namespace: str) -> None:
    with ConfigMapLocker(lockheed_namespace, config=lockheed_kubeconfig) as locker:
        holder = Lock("busy", locker).with_duration(60)
        holder.acquire()
        done = cli(
            lockheed_kubeconfig, lockheed_namespace, "run", "busy", "--timeout", "0.5", "--", "true"
        )
        assert done.returncode == 73
        assert holder.instance_id in done.stderr
        holder.release()


def test_run_stops_the_command_when_the_lock_is_lost(
    lockheed_kubeconfig: Path, lockheed_namespace: str
) -> None:
    args = ["run", "victim", "--duration", "4", "--renew", "0.5", "--tag", "preemptible"]
    command = [sys.executable, "-m", "lockheed", args[0], "--kubeconfig", str(lockheed_kubeconfig)]
    command += ["--namespace", lockheed_namespace, *args[1:], "--", sys.executable, "-c"]
    command += ["import sys,time; print('working', flush=True); time.sleep(60)"]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None and proc.stderr is not None
            assert proc.stdout.readline().strip() == "working"  # the lock is held
            with ConfigMapLocker(lockheed_namespace, config=lockheed_kubeconfig) as locker:
                thief = Lock("victim", locker).with_duration(30)
                thief.with_force(tags_contain("preemptible")).acquire(timeout=5)
                assert proc.wait(20) == 75
                assert "lost" in proc.stderr.read()
                thief.release()
        finally:
            proc.kill()


def test_list_filters_by_tag_and_state(lockheed_kubeconfig: Path, lockheed_namespace: str) -> None:
    with ConfigMapLocker(lockheed_namespace, config=lockheed_kubeconfig) as locker:
        held = Lock("nightly", locker).with_duration(60).with_tags(["nightly"])
        held.acquire()
        with Lock("hourly", locker).with_tags(["hourly"]):
            pass
        done = cli(lockheed_kubeconfig, lockheed_namespace, "list", "--json")
        assert [i["name"] for i in json.loads(done.stdout)] == ["hourly", "nightly"]
        done = cli(lockheed_kubeconfig, lockheed_namespace, "list", "--held", "--json")
        (only,) = json.loads(done.stdout)
        assert only["name"] == "nightly"
        assert only["holders"][0]["instanceID"] == held.instance_id
        done = cli(lockheed_kubeconfig, lockheed_namespace, "list", "--tag", "hourly")
        assert done.stdout.startswith("hourly\tfree")
        held.release()


def test_lease_backend_for_run_and_list(lockheed_kubeconfig: Path, lockheed_namespace: str) -> None:
    """``--backend lease`` keeps the lock in a Lease, apart from the ConfigMap locks."""
    show = "import os; print(os.environ['LOCKHEED_FENCING_TOKEN'])"
    with LeaseLocker(lockheed_namespace, config=lockheed_kubeconfig) as leases:
        holder = Lock("report", leases).with_duration(60)
        holder.acquire()
        lease = ["--backend", "lease"]
        done = cli(
            lockheed_kubeconfig, lockheed_namespace, "run", "report", *lease, "--timeout", "0.5"
        )
        assert done.returncode == 2  # no command
        busy = ["run", "report", *lease, "--timeout", "0.5", "--", "true"]
        done = cli(lockheed_kubeconfig, lockheed_namespace, *busy)
        assert done.returncode == 73 and holder.instance_id in done.stderr
        on_configmap = ["run", "report", "--tag", "cm", "--", sys.executable, "-c", show]
        assert cli(lockheed_kubeconfig, lockheed_namespace, *on_configmap).returncode == 0
        held = cli(lockheed_kubeconfig, lockheed_namespace, "list", *lease, "--held", "--json")
        (only,) = json.loads(held.stdout)
        assert only["holders"][0]["instanceID"] == holder.instance_id
        holder.release()
        ran = ["run", "report", *lease, "--tag", "lease", "--", sys.executable, "-c", show]
        done = cli(lockheed_kubeconfig, lockheed_namespace, *ran)
        assert done.returncode == 0, done.stderr
        assert int(done.stdout) > (holder.fencing_token or 0)
        listed = cli(lockheed_kubeconfig, lockheed_namespace, "list", *lease, "--tag", "lease")
        assert listed.stdout.startswith("report\tfree\ttags=lease")
        configmaps = cli(lockheed_kubeconfig, lockheed_namespace, "list", "--json")
        assert [i["tags"] for i in json.loads(configmaps.stdout)] == [["cm"]]


def test_bad_arguments_fail_clearly(lockheed_kubeconfig: Path, lockheed_namespace: str) -> None:
    done = cli(lockheed_kubeconfig, lockheed_namespace, "run", "Bad_Name", "--", "true")
    assert done.returncode == 2
    assert "lock name 'Bad_Name'" in done.stderr
    assert "Traceback" not in done.stderr
    missing = cli(lockheed_kubeconfig, lockheed_namespace, "run", "job")
    assert missing.returncode == 2 and "after '--'" in missing.stderr
    for option, value in [("--duration", "inf"), ("--timeout", "-1"), ("--renew", "soon")]:
        bad = cli(
            lockheed_kubeconfig, lockheed_namespace, "run", "job", option, value, "--", "true"
        )
        assert bad.returncode == 2, bad.stderr
        assert f"argument {option}: expected a number of seconds" in bad.stderr
        assert "Traceback" not in bad.stderr


def test_list_shows_malformed_locks_whatever_the_filter(
    lockheed_cluster: Cluster, lockheed_kubeconfig: Path, lockheed_namespace: str
) -> None:
    garbled = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "lockheed-garbled", "labels": {LABEL: ""}},
        "data": {"lock": "{{{ not a lock"},
    }
    with lockheed_cluster.http_client() as http:
        http.post(
            f"/api/v1/namespaces/{lockheed_namespace}/configmaps", json=garbled
        ).raise_for_status()
    with ConfigMapLocker(lockheed_namespace, config=lockheed_kubeconfig) as locker:
        held = Lock("nightly", locker).with_duration(60).with_tags(["nightly"])
        held.acquire()
        with Lock("hourly", locker).with_tags(["hourly"]):
            pass
        for flags, others in [
            ([], ["hourly", "nightly"]),
            (["--held"], ["nightly"]),
            (["--free"], ["hourly"]),
            (["--tag", "hourly"], ["hourly"]),
        ]:
            text = cli(lockheed_kubeconfig, lockheed_namespace, "list", *flags)
            assert text.returncode == 0, text.stderr
            rows = [line.split("\t") for line in text.stdout.splitlines()]
            assert [r[0] for r in rows] == sorted(["garbled", *others]), flags
            (bad,) = (r for r in rows if r[0] == "garbled")
            assert bad[1] == "MALFORMED" and bad[2], flags
            done = cli(lockheed_kubeconfig, lockheed_namespace, "list", "--json", *flags)
            assert done.returncode == 0, done.stderr
            infos = {i["name"]: i for i in json.loads(done.stdout)}
            assert sorted(infos) == sorted(["garbled", *others]), flags
            assert infos["garbled"]["error"], flags
            assert all(infos[name]["error"] is None for name in others)
        held.release()


@pytest.mark.parametrize("content", [None, "{{{"], ids=["dev-null", "garbage"])
@pytest.mark.parametrize("args", [["list"], ["run", "job", "--", "true"]], ids=["list", "run"])
def test_a_bad_kubeconfig_is_one_clear_line(
    tmp_path: Path, content: str | None, args: list[str]
) -> None:
    kubeconfig = Path(os.devnull)
    if content is not None:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(content)
    command = [sys.executable, "-m", "lockheed", args[0], "--kubeconfig", str(kubeconfig)]
    done = subprocess.run(
        [*command, *args[1:]], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert line.startswith("lockheed: ")
    assert "Traceback" not in done.stderr
