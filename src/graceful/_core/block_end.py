"""The end of a guarded block, written once: a procedure that yields its waits (issue 21).

:func:`steps` is every step of a guard's exit, in order: the break callbacks within their share
of the deadline, the block's own cleanups, the hand-over of the signal to the enclosing block
(an inner guard), or (the outermost guard) the registered cleanups, the restore as its last act
when no signal came, and the end of the process by the signal (``ending.py``: the ``atexit``
functions, the backends' last acts, the re-raise). It never waits itself: it yields a request,
and a driver performs it and resumes it (``send``), or throws what the wait raised into it:

* :class:`BreakWait`: wait until the break callbacks are done or their share is over;
* :class:`Await`: a cleanup returned a coroutine (an ``async def`` cleanup): run it to its end.

The blocking driver, :func:`drive`, is here: it waits on the event, and runs a coroutine in a
fresh event loop (a sync guard, ``@main``, the interpreter's exit). An awaiting driver
(``_asyncio/guard.py``, ``_trio/driver.py``) passes :func:`drive_awaiting` its library's two
awaits. Besides that, a driver has a ``Block`` (``guard.py``): how a signal interrupts the
block, and how the guard closes as its last act unless a signal came.
"""

from __future__ import annotations

import time

from . import timeline as _timeline
from .machine import Phase, machine
from .modules import loaded
from .protect import exit_path

TYPE_CHECKING = False  # typing costs import time; annotations are strings here
if TYPE_CHECKING:
    from collections.abc import Awaitable, Generator
    from typing import Any, Callable, Optional, Union

    from .guard import Guard
    from .registry import Registry
    from .threads import Event

    Request = Union["BreakWait", "Await"]
    Steps = Generator[Request, None, None]


class BreakWait:
    """Wait until ``event`` is set or ``time.monotonic()`` reaches ``until``."""

    __slots__ = ("event", "until")

    def __init__(self, event: Event, until: float) -> None:
        self.event = event
        self.until = until


class Await:
    """Run the coroutine ``coro`` (an ``async def`` cleanup's) to its end."""

    __slots__ = ("coro",)

    def __init__(self, coro: Any) -> None:
        self.coro = coro


@exit_path
def steps(guard: Guard, exc: Optional[BaseException]) -> Steps:
    """A guard's exit, given what leaves its block (``exc``). Returning means ``exc`` leaves the
    guard (None: nothing); what it raises leaves the guard instead (``Signalled`` for the
    enclosing block, ``SystemExit``), unless the process has ended."""
    outermost = guard.outermost
    ours = not guard.late
    if outermost and ours and machine.phase == Phase.DRAINING:
        machine.end_drain()  # the program ended during its drain: the shutdown begins now
    if ours and machine.phase in (Phase.SIGNALLED, Phase.BREAKING):
        yield from breaks()
    own = guard.own_cleanups
    if own is not None:
        yield from run_all(own)
    if not outermost:
        guard.exit_inner(exc)  # the enclosing block gets the signal, if one is due
        return
    ran = False
    if guard.program or guard.at_exit or (ours and machine.signal is not None):
        yield from run_registered(guard)
        ran = True
    sig = machine.signal if ours else None
    if sig is None:
        # Put back what we replaced, as the last act, unless a signal came during the cleanups
        # or the restore (the block knows how to look: the watcher's pipe, the mask).
        sig = guard.block.close_unless_signalled(guard, ours)
        if sig is None:
            if guard.program or guard.at_exit:
                machine.end_episode(program_ending=True)  # its cleaning is over
            machine.disarm()
            return
    if machine.phase in (Phase.SIGNALLED, Phase.BREAKING):
        yield from breaks()
    if not ran:
        yield from run_registered(guard)
    guard.ended_by(sig)
    guard.end(sig, exc)  # ends the process, or raises SystemExit or Signalled


def breaks() -> Steps:
    """Break first, then clean up: wait for the break callbacks, but only for their share of the
    deadline, counted from when they began; then the cleanups start while they go on."""
    machine.begin_breaks()  # once per shutdown (the watcher may not have heard the signal)
    if machine.breaks_pending_inline():
        machine.wait_for_breaks()  # no thread could start: they run here, now
        return
    until, share = machine.breaks_until()
    done = machine.breaks_done
    yield BreakWait(done, until)
    if not done.is_set():
        _timeline.log_warning(
            "graceful: break callbacks still running after %.3g s (their share of the "
            "deadline); the cleanups start now while they go on",
            share,
        )


def run_registered(guard: Guard) -> Steps:
    """The program's cleanups, in the CLEANING phase (a signal now is never raised)."""
    machine.enter_cleaning()
    final = None
    if machine.signal is not None and guard.options.on_signal != "raise":
        final = f"this process is ending by {_signal_name(machine.signal)}"
    elif guard.at_exit:
        final = "the interpreter is exiting"
    registry = loaded("graceful._core.registry")
    if registry is None and final is not None:
        # Nothing was registered, but the list must close (a registration now would never
        # run): the registry is loaded here, in the main thread, not in a handler.
        from . import registry
    if registry is not None:
        yield from run_all(registry.cleanups, final=final)


def run_all(registry: Registry, *, final: Optional[str] = None) -> Steps:
    """``Registry.run_all``, yielding the coroutine of each ``async def`` cleanup."""
    from .registry import finished, is_coroutine, starting

    if final is not None:
        registry.begin_final(final)  # other threads' registrations are refused from now on
    # The first signal's record before any cleanup's, whichever thread judged it (a block's own
    # cleanups run before the CLEANING phase, whose start records it too).
    machine.announce()
    while True:
        entry = registry.take()
        if entry is None:
            if final is None or registry.close(final):
                return
            continue
        started = starting(entry)
        error: Optional[BaseException] = None
        try:
            result = entry.func(*entry.args, **entry.kwargs)
            if is_coroutine(result):
                yield Await(result)
        except BaseException as exc:
            error = exc
        finished(entry, registry.kind, started, error)


@exit_path
def drive(procedure: Steps) -> None:
    """The blocking driver: perform each request by blocking until it is done."""
    thrown: Optional[BaseException] = None
    while True:
        try:
            request = procedure.send(None) if thrown is None else procedure.throw(thrown)
        except StopIteration:
            return
        thrown = None
        try:
            if isinstance(request, BreakWait):
                request.event.wait(max(0.0, request.until - time.monotonic()))
            else:
                from .coroutines import run_fresh

                run_fresh(request.coro)
        except BaseException as exc:
            thrown = exc


async def drive_awaiting(
    procedure: Steps,
    wait: Callable[[BreakWait], Awaitable[object]],
    run: Callable[[Any], Awaitable[object]],
) -> None:
    """An awaiting driver's loop: ``wait(request)`` for a :class:`BreakWait` (without blocking
    the loop: the break thread sets a thread's event), ``run(coro)`` for an :class:`Await`."""
    thrown: Optional[BaseException] = None
    while True:
        try:
            request = procedure.send(None) if thrown is None else procedure.throw(thrown)
        except StopIteration:
            return
        thrown = None
        try:
            if isinstance(request, BreakWait):
                await wait(request)
            else:
                await run(request.coro)
        except BaseException as exc:
            thrown = exc


def _signal_name(sig: int) -> str:
    from .signals import name

    return name(sig)
