"""Regression tests for the edges of holding a lock, on the real API server:
late answers, waiting through unreachable moments, renewal under slow round
trips and broken ticks, listed tokens, and an event loop that goes away.

Faults are injected into one locker's own HTTP clients (its request and
watch pools, sync or asyncio), so every request still reaches the real API
server unless the test refuses it, and a slowed answer is one that the
server had already committed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from lockheed import (
    AsyncConfigMapLocker,
    AsyncLock,
    ConfigMapLocker,
    Event,
    EventCode,
    LeaseLocker,
    Lock,
    LockBackendError,
    LockForbidden,
    LockLost,
    LockTimeout,
    list_locks,
)
from lockheed._core import Read
from lockheed.testing.plugin import RestrictedUserFactory
from support import Api, ConfigMapLockers, NewLock

pytestmark = pytest.mark.lockheed_kube


class Wire:
    """Faults on the HTTP clients of one ConfigMap locker (and its asyncio twin).

    ``delay`` slows the *answer* to matching PUTs (the server has already done
    them; past the request's read timeout the client times out, as it would
    on a slow network); ``gate``, when set, holds matching answers until it is opened;
    ``refusing`` makes every new request fail as if the connection were refused,
    and ``refuse_puts`` the next that many PUTs; ``unavailable`` makes the API
    server's answer to every request a 503 (with ``Retry-After: 1``) that
    never reaches the server.
    """

    def __init__(self, match: Callable[[httpx.Request], bool] = lambda r: True):
        self.match = match
        self.delay = 0.0
        self.delay_count: int | None = None  # how many answers to slow (None: all)
        self.gate: threading.Event | None = None
        self.refusing = threading.Event()
        self.refused = 0
        self.refuse_puts = 0
        self.unavailable = threading.Event()
        self.answered_503 = 0
        self.watching = threading.Event()
        self.puts = 0

    def attach(self, locker: Any) -> None:
        """Hook ``locker``'s clients (a ConfigMapLocker or an AsyncConfigMapLocker)."""
        asynchronous = isinstance(locker, AsyncConfigMapLocker)
        for client in {locker.api.client, locker.api.watch_client}:
            if asynchronous:
                client.event_hooks = {"request": [self._arequest], "response": [self._aresponse]}
                client._transport = _AsyncAnswering(client._transport, self)
            else:
                client.event_hooks = {"request": [self._request], "response": [self._response]}
                client._transport = _Answering(client._transport, self)

    def answer(self, request: httpx.Request) -> httpx.Response | None:
        """The 503 that stands in for the API server's answer, while ``unavailable``."""
        if not self.unavailable.is_set():
            return None
        self.answered_503 += 1
        status = {"kind": "Status", "status": "Failure", "code": 503, "reason": "injected"}
        return httpx.Response(503, json=status, headers={"Retry-After": "1"}, request=request)

    def _before(self, request: httpx.Request) -> None:
        if "watch" in request.url.params:
            self.watching.set()
        if self.refusing.is_set() or (request.method == "PUT" and self.refuse_puts > 0):
            if not self.refusing.is_set():
                self.refuse_puts -= 1
            self.refused += 1
            raise httpx.ConnectError("connection refused (injected)", request=request)
        if request.method == "PUT":
            self.puts += 1

    def _hold(self, request: httpx.Request) -> float:
        if not self.match(request) or request.method != "PUT":
            return 0.0
        if self.delay_count is not None:
            if self.delay_count <= 0:
                return 0.0
            self.delay_count -= 1
        return self.delay

    def _request(self, request: httpx.Request) -> None:
        self._before(request)

    async def _arequest(self, request: httpx.Request) -> None:
        self._before(request)

    @staticmethod
    def _cut(request: httpx.Request, delay: float) -> float:
        """A client gives up on an answer slower than its read timeout: so do we."""
        timeout = (request.extensions.get("timeout") or {}).get("read")
        return delay if timeout is None else min(delay, timeout)

    @staticmethod
    def _late(request: httpx.Request, delay: float) -> None:
        if Wire._cut(request, delay) < delay:
            raise httpx.ReadTimeout("answer slower than the timeout (injected)", request=request)

    def _response(self, response: httpx.Response) -> None:
        delay = self._hold(response.request)
        if delay:
            time.sleep(self._cut(response.request, delay))
            self._late(response.request, delay)
        gate = self.gate
        if gate is not None and self.match(response.request) and response.request.method == "PUT":
            gate.wait(30)

    async def _aresponse(self, response: httpx.Response) -> None:
        delay = self._hold(response.request)
        if delay:
            await asyncio.sleep(self._cut(response.request, delay))
            self._late(response.request, delay)
        gate = self.gate
        if gate is not None and self.match(response.request) and response.request.method == "PUT":
            await asyncio.to_thread(gate.wait, 30)


