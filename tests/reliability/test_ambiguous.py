"""Ambiguous writes: the server stored a write whose answer never arrived, or
arrived too late.

The library re-reads rather than guess: it never claims a lock it does not
hold, a lease it may have written is freed (or runs out) within a lease when
the acquire fails, and a write it believes failed cannot leave it holding a
lock it does not know about.
"""

from __future__ import annotations

import contextlib

import pytest

from fault_support import warm
from lockheed import (
    ConfigMapLocker,
    Lock,
    LockBackendError,
    LockError,
    LockTimeout,
    list_locks,
)
from lockheed._core import TOKEN_KEY, Read
from lockheed._state import Record
from lockheed.testing import DropResponse, FaultProxy, Latency
from support import Api, ConfigMapLockers

DURATION = 5.0


def _stored(locker: ConfigMapLocker, name: str) -> Record:
    record: Record | None = locker.execute(Read(name))
    assert record is not None and record.state is not None
    return record


def _holders(locker: ConfigMapLocker, name: str) -> list[str]:
    return sorted(_stored(locker, name).state.leases)  # type: ignore[union-attr]


def test_blocking_acquire_whose_create_was_not_answered_holds_the_lock(
    api: Api, lockheed_fault_proxy: FaultProxy, configmap_locker: ConfigMapLockers
) -> None:
    proxied, direct = configmap_locker(lockheed_fault_proxy.kubeconfig()), configmap_locker()
    lock = api.lock("ambiguous-acquire", proxied).with_duration(30)
    warm(api, proxied, "ambiguous-acquire")
    with lockheed_fault_proxy.fault(DropResponse(skip=1)) as run:  # the read passes, the create not
        token = lock.acquire(timeout=30)
    assert run.injected == 1

    record = _stored(direct, "ambiguous-acquire")
    assert _holders(direct, "ambiguous-acquire") == [lock.instance_id]
    assert token == int(record.meta[TOKEN_KEY]) < int(record.version)  # stamped with the write
    assert lock.held
    lock.release()


def test_failed_non_blocking_acquire_claims_nothing_and_frees_the_lock(
    api: Api, lockheed_fault_proxy: FaultProxy, configmap_locker: ConfigMapLockers
) -> None:
    proxied, direct = configmap_locker(lockheed_fault_proxy.kubeconfig()), configmap_locker()
    lock = api.lock("ambiguous-try", proxied).with_duration(DURATION)
    warm(api, proxied, "ambiguous-try")
    with lockheed_fault_proxy.fault(DropResponse(skip=1)) as run:
        try:
            lock.acquire(blocking=False)
            acquired = True
        except LockError:
            acquired = False
    assert run.injected == 1

    contender = Lock("ambiguous-try", direct).with_duration(30)
    if acquired:  # it found out that its write had been stored: then it must hold the lock
        assert lock.held
        assert _holders(direct, "ambiguous-try") == [lock.instance_id]
        with pytest.raises(LockTimeout) as busy:
            contender.acquire(blocking=False)
        assert busy.value.holder == lock.instance_id
        lock.release()
    else:  # it claims nothing, and its stored lease is freed or runs out
        assert not lock.held
        contender.acquire(timeout=DURATION + 30)
        assert _holders(direct, "ambiguous-try") == [contender.instance_id]
        contender.release()


def test_renewal_whose_answer_was_lost_keeps_the_lock(
    api: Api, lockheed_fault_proxy: FaultProxy, configmap_locker: ConfigMapLockers
) -> None:
    proxied, direct = configmap_locker(lockheed_fault_proxy.kubeconfig()), configmap_locker()
    lock = api.lock("ambiguous-renew", proxied).with_duration(30)
    token = lock.acquire(timeout=30)
    with lockheed_fault_proxy.fault(DropResponse()) as run, contextlib.suppress(LockBackendError):
        lock.renew()
    assert run.injected == 1
    assert lock.held and lock.lost is None
    assert int(_stored(direct, "ambiguous-renew").version) > token  # the renewal was stored
    assert _holders(direct, "ambiguous-renew") == [lock.instance_id]

    lock.renew()  # from a stale copy: conflicts, reads, renews
    assert lock.fencing_token == token
    with pytest.raises(LockTimeout) as busy:
        Lock("ambiguous-renew", direct).acquire(blocking=False)
    assert busy.value.holder == lock.instance_id
    lock.release()


def test_release_whose_answer_was_lost_frees_the_lock(
    api: Api, lockheed_fault_proxy: FaultProxy, configmap_locker: ConfigMapLockers
) -> None:
    proxied, direct = configmap_locker(lockheed_fault_proxy.kubeconfig()), configmap_locker()
    lock = api.lock("ambiguous-release", proxied).with_duration(30)
    token = lock.acquire(timeout=30)
    with lockheed_fault_proxy.fault(DropResponse()) as run, contextlib.suppress(LockBackendError):
        lock.release()
    assert run.injected == 1
    assert not lock.held
    assert _holders(direct, "ambiguous-release") == []

    contender = Lock("ambiguous-release", direct).with_duration(30)
    assert contender.acquire(blocking=False) > token
    contender.release()


def test_listing_after_a_lost_release_answer_shows_no_stale_token(
    lockheed_fault_proxy: FaultProxy, configmap_locker: ConfigMapLockers
) -> None:
    """The same instance takes the lock again after a release whose answer was
    lost: the listing names it as holder with its new token, not its old one."""
    proxied, direct = configmap_locker(lockheed_fault_proxy.kubeconfig()), configmap_locker()
    lock = Lock("relisted", proxied).with_duration(30)
    lock.acquire(timeout=30)
    lock.renew()  # the token annotation now names this instance
    with (
        lockheed_fault_proxy.fault(DropResponse()) as run,
        contextlib.suppress(LockBackendError),
    ):
        lock.release()
    assert run.injected == 1

    token = lock.acquire(timeout=30)
    (info,) = list_locks(direct)
    assert [h.instance_id for h in info.holders] == [lock.instance_id]
    assert info.fencing_token == token, f"listed token {info.fencing_token}, now {token}"
    lock.release()


def test_acquire_answered_after_its_lease_ran_out_is_not_held(
    lockheed_fault_proxy: FaultProxy, configmap_locker: ConfigMapLockers
) -> None:
    """Every answer arrives a second after the lease would have run out: an
    acquire must not return a lock it may no longer hold."""
    duration = 3.0
    proxied, direct = configmap_locker(lockheed_fault_proxy.kubeconfig()), configmap_locker()
    lock = Lock("late-answer", proxied).with_duration(duration)
    proxied.execute(Read("late-answer"))
    with lockheed_fault_proxy.fault(Latency(to_client=duration + 1)) as run:
        try:
            lock.acquire(timeout=duration)
        except LockError:
            held_on_return = None
        else:
            held_on_return = lock.held
    assert run.injected >= 1
    assert held_on_return is not False, "acquire returned a lock whose lease had run out"

    # Whatever the acquire stored is freed, or runs out: the lock can be had.
    contender = Lock("late-answer", direct).with_duration(30)
    contender.acquire(timeout=duration * 2 + 30)
    contender.release()
