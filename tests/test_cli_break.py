"""``lockheed break NAME`` against the real control plane: what it refuses, what
it asks, that it never overwrites a change made meanwhile, and what happens
to the holder and the waiters after it."""

from __future__ import annotations

import json
import subprocess
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from lockheed import ConfigMapLocker, LeaseLocker, Lock, LockLost, LockTimeout
from lockheed._codec import LABEL
from lockheed.testing import Cluster
from support import lockheed_argv

pytestmark = pytest.mark.lockheed_kube

TIMEOUT = 60.0


def lockheed(
    kubeconfig: Path, namespace: str, *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    command = lockheed_argv(*args, kubeconfig=kubeconfig, namespace=namespace)
    return subprocess.run(
        command, input=stdin, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


def configmap(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    with cluster.http_client() as http:
        resp = http.get(f"/api/v1/namespaces/{namespace}/configmaps/lockheed-{name}")
        resp.raise_for_status()
        body: dict[str, Any] = resp.json()
        return body


def put_configmap(cluster: Cluster, namespace: str, name: str, data: str) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"lockheed-{name}", "labels": {LABEL: ""}},
        "data": {"lock": data},
    }
    with cluster.http_client() as http:
        http.post(f"/api/v1/namespaces/{namespace}/configmaps", json=body).raise_for_status()


def test_a_live_lease_is_refused_without_force(
    lockheed_kubeconfig: Path, lockheed_namespace: str
) -> None:
    with ConfigMapLocker(lockheed_namespace, config=lockheed_kubeconfig) as locker:
        holder = Lock("nightly", locker).with_duration(600)
        holder.acquire()
        done = lockheed(lockheed_kubeconfig, lockheed_namespace, "break", "nightly", "--yes")
        assert done.returncode == 3
        (line,) = done.stderr.splitlines()
        assert holder.instance_id in line and "expires in" in line and "--force" in line
        assert done.stdout == ""
        holder.release()  # still ours: raises LockLost if break had removed it


@pytest.mark.parametrize("answer", ["n\n", "", "yes please\n"], ids=["no", "eof", "unclear"])
def test_anything_but_yes_writes_nothing(
    lockheed_cluster: Cluster, lockheed_kubeconfig: Path, lockheed_namespace: str, answer: str
) -> None:
    with ConfigMapLocker(lockheed_namespace, config=lockheed_kubeconfig) as locker:
        holder = Lock("nightly", locker).with_duration(600)
        holder.acquire()
        before = configmap(lockheed_cluster, lockheed_namespace, "nightly")["metadata"][
            "resourceVersion"
        ]
        done = lockheed(
            lockheed_kubeconfig, lockheed_namespace, "break", "nightly", "--force", stdin=answer
        )
        assert done.returncode == 3, done.stderr
        question = f"Break lock 'nightly' in namespace '{lockheed_namespace}': remove the lease of "
        assert done.stderr.startswith(question + f"{holder.instance_id} (live, expires in ")
        assert done.stderr.rstrip().endswith("lockheed: not confirmed; nothing was written")
        after = configmap(lockheed_cluster, lockheed_namespace, "nightly")["metadata"][
            "resourceVersion"
        ]
        assert after == before
        holder.release()


def test_force_removes_the_lease_the_holder_learns_and_the_waiter_takes_it(
    lockheed_kubeconfig: Path, lockheed_namespace: str
) -> None:
    with ConfigMapLocker(lockheed_namespace, config=lockheed_kubeconfig) as locker:
        holder = Lock("nightly", locker).with_duration(600).with_renew_interval(0.5)
        lost = threading.Event()
        holder.on_lost(lambda exc: lost.set())
        token = holder.acquire()
        waiter = Lock("nightly", locker).with_duration(30).with_tags(["waiter"])
        in_line = threading.Event()
        waiter._on_watch = lambda watch: in_line.set()
        taken: list[int] = []
        waiting = threading.Thread(target=lambda: taken.append(waiter.acquire(timeout=TIMEOUT)))
        waiting.start()
        try:
            assert in_line.wait(TIMEOUT)
            done = lockheed(
                lockheed_kubeconfig, lockheed_namespace, "break", "nightly", "--force", "--yes"
            )
            assert done.returncode == 0, done.stderr
            assert done.stdout.startswith(
                f"Broke lock 'nightly' in namespace '{lockheed_namespace}': removed the lease of "
                f"{holder.instance_id} (live, expires in "
            )
            assert done.stdout.endswith(f"{waiter.instance_id}, first of 1 in line, takes it.\n")
            waiting.join(TIMEOUT)
            assert taken and taken[0] > token  # the waiter holds it, with a larger token
            assert lost.wait(TIMEOUT)  # the holder's next renewal found its lease gone
            assert not holder.held
            with pytest.raises(LockLost):
                holder.release()
        finally:
            waiting.join(TIMEOUT)
            if waiter.held:
                waiter.release()


def test_an_expired_lease_is_broken_without_force(
    lockheed_cluster: Cluster, lockheed_kubeconfig: Path, lockheed_namespace: str
) -> None:
    state = {
        "name": "stale",
        "lockType": "mutex",
        "leases": {"dead": {"instanceID": "dead", "expires": "2020-01-01T00:00:00Z"}},
        "tags": ["kept"],
    }
    put_configmap(lockheed_cluster, lockheed_namespace, "stale", json.dumps(state))
    done = lockheed(lockheed_kubeconfig, lockheed_namespace, "break", "stale", "--yes")
    assert done.returncode == 0, done.stderr
    assert "removed the lease of dead (expired " in done.stdout
    assert done.stdout.endswith("The next acquire takes it.\n")
    stored = json.loads(configmap(lockheed_cluster, lockheed_namespace, "stale")["data"]["lock"])
    assert stored == {**state, "leases": {}}  # only the lease went; the tags stay
    again = lockheed(lockheed_kubeconfig, lockheed_namespace, "break", "stale", "--yes")
    assert again.returncode == 0
    assert (
        again.stdout
        == f"Lock 'stale' in namespace '{lockheed_namespace}' is free: nothing to break.\n"
    )


def test_a_change_made_while_it_asks_is_never_overwritten(
    lockheed_kubeconfig: Path, lockheed_namespace: str
) -> None:
    with ConfigMapLocker(lockheed_namespace, config=lockheed_kubeconfig) as locker:
        first = Lock("nightly", locker).with_duration(600)
        first.acquire()
        command = lockheed_argv(
            "break",
            "nightly",
            "--force",
            kubeconfig=lockheed_kubeconfig,
            namespace=lockheed_namespace,
        )
        with subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as proc:
            try:
                assert proc.stdin is not None and proc.stderr is not None
                prompt = ""
                while not prompt.endswith("[y/N] "):  # it has read the lock and asks
                    char = proc.stderr.read(1)
                    assert char, f"no question: {prompt!r}"
                    prompt += char
                assert first.instance_id in prompt
                first.release()  # meanwhile, the holder hands over to another one
                second = Lock("nightly", locker).with_duration(600)
                second.acquire(blocking=False)
                proc.stdin.write("y\n")
                proc.stdin.close()
                assert proc.wait(TIMEOUT) == 4
                err = proc.stderr.read()
                assert "lock 'nightly' changed after it was read" in err
                assert "nothing was written" in err
            finally:
                proc.kill()
        with pytest.raises(LockTimeout) as caught:  # the new holder's lease is intact
            Lock("nightly", locker).acquire(blocking=False)
        assert caught.value.holder == second.instance_id
        second.release()


def test_a_missing_or_malformed_lock_is_left_alone(
    lockheed_cluster: Cluster, lockheed_kubeconfig: Path, lockheed_namespace: str
) -> None:
    missing = lockheed(lockheed_kubeconfig, lockheed_namespace, "break", "nope", "--yes", "--force")
    assert missing.returncode == 1
    assert missing.stderr == f"lockheed: no lock 'nope' in namespace '{lockheed_namespace}'\n"
    put_configmap(lockheed_cluster, lockheed_namespace, "garbled", "{{{ not a lock")
    before = configmap(lockheed_cluster, lockheed_namespace, "garbled")
    done = lockheed(lockheed_kubeconfig, lockheed_namespace, "break", "garbled", "--yes", "--force")
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert "malformed" in line and "never overwrites it" in line
    after = configmap(lockheed_cluster, lockheed_namespace, "garbled")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_break_on_a_lease(lockheed_kubeconfig: Path, lockheed_namespace: str) -> None:
    with LeaseLocker(lockheed_namespace, config=lockheed_kubeconfig) as locker:
        holder = Lock("leader", locker).with_duration(600)
        holder.acquire()
        lease = ["--backend", "lease"]
        done = lockheed(
            lockheed_kubeconfig, lockheed_namespace, "break", "leader", *lease, "--yes", "--force"
        )
        assert done.returncode == 0, done.stderr
        assert holder.instance_id in done.stdout
        taker = Lock("leader", locker).with_duration(30)
        assert taker.acquire(blocking=False) > (holder.fencing_token or 0)
        taker.release()


# ------------------------------------------------- Go lockheed's reservation


def reserved_configmap(
    cluster: Cluster, namespace: str, name: str, *, reserved_by: str = "go-dead"
) -> dict[str, Any]:
    """A lock whose holder's lease ran out, reserved as a Go lockheed process leaves
    it when it dies between its two updates (reserve, then write): here for an
    hour, longer than any test waits, so that only clearing it lets anyone in."""
    until = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(hours=1)
    state = {
        "name": name,
        "lockType": "mutex",
        "leases": {"dead": {"instanceID": "dead", "expires": "2020-01-01T00:00:00Z"}},
        "tags": ["kept"],
    }
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"lockheed-{name}",
            "labels": {LABEL: ""},
            "annotations": {
                "reserved/by": reserved_by,
                "reserved/expires": until.strftime("%Y-%m-%dT%H:%M:%SZ"),  # Go's RFC3339
                "example.com/owner": "team-a",
            },
        },
        "data": {"lock": json.dumps(state)},
    }
    with cluster.http_client() as http:
        resp = http.post(f"/api/v1/namespaces/{namespace}/configmaps", json=body)
        resp.raise_for_status()
        created: dict[str, Any] = resp.json()
        return created


