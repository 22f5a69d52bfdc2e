"""Frameworks that own the signals (uvicorn, gunicorn, celery) run their own shutdown: from its
hook, ``graceful.shutdown()`` (or ``await graceful.ashutdown()``) runs graceful's.

The break callbacks run at once (in their thread, with their share of the deadline), then every
``graceful.register`` cleanup newest first (tracked backends included), exactly once however often
the hook is called, under the deadline (counted from the call) and with the same logging and
timeline as a signal's shutdown. The process is not ended: the framework does that, its own way
and in its own time, so the deadline is disarmed once the call returns (it bounds graceful's own
work only).
"""

from __future__ import annotations

from .._core import registry as _registry
from .._core import watcher as _watcher
from .._core.machine import machine
from .._core.options import DEFAULT_TIMEOUT, Options

TYPE_CHECKING = False  # typing costs import time; annotations are strings here
if TYPE_CHECKING:
    from types import FrameType
    from typing import Callable, Optional

_FINAL = "the program's shutdown hook has run them (graceful.shutdown())"


def begin(timeout: Optional[float], what: str) -> None:
    """graceful's shutdown begins: the deadline (from now), ``shutdown_event``, the breaks."""
    options = Options.parse(timeout=timeout, what=what)
    try:
        _watcher.start_thread()  # the deadline's thread
    except RuntimeError:
        pass  # no thread: the cleanups still run, without a deadline
    machine.begin_external(options)


def shutdown(*, timeout: Optional[float] = DEFAULT_TIMEOUT) -> None:
    """Run graceful's shutdown now, from a framework's shutdown hook (gunicorn's ``on_exit`` and
    ``worker_exit``, a lifespan's shutdown): break callbacks, then the registered cleanups,
    newest first, exactly once. ``timeout`` bounds it, from this call (None: no deadline)."""
    begin(timeout, "graceful.shutdown()")
    try:
        machine.wait_for_breaks()
        machine.enter_cleaning()
        _registry.cleanups.run_all(final=_FINAL)
    finally:
        machine.end_external()


async def ashutdown(*, timeout: Optional[float] = DEFAULT_TIMEOUT) -> None:
    """``graceful.shutdown()`` for an async hook (a FastAPI/Starlette lifespan): the same
    steps, with ``async def`` cleanups awaited in the running loop."""
    from .._asyncio import cleanups as _cleanups

    begin(timeout, "graceful.ashutdown()")
    try:
        await _cleanups.wait_for_breaks()
        machine.enter_cleaning()
        await _cleanups.run_all(_registry.cleanups, final=_FINAL)
    finally:
        machine.end_external()


def shutdown_then_die(timeout: Optional[float]) -> Callable[[int, Optional[FrameType]], None]:
    """A signal handler for a process a framework ends by a signal at its default action (a
    celery pool process on a cold shutdown, uvicorn's worker re-raising the signal it stopped
    on): graceful's shutdown, then the death it was sent."""
    import signal

    def handler(sig: int, frame: Optional[FrameType]) -> None:
        signal.signal(sig, signal.SIG_IGN)  # a repeat now is no second shutdown
        try:
            shutdown(timeout=timeout)
        finally:
            signal.signal(sig, signal.SIG_DFL)
            signal.raise_signal(sig)

    return handler
