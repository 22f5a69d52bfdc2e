"""Which code a signal must not interrupt, and how the handler tells (trio walks ``f_back`` too).

Two kinds of protected functions, each protecting everything it calls:

* :func:`exit_path`: graceful's own exit path (a guard's ``__enter__``/``__exit__``, the cleanups
  it runs, the fork hooks). ``Signalled`` is never raised there; the function looks at the
  machine when it is done and decides what a recorded signal means.
* :func:`not_interruptible`: short critical sections (``register`` updating its index). The
  signal is delivered again in a moment, once they have returned.

The import system's own code is one as well, and so is whatever Python code it calls short of
the body of a module it imports (a finder, a finalizer, a trace or profile function called for one
of its frames): an exception raised between two of its lock operations leaves a module lock (or
the global import lock) in a state that deadlocks the next import, the deadline's included, and
one raised in a trace function called as an import system frame starts surfaces in that frame,
before its ``try``: a module removed from ``sys.modules`` or a module lock never released, which
other threads then see (a ``KeyError`` or an ``ImportError`` for the module). The body of a module
being imported is not protected by this: an exception there unwinds through the import system's
``finally`` clauses.

The body of a graceful module being imported (its first use, in this thread) is a critical
section too: ``Signalled`` raised there would leave the module half made (its import fails, and
other threads waiting for it import it again); it is delivered again once the body is done.

A library's start of a child process is one too, up to its record of the process: ``Signalled``
raised after the fork but before a ``ProcessPoolExecutor`` put the worker in its ``_processes``
(or a ``Process`` set its ``_popen``, a ``Pool`` appended it) leaves a process that nobody knows,
so nobody stops it: it outlives the program (issue 24; ``tests/test_pools.py``).

The ``warnings`` module's frames are deferred too: CPython shows a warning from C code that
discards whatever the Python code raised. From 3.13, ``os.fork()`` warns that the process has
threads (graceful's watcher is one) *after* the fork hooks, and clears any exception its
``showwarning`` raised: a ``Signalled`` raised in there would be lost with the shutdown.

Before 3.11 the interpreter also runs handlers between the end of a ``with`` block and the call
of its ``__exit__`` (:func:`at_with_exit`): an exception raised there leaves the block without
calling ``__exit__`` at all (a guard's included: no cleanups, a traceback). The signal waits for
that call, as it does on 3.11+, where handlers run only at calls, jumps and function starts.
"""

import sys

TYPE_CHECKING = False  # typing costs import time; annotations are strings here
if TYPE_CHECKING:
    from typing import Any, Callable, Optional


if TYPE_CHECKING:
    from types import FrameType

    from .typevars import _F

NONE = 0
EXIT = 1  # never raise; the function decides at its end
DEFER = 2  # never raise now; deliver again in a moment

#: The import system's frames (frozen: their module names, then their source names).
_IMPORT_SYSTEM = frozenset(
    (
        "_frozen_importlib",
        "_frozen_importlib_external",
        "importlib._bootstrap",
        "importlib._bootstrap_external",
    )
)

#: Library functions that start a child process and record it (see the module docstring), by
#: module: from 3.9 to 3.13.
_SPAWNING = {
    "multiprocessing.process": frozenset({"start"}),
    "concurrent.futures.process": frozenset(
        {"_adjust_process_count", "_launch_processes", "_spawn_process"}
    ),
    "multiprocessing.pool": frozenset({"_repopulate_pool", "_repopulate_pool_static"}),
}

_EXIT_CODES: set[object] = set()
_DEFER_CODES: set[object] = set()


def exit_path(func: "_F") -> "_F":
    """Mark ``func`` as part of graceful's exit path (see the module docstring)."""
    _EXIT_CODES.add(func.__code__)
    return func


def not_interruptible(func: "_F") -> "_F":
    """Mark ``func`` as a critical section (see the module docstring).

    A signal deferred while it ran is raised as it returns, at the latest: a loop of protected
    calls (``graceful.spawn`` in a loop) would otherwise defer it at every call, for ever.
    """
    _DEFER_CODES.add(func.__code__)

    def section(*args: "Any", **kwargs: "Any") -> "Any":
        try:
            return func(*args, **kwargs)
        finally:
            _section_ended[0](sys._getframe(1))

    for name in ("__module__", "__name__", "__qualname__", "__doc__"):
        setattr(section, name, getattr(func, name))
    section.__wrapped__ = func  # type: ignore[attr-defined]
    return section  # type: ignore[return-value]


