"""``async with graceful.guard():`` in an event loop that something else owns (uvicorn, aiohttp, a
framework's lifespan).

The guard installs through the running loop (``loop.add_signal_handler``) and puts back exactly
what it replaced: the loop's own handler for the signal, or the Python disposition before it. Its
block is the task that entered it: a signal cancels that task, and the ``CancelledError`` comes
out of the block as ``Signalled``. The shutdown itself is the synchronous guard's: the same
machine, deadline, second-signal rule, drain and break callbacks; the cleanups are awaited in the
loop.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from .._core import block_end as _block_end
from .._core import dispositions as _dispositions
from .._core import ending as _ending
from .._core import guard as _guard
from .._core import watcher as _watcher
from .._core.checks import check_main_thread, check_posix
from .._core.errors import signalled
from .._core.guard import Guard
from .._core.machine import HANDLER, machine
from . import cleanups as _cleanups
from .block import TaskBlock

TYPE_CHECKING = False  # typing costs import time; annotations are strings here
if TYPE_CHECKING:
    from typing import Any, Callable, NoReturn, Optional

    from .._core.options import Options


def running() -> bool:
    """An asyncio event loop runs in this thread (asyncio, uvloop, anyio on asyncio). ``_core``
    asks only once the program has loaded asyncio (the facade's table of drivers)."""
    return asyncio.events._get_running_loop() is not None


async def enter(guard: Guard) -> Guard:
    check_main_thread("async with graceful.guard()")
    check_posix("async with graceful.guard()")
    guard.check_inactive()
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    options = guard.options
    sigs = tuple(
        s for s in options.signums if options.override_ignored or not _dispositions.is_ignored(s)
    )
    _check_no_server_owns(sigs)
    restore: list[Callable[[], object]] = []
    wakeup = None
    try:
        _watcher.start_thread()  # the deadline's thread
        _guard.arm(options)
        machine.set_handled(machine.handled | frozenset(sigs))
        for sig in sigs:
            restore.append(_replace(loop, sig, guard))
        if not _guard.active():
            # The watcher hears every signal byte first and forwards it to the loop: a signal
            # the loop has not turned into a callback yet is not lost when the guard ends.
            wakeup = _watcher.install()
        assert task is not None  # a running loop runs a task
        guard.adopt(TaskBlock(task, loop, restore=restore), sigs, wakeup)
    except BaseException:
        while restore:
            restore.pop()()
        if wakeup is not None:
            _watcher.uninstall(wakeup)
        if not _guard.active():
            machine.disarm()
        raise
    return guard


#: Where the loop's own SIGINT handlers live: asyncio's (``add_signal_handler``, 3.11+'s
#: ``Runner``), anyio's backport of ``Runner`` (``anyio.run`` on asyncio before 3.11), graceful's.
_LOOP_OWN = ("asyncio", "anyio._backends._asyncio", "graceful")


def _check_no_server_owns(sigs: tuple[int, ...]) -> None:
    """A server that installed its own Python handler (uvicorn's ``Server.handle_exit``) owns
    the signal in this loop: taking it would run the cleanups at the first signal and leave the
    server serving with closed resources. Refuse, and say what to use instead."""
    for sig in sigs:
        handler = signal.getsignal(sig)
        if not callable(handler) or handler is signal.default_int_handler:
            continue
        if _guard.is_handler(handler):
            continue  # graceful's own (a guard entered by other means)
        inner = getattr(handler, "func", handler)  # functools.partial (asyncio.Runner's SIGINT)
        if getattr(inner, "__module__", "").startswith(_LOOP_OWN):
            continue  # the loop's own (add_signal_handler, asyncio.run's Ctrl-C), or graceful's
        raise RuntimeError(
            f"async with graceful.guard(): {signal.Signals(sig).name} is handled by "
            f"{getattr(handler, '__qualname__', handler)!r}, a server that owns the signals in "
            "this loop; a guard here would run the cleanups at the first signal while the "
            "server serves on. Call `await graceful.ashutdown()` from the server's shutdown hook "
            "(after a lifespan's yield), or run the server with graceful.integrations "
            "(`graceful docs servers`)"
        )


def _replace(loop: asyncio.AbstractEventLoop, sig: int, guard: Guard) -> Callable[[], None]:
    """Put our callback on ``sig`` in the loop; return how to put back what was there."""
    handles: dict[int, Any] = getattr(loop, "_signal_handlers", {})
    previous_handle = handles.get(sig)
    previous = signal.getsignal(sig)
    loop.add_signal_handler(sig, _on_signal, guard, sig)
    ours = handles.get(sig)
    machine.own(sig, lambda: handles.get(sig) is ours)

    def put_back() -> None:
        machine.own(sig, None)
        if ours is not None and handles.get(sig) is not ours:
            return  # someone replaced ours inside the block: theirs stays
        loop.remove_signal_handler(sig)
        if previous_handle is not None:
            loop.add_signal_handler(sig, previous_handle._callback, *previous_handle._args)
        elif previous is not None and signal.getsignal(sig) != previous:
            signal.signal(sig, previous)

    return put_back


def _on_signal(guard: Guard, sig: int) -> None:
    """The loop's callback for a guarded signal (in the loop, between two callbacks)."""
    machine.heard(sig, HANDLER)
    if machine.want_raise() and guard.active:
        stack = _guard.active()
        innermost = stack[-1] if stack else guard
        machine.mark_raised()
        (innermost if not innermost.block.raises else guard).block.interrupt()


def _on_drain_end(event: str, facts: dict[str, Any]) -> None:
    """The machine's listener (watcher thread): when the drain ends, cancel the block now."""
    if event != "drain_end":
        return
    for guard in _guard.active():
        block = guard.block
        if isinstance(block, TaskBlock):
            try:
                block.loop.call_soon_threadsafe(_cancel_if_due, guard)
            except RuntimeError:
                pass  # its loop is closed
            return


def _cancel_if_due(guard: Guard) -> None:
    if machine.want_raise() and guard.active:
        machine.mark_raised()
        guard.block.interrupt()


machine.add_listener(_on_drain_end)


def _is_runner_sigint(sig: int, handler: object) -> bool:
    """``asyncio.run``'s SIGINT handler (3.11+: ``Runner``): it cancels the main task and returns,
    standing in for Ctrl-C's default; the process that dies by SIGINT needs SIG_DFL instead."""
    owner = getattr(getattr(handler, "func", handler), "__self__", None)  # a partial of it
    runner = getattr(sys.modules.get("asyncio.runners"), "Runner", None)
    return sig == signal.SIGINT and runner is not None and isinstance(owner, runner)


_ending.stands_in_for_default(_is_runner_sigint)


def run(
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    options: Options,
    loop_factory: Optional[Callable[[], asyncio.AbstractEventLoop]],
) -> NoReturn:
    """``@graceful.main`` on an ``async def``: the program's loop (``runner.py``)."""
    from . import runner

    runner.run(func, args, kwargs, options, loop_factory)


async def exit(guard: Guard, exc: Optional[BaseException]) -> bool:
    """``Guard.__exit__`` for a running loop: the same procedure (``block_end.py``), its waits
    awaited in the loop."""
    if not guard.active:
        return False
    block = guard.block
    task = block.task if isinstance(block, TaskBlock) else None
    ours_cancel = isinstance(exc, asyncio.CancelledError) and machine.raised
    if ours_cancel and task is not None and hasattr(task, "uncancel"):
        task.uncancel()  # our cancellation, not the caller's: asyncio.timeout() keeps counting
    passing = exc
    if ours_cancel and machine.signal is not None:
        exc = signalled(machine.signal)  # the CancelledError was our doing: say what it was
    await _cleanups.drive(_block_end.steps(guard, exc))
    if exc is not passing and exc is not None:
        raise exc from None  # the Signalled in place of our CancelledError
    return False
