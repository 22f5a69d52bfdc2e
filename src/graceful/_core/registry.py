"""LIFO cleanup lists that belong to the process that filled them.

Each list runs its entries newest first, each at most once, however often a shutdown reaches it.
Registration is O(1), and so is unregistering a function (entries are keyed by function). A
list's final run closes it as it begins: from then on a ``register()`` from another thread raises
:class:`RegistrationClosed` instead of being silently dropped (the run is bounded by what was
registered when it began, plus what its own cleanups register), and after it, from any thread.
A registration either runs or raises: ``docs/internals.md`` ("The registry's add path") says
which atomicity that relies on. ``unregister()`` returning means the function will not run (if
another thread is running it right then, ``unregister`` waits for it to finish). A forked child
never runs its parent's entries: the fork hook empties every list in the child, and a list also
checks its owner's PID before running.
"""

from __future__ import annotations

import itertools
import os
import threading
import time

from . import forking as _forking  # noqa: F401  (state lives here: the fork path must be set)
from . import timeline as _timeline
from .checks import check_callable
from .errors import RegistrationClosed, Signalled
from .modules import provider
from .protect import not_interruptible

TYPE_CHECKING = False  # typing costs import time; annotations are strings here
if TYPE_CHECKING:
    from typing import Any, Callable, Optional

if TYPE_CHECKING:
    from .typevars import _P, _R


