"""What the ConfigMap and Lease lockers share: how they perform the core's effects.

A read is one GET, a new lock one POST, every other write one PUT at the
resourceVersion read, a wait one watch of that single object
(:mod:`lockheed._async.sessions`); nothing is ever listed to find one lock.
The subclasses only encode and decode their object (:meth:`_new_body`,
:meth:`_updated_body`, :meth:`_decode`). The asyncio lockers send their
tasks' requests on one lock together where that saves requests without
changing any answer (:mod:`lockheed._async.joins`).

Failure semantics: a 409 is handed back to the core as ``CONFLICT`` (it
reads and decides again); a 404 on a write means the object was deleted (a
holder's loss), on a create that the namespace does not exist
(:class:`~lockheed.LockBackendError`); 401, 403 and transport errors leave
:class:`~lockheed._async.kube.AsyncKubeAPI` as their
:class:`~lockheed.LockError` subclasses. A watch whose version was
compacted away (410) falls back to a fresh read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from .._codec import LABEL, lock_name_of, validate_object_name
from .._core import CONFLICT, Create, Effect, Read, Replace, Watch
from .._errors import LockBackendError, LockError
from .._state import Record
from .joins import Creates, Joins, Reads  # unasync: async-only
from .kube import AsyncKubeAPI
from .sessions import AsyncWatches

__all__ = ["AsyncKubeLocker"]

_L = TypeVar("_L", bound="AsyncKubeLocker")


class AsyncKubeLocker:
    """The effects of the core's flows on one kind of object of one namespace."""

    prefix: str

    def _start(self, api: AsyncKubeAPI) -> None:
        """Called by the subclass's ``__init__`` once ``prefix`` is set."""
        self.api = api
        self.namespace = api.namespace
        self.config = api.config
        self.clock = api.clock
        self._watches = AsyncWatches(api, self.object_name, self._decode, self.execute)
        self._joins = Joins(self._replace)  # unasync: async-only
        self._reads = Reads(self._read)  # unasync: async-only
        self._creates = Creates(self._create)  # unasync: async-only

    def _new_body(self, name: str, effect: Create) -> dict[str, Any]:
        """The object to POST for ``effect`` (object name ``name``)."""
        raise NotImplementedError

    def _updated_body(self, name: str, effect: Replace) -> dict[str, Any]:
        """The object to PUT for ``effect`` (object name ``name``)."""
        raise NotImplementedError

    def _decode(self, name: str, obj: Any) -> Record:
        """The lock ``name``'s record from its object as the server sent it."""
        raise NotImplementedError

    def _write_params(self, effect: Replace, body: dict[str, Any]) -> dict[str, str] | None:
        """The query of the PUT of ``body`` for ``effect`` (a field manager), if any."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(namespace={self.namespace!r}, prefix={self.prefix!r})"

    async def aclose(self) -> None:
        await self._watches.aclose()
        await self.api.aclose()

    async def __aenter__(self: _L) -> _L:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def object_name(self, name: str) -> str:
        return validate_object_name(self.prefix, name)

    async def execute(self, effect: Effect) -> Any:
        """Perform one effect of the core's flows; see :mod:`lockheed._core`."""
        if isinstance(effect, Watch):
            return await self._watches.watch(effect)
        if isinstance(effect, Read):
            read = self._read
            read = self._reads.read  # unasync: async-only
            return await read(effect)
        if isinstance(effect, Create):
            create = self._create
            create = self._creates.create  # unasync: async-only
            return await create(effect)
        if isinstance(effect, Replace):
            replace = self._replace
            replace = self._joins.replace  # unasync: async-only
            return await replace(effect)
        raise TypeError(f"unknown effect {effect!r}")

    async def _create(self, effect: Create) -> Any:
        """One POST (a create of a lock that one under way is making already is
        answered without one: :mod:`lockheed._async.joins`)."""
        name = effect.name
        body = self._new_body(self.object_name(name), effect)
        status, obj = await self.api.request("POST", body=body, lock=name)
        if status == 404:
            raise LockBackendError(
                f"cannot create lock {name!r}: namespace {self.namespace!r} not found",
                lock=name,
            )
        return CONFLICT if status == 409 else self._decode(name, obj)

    async def _read(self, effect: Read) -> Any:
        """One GET (the tasks' reads of one lock that come together share one:
        :mod:`lockheed._async.joins`)."""
        name = effect.name
        status, obj = await self.api.request("GET", "/" + self.object_name(name), lock=name)
        return None if status == 404 else self._decode(name, obj)

    async def _replace(self, effect: Replace) -> Any:
        """One PUT at the effect's version (the tasks' joins of one lock are
        written together: :mod:`lockheed._async.joins`)."""
        method, path, body, params, name = self._put(effect)
        status, obj = await self.api.request(method, path, body=body, params=params, lock=name)
        return self._written(name, status, obj)

    async def execute_batch(self, effects: Sequence[Replace]) -> list[Any]:
        """Perform several writes at once (the renewer's, each of its own lock):
        pipelined on one connection (:meth:`AsyncKubeAPI.request_batch`). Each
        item is what :meth:`execute` returns for its effect, or the
        :class:`~lockheed.LockError` it would raise, returned."""
        answers = await self.api.request_batch([self._put(effect) for effect in effects])
        out: list[Any] = []
        for effect, answer in zip(effects, answers, strict=True):
            try:
                if isinstance(answer, LockError):
                    raise answer
                out.append(self._written(effect.name, *answer))
            except LockError as exc:
                out.append(exc)
        return out

    def _put(self, effect: Replace) -> tuple[str, str, Any, dict[str, str] | None, str]:
        """The PUT that performs ``effect``: method, path, body, query, lock name."""
        name = self.object_name(effect.name)
        body = self._updated_body(name, effect)
        return "PUT", "/" + name, body, self._write_params(effect, body), effect.name

    def _written(self, name: str, status: int, obj: Any) -> Any:
        """What a write's answer means to the core: None (the object is gone),
        ``CONFLICT``, or the version written."""
        if status == 404:
            return None
        return CONFLICT if status == 409 else self._decode(name, obj)

    async def end_watch(self, session: object) -> None:
        """The operation that waited with ``session`` is over: stop its watch."""
        await self._watches.end(session)

    async def park_watch(self, session: object) -> None:
        """A released lock keeps ``session``'s watch open a few seconds, for its next acquire."""
        await self._watches.park(session)

    async def latest(self, session: object, record: Record | None) -> Record | None:
        """``record``, or a newer version that ``session``'s watch has received (no request)."""
        return await self._watches.latest(session, record)

    async def list_records(self, page_size: int = 500) -> list[Record]:
        """Every lock object of this locker (label ``lockheed/lock``), paginated."""
        params = {"labelSelector": LABEL, "limit": str(page_size)}
        out: list[Record] = []
        while True:
            _, body = await self.api.request("GET", params=params)
            for obj in body.get("items") or ():
                name = lock_name_of(self.prefix, obj.get("metadata", {}).get("name", ""))
                if name is not None:
                    out.append(self._decode(name, obj))
            token = (body.get("metadata") or {}).get("continue")
            if not token:
                return out
            params = {**params, "continue": token}
