"""A server that owns the signals, inside graceful's guard: graceful hears each stop signal first,
drains if the guard says so, then gives the server its own stop.

uvicorn, hypercorn, aiohttp and gunicorn stop gracefully on SIGTERM by themselves: they stop
accepting, finish the requests in flight within their own timeout, and return. graceful must not
raise ``Signalled`` into their event loop (the request in flight would be cut), and it must not
be bypassed either (``drain=`` would do nothing, the process would not end by its signal). So a
:class:`Stopper` is the handler the server runs for its stop signals:

1. It reports the signal to the machine as graceful's own handler would (``machine.heard``): the
   shutdown starts (timeline, systemd's ``STOPPING=1``, ``graceful.draining`` with ``drain=``).
2. Without a drain it calls the server's stop at once; with one it calls it when the drain ends
   (its time passed, a second signal, ``graceful.end_drain()``), from the machine's listener.
   The server keeps serving meanwhile: the readiness probe answers 503, late requests are served.
3. The server finishes and returns into the program; the guard then runs the cleanups and ends the
   process by the signal. The deadline (``timeout=``) counts from the drain's end, so the server's
   own shutdown timeout must fit inside it.

A repeat (or SIGINT/SIGQUIT) during the shutdown follows the guard's second-signal rule. Where no
guard handles the signal, the server's own handler runs, as if graceful were not there.
"""

from __future__ import annotations

import signal as _signal

from .._core import threads as _threads
from .._core.checks import check_callable, check_main_thread
from .._core.machine import HANDLER, Phase, Verdict, machine

TYPE_CHECKING = False  # typing costs import time; annotations are strings here
if TYPE_CHECKING:
    from types import FrameType
    from typing import Any, Callable, Optional

#: Stoppers whose server must stop when the drain ends (under the lock).
_pending: list[Stopper] = []
_lock = _threads.RLock()  # reentrant: a nested handler in the main thread may take it too


class Stopper:
    """The handler a server runs for its stop signals, in front of its own (see the module)."""

    def __init__(
        self,
        stop: Callable[[int], object],
        alone: Optional[Callable[[int, Optional[FrameType]], object]] = None,
        *,
        what: str = "the server",
    ) -> None:
        self._stop = stop
        self._alone = alone
        self._what = what
        self._fired = False

    def __call__(self, sig: int, frame: Optional[FrameType]) -> None:
        verdict = machine.heard(sig, HANDLER)
        if verdict == Verdict.IGNORED:
            # No guard takes this signal: the server alone, as without graceful.
            (self._alone or _call_stop(self._stop))(sig, frame)
            return
        # The first signal, whichever listener judged it (the watcher may have, first: this
        # delivery is then AGAIN); a repeat follows the guard's rule (absorbed, ends the drain,
        # or forces the end), and the server's stop is given once.
        first = machine.signal
        with _lock:
            if self._fired or self in _pending:
                return
            _pending.append(self)
        if machine.phase != Phase.DRAINING:
            self.fire(sig if first is None else first)  # no drain, or it is over already

    def fire(self, sig: int) -> None:
        """Give the server its stop, once."""
        with _lock:
            if self._fired:
                return
            self._fired = True
            if self in _pending:
                _pending.remove(self)
        # Signalled is not due in the main thread: the server stops by its own shutdown. Once
        # graceful's handler is back (wait_for_stop() has returned while the server finishes),
        # neither a re-delivery nor a second signal cancels that shutdown: a repeat follows the
        # second-signal rule, as it does while the stopper is installed.
        machine.mark_raised()
        try:
            self._stop(sig)
        except Exception:
            from .._core import timeline as _timeline

            _timeline.log_exception(f"graceful: stopping {self._what} raised")

    def __repr__(self) -> str:
        return f"<graceful Stopper for {self._what}>"


def _call_stop(stop: Callable[[int], object]) -> Callable[[int, Optional[FrameType]], object]:
    return lambda sig, frame: stop(sig)


def _on_shutdown(event: str, facts: dict[str, Any]) -> None:
    """The machine's listener (watcher thread): the drain is over, the servers stop now."""
    if event != "drain_end":
        return
    with _lock:
        due = list(_pending)
    sig = machine.signal
    for stopper in due:
        stopper.fire(_signal.SIGTERM if sig is None else sig)


machine.add_listener(_on_shutdown)


#: A server's usual stop signals, where no guard says which: as the servers themselves take them.
SERVER_SIGNALS = (_signal.SIGINT, _signal.SIGTERM)


def stop_signals() -> tuple[int, ...]:
    """The signals graceful's guards handle now (a server's stop signals stand in for them);
    without a guard, SIGINT and SIGTERM, as the servers take them."""
    return tuple(sorted(machine.handled)) or SERVER_SIGNALS


def stopping(stop: Callable[[int], object], *, what: str = "the server") -> Installed:
    """While the block runs, the guard's signals call ``stop(signum)`` (after the drain) instead
    of raising ``Signalled``: for a server that stops through an API. Main thread only; the
    handlers that were there come back at the end."""
    check_callable(stop, "graceful.integrations.stopping()")
    return Installed(Stopper(stop, what=what))


class Installed:
    """A context manager: a stopper on the stop signals, then what was there before."""

    def __init__(self, stopper: Stopper) -> None:
        self.stopper = stopper
        self._saved: list[tuple[int, Any, Optional[Callable[[], bool]]]] = []

    def __enter__(self) -> Stopper:
        check_main_thread("graceful.integrations.stopping()")
        try:
            for sig in stop_signals():
                owner = machine.own(sig, self._installed(sig))
                try:
                    previous = _signal.signal(sig, self.stopper)
                except BaseException:
                    machine.own(sig, owner)
                    raise
                self._saved.append((sig, previous, owner))
        except BaseException:
            self.__exit__()
            raise
        return self.stopper

    def _installed(self, sig: int) -> Callable[[], bool]:
        # The stopper is graceful's handler: the watcher judges the deliveries it reads as it
        # does for the guard's own handler (a repeat is a second signal, never a replay).
        stopper = self.stopper
        return lambda: _signal.getsignal(sig) is stopper

    def __exit__(self, *exc: object) -> None:
        while self._saved:
            sig, previous, owner = self._saved.pop()
            if _signal.getsignal(sig) is self.stopper and previous is not None:
                _signal.signal(sig, previous)
            machine.own(sig, owner)


async def wait_for_stop() -> None:
    """Return when the server must stop: after a stop signal, once the drain is over.

    A server's shutdown trigger (hypercorn's ``shutdown_trigger=``), or the line an
    ``aiohttp.web.AppRunner`` program waits on before ``await runner.cleanup()``. While it waits,
    the guard's signals do not cancel the program's task: the server's own shutdown runs after it
    returns, then the cleanups, then the process ends by the signal.
    """
    import asyncio

    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()

    def stop(sig: int) -> None:
        try:
            loop.call_soon_threadsafe(stopped.set)
        except RuntimeError:
            pass  # the loop is closed: nothing waits any more

    with Installed(Stopper(stop, what="graceful.integrations.wait_for_stop()")):
        await stopped.wait()