class _Answering(httpx.BaseTransport):
    """A transport that lets ``wire`` answer a request in the API server's place."""

    def __init__(self, inner: httpx.BaseTransport, wire: Wire):
        self.inner, self.wire = inner, wire

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self.wire.answer(request) or self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


class _AsyncAnswering(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport, wire: Wire):
        self.inner, self.wire = inner, wire

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return self.wire.answer(request) or await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def wired(api: Api, locker: ConfigMapLocker, wire: Wire) -> ConfigMapLocker:
    """Attach ``wire`` to the locker that ``api``'s locks will use."""
    wire.attach(locker if api.runner is None else api.twin(locker))
    return locker


def named(name: str) -> Callable[[httpx.Request], bool]:
    return lambda request: request.url.path.endswith(f"/lockheed-{name}")


def lease_holders(locker: ConfigMapLocker, name: str) -> list[str]:
    record = locker.execute(Read(name))
    assert record is not None and record.state is not None
    return sorted(record.state.leases)


class Events:
    """Counts a lock's events by code and lets a test wait for a number of them."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.codes: list[EventCode] = []

    def __call__(self, event: Event) -> None:
        with self.cond:
            self.codes.append(event.code)
            self.cond.notify_all()

    def count(self, code: EventCode) -> int:
        with self.cond:
            return self.codes.count(code)

    def wait_for(self, code: EventCode, n: int, timeout: float = 30) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.codes.count(code) >= n, timeout)


# ------------------------------------------------------------ 3: late answers


def test_an_acquire_answered_after_its_loss_deadline_is_not_returned_as_held(
    api: Api, configmap_locker: ConfigMapLockers
) -> None:
    admin = configmap_locker()
    wire = Wire(named("late"))
    wire.delay, wire.delay_count = 3.5, 1  # the first PUT's answer outlives a 3 s lease's span
    lock = api.lock("late", wired(api, configmap_locker(), wire)).with_duration(3)
    lock.acquire(timeout=30)
    assert lock.held  # returned only once a write came back in time
    assert wire.puts >= 2
    assert lease_holders(admin, "late") == [lock.instance_id]
    lock.release()


def test_an_acquire_out_of_time_with_a_late_answer_leaves_no_lease(
    api: Api, configmap_locker: ConfigMapLockers
) -> None:
    admin = configmap_locker()
    with Lock("late-out", admin):  # the lock exists, free
        pass
    wire = Wire(named("late-out"))
    wire.delay = 3.5  # every answer comes too late for a 3 s lease
    lock = api.lock("late-out", wired(api, configmap_locker(), wire)).with_duration(3)
    with pytest.raises(LockTimeout, match="too slowly"):
        lock.acquire(timeout=1)
    assert not lock.held
    assert lease_holders(admin, "late-out") == []


# ---------------------------------------------------- 4: waiting through blips


@pytest.mark.parametrize("fault", ["refused", "503"])
@pytest.mark.parametrize("fair", [True, False], ids=["in-line", "racing"])
def test_a_waiting_acquire_rides_out_an_unreachable_api_server(
    api: Api, configmap_locker: ConfigMapLockers, fair: bool, fault: str
) -> None:
    """Refused connections, or 503s from the API server (with Retry-After): both
    are transient, so the waiter keeps trying until its timeout."""
    admin = configmap_locker()
    holder = Lock("blip", admin).with_duration(2)  # not renewed: it runs out by itself
    holder.acquire()
    wire = Wire()
    waiter = api.lock("blip", wired(api, configmap_locker(), wire)).with_duration(30)
    waiter.with_fair(fair)
    got: list[Any] = []
    thread = threading.Thread(target=lambda: got.append(_attempt(waiter, 60)))
    thread.start()
    assert wire.watching.wait(30)  # the waiter is waiting on its watch
    # The API server becomes unreachable for the waiter as the holder's lease runs out.
    on = wire.refusing if fault == "refused" else wire.unavailable

    def failed() -> int:
        return wire.refused if fault == "refused" else wire.answered_503

    on.set()
    deadline = time.monotonic() + 30
    while failed() < 3 and time.monotonic() < deadline:
        time.sleep(0.01)  # polling a counter the hooks bump; no event exists for it
    assert failed() >= 3, "the waiter gave up or never retried"
    on.clear()
    thread.join(60)
    assert got and isinstance(got[0], int), got
    assert waiter.held and waiter.fencing_token > (holder.fencing_token or 0)
    waiter.release()


def _attempt(lock: Any, timeout: float) -> Any:
    try:
        return lock.acquire(timeout=timeout)
    except Exception as exc:  # reported to the test thread
        return exc


def test_a_waiting_acquire_times_out_when_the_api_server_stays_away(
    api: Api, configmap_locker: ConfigMapLockers
) -> None:
    wire = Wire()
    wire.refusing.set()
    lock = api.lock("away", wired(api, configmap_locker(), wire)).with_duration(30)
    with pytest.raises(LockTimeout, match="could not be reached"):
        lock.acquire(timeout=1.5)
    assert wire.refused >= 3  # it kept trying meanwhile


@pytest.mark.parametrize("final", ["forbidden", "no-namespace"])
def test_a_waiting_acquire_ends_at_once_on_a_final_error(
    api: Api,
    configmap_locker: ConfigMapLockers,
    lockheed_restricted_user: RestrictedUserFactory,
    lockheed_kubeconfig: Path,
    final: str,
) -> None:
    """Only transient errors are waited out: a 403 (the waiter may not write the
    lock it waits for) or a namespace that does not exist ends even a long wait
    with its own error. Were either retried, the acquire would end in a
    LockTimeout after its timeout instead."""
    holder = Lock("final", configmap_locker()).with_duration(60)
    holder.acquire()
    if final == "forbidden":  # may watch and read the lock, not join the line nor take it
        rules = [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "watch"]}]
        locker = configmap_locker(lockheed_restricted_user(rules))
        with pytest.raises(LockForbidden) as forbidden:
            api.lock("final", locker).acquire(timeout=100)
        assert forbidden.value.verb == "update"
    else:
        for kind in (ConfigMapLocker, LeaseLocker):
            with kind("lockheed-no-such-namespace", config=lockheed_kubeconfig) as missing:
                with pytest.raises(LockBackendError) as error:
                    api.lock("final", missing).acquire(timeout=100)
                assert not isinstance(error.value, LockTimeout)
                assert not error.value.transient
                assert "namespace 'lockheed-no-such-namespace' not found" in str(error.value)
    holder.release()  # untouched: still ours


# ------------------------------------------------- 5: renewal under slow trips


def test_renewal_keeps_a_lock_through_round_trips_of_a_third_of_its_lease(
    api: Api, configmap_locker: ConfigMapLockers
) -> None:
    wire = Wire(named("slow-renew"))
    events = Events()
    lock = (
        api.lock("slow-renew", wired(api, configmap_locker(), wire))
        .with_duration(3)
        .with_renew_interval(1)
        .with_event_handler(events)
    )
    lock.acquire()
    wire.delay = 1.0  # every renewal's answer takes a second from now on
    assert events.wait_for(EventCode.RENEW_OK, 5), events.codes
    assert lock.lost is None and lock.held
    wire.delay = 0.0
    lock.release()


def test_a_failed_renewal_is_retried_well_before_the_next_interval(
    api: Api, configmap_locker: ConfigMapLockers
) -> None:
    """Duration 20 s, renewals every 10 s: the loss deadline is 18 s after a
    renewal's send. Two renewal attempts in a row are refused; had the next try
    waited a whole interval (at 20 s), the lock would have been lost at 18 s."""
    wire = Wire(named("retried"))
    events = Events()
    lock = (
        api.lock("retried", wired(api, configmap_locker(), wire))
        .with_duration(20)
        .with_renew_interval(10)
        .with_event_handler(events)
    )
    lock.acquire()
    wire.refuse_puts = 2
    assert events.wait_for(EventCode.RENEW_OK, 1, timeout=60), events.codes
    assert wire.refused == 2 and events.count(EventCode.RENEW_FAILED) == 2
    assert lock.held and lock.lost is None
    lock.release()


# --------------------------------------------- 6: one lock never blocks another


def test_a_stuck_lock_does_not_stop_the_renewal_of_others(
    api: Api, configmap_locker: ConfigMapLockers
) -> None:
    wire = Wire(named("stuck"))
    wire.gate = threading.Event()  # answers about "stuck" are held until this opens
    locker = wired(api, configmap_locker(), wire)
    stuck = api.lock("stuck", locker).with_duration(30).with_renew_interval(0.2)
    events = Events()
    other = (
        api.lock("free-flowing", locker)
        .with_duration(30)
        .with_renew_interval(0.2)
        .with_event_handler(events)
    )
    wire.gate.set()
    stuck.acquire()
    other.acquire()
    wire.gate.clear()  # from now on the stuck lock's renewals (and a manual renew) hang
    manual = threading.Thread(target=lambda: _attempt_renew(stuck))
    manual.start()
    before = events.count(EventCode.RENEW_OK)
    assert events.wait_for(EventCode.RENEW_OK, before + 5), "renewal of the other lock stopped"
    wire.gate.set()
    manual.join(30)
    other.release()
    stuck.release()


def _attempt_renew(lock: Any) -> None:
    try:
        lock.renew()
    except Exception:  # the outcome does not matter here
        return


def test_an_unexpected_error_in_renewal_is_retried_then_declared_at_the_deadline(
    api: Api, configmap_locker: ConfigMapLockers
) -> None:
    events = Events()
    lock = api.lock("buggy", configmap_locker()).with_duration(2).with_renew_interval(0.2)
    lock.with_event_handler(events)
    lost = threading.Event()
    lock.on_lost(lambda exc: lost.set())
    lock.acquire()
    failures = [2]
    inner = lock if api.runner is None else lock._lock  # the Lock or the AsyncLock
    real = inner._renew_locked

    def bug() -> bool:
        if failures[0] > 0:
            failures[0] -= 1
            raise RuntimeError("a bug in a renewal")
        return False

    def flaky(*args: Any) -> None:  # a tick passes the renewal it began
        bug() or real(*args)

    async def aflaky(*args: Any) -> None:
        bug() or await real(*args)

    inner._renew_locked = flaky if api.runner is None else aflaky
    assert events.wait_for(EventCode.RENEW_FAILED, 2), events.codes
    renewed = events.count(EventCode.RENEW_OK)
    assert events.wait_for(EventCode.RENEW_OK, renewed + 1), "not retried after the failures"
    assert lock.held and lock.lost is None
    failures[0] = 10**6  # now it always fails: the loss must still be declared
    assert lost.wait(10), "an endless bug in renewal left the loss silent"
    assert not lock.held
    with pytest.raises(LockLost):
        lock.release()


# --------------------------------------------- 7: the listed token is current


def test_the_listed_token_is_the_holders_current_one(locker: Any, new_lock: NewLock) -> None:
    def listed() -> int | None:
        (info,) = [i for i in list_locks(locker) if i.name == "listed"]
        return info.fencing_token

    lock = new_lock("listed").with_duration(30)
    token = lock.acquire()
    assert listed() == token == lock.fencing_token  # at once, not after a renewal
    lock.release()
    other = new_lock("listed").with_duration(30)
    assert listed() is None  # free
    second = other.acquire()
    assert listed() == second > token
    other.release()
    third = lock.acquire()  # the first instance again, from its cached object
    assert listed() == third == lock.fencing_token > second
    again = lock.acquire()  # taken again while held: the same token
    assert again == third and listed() == third
    lock.release()


# ------------------------------------------------ 10: the event loop goes away


def test_a_lock_held_when_its_event_loop_ends_is_declared_lost(
    lockheed_namespace: str, lockheed_kubeconfig: Path
) -> None:
    lost: list[LockLost] = []
    held: list[AsyncLock] = []

    async def forget_to_release() -> None:
        async with AsyncConfigMapLocker(lockheed_namespace, config=lockheed_kubeconfig) as locker:
            lock = AsyncLock("orphan", locker).with_duration(30).with_renew_interval(5)
            lock.on_lost(lost.append)
            await lock.acquire()
            held.append(lock)

    asyncio.run(forget_to_release())
    (lock,) = held
    assert lost and "event loop" in str(lost[0])
    assert not lock.held and lock.lost is lost[0]
