"""Safe at the edges: out-of-range numbers, wrong lockers and prefixes,
broken kubeconfigs, refused logins, foreign ConfigMaps and credentials in
reprs. Directive errors are checked on both APIs; anything that involves
Kubernetes is checked against the real API server."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from lockheed import (
    AsyncConfigMapLocker,
    AsyncLock,
    AsyncMemoryLocker,
    Condition,
    ConfigMapLocker,
    Event,
    EventCode,
    Field,
    Lock,
    LockBackendError,
    LockConfigError,
    LockError,
    LockForbidden,
    LockStateError,
    LockUnauthorized,
    MemoryLocker,
    Operation,
    acquired,
    alist_locks,
    list_locks,
    tags_contain,
)
from lockheed._queue import view_label
from lockheed._state import NEVER
from support import Api, ConfigMapLockers, LoopThread, NewLock, Requests

BAD_DURATIONS = [
    1e-9,  # below the wire format's resolution: once stored as "never expires"
    0.5,
    timedelta(microseconds=1),
    -1,
    timedelta(seconds=-1),
    math.inf,
    -math.inf,
    math.nan,
    1e12,  # once accepted, then killed the renewal thread with OverflowError
    timedelta(days=106752),
]
BAD_INTERVALS = [0.01, 1e-9, -0.5, math.inf, math.nan, 1e12]
BAD_TIMEOUTS = [math.nan, math.inf, -math.inf, -1, 1e12]


def _lock(api: Api, name: str = "edges") -> Any:
    return api.lock(name, MemoryLocker())


# ---------------------------------------------------------------- numbers


@pytest.mark.parametrize("value", BAD_DURATIONS, ids=repr)
def test_duration_out_of_range_is_refused(api: Api, value: Any) -> None:
    lock = _lock(api).with_duration(30)
    with pytest.raises(ValueError, match=r"^duration .*0 or None \(never expires\).*1 s and"):
        lock.with_duration(value)
    assert lock._duration == timedelta(seconds=30)  # the old setting stands


@pytest.mark.parametrize("value", BAD_INTERVALS, ids=repr)
def test_renew_interval_out_of_range_is_refused(api: Api, value: float) -> None:
    lock = _lock(api)
    with pytest.raises(ValueError, match=r"^renew interval .*0 or None \(never renew\).*0\.05 s"):
        lock.with_renew_interval(value)
    assert lock._renew_interval is None


@pytest.mark.parametrize(("duration", "interval"), [(10, 10), (10, 30), (30, 28.5), (1, 0.9)])
def test_renew_interval_must_come_before_the_loss_deadline(
    api: Api, duration: float, interval: float
) -> None:
    """Renewing no sooner than the holder's loss deadline would lose every lease:
    refused whichever directive comes first."""
    with pytest.raises(ValueError, match=r"renew interval \(.*\) must be shorter than"):
        _lock(api).with_duration(duration).with_renew_interval(interval)
    with pytest.raises(ValueError, match=r"renew interval \(.*\) must be shorter than"):
        _lock(api).with_renew_interval(interval).with_duration(duration)


def test_numbers_at_the_edges_are_accepted(api: Api) -> None:
    lock = _lock(api)
    lock.with_duration(1).with_renew_interval(0.05)  # the smallest of each
    assert lock._duration == timedelta(seconds=1)
    lock.with_duration(30).with_renew_interval(27.9)  # just before the loss deadline
    lock.with_duration(timedelta(days=106751)).with_renew_interval(timedelta(days=106000))
    for never in (0, 0.0, None, timedelta(0)):
        lock.with_renew_interval(never).with_duration(never)
        assert lock._duration is None and lock._renew_interval is None
    lock.with_duration(0).with_renew_interval(3600)  # a never-expiring lease may be renewed


@pytest.mark.parametrize("value", [True, "30s", [30]])
def test_duration_of_the_wrong_type_is_refused(api: Api, value: Any) -> None:
    with pytest.raises(TypeError, match="duration must be seconds or a timedelta"):
        _lock(api).with_duration(value)


def test_longest_duration_keeps_the_renewal_thread_alive(new_lock: NewLock) -> None:
    """A lease of the longest duration is written as a real expiry, and the
    renewer (thread or task), which sleeps until such a lock's loss deadline,
    keeps renewing other locks (``with_duration(1e12)`` once killed it)."""
    longest = new_lock("longest").with_duration(timedelta(days=106751))
    longest.acquire()
    assert longest.expires_at is not None and longest.expires_at < NEVER
    renewed = threading.Event()

    def on_event(event: Event) -> None:
        if event.code == EventCode.RENEW_OK:
            renewed.set()

    busy = new_lock("busy").with_duration(5).with_renew_interval(0.05).with_event_handler(on_event)
    busy.acquire()
    assert renewed.wait(30), "no renewal: the renewer died"
    busy.release()
    longest.release()


@pytest.mark.parametrize("timeout", BAD_TIMEOUTS, ids=repr)
def test_acquire_timeout_out_of_range_is_refused_before_any_request(
    locker: Any, new_lock: NewLock, requests: Requests, timeout: float
) -> None:
    """``timeout=nan`` once waited forever on a held lock."""
    holder = new_lock("timeouts").with_duration(60)
    holder.acquire()
    before = requests.snapshot()
    contender = new_lock("timeouts").with_duration(60)
    with pytest.raises(ValueError, match=r"^timeout .*None \(wait without limit\) or between 0 s"):
        contender.acquire(timeout=timeout)
    assert requests.total_since(before) == 0
    assert not contender.held and holder.held
    with pytest.raises(TypeError, match="timeout must be seconds or None"):
        contender.acquire(timeout="5")
    holder.release()


# ------------------------------------------------------- conditions, prefixes


def test_condition_accepts_gos_strings() -> None:
    assert Condition(operation="contains", field="tags", value="x") == tags_contain("x")  # type: ignore[arg-type]
    assert Condition("equals", "acquired", True) == acquired(True)  # type: ignore[arg-type]
    both = Condition("and", conditions=[tags_contain("x"), acquired()])  # type: ignore[arg-type]
    assert both == tags_contain("x") & acquired()
    assert both.operation is Operation.AND and isinstance(both.conditions, tuple)
    assert tags_contain("x").field is Field.TAGS


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"operation": "contain", "field": "tags", "value": "x"}, "unknown operation 'contain'"),
        ({"operation": "contains", "field": "tag", "value": "x"}, "unknown field 'tag'"),
        ({"operation": 3}, "unknown operation 3"),
    ],
)
def test_condition_with_unknown_strings_names_the_allowed_ones(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message) as info:
        Condition(**kwargs)
    assert "'contains', 'equals', 'and', 'or'" in str(info.value) or "'tags', 'acquired'" in str(
        info.value
    )


BAD_PREFIXES = ["Bad_", "-lead", "trail.", "a..b", "x" * 252, "spa ce"]


def _dummy_kubeconfig(path: Path, user: dict[str, Any] | None = None) -> Path:
    """A kubeconfig for a server that is never contacted."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
        "users": [{"name": "u", "user": user or {"token": "never-sent"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "ns"}}],
        "current-context": "x",
    }
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize("prefix", BAD_PREFIXES)
def test_bad_prefix_is_refused_at_construction(tmp_path: Path, prefix: str) -> None:
    config = _dummy_kubeconfig(tmp_path / "config")
    for make in (
        lambda: MemoryLocker(prefix=prefix),
        lambda: ConfigMapLocker("ns", prefix=prefix, config=config),
        lambda: AsyncConfigMapLocker("ns", prefix=prefix, config=config),
    ):
        with pytest.raises(ValueError, match=r"^prefix .* cannot begin object names") as info:
            make()
        assert "lock name" not in str(info.value).split("named")[0]
    with pytest.raises(TypeError, match="prefix must be a string"):
        MemoryLocker(prefix=None)  # type: ignore[arg-type]


