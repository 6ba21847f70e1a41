"""deploy/rbac.yaml is enough for the whole API, and every verb in it is needed.

The rules are read from the file itself and given to a user of the real API
server (``lockheed_restricted_user``), which then runs every request lockheed
makes: acquire of a new and of an existing lock, renew, release, an acquire
that waits on a watch, and listing.
"""

from __future__ import annotations

import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube.codecs import load_all_yaml

from line_watch import LineWatch, line_of
from lockheed import ConfigMapLocker, LockForbidden, alist_locks, list_locks
from lockheed._state import Record
from lockheed.testing import Cluster
from lockheed.testing.plugin import RestrictedUserFactory
from support import Api, ConfigMapLockers

RBAC_FILE = Path(__file__).resolve().parent.parent / "deploy" / "rbac.yaml"
VERBS = ["get", "create", "update", "watch", "list"]


def _documents() -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(RBAC_FILE.read_text())}


def _rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = _documents()["Role"]["rules"]
    return rules


def _lock_names(rules: list[dict[str, Any]]) -> list[str]:
    """The lock names the Role allows (``lockheed-<name>`` objects)."""
    names = [n for rule in rules for n in rule.get("resourceNames", ())]
    assert names and all(n.startswith("lockheed-") for n in names)
    return [n[len("lockheed-") :] for n in names]


def _without(rules: list[dict[str, Any]], verb: str) -> list[dict[str, Any]]:
    out = []
    for rule in rules:
        verbs = [v for v in rule["verbs"] if v != verb]
        if verbs:
            out.append({**rule, "verbs": verbs})
    return out


class WatchSeen:
    """Sets ``sent`` when the locker sends a watch request (an httpx event hook):
    the waiting acquire is then surely waiting on its watch."""

    def __init__(self) -> None:
        self.sent = threading.Event()

    def hook(self, request: Any) -> None:
        if "watch" in request.url.params:
            self.sent.set()

    async def ahook(self, request: Any) -> None:
        self.hook(request)

    def attach(self, api: Api, locker: ConfigMapLocker) -> None:
        if api.runner is None:
            locker.api.watch_client.event_hooks["request"].append(self.hook)
        else:
            api.twin(locker).api.watch_client.event_hooks["request"].append(self.ahook)


def _whole_api(api: Api, locker: ConfigMapLocker, name: str) -> None:
    """Every request lockheed makes, in the order a verb is first needed:
    get + create (new lock), update (renew, release, acquire of an existing
    object), watch (a waiting acquire), list."""
    first = api.lock(name, locker).with_duration(30).with_tags(["rbac"])
    first.acquire(blocking=False)  # GET (404) + POST
    first.renew()  # PUT
    first.release()  # PUT
    holder = api.lock(name, locker).with_duration(30)
    holder.acquire(blocking=False)  # GET + PUT of the existing object
    seen = WatchSeen()
    seen.attach(api, locker)
    waiter = api.lock(name, locker).with_duration(30)
    outcome: list[BaseException | int] = []

    def wait() -> None:
        try:
            outcome.append(waiter.acquire(timeout=60))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=wait)
    thread.start()
    try:
        assert seen.sent.wait(30), "the waiting acquire sent no watch"
    finally:
        holder.release()  # wakes the waiter through its watch
        thread.join(60)
    assert not thread.is_alive()
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    assert waiter.held and waiter.fencing_token == outcome[0]
    waiter.release()
    if api.runner is None:
        infos = list_locks(locker)
    else:
        infos = api.runner.run(alist_locks(api.twin(locker)))
    assert [(i.name, i.tags) for i in infos] == [(name, ("rbac",))]


def test_deploy_role_runs_the_whole_api(
    lockheed_restricted_user: RestrictedUserFactory, configmap_locker: ConfigMapLockers, api: Api
) -> None:
    rules = _rules()
    locker = configmap_locker(lockheed_restricted_user(rules))
    names = _lock_names(rules)
    _whole_api(api, locker, names[0])
    # resourceNames hold: a lock the Role does not name is not readable.
    with pytest.raises(LockForbidden) as info:
        api.lock("unnamed", locker).acquire(blocking=False)
    assert info.value.verb == "get"


