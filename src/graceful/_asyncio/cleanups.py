"""Running cleanups inside an event loop: plain ones are called, ``async def`` ones awaited.

One LIFO order for both kinds, newest first, each at most once (the registry hands each entry out
once). An awaited cleanup is shielded from cancellation (the shutdown's own, or a framework's):
only the deadline, which ends the process, cuts it short.
"""

from __future__ import annotations

import asyncio
import time

from .._core import block_end as _block_end
from .._core import timeline as _timeline
from .._core.machine import BREAK_SHARE, BREAK_WAIT_WITHOUT_DEADLINE, machine

TYPE_CHECKING = False  # typing costs import time; annotations are strings here
if TYPE_CHECKING:
    from typing import Any, Optional

    from .._core import registry as _registry


#: How often an awaited break wait looks whether the break thread is done (a thread's event).
BREAK_POLL = 0.005


async def drive(steps: _block_end.Steps) -> None:
    """Run a procedure of ``block_end.py`` in the running loop: each wait awaited."""
    await _block_end.drive_awaiting(steps, _wait, _shielded)


async def run_all(registry: _registry.Registry, *, final: Optional[str] = None) -> None:
    """``Registry.run_all`` for a running loop."""
    await drive(_block_end.run_all(registry, final=final))


async def wait_for_breaks() -> None:
    """``Shutdown.wait_for_breaks`` without blocking the loop (the break thread runs apart)."""
    await drive(_block_end.breaks())


async def _wait(request: _block_end.BreakWait) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + max(0.0, request.until - time.monotonic())
    while not request.event.is_set() and loop.time() < end:
        await asyncio.sleep(BREAK_POLL)


async def _shielded(coro: Any) -> None:
    """An awaited cleanup is shielded from cancellation (the shutdown's own, or a
    framework's): only the deadline, which ends the process, cuts it short."""
    task = asyncio.ensure_future(coro)
    while True:
        try:
            await asyncio.shield(task)
            return
        except asyncio.CancelledError:
            if task.done():
                raise
            # Cancelled from outside while the cleanup runs: let the cleanup finish anyway.


#: The share of the deadline a main task cancelled by a signal has to end on its own (a
#: server's own shutdown: requests in flight finish within its timeout) before the other tasks
#: are cancelled too; the rest of the deadline is for those tasks and the cleanups.
MAIN_TASK_SHARE = 0.5


def main_task_wait() -> Optional[float]:
    """How long the main task may take to end after its cancellation before the other tasks are
    cancelled (None: no deadline, wait for it as ``asyncio.run`` does)."""
    options = machine.options
    timeout = options.timeout if options is not None else None
    return None if timeout is None else MAIN_TASK_SHARE * timeout


def _share() -> float:
    options = machine.options
    timeout = options.timeout if options is not None else None
    return BREAK_WAIT_WITHOUT_DEADLINE if timeout is None else BREAK_SHARE * timeout


async def cancel_other_tasks() -> None:
    """Cancel every other task of the loop and wait for them, within a share of the deadline:
    a task that swallows its cancellation must not hang the exit."""
    me = asyncio.current_task()
    others = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
    if not others:
        return
    for task in others:
        task.cancel()
    done, pending = await asyncio.wait(others, timeout=_share())
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            asyncio.get_running_loop().call_exception_handler(
                {
                    "message": "unhandled exception in a task cancelled by the shutdown",
                    "exception": task.exception(),
                    "task": task,
                }
            )
    if pending:
        names = ", ".join(sorted(t.get_name() for t in pending))
        _timeline.log_warning(
            "graceful: %d task(s) still running after they were cancelled (%s): they swallow "
            "the cancellation; the cleanups start without them",
            len(pending),
            names,
        )
