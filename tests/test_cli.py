"""The ``lockheed`` command against the real control plane."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from lockheed import ConfigMapLocker, LeaseLocker, Lock, tags_contain
from lockheed._codec import LABEL
from lockheed.testing import Cluster
from support import lockheed_argv

pytestmark = pytest.mark.lockheed_kube


def cli(
    kubeconfig: Path, namespace: str, *args: str, **kw: Any
) -> subprocess.CompletedProcess[str]:
    command = lockheed_argv(*args, kubeconfig=kubeconfig, namespace=namespace)
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False, **kw)


def table(text: str) -> list[dict[str, str]]:
    """The rows of a table ``lockheed list`` printed, by column name."""
    header, *lines = text.splitlines()
    starts = [m.start() for m in re.finditer(r"(?<!\S)\S+(?: \S+)?", header)]
    names = [header[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
    rows = []
    for line in lines:
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        rows.append(dict(zip(names, cells, strict=True)))
    return rows


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
    command = lockheed_argv(
        *args, "--", sys.executable, "-c",
        "import sys,time; print('working', flush=True); time.sleep(60)",
        kubeconfig=lockheed_kubeconfig, namespace=lockheed_namespace,
    )  # fmt: skip
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
                said = proc.stderr.read().splitlines()
                assert any("lost" in line for line in said)
                assert all(line.startswith("lockheed: ") for line in said), said
                assert sum("our lease expired or was removed" in line for line in said) <= 2
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
        (row,) = table(done.stdout)
        assert row["NAME"] == "hourly" and row["HOLDERS"] == "<none>"
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
        shown = cli(lockheed_kubeconfig, lockheed_namespace, "show", "report", *lease, "-o", "json")
        assert shown.returncode == 0, shown.stderr
        doc = json.loads(shown.stdout)
        assert doc["object"] == "lockheed-report" and doc["raw"]["kind"] == "Lease"
        assert [h["instanceID"] for h in doc["holders"]] == [holder.instance_id]
        assert doc["fencingToken"] == holder.fencing_token
        holder.release()
        ran = ["run", "report", *lease, "--tag", "lease", "--", sys.executable, "-c", show]
        done = cli(lockheed_kubeconfig, lockheed_namespace, *ran)
        assert done.returncode == 0, done.stderr
        assert int(done.stdout) > (holder.fencing_token or 0)
        listed = cli(lockheed_kubeconfig, lockheed_namespace, "list", *lease, "--tag", "lease")
        (row,) = table(listed.stdout)
        assert (row["NAME"], row["HOLDERS"], row["TAGS"]) == ("report", "<none>", "lease")
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
            rows = table(text.stdout)
            assert [r["NAME"] for r in rows] == sorted(["garbled", *others]), flags
            (bad,) = (r for r in rows if r["NAME"] == "garbled")
            assert bad["TYPE"] == "MALFORMED", flags
            (why,) = text.stderr.splitlines()  # the error, on standard error
            assert why.startswith("lockheed: lock 'garbled' in namespace") and "malformed" in why
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
    done = subprocess.run(
        lockheed_argv(*args, kubeconfig=kubeconfig),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert line.startswith("lockheed: ")
    assert "Traceback" not in done.stderr


def test_list_prints_a_table_and_says_when_there_is_nothing(
    lockheed_kubeconfig: Path, lockheed_namespace: str
) -> None:
    empty = cli(lockheed_kubeconfig, lockheed_namespace, "list")
    assert empty.returncode == 0, empty.stderr
    assert empty.stdout == ""
    assert empty.stderr == f"No locks in namespace {lockheed_namespace}.\n"
    assert (
        json.loads(cli(lockheed_kubeconfig, lockheed_namespace, "list", "-o", "json").stdout) == []
    )
    with ConfigMapLocker(lockheed_namespace, config=lockheed_kubeconfig) as locker:
        held = Lock("nightly", locker).with_duration(600).with_tags(["nightly", "backup"])
        token = held.acquire()
        with Lock("hourly", locker).with_tags(["hourly"]):
            pass
        done = cli(lockheed_kubeconfig, lockheed_namespace, "list")
        assert done.returncode == 0, done.stderr
        header = done.stdout.splitlines()[0].split()
        assert header == ["NAME", "TYPE", "HOLDERS", "EXPIRES", "IN", "TOKEN", "TAGS", "AGE"]
        hourly, nightly = table(done.stdout)
        assert hourly == {
            "NAME": "hourly",
            "TYPE": "mutex",
            "HOLDERS": "<none>",
            "EXPIRES IN": "-",
            "TOKEN": "-",
            "TAGS": "hourly",
            "AGE": hourly["AGE"],
        }
        assert re.fullmatch(r"\d+s|\d+m\d*s?", hourly["AGE"])
        assert nightly["HOLDERS"] == held.instance_id
        assert nightly["TOKEN"] == str(token)
        assert nightly["TAGS"] == "nightly,backup"
        assert re.fullmatch(r"\d+m(\d+s)?|\d+s", nightly["EXPIRES IN"])
        wide = table(cli(lockheed_kubeconfig, lockheed_namespace, "list", "-o", "wide").stdout)
        assert [(r["OBJECT"], r["WAITERS"]) for r in wide] == [
            ("lockheed-hourly", "0"),
            ("lockheed-nightly", "0"),
        ]
        assert all(int(r["VERSION"]) > 0 for r in wide)
        names = cli(lockheed_kubeconfig, lockheed_namespace, "list", "-o", "name")
        assert names.stdout == "hourly\nnightly\n"
        as_yaml = yaml.safe_load(
            cli(lockheed_kubeconfig, lockheed_namespace, "list", "-o", "yaml").stdout
        )
        assert [i["name"] for i in as_yaml] == ["hourly", "nightly"]
        assert as_yaml[1]["holders"][0]["instanceID"] == held.instance_id
        assert as_yaml[1]["fencingToken"] == token
        assert as_yaml[1]["type"] == "mutex"
        none = cli(lockheed_kubeconfig, lockheed_namespace, "list", "-l", "weekly")
        assert none.returncode == 0 and none.stdout == ""
        assert none.stderr == f"No locks in namespace {lockheed_namespace} match (2 in all).\n"
        held.release()


def test_list_where_and_selector(lockheed_kubeconfig: Path, lockheed_namespace: str) -> None:
    with ConfigMapLocker(lockheed_namespace, config=lockheed_kubeconfig) as locker:
        nightly = Lock("nightly", locker).with_duration(600).with_tags(["nightly"])
        nightly.acquire()
        # Renewed, so it expires within 30 s but outlives the test on a busy machine.
        backup = Lock("backup", locker).with_duration(20).with_renew_interval(5)
        backup.with_tags(["nightly", "backup"])
        backup.acquire()
        with Lock("hourly", locker).with_tags(["hourly"]):
            pass

        def names(*args: str) -> list[str]:
            done = cli(lockheed_kubeconfig, lockheed_namespace, "list", "-o", "name", *args)
            assert done.returncode == 0, done.stderr
            return done.stdout.split()

        assert names("--where", "tags contains nightly and acquired") == ["backup", "nightly"]
        # a 20 s lease has less than 30 s left, or has run out and is no longer acquired
        assert names("--where", "not acquired or expires < 30s") == ["backup", "hourly"]
        assert names("--where", "holder = " + nightly.instance_id) == ["nightly"]
        assert names("-l", "nightly,!backup") == ["nightly"]
        assert names("-l", "nightly", "--where", "name != nightly") == ["backup"]
        assert names("--free") == ["hourly"]
        bad = cli(
            lockheed_kubeconfig,
            lockheed_namespace,
            "list",
            "--where",
            "acquired and expires < soon",
        )
        assert bad.returncode == 2
        assert bad.stdout == ""
        assert bad.stderr.splitlines() == [
            "lockheed list: --where: expected a duration such as 30s, 500ms, 2m or 1h, "
            "not 'soon' at column 24:",
            "  acquired and expires < soon",
            "                         ^",
        ]
        bad = cli(lockheed_kubeconfig, lockheed_namespace, "list", "-l", "a,,b")
        assert bad.returncode == 2 and "-l: expected a tag or !tag at column 3" in bad.stderr
        nightly.release()
        backup.release()


def test_list_all_namespaces(
    lockheed_cluster: Cluster, lockheed_kubeconfig: Path, lockheed_namespace: str
) -> None:
    other = lockheed_cluster.create_namespace("cli-other")
    try:
        for namespace in (lockheed_namespace, other):
            with (
                ConfigMapLocker(namespace, config=lockheed_kubeconfig) as locker,
                Lock("shared-name", locker).with_tags([namespace]),
            ):
                pass
        done = cli(
            lockheed_kubeconfig, lockheed_namespace, "list", "-A", "--where", "name = shared-name"
        )
        assert done.returncode == 0, done.stderr
        # (malformed locks that other tests left in their namespaces are listed too)
        rows = [r for r in table(done.stdout) if r["NAMESPACE"] in (lockheed_namespace, other)]
        assert sorted((r["NAMESPACE"], r["TAGS"]) for r in rows) == sorted(
            [(lockheed_namespace, lockheed_namespace), (other, other)]
        )
    finally:
        lockheed_cluster.delete_namespace(other)


def test_context_chooses_the_cluster_and_namespace(
    tmp_path: Path, lockheed_kubeconfig: Path, lockheed_namespace: str
) -> None:
    config = yaml.safe_load(lockheed_kubeconfig.read_text())
    (context,) = config["contexts"]
    config["contexts"].append(
        {"name": "ops", "context": {**context["context"], "namespace": lockheed_namespace}}
    )
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    with (
        ConfigMapLocker(lockheed_namespace, config=lockheed_kubeconfig) as locker,
        Lock("in-ops", locker),
    ):
        pass
    base = lockheed_argv("list", kubeconfig=kubeconfig)
    done = subprocess.run(
        [*base, "--context", "ops", "-o", "name"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "in-ops\n"  # the context's namespace, without -n
    bad = subprocess.run([*base, "--context", "nope"], capture_output=True, text=True, check=False)
    assert bad.returncode == 1
    (line,) = bad.stderr.splitlines()
    assert line.startswith("lockheed: kubeconfig ") and "no usable context 'nope'" in line
    assert "ops" in line  # the contexts it has


def test_show_describes_holder_token_tags_and_waiters(
    lockheed_kubeconfig: Path, lockheed_namespace: str
) -> None:
    with ConfigMapLocker(lockheed_namespace, config=lockheed_kubeconfig) as locker:
        held = Lock("nightly", locker).with_duration(600).with_tags(["nightly"])
        token = held.acquire()
        waiter = Lock("nightly", locker).with_duration(30)
        in_line = threading.Event()
        waiter._on_watch = lambda watch: in_line.set()  # it joined the line and waits
        waiting = threading.Thread(target=lambda: waiter.acquire(timeout=60))
        waiting.start()
        try:
            assert in_line.wait(30)
            done = cli(lockheed_kubeconfig, lockheed_namespace, "show", "nightly")
            assert done.returncode == 0, done.stderr
            fields = dict(
                (key.strip(), value.strip())
                for key, _, value in (line.partition(":") for line in done.stdout.splitlines())
            )
            assert fields["Name"] == "nightly"
            assert fields["Namespace"] == lockheed_namespace
            assert fields["Object"].startswith("configmap/lockheed-nightly (resourceVersion ")
            assert fields["Type"] == "mutex"
            assert fields["Holder"].startswith(f"{held.instance_id}, expires in ")
            assert fields["Fencing token"] == str(token)
            assert fields["Tags"] == "nightly"
            assert fields["Waiters"] == f"1. {waiter.instance_id} (lease 30s)"
            for output in ("yaml", "json"):
                raw = cli(lockheed_kubeconfig, lockheed_namespace, "show", "nightly", "-o", output)
                assert raw.returncode == 0, raw.stderr
                doc = yaml.safe_load(raw.stdout)  # JSON is YAML
                assert doc["holders"][0]["instanceID"] == held.instance_id
                assert doc["waiters"] == [{"instanceID": waiter.instance_id, "duration": 30.0}]
                assert doc["state"]["lockType"] == "mutex"  # the stored Go document
                assert list(doc["state"]["leases"]) == [held.instance_id]
                assert doc["annotations"]["lockheed/fencing-token"] == str(token)
                assert doc["object"] == "lockheed-nightly"
                assert doc["raw"]["metadata"]["name"] == "lockheed-nightly"
                assert "managedFields" not in doc["raw"]["metadata"]
        finally:
            held.release()  # hands the lock to the waiter
            waiting.join(30)
            waiter.release()
    missing = cli(lockheed_kubeconfig, lockheed_namespace, "show", "nope")
    assert missing.returncode == 1
    # The last line is the answer; a notice before it (a retried request on a
    # busy API server) is allowed, a traceback is not.
    assert missing.stderr.splitlines()[-1] == (
        f"lockheed: no lock 'nope' in namespace '{lockheed_namespace}' (no configmap lockheed-nope)"
    ), missing.stderr
    assert "Traceback" not in missing.stderr
