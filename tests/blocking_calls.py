"""Catch blocking calls made on an event loop's thread, whatever the machine's load.

asyncio's debug mode reports a callback that ran longer than
``slow_callback_duration``; on a busy machine a callback that blocks on
nothing is reported too, because the thread waited for a CPU. So the tests
do not judge the loop by duration. Instead, while a thread is watched
(:func:`watch`), calls that wait for something are recorded when that thread
makes them, however quick they were this time:

* ``time.sleep`` with a positive duration, ``select.select`` with a timeout
  other than 0;
* I/O on a socket in blocking mode (a timeout other than 0.0: asyncio's own
  sockets are non-blocking and never count): ``connect``, ``accept``,
  ``recv*``, ``send*``, the same on ``ssl.SSLSocket`` and its ``read``,
  ``write`` and ``do_handshake``; ``socket.getaddrinfo``,
  ``socket.gethostbyname``;
* ``threading.Event.wait`` on an event that is not set, ``threading.Condition.wait``
  (``queue.Queue.get``, ``concurrent.futures.Future.result``),
  ``threading.Thread.join`` of a live thread, ``subprocess.Popen.wait``, each
  with a timeout other than 0 (``Thread.start`` waiting for the new thread to
  run is not counted: asyncio's executor starts its threads that way);
* a request of a synchronous ``httpx2.Client``.

The calls are patched in this process while at least one thread is watched,
and pass straight through on every other thread. ``threading.Lock.acquire``
and file I/O are C code that cannot be patched, and are not caught.

Each record names the call and where it came from: the innermost frame in
lockheed's sources or tests, else the caller.
"""

from __future__ import annotations

import functools
import select
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import httpx2

__all__ = ["unwatch", "watch", "watched"]

_ROOT = Path(__file__).resolve().parent.parent
_OURS = (str(_ROOT / "src"), str(_ROOT / "tests"))
_THIS = str(Path(__file__).resolve())

_sinks: dict[int, list[str]] = {}  # watched thread ident -> its records
_inside = threading.local()  # set while a wrapper runs, so nested calls count once
_saved: list[tuple[Any, str, Any]] = []  # (owner, name, original) while patched
_THREAD_START = threading.Thread.start.__code__

Check = Callable[..., "str | None"]  # the description of a blocking call, or None


def watched() -> bool:
    """Whether the calling thread is watched."""
    return threading.get_ident() in _sinks


def watch(ident: int, sink: list[str]) -> None:
    """Record into ``sink`` every blocking call made by thread ``ident``."""
    if not _sinks:
        _install()
    _sinks[ident] = sink


def unwatch(ident: int) -> None:
    """Stop watching thread ``ident``; the calls are restored after the last one."""
    _sinks.pop(ident, None)
    if not _sinks:
        _uninstall()


def _where(frame: FrameType | None) -> str:
    first: FrameType | None = None
    while frame is not None:
        name = frame.f_code.co_filename
        if name != _THIS:
            if first is None:
                first = frame
            if name.startswith(_OURS):
                break
        frame = frame.f_back
    found = frame or first
    if found is None:
        return "?"
    return f"{found.f_code.co_filename}:{found.f_lineno} in {found.f_code.co_name}"


def _wrap(original: Any, check: Check) -> Any:
    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        sink = _sinks.get(threading.get_ident())
        if sink is None or getattr(_inside, "active", False):
            return original(*args, **kwargs)
        _inside.active = True
        try:
            what = check(*args, **kwargs)
            if what is not None:
                sink.append(f"{what} on the event loop's thread, from {_where(sys._getframe(1))}")
            return original(*args, **kwargs)
        finally:
            _inside.active = False

    return wrapper


def _waits(timeout: float | None) -> bool:
    return timeout is None or timeout > 0


def _sleep(seconds: float) -> str | None:
    return f"time.sleep({seconds!r})" if seconds > 0 else None


def _select(rlist: Any, wlist: Any, xlist: Any, timeout: float | None = None) -> str | None:
    return f"select.select(timeout={timeout!r})" if _waits(timeout) else None


def _socket_call(name: str) -> Check:
    def check(sock: socket.socket, *args: Any, **kwargs: Any) -> str | None:
        timeout = sock.gettimeout()
        if timeout == 0.0:
            return None  # non-blocking: asyncio's own sockets
        kind = "ssl.SSLSocket" if isinstance(sock, ssl.SSLSocket) else "socket"
        return f"{kind}.{name}() in blocking mode (timeout={timeout!r})"

    return check


def _resolve(name: str) -> Check:
    def check(*args: Any, **kwargs: Any) -> str | None:
        return f"socket.{name}({args[0] if args else ''!r})"

    return check


def _event_wait(event: threading.Event, timeout: float | None = None) -> str | None:
    if event.is_set() or not _waits(timeout):
        return None
    if sys._getframe(2).f_code is _THREAD_START:
        return None  # Thread.start() waiting for the new thread to run
    return f"threading.Event.wait(timeout={timeout!r})"


def _condition_wait(condition: threading.Condition, timeout: float | None = None) -> str | None:
    if not _waits(timeout):
        return None
    return f"threading.Condition.wait(timeout={timeout!r})"


def _join(thread: threading.Thread, timeout: float | None = None) -> str | None:
    if not thread.is_alive() or not _waits(timeout):
        return None
    return f"threading.Thread.join({thread.name!r}, timeout={timeout!r})"


def _popen_wait(process: subprocess.Popen[Any], timeout: float | None = None) -> str | None:
    if not _waits(timeout):
        return None
    return f"subprocess.Popen.wait(pid {process.pid}, timeout={timeout!r})"


def _http(client: httpx2.Client, request: httpx2.Request, *args: Any, **kwargs: Any) -> str:
    return f"httpx2.Client.send({request.method} {request.url})"


_SOCKET_CALLS = (
    "connect",
    "accept",
    "recv",
    "recv_into",
    "recvfrom",
    "recvfrom_into",
    "send",
    "sendall",
    "sendto",
)
_SSL_CALLS = (*_SOCKET_CALLS, "read", "write", "do_handshake")


def _targets() -> list[tuple[Any, str, Check]]:
    targets: list[tuple[Any, str, Check]] = [
        (time, "sleep", _sleep),
        (select, "select", _select),
        (socket, "getaddrinfo", _resolve("getaddrinfo")),
        (socket, "gethostbyname", _resolve("gethostbyname")),
        (threading.Event, "wait", _event_wait),
        (threading.Condition, "wait", _condition_wait),
        (threading.Thread, "join", _join),
        (subprocess.Popen, "wait", _popen_wait),
        (httpx2.Client, "send", _http),
    ]
    targets += [(socket.socket, name, _socket_call(name)) for name in _SOCKET_CALLS]
    targets += [
        (ssl.SSLSocket, name, _socket_call(name))
        for name in _SSL_CALLS
        if name in vars(ssl.SSLSocket)
    ]
    return targets


def _install() -> None:
    for owner, name, check in _targets():
        had = name in vars(owner)  # socket.socket inherits its I/O methods from C
        original = getattr(owner, name)
        _saved.append((owner, name, original if had else None))
        setattr(owner, name, _wrap(original, check))


def _uninstall() -> None:
    while _saved:
        owner, name, original = _saved.pop()
        if original is None:
            delattr(owner, name)
        else:
            setattr(owner, name, original)
