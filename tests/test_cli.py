"""The ``lockheed`` command against the real control plane."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lockheed import ConfigMapLocker, LeaseLocker, Lock, tags_contain

pytestmark = pytest.mark.kube


def cli(
    kubeconfig: Path, namespace: str, *args: str, **kw: Any
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "lockheed", args[0], "--kubeconfig", str(kubeconfig)]
    command += ["--namespace", namespace, *args[1:]]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False, **kw)


def test_run_passes_the_token_and_the_exit_status(
    kube_kubeconfig: Path, kube_namespace: str
) -> None:
    show = "import os; print(os.environ['LOCKHEED_FENCING_TOKEN'])"
    done = cli(kube_kubeconfig, kube_namespace, "run", "job", "--", sys.executable, "-c", show)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 0
    failed = cli(
        kube_kubeconfig, kube_namespace, "run", "job", "--", sys.executable, "-c", "exit(3)"
    )
    assert failed.returncode == 3
    with ConfigMapLocker(kube_namespace, config=kube_kubeconfig) as locker:
        assert Lock("job", locker).acquire(blocking=False)  # released after each run


def test_run_times_out_on_a_held_lock(kube_kubeconfig: Path, kube_namespace: str) -> None:
    with ConfigMapLocker(kube_namespace, config=kube_kubeconfig) as locker:
        holder = Lock("busy", locker).with_duration(60)
        holder.acquire()
        done = cli(kube_kubeconfig, kube_namespace, "run", "busy", "--timeout", "0.5", "--", "true")
        assert done.returncode == 73
        assert holder.instance_id in done.stderr
        holder.release()


def test_run_stops_the_command_when_the_lock_is_lost(
    kube_kubeconfig: Path, kube_namespace: str
) -> None:
    args = ["run", "victim", "--duration", "4", "--renew", "0.5", "--tag", "preemptible"]
    command = [sys.executable, "-m", "lockheed", args[0], "--kubeconfig", str(kube_kubeconfig)]
    command += ["--namespace", kube_namespace, *args[1:], "--", sys.executable, "-c"]
    command += ["import sys,time; print('working', flush=True); time.sleep(60)"]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None and proc.stderr is not None
            assert proc.stdout.readline().strip() == "working"  # the lock is held
            with ConfigMapLocker(kube_namespace, config=kube_kubeconfig) as locker:
                thief = Lock("victim", locker).with_duration(30)
                thief.with_force(tags_contain("preemptible")).acquire(timeout=5)
                assert proc.wait(20) == 75
                assert "lost" in proc.stderr.read()
                thief.release()
        finally:
            proc.kill()


def test_list_filters_by_tag_and_state(kube_kubeconfig: Path, kube_namespace: str) -> None:
    with ConfigMapLocker(kube_namespace, config=kube_kubeconfig) as locker:
        held = Lock("nightly", locker).with_duration(60).with_tags(["nightly"])
        held.acquire()
        with Lock("hourly", locker).with_tags(["hourly"]):
            pass
        done = cli(kube_kubeconfig, kube_namespace, "list", "--json")
        assert [i["name"] for i in json.loads(done.stdout)] == ["hourly", "nightly"]
        done = cli(kube_kubeconfig, kube_namespace, "list", "--held", "--json")
        (only,) = json.loads(done.stdout)
        assert only["name"] == "nightly"
        assert only["holders"][0]["instanceID"] == held.instance_id
        done = cli(kube_kubeconfig, kube_namespace, "list", "--tag", "hourly")
        assert done.stdout.startswith("hourly\tfree")
        held.release()


def test_lease_backend_for_run_and_list(kube_kubeconfig: Path, kube_namespace: str) -> None:
    """``--backend lease`` keeps the lock in a Lease, apart from the ConfigMap locks."""
    show = "import os; print(os.environ['LOCKHEED_FENCING_TOKEN'])"
    with LeaseLocker(kube_namespace, config=kube_kubeconfig) as leases:
        holder = Lock("report", leases).with_duration(60)
        holder.acquire()
        lease = ["--backend", "lease"]
        done = cli(kube_kubeconfig, kube_namespace, "run", "report", *lease, "--timeout", "0.5")
        assert done.returncode == 2  # no command
        busy = ["run", "report", *lease, "--timeout", "0.5", "--", "true"]
        done = cli(kube_kubeconfig, kube_namespace, *busy)
        assert done.returncode == 73 and holder.instance_id in done.stderr
        on_configmap = ["run", "report", "--tag", "cm", "--", sys.executable, "-c", show]
        assert cli(kube_kubeconfig, kube_namespace, *on_configmap).returncode == 0
        held = cli(kube_kubeconfig, kube_namespace, "list", *lease, "--held", "--json")
        (only,) = json.loads(held.stdout)
        assert only["holders"][0]["instanceID"] == holder.instance_id
        holder.release()
        ran = ["run", "report", *lease, "--tag", "lease", "--", sys.executable, "-c", show]
        done = cli(kube_kubeconfig, kube_namespace, *ran)
        assert done.returncode == 0, done.stderr
        assert int(done.stdout) > (holder.fencing_token or 0)
        listed = cli(kube_kubeconfig, kube_namespace, "list", *lease, "--tag", "lease")
        assert listed.stdout.startswith("report\tfree\ttags=lease")
        configmaps = cli(kube_kubeconfig, kube_namespace, "list", "--json")
        assert [i["tags"] for i in json.loads(configmaps.stdout)] == [["cm"]]


def test_bad_arguments_fail_clearly(kube_kubeconfig: Path, kube_namespace: str) -> None:
    done = cli(kube_kubeconfig, kube_namespace, "run", "Bad_Name", "--", "true")
    assert done.returncode == 2
    assert "lock name 'Bad_Name'" in done.stderr
    assert "Traceback" not in done.stderr
    missing = cli(kube_kubeconfig, kube_namespace, "run", "job")
    assert missing.returncode == 2 and "after '--'" in missing.stderr
