"""One shutdown, from the first guarded signal to the end of the outermost guard.

The first signal starts an *episode*: ``shutdown_event`` is set, break callbacks run in a helper
thread, and the deadline starts. A second signal during the episode ends the process at once
(``on_second_signal="force"``) or is absorbed (``"ignore"``). Both the wakeup-fd watcher (which
hears a signal at once, even while the main thread is stuck in C) and the Python handler in the
main thread record what they hear here; only the watcher (or a guard's exit, in plain main-thread
code) acts on it, because the handler may have interrupted the main thread inside a lock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from typing import NamedTuple, NoReturn, Optional

from . import registry as _registry

logger = logging.getLogger("graceful")

#: Set as soon as a guarded signal arrives, so worker threads can stop.
shutdown_event = threading.Event()

#: ``docker stop`` sends SIGKILL 10 s after SIGTERM: end well before that.
DEFAULT_TIMEOUT = 5.0

REDELIVER_INTERVAL = 0.01  # seconds between deliveries of a deferred signal
REDELIVER_MAX_INTERVAL = 0.5  # backoff cap while the handler has not run (main stuck in C?)


class Policy(NamedTuple):
    """How the outermost guard wants the shutdown to go."""

    timeout: Optional[float]
    on_signal: str
    exit_code: Optional[int]
    on_second_signal: str


class Episode:
    """What is known about the shutdown in progress (guarded by ``_lock``)."""

    def __init__(self) -> None:
        self.signal: Optional[signal.Signals] = None
        self.deadline: Optional[float] = None  # time.monotonic() value
        self.heard: dict[str, int] = {"watcher": 0, "handler": 0}
        self.raised = False  # Signalled has been raised in the main thread
        self.begun = False  # shutdown_event set, break callbacks started
        self.force: Optional[signal.Signals] = None  # a second signal asks to end at once
        #: The main thread was handling an exception when the signal arrived: Signalled is not
        #: raised into that (it could cut a ``finally`` short, or skip a guard's ``__exit__`` on
        #: 3.9); the watcher delivers the signal again until it can be raised.
        self.deferred = False
        self.redelivered: dict[str, int] = {"watcher": 0, "handler": 0}
        #: The Python handler has run at least once. Until it does, the watcher delivers the
        #: signal to the main thread again (with backoff): on 3.9/3.10 another thread taking
        #: the GIL can clear the main thread's "signal pending" flag, and a main thread that
        #: then enters a blocking call would not see the signal until the call returns.
        self.handler_ran = False
        self.next_redelivery = 0.0  # time.monotonic()
        self.redelivery_interval = REDELIVER_INTERVAL
        self.breaks_done = threading.Event()

    @property
    def active(self) -> bool:
        return self.signal is not None


# Reentrant: the main thread's signal handler takes it, and a second signal can interrupt the
# main thread while it holds it (even inside that same handler).
_lock = threading.RLock()
episode = Episode()
#: Set by the first ``die_now``: the process is ending, nobody else needs to act.
_dying = False
#: The outermost guard's policy while a guard is active in this process, else None.
policy: Optional[Policy] = None
#: Union of the signals the active guards handle.
handled: frozenset[int] = frozenset()
#: Guards running their ``__exit__``: the handler records signals but must not raise into them.
exiting = 0


def hear(sig: signal.Signals, source: str) -> bool:
    """Record one delivery of a guarded signal; return True if it started the episode.

    ``source`` is ``"watcher"`` or ``"handler"``: each counts its own deliveries, so a signal
    heard by both is not mistaken for a second one. The watcher acts on what it hears. The
    Python handler only records and pokes the watcher: it runs in the main thread wherever that
    was interrupted, maybe inside a lock it would need (a thread start, an Event, logging).
    """
    current = policy
    with _lock:
        if source == "handler":
            episode.handler_ran = True
        if episode.redelivered[source]:
            episode.redelivered[source] -= 1  # our own re-delivery (see redeliver)
            return False
        episode.heard[source] += 1
        first = episode.signal is None
        if first:
            episode.signal = sig
            now = time.monotonic()
            episode.next_redelivery = now + REDELIVER_INTERVAL
            if current is not None and current.timeout is not None:
                episode.deadline = now + current.timeout
        force = (
            not first
            and episode.heard[source] >= 2
            and current is not None
            and current.on_second_signal == "force"
        )
        if force and episode.force is None:
            episode.force = sig
    if source == "watcher":
        act()
    elif first or force:
        from . import watcher as _watcher

        _watcher.poke()  # the watcher starts the episode, or ends the process, for us
    return first


def act() -> None:
    """What the watcher (or a guard's exit, in the main thread) does about the episode."""
    sig = episode.force
    if sig is not None:
        die_now(sig, f"second {sig.name} during shutdown: exiting now, skipping what is left")
    begin()


def begin() -> None:
    """Start the episode's work once: set ``shutdown_event``, run the break callbacks."""
    with _lock:
        sig = episode.signal
        if sig is None or episode.begun:
            return
        episode.begun = True
    shutdown_event.set()
    _start_breaks(sig)


def enter_exit() -> None:
    """A guard's ``__exit__`` begins: from now on signals are recorded, not raised."""
    global exiting
    with _lock:
        exiting += 1


def leave_exit() -> None:
    global exiting
    with _lock:
        exiting -= 1


def defer() -> None:
    """``Signalled`` cannot be raised right now: have the watcher deliver the signal to the
    main thread again shortly, and again, until it can be (see ``until_redelivery``)."""
    episode.deferred = True
    episode.next_redelivery = time.monotonic() + REDELIVER_INTERVAL
    from . import watcher as _watcher

    _watcher.poke()


def until_redelivery(now: float) -> Optional[float]:
    """Seconds until the watcher should deliver the signal to the main thread again, or None.

    Needed while ``Signalled`` has not been raised and no guard is exiting: the handler deferred
    it (the main thread was handling an exception; every 10 ms), or the handler has not run at
    all (with backoff, so C code the main thread is stuck in is not interrupted too often).
    """
    ep = episode
    if ep.signal is None or ep.raised or exiting or policy is None:
        return None
    if not ep.deferred and ep.handler_ran:
        return None
    return ep.next_redelivery - now


def redeliver(now: float) -> None:
    """Deliver the episode's signal to the main thread again (called by the watcher).

    Thread-directed, so it interrupts a blocking call of the main thread; both listeners are
    told to expect it, so it is never counted as a second signal.
    """
    main = threading.main_thread().ident
    with _lock:
        ep = episode
        sig = ep.signal
        due = until_redelivery(now)
        if sig is None or main is None or due is None or due > 0 or sig not in handled:
            return
        if ep.deferred:
            ep.next_redelivery = now + REDELIVER_INTERVAL
        else:
            ep.redelivery_interval = min(ep.redelivery_interval * 2, REDELIVER_MAX_INTERVAL)
            ep.next_redelivery = now + ep.redelivery_interval
        ep.redelivered["watcher"] += 1
        ep.redelivered["handler"] += 1
        signal.pthread_kill(main, sig)


def end() -> None:
    """The episode is over and the process goes on (``on_signal="raise"``): forget it."""
    global episode
    from . import watcher as _watcher

    _watcher.sync()  # bytes of this episode still in the pipe must not start the next one
    with _lock:
        episode = Episode()
    shutdown_event.clear()


def after_fork_in_child() -> None:
    """A forked child starts with no shutdown in progress and no guard of its own."""
    global _lock, episode, policy, handled, exiting, _dying, _logged
    _lock = threading.RLock()
    _dying = False
    _logged = threading.Event()
    exiting = 0
    episode = Episode()
    policy = None
    handled = frozenset()
    # The event's lock may have been held by a thread that does not exist in the child.
    reinit = getattr(shutdown_event, "_at_fork_reinit", None)
    if reinit is not None:
        reinit()
    shutdown_event.clear()


def _start_breaks(sig: signal.Signals) -> None:
    entries = list(reversed(_registry.breaks.pending()))
    done = episode.breaks_done
    if not entries:
        done.set()
        return

    def run() -> None:
        try:
            for entry in entries:
                _registry.run_logged(entry, "break callback", track=False)
        finally:
            done.set()

    threading.Thread(target=run, name=f"graceful-break-{sig.name}", daemon=True).start()


def wait_for_breaks() -> None:
    """Break first, then clean up: cleanups start once the break callbacks are done (a hung
    one is cut off by the deadline, like everything else in the shutdown)."""
    episode.breaks_done.wait()


def overdue(now: float) -> Optional[float]:
    """Seconds until the deadline (<= 0 once passed), or None if there is none."""
    deadline = episode.deadline
    return None if deadline is None else deadline - now


def deadline_passed() -> NoReturn:
    """Called by the watcher when the deadline passes: say what was running, then die."""
    sig = episode.signal or signal.SIGTERM
    current = policy
    timeout = current.timeout if current is not None else None
    running = _registry.running
    if running is not None:
        what = f"cleanup {running.describe()} was still running"
    else:
        what = f"the main thread was at {_main_thread_location()}"
    die_now(
        sig, f"shutdown deadline of {timeout} s passed after {sig.name}; {what}", exit_code=True
    )


def _main_thread_location() -> str:
    frame = sys._current_frames().get(threading.main_thread().ident or 0)
    if frame is None:
        return "an unknown place"
    return f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"


def die_now(sig: signal.Signals, reason: str, *, exit_code: bool = False) -> NoReturn:
    """End the process at once by ``sig``, from any thread, running nothing more; with
    ``exit_code`` and ``on_signal="exit"``, by the guard's exit status instead. The first caller
    logs ``reason`` (with a bounded wait); later ones (another thread, a nested handler) give
    that line a moment to be written, then end the process too."""
    global _dying
    try:
        with _lock:
            first, _dying = not _dying, True
        if first:
            _log_bounded(reason)
        else:
            _logged.wait(_LOG_WAIT)
        current = policy
        if exit_code and current is not None and current.on_signal == "exit":
            os._exit(current.exit_code if current.exit_code is not None else 128 + sig)
        if threading.current_thread() is threading.main_thread():
            flush_stdio()
            signal.signal(sig, signal.SIG_DFL)
        else:
            from . import libc as _csignal  # signal.signal() refuses outside the main thread

            _csignal.set_default(sig)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
        signal.pthread_kill(threading.get_ident(), sig)
    finally:
        os._exit(128 + sig)


_LOG_WAIT = 0.5
_logged = threading.Event()


def _log_bounded(message: str) -> None:
    """Log, but give up after a moment: the logging lock may be held by an interrupted or stuck
    main thread, and stderr may be a full pipe nobody reads."""

    def write() -> None:
        try:
            logger.error("graceful: %s", message)
        finally:
            _logged.set()

    try:
        writer = threading.Thread(target=write, daemon=True)
        writer.start()
    except RuntimeError:  # no new threads during interpreter shutdown (3.12+)
        with contextlib.suppress(OSError):
            os.write(2, f"graceful: {message}\n".encode(errors="replace"))
        _logged.set()
        return
    writer.join(_LOG_WAIT)


def flush_stdio() -> None:
    """Dying by a signal skips Python's own flush: do it, quietly, before."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass
