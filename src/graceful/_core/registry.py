"""Process-wide LIFO cleanup lists that belong to the process that filled them.

Each entry records the PID that registered it. Running a list pops entries one at a time under a
lock (so each runs at most once, however often shutdown is re-entered) and skips entries owned by
another process: a forked child never runs its parent's cleanups.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from typing import Any, Callable, NamedTuple, Optional, TypeVar

from .checks import check_callable

if sys.version_info >= (3, 10):
    from typing import ParamSpec
else:
    from typing_extensions import ParamSpec

_P = ParamSpec("_P")
_R = TypeVar("_R")

logger = logging.getLogger("graceful")


class Entry(NamedTuple):
    func: Callable[..., object]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    pid: int

    def describe(self) -> str:
        return describe(self.func)


def describe(func: Callable[..., object]) -> str:
    """A readable name for log lines: module.qualname, or the repr for odd callables."""
    qualname = getattr(func, "__qualname__", None)
    module = getattr(func, "__module__", None)
    if qualname is None:
        return repr(func)
    return f"{module}.{qualname}" if module else str(qualname)


class Registry:
    """A LIFO list of callbacks; safe to add to from any thread, run at most once each."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        # RLock: a signal handler running in the main thread while that same thread holds the
        # lock (it is inside add()) must not deadlock if it touches the registry.
        self._lock = threading.RLock()
        self._entries: list[Entry] = []

    def add(
        self, func: Callable[..., object], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        entry = Entry(func, args, kwargs, os.getpid())
        with self._lock:
            self._entries.append(entry)

    def remove(self, func: Callable[..., object]) -> None:
        with self._lock:
            self._entries = [e for e in self._entries if e.func != func]

    def pending(self) -> list[Entry]:
        """The entries this process owns, oldest first (a snapshot)."""
        pid = os.getpid()
        with self._lock:
            return [e for e in self._entries if e.pid == pid]

    def forget_inherited(self) -> None:
        """Drop every entry another process registered (called in a forked child).

        The lock is replaced first: another thread of the parent may have held it at the fork.
        """
        self._lock = threading.RLock()
        pid = os.getpid()
        self._entries = [e for e in self._entries if e.pid == pid]

    def _pop(self) -> Optional[Entry]:
        pid = os.getpid()
        with self._lock:
            while self._entries:
                entry = self._entries.pop()
                if entry.pid == pid:
                    return entry
            return None

    def run_all(self) -> None:
        """Run every entry this process owns, newest first; log failures and keep going."""
        while True:
            entry = self._pop()
            if entry is None:
                return
            run_logged(entry, self.kind)


#: The cleanup running right now (any registry), for the deadline's log line.
running: Optional[Entry] = None


def run_logged(entry: Entry, kind: str, *, track: bool = True) -> None:
    """Call one entry; an exception (any BaseException) is logged with its traceback, not raised."""
    global running
    if track:
        running = entry
    try:
        entry.func(*entry.args, **entry.kwargs)
    except BaseException:
        logger.exception(
            "graceful: %s %s raised; the remaining ones still run", kind, entry.describe()
        )
    finally:
        if track:
            running = None


#: `graceful.register` cleanups: run when the outermost guard ends by a signal, or at exit.
cleanups = Registry("cleanup")
#: `graceful.register_break` callbacks: run in a helper thread as soon as a signal arrives.
breaks = Registry("break callback")


def forget_inherited() -> None:
    """In a forked child: drop the parent's cleanups and break callbacks."""
    cleanups.forget_inherited()
    breaks.forget_inherited()


def register(func: Callable[_P, _R], /, *args: _P.args, **kwargs: _P.kwargs) -> Callable[_P, _R]:
    """Run ``func(*args, **kwargs)`` when the program ends: at normal exit, on an uncaught
    exception, or when the outermost guard ends by a signal. Newest first, once, and only in the
    process that registered it. Returns ``func``, so it also works as a bare decorator."""
    check_callable(func, "graceful.register()")
    cleanups.add(func, args, kwargs)
    return func


def unregister(func: Callable[..., object], /) -> None:
    """Drop every pending registration of ``func`` (compared with ``==``, like ``atexit``)."""
    cleanups.remove(func)


def register_break(
    func: Callable[_P, _R], /, *args: _P.args, **kwargs: _P.kwargs
) -> Callable[_P, _R]:
    """Run ``func(*args, **kwargs)`` at once, in a helper thread, when a guarded signal arrives,
    before the main thread unwinds: for thread-safe calls that unblock it, such as
    ``conn.cancel()``. Runs at most once per shutdown; stays registered."""
    check_callable(func, "graceful.register_break()")
    breaks.add(func, args, kwargs)
    return func


def unregister_break(func: Callable[..., object], /) -> None:
    """Drop every registration of ``func`` as a break callback."""
    breaks.remove(func)


@atexit.register
def _run_at_exit() -> None:
    cleanups.run_all()