def test_break_clears_a_go_reservation_and_a_go_write_under_way_still_fails(
    lockheed_cluster: Cluster, lockheed_kubeconfig: Path, lockheed_namespace: str
) -> None:
    reserved = reserved_configmap(lockheed_cluster, lockheed_namespace, "stuck")
    with ConfigMapLocker(lockheed_namespace, config=lockheed_kubeconfig) as locker:
        waiter = Lock("stuck", locker).with_duration(30)
        waiting_on = threading.Event()
        waiter._on_watch = lambda watch: waiting_on.set()
        taken: list[int] = []
        waiting = threading.Thread(target=lambda: taken.append(waiter.acquire(timeout=TIMEOUT)))
        waiting.start()
        try:
            assert waiting_on.wait(TIMEOUT)  # held off by the reservation
            done = lockheed(lockheed_kubeconfig, lockheed_namespace, "break", "stuck", "--yes")
            assert done.returncode == 0, done.stderr  # the lease had run out: no --force
            assert "removed the lease of dead (expired " in done.stdout
            assert " and Go lockheed's reservation by go-dead (expires in " in done.stdout
            waiting.join(TIMEOUT)
            assert taken, "the waiter was still held off by the reservation"
        finally:
            waiting.join(TIMEOUT)
            if waiter.held:
                waiter.release()
    after = configmap(lockheed_cluster, lockheed_namespace, "stuck")
    annotations = after["metadata"].get("annotations") or {}
    assert not [key for key in annotations if key.startswith("reserved/")]
    assert annotations["example.com/owner"] == "team-a"  # everything else is kept
    assert json.loads(after["data"]["lock"])["tags"] == ["kept"]
    # The reserving Go process's second update (its new state, the reservation
    # dropped), made from the object its reservation returned, conflicts: the
    # break wrote a newer version, so no Go write under way gets in.
    late = json.loads(json.dumps(reserved))
    late["data"]["lock"] = json.dumps(
        {
            "name": "stuck",
            "lockType": "mutex",
            "leases": {"go-dead": {"instanceID": "go-dead", "expires": "2099-01-01T00:00:00Z"}},
            "tags": ["kept"],
        }
    )
    for key in ("reserved/by", "reserved/expires"):
        late["metadata"]["annotations"].pop(key)
    with lockheed_cluster.http_client() as http:
        path = f"/api/v1/namespaces/{lockheed_namespace}/configmaps/lockheed-stuck"
        assert http.put(path, json=late).status_code == 409
    stored = json.loads(configmap(lockheed_cluster, lockheed_namespace, "stuck")["data"]["lock"])
    assert "go-dead" not in (stored["leases"] or {})


