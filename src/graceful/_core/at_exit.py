"""What graceful does as the interpreter exits: run the registered cleanups, and keep signals
from cutting that short.

When the program ends without ``@graceful.main`` (a plain guard that ended normally, or no guard
at all) and cleanups are pending, graceful installs its handler for the default signals (those
still at their default disposition) before Python joins non-daemon threads and runs the
``atexit`` functions. A signal then starts the shutdown (deadline, second signal) instead of
killing the process on the spot, and the process dies by it once graceful's cleanups have run.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # not signal: its enums cost 1.4 ms
import atexit
import sys
import threading

from . import registry as _registry
from . import timeline as _timeline
from . import watcher as _watcher
from .guard import Guard, active
from .machine import machine
from .options import DEFAULT, Options
from .protect import exit_path

TYPE_CHECKING = False  # typing costs import time; annotations are strings here
if TYPE_CHECKING:
    from typing import Optional

_exit_guard: Optional[Guard] = None


@exit_path
def protect_exit() -> None:
    """Before non-daemon threads are joined and atexit functions run (``threading``'s hook)."""
    global _exit_guard
    if active() or not len(_registry.cleanups):
        return
    if threading.current_thread() is not threading.main_thread() or sys.platform == "win32":
        return
    last = machine.last_options or DEFAULT
    defaults = (_signal.SIG_DFL, _signal.default_int_handler)
    sigs = tuple(s for s in last.signums if _signal.getsignal(s) in defaults)
    if not sigs:
        return
    options = Options(
        sigs,
        timeout=last.timeout,
        on_signal="exit" if last.on_signal == "exit" else "reraise",
        exit_code=last.exit_code if last.on_signal == "exit" else None,
        on_second_signal=last.on_second_signal,
        budgeted=last.budgeted,
    )
    guard = Guard(options, at_exit=True)
    try:
        guard.__enter__()
    except (OSError, RuntimeError, ValueError) as exc:
        _timeline.log_warning(
            "graceful: could not protect the exit path from signals (%s); cleanups still run", exc
        )
        return
    machine.enter_cleaning()
    _exit_guard = guard


@exit_path
def run_at_exit() -> None:
    """graceful's ``atexit`` function: the registered cleanups, then (if a signal came while
    the program was exiting) death by that signal."""
    global _exit_guard
    guard, _exit_guard = _exit_guard, None
    if guard is not None and guard in active():
        guard.__exit__(None, None, None)
    else:
        _registry.cleanups.run_all(final="the interpreter is exiting")


_prepared = False


def prepare() -> None:
    """At the first ``graceful.register()``: hook the interpreter's exit (once per process).

    ``atexit`` runs graceful's cleanups; ``threading``'s exit hook (which runs before non-daemon
    threads are joined and before the ``atexit`` functions) protects that path from signals. From
    3.12 no thread may start once the interpreter begins to exit, so the watcher (which enforces
    the deadline) starts now instead.
    """
    global _prepared
    if _prepared:
        return
    _prepared = True
    atexit.register(run_at_exit)
    register_threading_atexit = getattr(threading, "_register_atexit", None)
    if register_threading_atexit is not None:
        try:
            register_threading_atexit(protect_exit)
        except RuntimeError:
            pass  # registered while the interpreter exits: the cleanups still run
    if sys.version_info >= (3, 12):
        try:
            _watcher.start_thread()
        except RuntimeError:
            pass  # no thread now: the exit path is then protected without a deadline