@pytest.mark.parametrize("verb", VERBS)
def test_each_verb_of_the_deploy_role_is_needed(
    lockheed_restricted_user: RestrictedUserFactory,
    configmap_locker: ConfigMapLockers,
    api: Api,
    verb: str,
) -> None:
    rules = _rules()
    assert {v for rule in rules for v in rule["verbs"]} == set(VERBS)
    locker = configmap_locker(lockheed_restricted_user(_without(rules, verb)))
    with pytest.raises(LockForbidden) as info:
        _whole_api(api, locker, _lock_names(rules)[0])
    assert info.value.verb == verb, info.value
    assert f"'{verb}'" in str(info.value)


def test_deploy_manifests_are_accepted_and_consistent(
    lockheed_namespace: str, lockheed_cluster: Cluster
) -> None:
    docs = _documents()
    assert set(docs) == {"ServiceAccount", "Role", "RoleBinding"}
    binding = docs["RoleBinding"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": docs["Role"]["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": docs["ServiceAccount"]["metadata"]["name"]}
    ]
    with lockheed_cluster.client(namespace=lockheed_namespace) as admin:
        for obj in load_all_yaml(RBAC_FILE.read_text()):
            created = admin.create(obj)
            assert created.metadata is not None
            assert created.metadata.namespace == lockheed_namespace


def test_a_refused_watch_on_the_lean_client_names_the_verb(
    lockheed_restricted_user: RestrictedUserFactory, configmap_locker: ConfigMapLockers, api: Api
) -> None:
    """Without the hooks of the tests above, a waiting acquire watches through
    lockheed's lean client; a user the Role does not let watch gets the same
    LockForbidden as through httpx2, naming the verb, not a broken stream."""
    rules = _rules()
    locker = configmap_locker(lockheed_restricted_user(_without(rules, "watch")))
    name = _lock_names(rules)[0]
    holder = api.lock(name, configmap_locker()).with_duration(30)  # an admin's
    holder.acquire(blocking=False)
    try:
        waiter = api.lock(name, locker).with_duration(30)
        if api.runner is None:
            assert locker.api.lean is not None
            assert not locker.api.watch_client.event_hooks["request"]
        else:
            assert api.twin(locker).api.lean is not None
        with pytest.raises(LockForbidden) as info:
            waiter.acquire(timeout=20)
        assert info.value.verb == "watch", info.value
        assert not waiter.held
    finally:
        holder.release()


def _has_line(joined: list[str], record: Record | None) -> bool:
    return line_of(record) == joined


def test_a_renewal_and_a_release_that_meet_a_conflict_read_without_the_watch_verb(
    lockheed_restricted_user: RestrictedUserFactory, configmap_locker: ConfigMapLockers, api: Api
) -> None:
    """A holder whose Role lacks ``watch`` (it never waits) still renews and
    releases when its copy of the object is stale (a waiter joined the line
    meanwhile): after the conflict it reads the object instead of looking on a
    watch. Before, each such renewal failed until the lock was lost."""
    rules = _rules()
    name = _lock_names(rules)[0]
    restricted = configmap_locker(lockheed_restricted_user(_without(rules, "watch")))
    holder = api.lock(name, restricted).with_duration(30)
    holder.acquire(blocking=False)
    waiters = [api.lock(name, configmap_locker()).with_duration(30) for _ in range(2)]
    line = LineWatch(configmap_locker(), name)
    with ThreadPoolExecutor(max_workers=2) as pool:
        got = []
        try:
            for i, waiter in enumerate(waiters):
                got.append(pool.submit(waiter.acquire, timeout=60))
                joined = [w.instance_id for w in waiters[: i + 1]]
                line.until(functools.partial(_has_line, joined))
                if i == 0:
                    holder.renew()  # its PUT meets the join's version: 409
            holder.release()  # and again
        finally:
            line.close()
        assert got[0].result(60)
        assert waiters[0].held and not holder.held
        waiters[0].release()
        assert got[1].result(60)
    waiters[1].release()