def test_go_lockheed_takes_a_broken_lock_its_reservation_held_off(
    lockheed_cluster: Cluster, lockheed_kubeconfig: Path, lockheed_namespace: str
) -> None:
    from golockheed import golockheed_binary

    binary = golockheed_binary()  # skips, naming why, when it cannot be built
    reserved_configmap(lockheed_cluster, lockheed_namespace, "shared")

    def go_acquire() -> subprocess.CompletedProcess[str]:
        command = [str(binary), "acquire", "--kubeconfig", str(lockheed_kubeconfig)]
        command += ["--namespace", lockheed_namespace, "--name", "shared"]
        command += ["--instance-id", "go-new", "--duration", "600s"]
        return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, check=False)

    before = go_acquire()  # Go honours the reservation: retried, then refused
    assert before.returncode == 3, before
    assert "reserved by go-dead" in before.stdout
    done = lockheed(lockheed_kubeconfig, lockheed_namespace, "break", "shared", "--yes")
    assert done.returncode == 0, done.stderr
    after = go_acquire()
    assert after.returncode == 0, after
    with ConfigMapLocker(lockheed_namespace, config=lockheed_kubeconfig) as locker:
        with pytest.raises(LockTimeout) as caught:
            Lock("shared", locker).acquire(blocking=False)
        assert caught.value.holder == "go-new"  # Go's lease, honoured by Python