def test_good_prefixes_are_accepted(tmp_path: Path) -> None:
    for prefix in ("", "lockheed", "team-a.locks", "a-"):
        locker = MemoryLocker(prefix=prefix)
        assert locker.object_name("x") == (f"{prefix}-x" if prefix else "x")
    with pytest.raises(ValueError, match="lock name 'Bad' does not give a valid object name"):
        MemoryLocker().object_name("Bad")


# ------------------------------------------------------------ wrong lockers


def test_a_lock_refuses_a_locker_of_the_other_api(tmp_path: Path) -> None:
    config = _dummy_kubeconfig(tmp_path / "config")
    configmaps, aconfigmaps = (
        ConfigMapLocker("ns", config=config),
        AsyncConfigMapLocker("ns", config=config),
    )
    sync_lockers: list[Any] = [MemoryLocker(), configmaps]
    async_lockers: list[Any] = [AsyncMemoryLocker(), aconfigmaps]
    for locker in sync_lockers:
        with pytest.raises(TypeError, match=r"^AsyncLock needs an asyncio locker") as info:
            AsyncLock("x", locker)
        assert type(locker).__name__ in str(info.value)
        Lock("x", locker)
    for alocker in async_lockers:
        with pytest.raises(TypeError, match=r"^Lock needs a sync locker") as info:
            Lock("x", alocker)
        assert type(alocker).__name__ in str(info.value)
        AsyncLock("x", alocker)
    with pytest.raises(TypeError, match=r"^list_locks needs a sync locker"):
        list_locks(async_lockers[0])
    with pytest.raises(TypeError, match="needs a locker"):
        Lock("x", "not a locker")
    configmaps.close()
    asyncio.run(aconfigmaps.aclose())


