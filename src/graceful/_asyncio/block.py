"""The block a guard guards when it is an event loop's task: a signal cancels the task.

``Guard`` holds one block object (``_core/guard.py``, ``Block``): the handler raises into the main
thread's frames, and calls :meth:`TaskBlock.interrupt` for a task, as ``asyncio.run`` cancels the
main task on Ctrl-C. Closing the guard calls :meth:`TaskBlock.restore`, which puts back the loop's
own signal handlers (``async with graceful.guard()``).
"""

from __future__ import annotations

from .._core.guard import Block

TYPE_CHECKING = False  # typing costs import time; annotations are strings here
if TYPE_CHECKING:
    import asyncio
    from typing import Any, Callable, Optional


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


def _nothing() -> None:
    pass
