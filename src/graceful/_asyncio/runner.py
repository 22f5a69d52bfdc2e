"""``@graceful.main`` on an ``async def main()``: ``asyncio.run``, with every guarantee of the
synchronous guard.

The program's guard is the synchronous one (graceful's handler, its watcher thread, the
deadline, the second signal, the drain), with the main task as its block: a signal cancels the
task instead of raising, as ``asyncio.run`` does for Ctrl-C, and, unlike ``asyncio.run``, for
SIGTERM, SIGHUP and SIGQUIT too. The main task then has half the deadline to end on its own (a
server's own shutdown lets the requests in flight finish); if it has not ended by then (it may
be waiting for the others, as 3.12's ``Server.wait_closed()`` waits for every connection), the
other tasks are cancelled too. When the task has ended (however it ended), the other tasks are
cancelled and awaited within a share of the deadline, the registered cleanups run in the
program's own loop (``async def`` ones awaited, one LIFO order), the loop closes, and the task's
``CancelledError`` becomes the real cause again: the guard then ends the process by the signal.
"""

from __future__ import annotations

import asyncio
import sys

from .._core import registry as _registry
from .._core import timeline as _timeline
from .._core.errors import signalled
from .._core.guard import FRAMES, Guard
from .._core.machine import machine
from .._core.options import Options
from . import cleanups as _cleanups
from .block import TaskBlock

TYPE_CHECKING = False  # typing costs import time; annotations are strings here
if TYPE_CHECKING:
    from typing import Any, Callable, NoReturn, Optional


def run(
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    options: Options,
    loop_factory: Optional[Callable[[], asyncio.AbstractEventLoop]],
) -> NoReturn:
    guard = Guard(options, program=True)
    with guard:
        status = _run_loop(guard, func, args, kwargs, loop_factory)
    _timeline.end("normal", None, status if isinstance(status, int) else 0)
    sys.exit(status)


def _run_loop(
    guard: Guard,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    loop_factory: Optional[Callable[[], asyncio.AbstractEventLoop]],
) -> Any:
    loop = loop_factory() if loop_factory is not None else asyncio.new_event_loop()
    if loop_factory is None:
        asyncio.set_event_loop(loop)
    # Until the loop is closed the block stays the (maybe finished) task: a signal as main()
    # returns, or during the cleanups, is recorded, never raised into the loop's own code (the
    # cleanups would go on in a new loop, or not at all).
    try:
        task = loop.create_task(func(*args, **kwargs))
        guard.block = TaskBlock(task, loop, escalate=lambda: _escalate(loop, task))
        loop.run_until_complete(asyncio.wait([task]))
        # However the task ended: the other tasks, then the cleanups, in this very loop.
        loop.run_until_complete(_finish())
        if task.cancelled():
            sig = machine.signal
            if sig is not None:
                raise signalled(sig) from None  # the CancelledError becomes the real cause again
        return task.result()  # its return value, or its exception raised here
    finally:
        try:
            _close(loop, loop_factory is None)
        finally:
            guard.block = FRAMES


def _escalate(loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
    """The main task was cancelled by a signal: give it its share of the deadline to end on its
    own (a server's own shutdown), as ``asyncio.run`` waits for it."""
    wait = _cleanups.main_task_wait()
    if wait is not None:
        loop.call_later(wait, _cancel_others, task)


def _cancel_others(main: asyncio.Task[Any]) -> None:
    """The main task, cancelled by a signal, has not ended within its share of the deadline: it
    may be waiting for the others (3.12's ``Server.wait_closed()`` waits for every open
    connection's handler). Cancel them all now, once, so it can end."""
    if main.done():
        return
    for task in asyncio.all_tasks(main.get_loop()):
        if task is not main and not task.done():
            task.cancel()


async def _finish() -> None:
    await _cleanups.cancel_other_tasks()
    machine.enter_cleaning()
    await _cleanups.run_all(_registry.cleanups)


def _close(loop: asyncio.AbstractEventLoop, unset: bool) -> None:
    """What ``asyncio.run`` does when it is done: async generators, the default executor."""
    try:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        if unset:
            asyncio.set_event_loop(None)
        loop.close()