class Entry:
    """One registration: a callable and the arguments to call it with."""

    __slots__ = ("args", "func", "kwargs")

    def __init__(
        self, func: Callable[..., object], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        self.func = func
        self.args = args
        self.kwargs = kwargs

    def describe(self) -> str:
        return describe(self.func)


def describe(func: Callable[..., object]) -> str:
    """A readable name for log lines: module.qualname, or the repr for odd callables."""
    qualname = getattr(func, "__qualname__", None)
    module = getattr(func, "__module__", None)
    if qualname is None:
        return repr(func)
    return f"{module}.{qualname}" if module else str(qualname)


class _Again:
    """The key of a registration whose function cannot be its own key: it is registered
    already (a dict key is unique), or it is unhashable. Compared by identity."""

    __slots__ = ("func",)

    def __init__(self, func: Callable[..., object]) -> None:
        self.func = func


class Registry:
    """A LIFO list of callbacks; safe to add to and remove from any thread.

    Adding is the hot path (``graceful.register`` in a loop) and takes no lock: it stores the
    arguments (if any) under a fresh sequence number, then ``setdefault(func, seq)`` in the
    entries dict, each one atomic under the GIL; a function registered twice, or unhashable,
    goes to a locked slow path. Its dict key being the function itself is what makes
    ``unregister`` O(1) with no index to keep. Nothing is allocated for an entry without
    arguments: a new container per call makes the garbage collector run ever more often (that
    was half the cost of 100 000 registrations). Removing, taking and closing take the lock.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._on_first_add: Optional[Callable[[], object]] = None
        # func (or an _Again) -> its sequence number, in registration order: popitem() takes
        # the newest. The numbers start above the small-int cache, so each is a new object and
        # ``setdefault(func, seq) is seq`` tells whether this call inserted it.
        self._entries: dict[Any, int] = {}
        self._args: dict[int, tuple[tuple[Any, ...], dict[str, Any]]] = {}  # seq -> arguments
        self._again: dict[Any, list[_Again]] = {}  # func -> the keys of its later registrations
        self._reset()

    def on_first_add(self, hook: Callable[[], object]) -> None:
        """Call ``hook`` (once per process) when the first entry is added."""
        self._on_first_add = hook

    def _reset(self) -> None:
        # A plain Lock suffices: the signal handler never touches a registry, and graceful's
        # handler never raises into the locked sections (they are protected, see protect.py).
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._entries.clear()  # in place: register() holds references
        self._args.clear()
        self._again.clear()
        self._keys = itertools.count(1000)
        self._pid = os.getpid()
        self._closed: Optional[str] = None
        # The thread running the final run: its cleanups may still register (None: nobody may).
        self._closer: Optional[int] = None
        self._running: Optional[tuple[int, Entry]] = None  # (thread ident, entry)
        self._hook_pending = True

    def add(
        self, func: Callable[..., object], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        """Append an entry (no lock: see the class docstring). ``graceful.register`` is this,
        inline. Not protected from the shutdown's signal: a loop of registrations must stay
        interruptible, and every prefix of these steps leaves the list consistent."""
        if self._hook_pending:
            self.first_add()
        seq = next(self._keys)
        if args or kwargs:
            self._args[seq] = (args, kwargs)  # before the entry: take() finds them
        try:
            if self._entries.setdefault(func, seq) is not seq:
                self.add_again(func, seq)
        except TypeError:
            self.add_again(func, seq)
        if self._closed is not None:
            self.refuse(func, seq)

    @not_interruptible
    def first_add(self) -> None:
        """Before the first entry goes in: the hook, so that the entry can never be missed."""
        with self._lock:
            if not self._hook_pending:
                return
            self._hook_pending = False
        if self._on_first_add is not None:
            self._on_first_add()

    @not_interruptible
    def add_again(self, func: Callable[..., object], seq: int) -> None:
        """``add``'s slow path: ``func`` is registered already, or unhashable."""
        key = _Again(func)
        with self._lock:
            try:
                self._again.setdefault(func, []).append(key)
            except TypeError:
                pass  # unhashable: remove() scans for it
            self._entries[key] = seq

    @not_interruptible
    def refuse(self, func: Callable[..., object], seq: int) -> None:
        """The list is closed: take this entry out again and say so (unless a cleanup of the
        final run registered it: that run takes it).

        ``add`` stores, then reads ``_closed``; the final run sets ``_closed``, then (under the
        lock) looks at the entries: an entry that comes in meanwhile is seen there, or refused
        here, or both, and then whoever takes the lock first wins: ``take`` (it runs) or
        ``_drop`` (it raises). Never neither.
        """
        final = self._closed
        if final is None or self._closer == threading.get_ident():
            return
        if self._drop(func, seq):  # else the final run took it: it ran
            when = (
                "has run its final {}s already"
                if self._closer is None
                else "is running its final {}s (from another thread than this one)"
            )
            raise RegistrationClosed(
                f"graceful: this process {when.format(self.kind)} ({final}), so this one "
                "would never run; call it yourself now, or register it before the shutdown "
                "begins"
            )

    def _drop(self, func: Callable[..., object], seq: int) -> bool:
        """Take out the entry numbered ``seq`` (of ``func``); False if it is gone already."""
        with self._lock:
            for key in self._keys_of(func):
                if self._entries.get(key) is seq:
                    del self._entries[key]
                    self._args.pop(seq, None)
                    return True
            return False

    def _keys_of(self, func: Callable[..., object]) -> list[Any]:
        """The dict keys of ``func``'s registrations (the lock is held)."""
        try:
            return [func, *self._again.get(func, ())]
        except TypeError:
            return [k for k in self._entries if type(k) is _Again and k.func == func]

    @not_interruptible
    def remove(self, func: Callable[..., object]) -> None:
        me = threading.get_ident()
        with self._lock:
            for key in self._keys_of(func):
                seq = self._entries.pop(key, None)
                if seq is not None:
                    self._args.pop(seq, None)
            try:
                self._again.pop(func, None)
            except TypeError:
                pass
            while self._running is not None and self._running[0] != me:
                if self._running[1].func != func:
                    break
                self._idle.wait()  # it started before we were called: let it finish

    def pending(self) -> list[Entry]:
        """The entries this process owns, newest first (a snapshot)."""
        if os.getpid() != self._pid:
            return []
        with self._lock:
            return [self._entry(k, seq) for k, seq in reversed(self._entries.items())]

    def _entry(self, key: Any, seq: int) -> Entry:
        func = key.func if type(key) is _Again else key
        args, kwargs = self._args.get(seq) or ((), {})
        return Entry(func, args, kwargs)

    def __len__(self) -> int:
        return len(self._entries) if os.getpid() == self._pid else 0

    def take(self) -> Optional[Entry]:
        """The newest entry, removed (None once empty): the caller runs it, at most once."""
        if os.getpid() != self._pid:
            self.forget_inherited()  # forked without graceful's fork hook: never run the parent's
        with self._lock:
            if self._running is not None:
                self._running = None
                self._idle.notify_all()
            if not self._entries:
                return None
            key, seq = self._entries.popitem()
            entry = self._entry(key, seq)
            self._args.pop(seq, None)
            if type(key) is _Again:
                try:
                    keys = self._again.get(key.func)
                except TypeError:
                    keys = None
                if keys:
                    if keys[-1] is key:  # the newest goes first: O(1)
                        keys.pop()
                    else:
                        keys.remove(key)
                    if not keys:
                        del self._again[key.func]
            self._running = (threading.get_ident(), entry)
            return entry

    def begin_final(self, final: str) -> None:
        """The final run begins in this thread: from now on another thread's registration
        raises :class:`RegistrationClosed` (``final`` says why); this thread's (a cleanup that
        registers another) is still taken by the run."""
        with self._lock:
            self._closed = final
            self._closer = threading.get_ident()

    def close(self, final: str) -> bool:
        """End the final run if the list is empty: True, and every later registration raises.
        False means an entry came in since the last ``take()``: run it, then close again.

        ``_closed`` is set before the entries are looked at, never after: a registration that
        did not see it stored its entry before, and the entry is seen here."""
        with self._lock:
            self._closed = final
            if self._entries:
                if self._closer is None:
                    self._closer = threading.get_ident()
                return False
            self._closer = None
            return True

    def run_all(self, *, final: Optional[str] = None) -> None:
        """Run every entry, newest first; log failures and go on.

        With ``final`` (why the process is ending), the run is the list's last: other threads'
        registrations are refused from its start (:meth:`begin_final`), every registration once
        it is over; each refusal raises :class:`RegistrationClosed` with that reason.
        """
        if final is not None:
            self.begin_final(final)
        while True:
            entry = self.take()
            if entry is None:
                if final is None or self.close(final):
                    return
                continue
            run_logged(entry, self.kind)

    def forget_inherited(self) -> None:
        """In a forked child: drop the parent's entries (and a lock another thread may hold)."""
        self._reset()


#: The entry running right now (any registry), for the deadline's log line.
_current: Optional[Entry] = None


def current() -> Optional[Entry]:
    return _current


def run_logged(entry: Entry, kind: str, *, timed: bool = True) -> None:
    """Call one entry; an exception (any BaseException) is logged with its traceback, not raised.

    A coroutine that the entry returns (an ``async def`` cleanup, in a program with no event
    loop of its own) is run to completion in a fresh event loop.
    """
    started = starting(entry, timed)
    error: Optional[BaseException] = None
    try:
        result = entry.func(*entry.args, **entry.kwargs)
        if is_coroutine(result):
            from .coroutines import run_fresh

            run_fresh(result)
    except BaseException as exc:
        error = exc
    finished(entry, kind, started, error, timed)


def is_coroutine(result: object) -> bool:
    return hasattr(result, "__await__") and hasattr(result, "send")


def starting(entry: Entry, timed: bool = True) -> float:
    """Bookkeeping before an entry runs (the deadline's log names it); its start time."""
    global _current
    if timed:
        _current = entry
    return time.monotonic()


def finished(
    entry: Entry, kind: str, started: float, error: Optional[BaseException], timed: bool = True
) -> None:
    """Bookkeeping after an entry ran: log its error (once, with its traceback), the timeline."""
    global _current
    if timed:
        _current = None
    if error is not None:
        if isinstance(error.__context__, Signalled):
            error.__suppress_context__ = True  # the shutdown's own signal is no part of this
        exc_info = (type(error), error, error.__traceback__)
        _timeline.log_exception(
            "graceful: %s %s raised; the remaining ones still run",
            kind,
            entry.describe(),
            exc_info=exc_info,
        )
    if timed and _timeline.wanted():
        _timeline.cleanup(entry.describe(), time.monotonic() - started, error, kind)


#: ``graceful.register`` cleanups: run when the outermost guard ends by a signal, or at exit.
cleanups = Registry("cleanup")
#: ``graceful.register_break`` callbacks: run in a helper thread as soon as a signal arrives.
breaks = Registry("break callback")


def after_fork_in_child() -> None:
    """In a forked child: drop the parent's cleanups and break callbacks."""
    cleanups.forget_inherited()
    breaks.forget_inherited()


def register(func: Callable[_P, _R], /, *args: _P.args, **kwargs: _P.kwargs) -> Callable[_P, _R]:
    """Run ``func(*args, **kwargs)`` when the program ends: at normal exit, on an uncaught
    exception, or when the outermost guard ends by a signal. Newest first, once, and only in the
    process that registered it. ``func`` may be an ``async def`` function: it is awaited. Returns
    ``func``, so it also works as a bare decorator."""
    if not callable(func):
        check_callable(func, "graceful.register()")
    # cleanups.add(func, args, kwargs), inline: a Python call costs a third of all this
    reg = cleanups
    if reg._hook_pending:
        reg.first_add()
    seq = next(reg._keys)
    if args or kwargs:
        reg._args[seq] = (args, kwargs)
    try:
        if reg._entries.setdefault(func, seq) is not seq:
            reg.add_again(func, seq)
    except TypeError:
        reg.add_again(func, seq)
    if reg._closed is not None:
        reg.refuse(func, seq)
    return func


def unregister(func: Callable[..., object], /) -> None:
    """Drop every pending registration of ``func`` (compared with ``==``, like ``atexit``).

    When this returns, ``func`` will not run as a cleanup (if the shutdown is running it in
    another thread at this very moment, this waits until it is done)."""
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


def _first_cleanup() -> None:
    """A cleanup exists now: the interpreter's exit must run it (``at_exit.py``, which imports
    this module: it is loaded through the facade, ``modules.provider``)."""
    provider("exit hook").prepare()


cleanups.on_first_add(_first_cleanup)
