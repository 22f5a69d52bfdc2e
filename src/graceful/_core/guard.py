"""``graceful.guard``: handle signals for a block, unwind, clean up, then end as Unix expects."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
from types import FrameType, TracebackType
from typing import Callable, Literal, Optional

from . import dispositions as _dispositions
from . import registry as _registry
from . import shutdown as _shutdown
from . import signals as _signals
from . import watcher as _watcher
from .checks import check_callable, check_main_thread, check_timeout
from .errors import Signalled, signalled
from .registry import _P, _R

ON_SIGNAL = ("reraise", "exit", "raise")
ON_SECOND_SIGNAL = ("force", "ignore")

#: Active guards of this process, outermost first (main thread only).
_stack: list[Guard] = []


def _handler(signum: int, frame: Optional[FrameType]) -> None:
    """The Python-level handler: record, and raise ``Signalled`` the first time only."""
    sig = signal.Signals(signum)
    _shutdown.hear(sig, "handler")  # records only; the watcher acts (a second signal: "force")
    episode = _shutdown.episode
    if _shutdown.exiting or episode.raised or (frame is not None and frame.f_code in _QUIET):
        return
    if sys.exc_info()[1] is not None:
        # The main thread is handling an exception (an except or finally block, or a with
        # statement's exit on its way to a guard): do not cut that short. The watcher delivers
        # the signal again shortly, until it can be raised.
        _shutdown.defer()
        return
    episode.raised = True
    raise signalled(sig)


class Guard(contextlib.ContextDecorator):
    """Handles signals while active; see :func:`guard`. Not re-entrant: nest new guards instead."""

    def __init__(
        self,
        signals: tuple[int, ...],
        *,
        timeout: Optional[float],
        on_signal: str,
        exit_code: Optional[int],
        on_second_signal: str,
        override_ignored: bool,
    ) -> None:
        self.signals = signals
        self.timeout = timeout
        self.on_signal = on_signal
        self.exit_code = exit_code
        self.on_second_signal = on_second_signal
        self.override_ignored = override_ignored
        #: The signal that ended the block, or None.
        self.signal: Optional[signal.Signals] = None
        self._cleanups = _registry.Registry("guard cleanup")
        self._saved: list[_dispositions.Saved] = []
        self._wakeup: Optional[int] = None  # previous wakeup fd, when we are the outermost
        self._pid: Optional[int] = None  # set while active
        self._inert = False  # inherited by a forked child: does nothing

    def register(
        self, func: Callable[_P, _R], /, *args: _P.args, **kwargs: _P.kwargs
    ) -> Callable[_P, _R]:
        """Run ``func(*args, **kwargs)`` when this block ends, however it ends; newest first."""
        check_callable(func, "Guard.register()")
        self._cleanups.add(func, args, kwargs)
        return func

    def _recreate_cm(self) -> Guard:
        # As a decorator, each call gets its own guard (recursion and re-use are then safe).
        return Guard(
            self.signals,
            timeout=self.timeout,
            on_signal=self.on_signal,
            exit_code=self.exit_code,
            on_second_signal=self.on_second_signal,
            override_ignored=self.override_ignored,
        )

    def __enter__(self) -> Guard:
        check_main_thread("graceful.guard()")
        if self._pid is not None:
            raise RuntimeError(
                "this Guard is already active; use a new graceful.guard() for a nested block"
            )
        sigs = tuple(
            s for s in self.signals if self.override_ignored or not _dispositions.is_ignored(s)
        )
        # Block our signals while installing, so the handler never sees half a guard.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
        try:
            self._saved = _dispositions.install(sigs, _handler)
            if not _stack:
                self._wakeup = _watcher.install()
                _shutdown.policy = _shutdown.Policy(
                    self.timeout, self.on_signal, self.exit_code, self.on_second_signal
                )
            self._pid = os.getpid()
            self.signal = None
            _stack.append(self)
            _shutdown.handled = frozenset(s.sig for g in _stack for s in g._saved)
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            raise
        try:
            # A signal that arrived meanwhile is handled right here, inside the guard.
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        except Signalled as exc:
            if not self.__exit__(type(exc), exc, exc.__traceback__):
                raise
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> Literal[False]:
        if self._inert:
            self._cleanups.run_all()  # only what the child registered itself
            return False
        outermost = bool(_stack) and _stack[0] is self
        _shutdown.enter_exit()
        try:
            if _shutdown.episode.active:
                _shutdown.begin()  # in case the watcher never heard it (wakeup fd replaced)
                _shutdown.wait_for_breaks()
            self._cleanups.run_all()
            sig = _shutdown.episode.signal
            if sig is not None and outermost:
                _registry.cleanups.run_all()
        finally:
            try:
                self._close()
            finally:
                _shutdown.leave_exit()
        self.signal = sig
        if sig is None:
            return False
        if not outermost or self.on_signal == "raise":
            if outermost:
                _shutdown.end()
                _shutdown.policy = None
            if isinstance(exc, Signalled):
                return False
            _shutdown.episode.raised = True
            raise signalled(sig) from exc  # the block swallowed it: a guarded signal ends the block
        if self.on_signal == "exit":
            raise SystemExit(self.exit_code if self.exit_code is not None else 128 + sig)
        _reraise(sig)
        raise SystemExit(self.exit_code if self.exit_code is not None else 128 + sig)

    def _close(self) -> None:
        """Put back exactly what we replaced (handlers, wakeup fd) and leave the stack."""
        try:
            _dispositions.restore(self._saved)
        finally:
            if self in _stack:
                _stack.remove(self)
            _shutdown.handled = frozenset(s.sig for g in _stack for s in g._saved)
            if self._wakeup is not None:
                _watcher.uninstall(self._wakeup)
                self._wakeup = None
                if _shutdown.episode.signal is None:
                    _shutdown.policy = None
            self._pid = None


#: Code the handler must never raise into: a guard's own exit (even its first bytecode, before
#: ``_exiting`` is raised) decides what a recorded signal means.
_QUIET = frozenset({Guard.__exit__.__code__, Guard._close.__code__})


def _reraise(sig: signal.Signals) -> None:
    """Die by ``sig`` with the previous disposition back, after what ``sys.exit`` would have run."""
    if not _forked:
        # Other code's atexit handlers, as sys.exit() would run them. Not in a forked child:
        # there they are mostly the parent's (a conn.close on a shared socket), and Python's
        # own death by a signal would not run them either.
        atexit._run_exitfuncs()
    _shutdown.flush_stdio()
    if signal.getsignal(sig) is signal.default_int_handler:
        # Python's stand-in for SIG_DFL on SIGINT: re-raising into it would only print a
        # KeyboardInterrupt traceback; the shell must see "killed by SIGINT".
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
    signal.raise_signal(sig)
    # Still here: the previous disposition ignores it, or a Python handler returned.


def guard(
    *signals: _signals.SignalLike,
    timeout: Optional[float] = _shutdown.DEFAULT_TIMEOUT,
    on_signal: str = "reraise",
    exit_code: Optional[int] = None,
    on_second_signal: str = "force",
    override_ignored: bool = False,
) -> Guard:
    """Handle ``signals`` (default: HUP, INT, QUIT, TERM) while a block or function runs.

    A handled signal raises :class:`Signalled` in the main thread; the block unwinds, its
    cleanups run, and the outermost guard then runs every ``graceful.register`` cleanup and ends
    the process by ``on_signal``: ``"reraise"`` (die by the same signal), ``"exit"`` (exit with
    ``exit_code`` or 128 + signum) or ``"raise"`` (let ``Signalled`` propagate). ``timeout``
    bounds the whole shutdown from the first signal (None: no deadline). A second signal ends
    the process at once (``on_second_signal="force"``) or is absorbed (``"ignore"``). Signals
    ignored (``SIG_IGN``) on entry stay ignored unless ``override_ignored=True``.
    """
    sigs = _signals.resolve_all(signals, "graceful.guard()")
    checked_timeout = check_timeout(timeout, "graceful.guard()")
    if on_signal not in ON_SIGNAL:
        raise ValueError(f"on_signal must be one of {ON_SIGNAL}, got {on_signal!r}")
    if on_second_signal not in ON_SECOND_SIGNAL:
        raise ValueError(
            f"on_second_signal must be one of {ON_SECOND_SIGNAL}, got {on_second_signal!r}"
        )
    if exit_code is not None:
        if isinstance(exit_code, bool) or not isinstance(exit_code, int):
            raise TypeError(f"exit_code must be an int or None, got {type(exit_code).__name__}")
        if not 0 <= exit_code <= 255:
            raise ValueError(f"exit_code must be between 0 and 255, got {exit_code}")
        if on_signal != "exit":
            raise ValueError(
                f"exit_code applies only with on_signal='exit' (got on_signal={on_signal!r}); "
                "pass on_signal='exit' too, or drop exit_code"
            )
    return Guard(
        sigs,
        timeout=checked_timeout,
        on_signal=on_signal,
        exit_code=exit_code,
        on_second_signal=on_second_signal,
        override_ignored=override_ignored,
    )


#: True in a forked child (of a process that had imported graceful).
_forked = False


def after_fork_in_child() -> None:
    """Guards inherited from the parent become inert; the child gets back the dispositions
    (and wakeup fd) they replaced, so it behaves as if no guard were active until it enters
    its own."""
    global _forked
    _forked = True
    inherited = list(_stack)
    _stack.clear()
    for g in reversed(inherited):
        g._inert = True
        try:
            _dispositions.restore(g._saved)
            if g._wakeup is not None:
                signal.set_wakeup_fd(g._wakeup)
        except (OSError, ValueError, TypeError):
            pass  # best effort: the child must not fail inside fork
    _shutdown.after_fork_in_child()
    _watcher.after_fork_in_child()
