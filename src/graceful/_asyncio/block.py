"""The block a guard guards when it is an event loop's task: a signal cancels the task.

``Guard`` holds one block object (``_core/guard.py``, ``Block``): the handler raises into the main
thread's frames, and calls :meth:`TaskBlock.interrupt` for a task, as ``asyncio.run`` cancels the
main task on Ctrl-C. Closing the guard calls :meth:`TaskBlock.restore`, which puts back the loop's
own signal handlers (``async with graceful.guard()``).
"""

from __future__ import annotations

from .._core import dispositions as _dispositions
from .._core import watcher as _watcher
from .._core.guard import Block
from .._core.machine import machine

TYPE_CHECKING = False  # typing costs import time; annotations are strings here
if TYPE_CHECKING:
    import asyncio
    from typing import Any, Callable, Optional

    from .._core.guard import Guard


class TaskBlock(Block):
    """An event loop's task as a guard's block."""

    raises = False

    def __init__(
        self,
        task: asyncio.Task[Any],
        loop: asyncio.AbstractEventLoop,
        *,
        restore: Optional[list[Callable[[], object]]] = None,
        escalate: Optional[Callable[[], object]] = None,
    ) -> None:
        self.task = task
        self.loop = loop
        self._restore = restore if restore is not None else []
        self._escalate = escalate  # a loop callback after the cancel (the runner's)

    def interrupt(self) -> None:
        """A signal ends the block: cancel the task, and wake its loop."""
        if self.task.done():
            return
        self.task.cancel()
        try:
            # The loop may be waiting in select(): wake it, and let the owner of the loop go on.
            self.loop.call_soon_threadsafe(self._escalate or _nothing)
        except RuntimeError:
            pass  # the loop is closed

    def restore(self) -> None:
        """Put back the loop's own handlers, newest first."""
        while self._restore:
            self._restore.pop()()

    def close_unless_signalled(self, guard: Guard, ours: bool) -> Optional[int]:
        """Close the guard unless a signal came until then (its byte is in the watcher's pipe
        even if the loop never ran its callback); with the signals blocked, so that one that
        comes as it closes is seen here or meets what was there."""
        sigs = guard.options.signums
        while True:
            blocked = _dispositions.block(sigs)
            try:
                _watcher.drain()
                sig = machine.signal if ours else None
                if sig is not None:
                    return sig
                if not _dispositions.pending(sigs):
                    guard.close()
                    return None
            finally:
                # A signal that came while they were blocked is delivered now, to the guard's
                # handlers (the watcher's pipe gets its byte): look again.
                _dispositions.set_mask(blocked)


def _nothing() -> None:
    pass
