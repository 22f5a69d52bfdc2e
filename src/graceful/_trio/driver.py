"""The trio driver: ``async with graceful.guard()`` inside ``trio.run`` (or ``anyio.run`` on
trio), and ``@graceful.main(backend="trio")``.

The guard installs graceful's own Python handler (as the synchronous guard does) and wraps its
block in a trio cancel scope. A guarded signal never raises into the block: the handler asks the
run, through its token (signal- and thread-safe), to cancel that scope, so the block unwinds the
trio way (``finally`` clauses, ``async with`` exits, nurseries). Its exit closes the scope (the
``Cancelled`` ends there, or becomes ``Signalled`` for the enclosing block), and then, shielded
from any other cancellation and bounded only by the deadline, does what the asyncio guard does:
break callbacks, the block's cleanups, the registered cleanups (``async def`` ones awaited in
this run), and the end of the process by the signal. trio's wakeup fd stays trio's: the watcher
thread only keeps the deadline. What the handler replaced (trio's own SIGINT handler, say) comes
back at the exit where graceful's handler is still installed.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]
import sys
import time

import trio

from .._core import block_end as _block_end
from .._core import dispositions as _dispositions
from .._core import ending as _ending
from .._core import guard as _guard
from .._core import timeline as _timeline
from .._core import watcher as _watcher
from .._core.checks import check_main_thread, check_posix
from .._core.errors import Signalled, signalled
from .._core.guard import Block, Guard
from .._core.machine import machine
from .._core.options import Options

TYPE_CHECKING = False  # typing costs import time; annotations are strings here
if TYPE_CHECKING:
    from typing import Any, Callable, NoReturn, Optional

#: How often the exit looks whether the break thread is done (it sets a thread's event).
BREAK_POLL = 0.005


_in_trio_task = getattr(trio.lowlevel, "in_trio_task", None)  # trio >= 0.23


def running() -> bool:
    """A trio task runs in this thread (trio itself, or anyio on trio). ``_core`` asks only once
    the program has loaded trio (the facade's table of drivers)."""
    return _in_trio_task is not None and bool(_in_trio_task())


class CancelScopeBlock(Block):
    """A trio cancel scope as a guard's block: a signal cancels the scope (through the run's
    token: a scope is not signal-safe, the token is)."""

    raises = False

    def __init__(self, sigs: tuple[int, ...]) -> None:
        self.scope = trio.CancelScope()
        self.token = trio.lowlevel.current_trio_token()
        self.sigs = sigs  # graceful's handler is installed for these
        self.closed = False  # the scope is exited: a signal now cancels nothing

    def interrupt(self) -> None:
        """From the signal handler: ask the run to cancel the scope."""
        try:
            self.token.run_sync_soon(self._cancel)
        except trio.RunFinishedError:
            pass  # the run is over: nothing left to cancel

    def _cancel(self) -> None:
        if not self.closed:
            self.scope.cancel()

    def close_unless_signalled(self, guard: Guard, ours: bool) -> Optional[int]:
        """Put back what the guard replaced, as the last act, with our signals blocked: one that
        comes now is the previous disposition's once they are unblocked, and one that came
        before has been handled (``pthread_sigmask`` runs the pending handlers): seen here."""
        blocked = _dispositions.block(self.sigs)
        try:
            sig = machine.signal if ours else None
            if sig is None:
                guard.close()
        finally:
            _dispositions.set_mask(blocked)
        return sig


async def enter(guard: Guard) -> Guard:
    check_main_thread("async with graceful.guard()")
    check_posix("async with graceful.guard()")
    guard.check_inactive()
    options = guard.options
    sigs = tuple(
        s for s in options.signums if options.override_ignored or not _dispositions.is_ignored(s)
    )
    block = CancelScopeBlock(sigs)
    blocked = _dispositions.block(sigs)  # the handler never sees half a guard
    try:
        _watcher.start_thread()  # the deadline's thread; the wakeup fd stays trio's
        _guard.arm(options)
        machine.set_handled(machine.handled | frozenset(sigs))
        guard.adopt(block, sigs, None, install_handler=True)
        block.scope.__enter__()
    except BaseException:
        try:
            guard.close()
        finally:
            if not _guard.active():
                machine.disarm()
            _dispositions.set_mask(blocked)
        raise
    # A signal that came meanwhile reaches the handler now: it cancels the scope.
    _dispositions.set_mask(blocked)
    if machine.want_raise() and not guard.late:
        machine.mark_raised()
        block.scope.cancel()  # a shutdown began before the block: it ends at its first await
    return guard


async def exit(guard: Guard, exc: Optional[BaseException]) -> bool:
    """``Guard.__exit__`` for a trio task; the same steps, the waiting ones awaited."""
    block = guard.block
    if not guard.active or not isinstance(block, CancelScopeBlock):
        return False
    block.closed = True
    passing = exc
    try:
        tb = None if exc is None else exc.__traceback__
        if block.scope.__exit__(None if exc is None else type(exc), exc, tb):
            exc = None  # ended in the scope: our cancellation (or nothing was passing)
    except BaseException as rest:  # a group without its Cancelled: the rest goes on
        exc = rest
    ours_cancel = block.scope.cancelled_caught
    if ours_cancel and exc is None and machine.signal is not None:
        exc = signalled(machine.signal)  # the cancellation was our doing: say what it was
    with trio.CancelScope(shield=True):  # the deadline, which ends the process, bounds it
        try:
            await _block_end.drive_awaiting(_block_end.steps(guard, exc), _wait, _await)
        except Signalled as raised:
            leaving: Optional[BaseException] = raised  # for the enclosing block, or the caller
        else:
            leaving = exc
    if leaving is None:
        return True  # nothing leaves the block (the Cancelled, if any, ended in its scope)
    if leaving is passing:
        return False  # what was passing goes on, untouched
    raise leaving from leaving.__cause__  # not from the Cancelled it replaces


async def _wait(request: _block_end.BreakWait) -> None:
    """A wait for the break callbacks, without blocking the run (the break thread sets a
    thread's event: polled, bounded by their share)."""
    with trio.move_on_after(max(0.0, request.until - time.monotonic())):
        while not request.event.is_set():
            await trio.sleep(BREAK_POLL)


async def _await(coro: Any) -> None:
    """An ``async def`` cleanup, awaited inside the exit's shielded scope."""
    await coro


def _is_trio_ki(sig: int, handler: object) -> bool:
    """trio's SIGINT handler (``KIManager.install``) is its stand-in for Python's
    ``default_int_handler`` (trio itself puts that back when its run ends): the ending, which dies
    by SIGINT where it finds Python's, must not re-raise the signal into trio's, which would only
    raise ``KeyboardInterrupt``."""
    return sig == _signal.SIGINT and getattr(handler, "__module__", "") == _TRIO_KI


#: The module of trio's SIGINT handler (``KIManager.install``).
_TRIO_KI = "trio._core._ki"

_ending.stands_in_for_default(_is_trio_ki)


def run(
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    options: Options,
    loop_factory: None = None,
) -> NoReturn:
    """``@graceful.main(backend="trio")``: ``trio.run`` with the program's guard around main
    (``loop_factory`` is asyncio's: ``@main`` refuses it with trio)."""
    status = trio.run(_program, func, args, kwargs, options)
    _timeline.end("normal", None, status if isinstance(status, int) else 0)
    sys.exit(status)


async def _program(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], options: Options
) -> Any:
    async with Guard(options, program=True):
        return await func(*args, **kwargs)