def test_alist_locks_refuses_a_sync_locker(loop_thread: LoopThread) -> None:
    with pytest.raises(TypeError, match=r"^alist_locks needs an asyncio locker"):
        loop_thread.run(alist_locks(MemoryLocker()))


# ----------------------------------------------------------- kubeconfigs

SECRET = "s3cr3t-t0ken-do-not-print"

BROKEN_KUBECONFIGS = {
    "empty": "",
    "not YAML": f"users:\n- name: u\n  user: {{token: {SECRET}\n",
    "a string": "just words\n",
    "a list": "- 1\n- 2\n",
    "no clusters": "apiVersion: v1\nkind: Config\ncurrent-context: a\n",
    "clusters not a list": "clusters: 5\ncontexts: []\ncurrent-context: a\n",
    "no current context": "clusters: []\ncontexts: []\n",
    "unknown context": "clusters: []\ncontexts: []\ncurrent-context: nowhere\n",
    "undefined cluster": (
        "clusters: []\ncontexts: [{name: a, context: {cluster: gone}}]\ncurrent-context: a\n"
    ),
    "bad field type": (
        "clusters: [{name: c, cluster: {server: [1]}}]\n"
        "contexts: [{name: a, context: {cluster: c}}]\ncurrent-context: a\n"
    ),
}