def _nothing(frame: "FrameType") -> None:
    pass


#: Called with the caller's frame as a critical section returns: the handler's owner sets it
#: (:func:`on_section_end`) to raise a signal deferred meanwhile, if nothing protects the caller.
_section_ended: "list[Callable[[FrameType], None]]" = [_nothing]


def on_section_end(hook: "Callable[[FrameType], None]") -> None:
    """Have ``hook(caller_frame)`` called each time a critical section returns."""
    _section_ended[0] = hook


def protection(frame: "FrameType", handed_back: "tuple[FrameType, ...]" = ()) -> int:
    """How the interrupted frame, or a frame it was called from, is protected.

    ``handed_back``: frames of an exit path that has decided and handed the signal on to the
    enclosing block (an inner guard's exit, after it closed): they protect nothing any more.
    """
    f: Optional[FrameType] = frame
    #: A module body lies between the interrupted frame and the frames below: an import system
    #: frame further down is a caller of that body (which may raise), not interrupted itself.
    in_body = False
    while f is not None:
        if f in handed_back:
            f = f.f_back
            continue
        code = f.f_code
        if code in _EXIT_CODES:
            return EXIT
        if code in _DEFER_CODES:
            return DEFER
        name = f.f_globals.get("__name__")
        if name == "warnings" or (name in _IMPORT_SYSTEM and not in_body):
            return DEFER
        if code.co_name == "<module>":
            if _ours(name):
                return DEFER
            in_body = True
        spawning = _SPAWNING.get(name) if isinstance(name, str) else None
        if spawning is not None and code.co_name in spawning:
            return DEFER
        f = f.f_back
    return NONE


def _ours(name: object) -> bool:
    return isinstance(name, str) and (name == "graceful" or name.startswith("graceful."))


def exception_in_flight(frame: "FrameType") -> bool:
    """An exception is passing through ``frame`` and no instruction of its handler has run yet.

    Raising now would replace that exception before the frame's ``except``/``finally`` (or a
    ``with`` statement's ``__exit__``) sees it; on 3.9 the interpreter can even skip that
    ``__exit__``. A moment later (once the handler code runs) the signal can be raised.
    """
    exc = sys.exc_info()[1]
    tb = None if exc is None else exc.__traceback__
    while tb is not None:
        if tb.tb_frame is frame:
            return tb.tb_lasti == frame.f_lasti
        tb = tb.tb_next
    return False


if sys.version_info < (3, 11):
    #: A ``with`` block's normal end on 3.9 and 3.10: POP_BLOCK, LOAD_CONST None, DUP_TOP,
    #: DUP_TOP, CALL_FUNCTION 3 (the call of ``__exit__(None, None, None)``). The opcode numbers
    #: are those of both versions (tests/test_with_exit.py checks them against ``opcode``).
    WITH_EXIT = (87, 100, 4, 4, 131)
    _CALL_ARG = 3

    def at_with_exit(frame: "FrameType") -> bool:
        """3.9 and 3.10: ``frame`` has ended a ``with`` block and not yet called its ``__exit__``.

        The interrupted frame has executed the instruction at ``f_lasti``. A frame paused for
        its tracer (settrace: a debugger, graceful.testing's sweeps) has not yet executed it,
        and an exception the tracer raises lands there: the frame the trace function was
        called for is looked at too.
        """
        if _in_window(frame, range(0, 4)):
            return True
        f: Optional[FrameType] = frame
        while f is not None:
            traced = f.f_back
            if traced is not None and _code_of(traced.f_trace) is f.f_code:
                return _in_window(traced, range(1, 5))
            f = traced
        return False

    def _in_window(frame: "FrameType", places: range) -> bool:
        raw, lasti = frame.f_code.co_code, frame.f_lasti
        for k in places:  # f_lasti is the k-th instruction of the sequence
            start = lasti - 2 * k
            if start < 0 or start + 2 * len(WITH_EXIT) > len(raw):
                continue
            if raw[start + 2 * len(WITH_EXIT) - 1] == _CALL_ARG and all(
                raw[start + 2 * j] == op for j, op in enumerate(WITH_EXIT)
            ):
                return True
        return False

    def _code_of(tracer: object) -> object:
        func = getattr(tracer, "__func__", tracer)  # a bound method: its function
        return getattr(func, "__code__", None)

else:

    def at_with_exit(frame: "FrameType") -> bool:
        """3.11+ runs no signal handler between a ``with`` block and its ``__exit__``."""
        return False
