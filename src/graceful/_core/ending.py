"""How the process ends: re-raise the signal, exit with a status, or die at once.

Re-raising (rather than ``exit(128 + n)``) is what lets bash, systemd and ``subprocess`` see
"killed by SIGTERM". Dying at once (a forced second signal, the deadline) may happen in any
thread, while the main thread holds locks: it logs with a bounded wait, then ends the process.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]
import os
import sys
import time

from . import dispositions as _dispositions
from . import threads as _threads
from . import timeline as _timeline

TYPE_CHECKING = False  # typing costs import time; annotations are strings here
if TYPE_CHECKING:
    from typing import Callable, NoReturn, Optional

#: How long a dying process waits for its last log line (stderr may be a full pipe).
LOG_WAIT = 0.5

_dying = _threads.Lock()
_logged = _threads.Event()


def flush_stdio() -> None:
    """Dying by a signal skips Python's own flush: do it, quietly, before."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass


def main_thread_location() -> str:
    frame = sys._current_frames().get(_threads.main_ident() or 0)
    if frame is None:
        return "an unknown place"
    return f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"


def reraise(sig: int, restore: Callable[[], object], *, run_atexit: bool) -> None:
    """Die by ``sig`` after what ``sys.exit`` would have run, with the previous disposition back.

    Graceful's handler stays installed while the other ``atexit`` functions run, so a second
    signal there follows ``on_second_signal``; ``restore`` puts the previous dispositions back
    while ``sig`` is blocked, the signal is raised, and unblocking it delivers it. Returns only
    if the process survived (the previous disposition ignores it, or a Python handler returned).
    """
    if run_atexit:
        import atexit

        atexit._run_exitfuncs()
    elif "logging" in sys.modules:
        import logging

        logging.shutdown()  # its own atexit function would run after ours: never, we die now
    flush_stdio()
    blocked = _dispositions.block([sig])
    try:
        restore()
        if _stands_in_for_default(sig, _signal.getsignal(sig)):
            # Python's stand-in for SIG_DFL on SIGINT (or an event loop's): re-raising into it
            # would only print a KeyboardInterrupt traceback, or cancel a task and return; the
            # shell must see "killed by SIGINT".
            _signal.signal(sig, _signal.SIG_DFL)
        _timeline.end("reraise", sig, None)
        _signal.raise_signal(sig)
    finally:
        if blocked is not None:
            _dispositions.set_mask(blocked - {sig})


#: Recognise handlers that stand in for the default action (``asyncio.run``'s SIGINT handler):
#: registered by the layers that know them (``stands_in_for_default``).
_stand_ins: list[Callable[[int, object], bool]] = []


def stands_in_for_default(recognise: Callable[[int, object], bool]) -> None:
    """``recognise(sig, handler)`` is true for a Python handler that only stands in for the
    default action of ``sig``: the process re-raising ``sig`` to die puts SIG_DFL in its place."""
    if recognise not in _stand_ins:
        _stand_ins.append(recognise)


def _stands_in_for_default(sig: int, handler: object) -> bool:
    if handler is _signal.default_int_handler:
        return True
    return any(recognise(sig, handler) for recognise in list(_stand_ins))


def exit_now(status: int) -> NoReturn:
    """Exit with ``status`` from inside an ``atexit`` function, where ``SystemExit`` is ignored:
    flush what would have been flushed, then leave."""
    if "logging" in sys.modules:
        import logging

        logging.shutdown()
    flush_stdio()
    os._exit(status)


#: What must happen even when the process dies at once (``die_now``): each callable must not
#: block (the tracked backends' SIGKILL). Registered by the layers above (``on_death``).
_last_acts: list[Callable[[], object]] = []


def on_death(act: Callable[[], object]) -> None:
    """Have ``act()`` called as the process dies at once (a forced end, the deadline), in the
    dying thread, before anything else; it must be quick and must not block."""
    if act not in _last_acts:
        _last_acts.append(act)


def _run_last_acts() -> None:
    for act in list(_last_acts):
        try:
            act()
        except Exception:
            pass  # dying anyway: the other acts and the death itself come first


def die_now(
    sig: int,
    reason: str,
    *,
    exit_status: Optional[int] = None,
    stacks: bool = False,
    how: str = "forced",
) -> NoReturn:
    """End the process at once by ``sig`` (or with ``exit_status``), from any thread, running
    nothing more. The first caller logs ``reason`` (and, with ``stacks``, every thread's stack)
    with a bounded wait; a later one (another thread, a nested handler) gives that a moment,
    then ends the process too."""
    try:
        if _dying.acquire(blocking=False):
            _run_last_acts()
            _timeline.end(how, sig, exit_status, defer=True)
            _write_bounded(reason, stacks)
        else:
            _logged.wait(LOG_WAIT)
        if exit_status is not None:
            os._exit(exit_status)
        if _threads.get_ident() == _threads.main_ident():
            flush_stdio()
            _signal.signal(sig, _signal.SIG_DFL)
        else:
            from . import libc  # signal.signal() refuses outside the main thread

            libc.set_default(sig)
        _dispositions.unblock([sig])
        _dispositions.raise_in_this_thread(sig)
        time.sleep(LOG_WAIT)  # a thread-directed signal may take a moment to be acted on
    finally:
        os._exit(128 + sig)


def _write_bounded(reason: str, stacks: bool) -> None:
    """Log, but give up after a moment: the logging lock may be held by an interrupted or stuck
    main thread, and stderr may be a full pipe nobody reads."""

    def write() -> None:
        try:
            _timeline.flush()
            _timeline.log_error("graceful: %s", reason)
            if stacks:
                import faulthandler

                flush_stdio()
                faulthandler.dump_traceback(file=2, all_threads=True)
        finally:
            _logged.set()

    try:
        _threads.start(write, "graceful-last-words")
    except RuntimeError:  # no new threads (limits, or interpreter shutdown on 3.12+)
        try:
            os.write(2, f"graceful: {reason}\n".encode(errors="replace"))
        except OSError:
            pass
        _logged.set()
        return
    _logged.wait(LOG_WAIT + (LOG_WAIT if stacks else 0))


def after_fork_in_child() -> None:
    global _dying, _logged
    _dying = _threads.Lock()
    _logged = _threads.Event()