@pytest.mark.parametrize("content", BROKEN_KUBECONFIGS.values(), ids=BROKEN_KUBECONFIGS.keys())
def test_broken_kubeconfig_is_a_config_error_naming_the_file(
    tmp_path: Path, content: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(content)
    for make in (
        lambda: ConfigMapLocker("ns", config=path),
        lambda: AsyncConfigMapLocker("ns", config=str(path)),
    ):
        with pytest.raises(LockConfigError) as info:
            make()
        assert str(path) in str(info.value)
        assert SECRET not in str(info.value) and SECRET not in repr(info.value)
        assert isinstance(info.value, LockBackendError)
    monkeypatch.setenv("KUBECONFIG", str(path))  # found through the environment, too
    with pytest.raises(LockConfigError, match=str(path)):
        ConfigMapLocker()


def test_missing_kubeconfig_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(LockConfigError, match=f"cannot read kubeconfig {tmp_path}/nope"):
        ConfigMapLocker("ns", config=tmp_path / "nope")
    with pytest.raises(LockConfigError, match=f"cannot read kubeconfig {tmp_path}"):
        ConfigMapLocker("ns", config=tmp_path)  # a directory


UNUSABLE_CREDENTIALS = {
    "missing client certificate": (
        {"client-certificate": "/nonexistent/c.crt", "client-key": "/nonexistent/c.key"},
        "cannot use its certificate authority, client certificate or key",
    ),
    "token file missing": (
        {"tokenFile": "/nonexistent/token"},
        "cannot get credentials: Token file /nonexistent/token not found",
    ),
    "exec plugin fails": (
        {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": "false"}},
        "cannot get credentials: Exec false returned 1",
    ),
}


@pytest.mark.parametrize(
    ("user", "message"), UNUSABLE_CREDENTIALS.values(), ids=UNUSABLE_CREDENTIALS.keys()
)
def test_unusable_credentials_are_a_config_error(
    tmp_path: Path, user: dict[str, Any], message: str
) -> None:
    """Found when the locker is made (TLS files) or at the first request (a token
    file, an exec plugin), before anything is sent."""
    config = _dummy_kubeconfig(tmp_path / "config", user)

    def synchronously() -> None:
        with ConfigMapLocker("ns", config=config) as locker:
            Lock("x", locker).acquire(blocking=False)

    with pytest.raises(LockConfigError, match=f"^kubeconfig {config}, context 'x': {message}"):
        synchronously()

    async def asynchronously() -> None:
        async with AsyncConfigMapLocker("ns", config=config) as alocker:
            await AsyncLock("x", alocker).acquire(blocking=False)

    with pytest.raises(LockConfigError, match=message):
        asyncio.run(asynchronously())


# ------------------------------------------------- against the API server


def _bogus_token_kubeconfig(kubeconfig: Path, path: Path, token: str) -> Path:
    """The admin kubeconfig's server and CA, with a bearer token the server never issued."""
    doc = yaml.safe_load(kubeconfig.read_text())
    for entry in doc["users"]:
        entry["user"] = {"token": token}
    path.write_text(yaml.safe_dump(doc))
    return path


def test_unaccepted_credentials_are_a_login_failure(
    lockheed_kubeconfig: Path, configmap_locker: ConfigMapLockers, api: Api, tmp_path: Path
) -> None:
    config = _bogus_token_kubeconfig(lockheed_kubeconfig, tmp_path / "bogus", SECRET)
    locker = configmap_locker(config)
    with pytest.raises(LockUnauthorized) as info:
        api.lock("login", locker).acquire(timeout=5)
    error = info.value
    assert not isinstance(error, LockForbidden)
    assert isinstance(error, LockError) and isinstance(error, PermissionError)
    assert "401" in str(error) and "credentials" in str(error)
    assert "needs permission" not in str(error)
    assert error.lock == "login"
    assert SECRET not in str(error) and SECRET not in repr(error)
    with pytest.raises(LockUnauthorized):
        list_locks(locker)


def test_credentials_never_appear_in_reprs_or_errors(
    lockheed_kubeconfig: Path,
    lockheed_namespace: str,
    configmap_locker: ConfigMapLockers,
    tmp_path: Path,
) -> None:
    admin_user = yaml.safe_load(lockheed_kubeconfig.read_text())["users"][0]["user"]
    key_data: str = admin_user["client-key-data"]
    key_pem = base64.b64decode(key_data).decode()
    key_body = "".join(key_pem.strip().splitlines()[1:-1])
    secrets = [key_data, key_body, key_body[:40]]

    locker = configmap_locker()  # client certificate and key
    lock = Lock("repr", locker)
    shown = [repr(locker), repr(locker.config), str(locker.config), repr(lock), str(lock)]
    assert all(secret not in text for secret in secrets for text in shown), shown
    assert "client key" in repr(locker.config)  # says which kind it holds, not what
    assert locker.config.cluster.server in repr(locker.config)
    # The config is still the lightkube SingleConfig, with its credentials inside.
    assert locker.config.user is not None and locker.config.user.client_key_data == key_data
    twin = AsyncConfigMapLocker(lockheed_namespace, config=locker.config)
    assert key_data not in repr(twin.config)

    bogus = configmap_locker(_bogus_token_kubeconfig(lockheed_kubeconfig, tmp_path / "b", SECRET))
    shown = [repr(bogus), repr(bogus.config), str(bogus.config)]
    with pytest.raises(LockError) as info:
        Lock("repr", bogus).acquire(blocking=False)
    shown += [str(info.value), repr(info.value)]
    assert all(SECRET not in text for text in shown), shown


UNLABELLED_STATE = json.dumps(
    {"name": "foreign", "lockType": "mutex", "leases": {}, "tags": ["theirs"]},
    separators=(",", ":"),
)


def _create_raw(locker: ConfigMapLocker, name: str, labels: dict[str, str]) -> dict[str, Any]:
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": locker.object_name(name), "labels": labels},
        "data": {"lock": UNLABELLED_STATE, "other": "kept"},
    }
    status, obj = locker.api.request("POST", body=body)
    assert status == 201
    return dict(obj)


def _get_raw(locker: ConfigMapLocker, name: str) -> dict[str, Any]:
    status, obj = locker.api.request("GET", "/" + locker.object_name(name))
    assert status == 200
    return dict(obj)


def test_configmap_not_made_by_lockheed_is_not_adopted(
    configmap_locker: ConfigMapLockers, api: Api
) -> None:
    locker = configmap_locker()
    created = _create_raw(locker, "foreign", labels={"app": "someone-else"})
    lock = api.lock("foreign", locker).with_duration(30)
    for attempt in ({"blocking": False}, {"timeout": 5}):
        with pytest.raises(LockStateError, match="has no 'lockheed/lock' label") as info:
            lock.acquire(**attempt)
        assert info.value.lock == "foreign" and not lock.held
    assert _get_raw(locker, "foreign") == created  # byte for byte: not even re-written

    unmatched = api.lock("foreign", locker).with_duration(30).with_force(acquired(False))
    with pytest.raises(LockStateError):
        unmatched.acquire(blocking=False)
    assert _get_raw(locker, "foreign") == created

    taker = api.lock("foreign", locker).with_duration(30).with_force(acquired(True))
    taker.acquire(blocking=False)
    taken = _get_raw(locker, "foreign")
    # Its labels kept, ours added: the lock's, and the holder's view label.
    assert taken["metadata"]["labels"] == {
        "app": "someone-else",
        "lockheed/lock": "",
        view_label(taker.instance_id): "1",
    }
    assert list(json.loads(taken["data"]["lock"])["leases"]) == [taker.instance_id]
    assert taken["data"]["other"] == "kept"
    taker.release()
    api.lock("foreign", locker).with_duration(30).acquire(blocking=False)  # ours from now on


def test_labelled_configmap_as_go_makes_it_is_taken(
    configmap_locker: ConfigMapLockers, api: Api
) -> None:
    """Go lockheed labels what it creates (``lockheed/lock: ""``), so its locks are taken."""
    locker = configmap_locker()
    _create_raw(locker, "foreign", labels={"lockheed/lock": ""})
    lock = api.lock("foreign", locker).with_duration(30)
    lock.acquire(blocking=False)
    stored = json.loads(_get_raw(locker, "foreign")["data"]["lock"])
    assert list(stored["leases"]) == [lock.instance_id] and stored["tags"] == ["theirs"]
    lock.release()
