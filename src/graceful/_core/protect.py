"""Which code a signal must not interrupt, and how the handler tells (trio walks ``f_back`` too).

Two kinds of protected functions, each protecting everything it calls:

* :func:`exit_path`: graceful's own exit path (a guard's ``__enter__``/``__exit__``, the cleanups
  it runs, the fork hooks). ``Signalled`` is never raised there; the function looks at the
  machine when it is done and decides what a recorded signal means.
* :func:`not_interruptible`: short critical sections (``register`` updating its index). The
  signal is delivered again in a moment, once they have returned.

The ``warnings`` module's frames are deferred too: CPython shows a warning from C code that
discards whatever the Python code raised. From 3.13, ``os.fork()`` warns that the process has
threads (graceful's watcher is one) *after* the fork hooks, and clears any exception its
``showwarning`` raised: a ``Signalled`` raised in there would be lost with the shutdown.
"""

import sys

TYPE_CHECKING = False  # typing costs import time; annotations are strings here
if TYPE_CHECKING:
    from typing import Optional


if TYPE_CHECKING:
    from types import FrameType

    from .typevars import _F

NONE = 0
EXIT = 1  # never raise; the function decides at its end
DEFER = 2  # never raise now; deliver again in a moment

_EXIT_CODES: set[object] = set()
_DEFER_CODES: set[object] = set()


def exit_path(func: "_F") -> "_F":
    """Mark ``func`` as part of graceful's exit path (see the module docstring)."""
    _EXIT_CODES.add(func.__code__)
    return func


def not_interruptible(func: "_F") -> "_F":
    """Mark ``func`` as a short critical section (see the module docstring)."""
    _DEFER_CODES.add(func.__code__)
    return func


def protection(frame: "FrameType") -> int:
    """How the interrupted frame, or a frame it was called from, is protected."""
    f: Optional[FrameType] = frame
    while f is not None:
        code = f.f_code
        if code in _EXIT_CODES:
            return EXIT
        if code in _DEFER_CODES or f.f_globals.get("__name__") == "warnings":
            return DEFER
        f = f.f_back
    return NONE


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
