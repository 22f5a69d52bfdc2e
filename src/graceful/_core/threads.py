"""Threads, locks and events from ``_thread``, so that a guard does not import ``threading``.

``threading`` imports ``functools`` and ``collections``: 0.7 MiB of RSS in an idle guarded
process that has not imported them itself (issue 16: the whole of graceful may cost 1 MiB). A
program that has imported ``threading`` gets graceful's threads as ``threading.Thread`` objects
(named ``graceful-...``, listed by ``threading.enumerate()``); otherwise they are started with
``_thread`` and stay out of ``threading``'s books, like any thread started before it was imported.

``threading`` must never be imported here: the first import of ``threading`` takes the importing
thread for the main thread (before 3.13), so an import from the watcher would make it so.
"""

from __future__ import annotations

import _thread
import os
import sys

TYPE_CHECKING = False  # typing costs import time; annotations are strings here
if TYPE_CHECKING:
    from typing import Any, Callable, Optional

Lock = _thread.allocate_lock
RLock = _thread.RLock  # what threading.RLock() returns too
get_ident = _thread.get_ident
TIMEOUT_MAX: float = _thread.TIMEOUT_MAX

#: The main thread's ident, as last seen by :func:`is_main_thread` (Python < 3.13 without
#: ``threading``: nothing else can tell the watcher which thread is the main one).
_main: Optional[int] = None


def _threading() -> Any:
    return sys.modules.get("threading")


def main_ident() -> Optional[int]:
    """The main thread's ident (None if unknown: no guard has been entered in it)."""
    threading = _threading()
    if threading is not None:
        return threading.main_thread().ident  # type: ignore[no-any-return]
    exact = getattr(_thread, "_get_main_thread_ident", None)  # 3.13
    if exact is not None:
        return exact()  # type: ignore[no-any-return]
    return _main


def is_main_thread() -> bool:
    """The calling thread is the main thread (where Python runs signal handlers)."""
    global _main
    threading = _threading()
    if threading is not None:
        main = threading.current_thread() is threading.main_thread()
    elif hasattr(_thread, "_get_main_thread_ident"):
        main = _thread._get_main_thread_ident() == get_ident()
    elif sys.platform == "linux":
        # The process's first thread, where the interpreter started. Never fall through to
        # importing threading from here: called from another thread (the watcher), that import
        # would make the caller threading's main thread before 3.13.
        main = _thread.get_native_id() == os.getpid()
    else:  # what graceful always did (the first importer's thread, before 3.13)
        import threading as imported

        main = imported.current_thread() is imported.main_thread()
    if main:
        _main = get_ident()
    return main


def start(target: Callable[..., object], name: str, *args: object) -> None:
    """Start a daemon thread; RuntimeError if none can start."""
    threading = _threading()
    if threading is not None:
        threading.Thread(target=target, args=args, name=name, daemon=True).start()
    else:
        _thread.start_new_thread(target, args)


class Event:
    """``threading.Event`` for graceful's own use: ``set``, ``clear``, ``is_set``, ``wait``.

    As ``threading.Condition`` does: each waiter blocks on a lock of its own, released by
    :meth:`set`. The mutex is reentrant: a signal handler may set the event while the main
    thread is inside :meth:`wait`.
    """

    __slots__ = ("_flag", "_mutex", "_waiters")

    def __init__(self) -> None:
        self._mutex = RLock()
        self._flag = False
        self._waiters: list[Any] = []

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        with self._mutex:
            self._flag = True
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                waiter.release()

    def clear(self) -> None:
        with self._mutex:
            self._flag = False

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait until set (at most ``timeout`` seconds); the flag, as ``threading.Event``."""
        with self._mutex:
            if self._flag:
                return True
            waiter = Lock()
            waiter.acquire()
            self._waiters.append(waiter)
        try:
            if timeout is None:
                got = waiter.acquire()
            else:
                got = waiter.acquire(True, min(max(timeout, 0.0), TIMEOUT_MAX))
        finally:
            with self._mutex:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        return bool(got) or self._flag

    def after_fork_in_child(self) -> None:
        """The mutex may have been held by a thread that does not exist in the child."""
        self._mutex = RLock()
        self._waiters = []


def after_fork_in_child() -> None:
    """The child's main thread is the one that forked (as CPython decides too)."""
    global _main
    if _main is not None:
        _main = get_ident()
