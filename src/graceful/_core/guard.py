"""``graceful.guard``: handle signals for a block, unwind, clean up, then end as Unix expects.

How one signal travels (``docs/internals.md`` tells it at length):

1. The C-level handler writes the signal's number to the wakeup fd; the watcher thread reports it
   to the machine at once (``watcher.py``), which starts the shutdown (``machine.py``).
2. :func:`_handler` below runs in the main thread, reports it too, and raises ``Signalled`` once,
   unless the main thread is in graceful's own exit path (which decides at its end) or an
   exception is passing through the interrupted frame (then the watcher delivers it again).
3. The block unwinds into :meth:`Guard.__exit__`, which runs the ending (``block_end.py``):
   break callbacks first, then the block's cleanups, then (outermost guard) every
   ``graceful.register`` cleanup, and ``ending.py`` ends the process: re-raise the signal,
   exit, or let ``Signalled`` propagate.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]
import sys

from . import block_end as _block_end
from . import dispositions as _dispositions
from . import ending as _ending
from . import forking as _forking
from . import threads as _threads
from . import timeline as _timeline
from . import watcher as _watcher
from .checks import check_callable, check_main_thread, check_posix
from .errors import Signalled, signalled
from .machine import HANDLER, Phase, machine
from .modules import drivers, loaded, provider
from .options import DEFAULT_TIMEOUT, Options
from .protect import at_with_exit, exception_in_flight, exit_path, on_section_end, protection

TYPE_CHECKING = False  # typing costs import time; annotations are strings here
if TYPE_CHECKING:
    from types import FrameType, ModuleType, TracebackType
    from typing import Any, Callable, Optional

if TYPE_CHECKING:
    from typing import Literal

    from .registry import Registry
    from .signals import SignalLike
    from .typevars import _F, _P, _R

#: Active guards of this process, outermost first (main thread only).
_stack: list[Guard] = []
#: The frames of an inner guard's exit once it has closed: the enclosing block owns the signal
#: from then on, so a signal handled in what is left of that exit is raised, not deferred (the
#: last bytecodes of an exit would otherwise run the code after the block before it is raised).
_handed_back: tuple[FrameType, ...] = ()


@exit_path  # it decides at its end: a critical section it calls (the watcher's drain in
# hear_pending) must not raise the signal as it returns, past the checks below
def _handler(signum: int, frame: Optional[FrameType]) -> None:
    """The Python-level handler: report, and raise ``Signalled`` once, where that is safe."""
    machine.handler_starts()  # what was read before this run came with the first signal
    _watcher.hear_pending()  # the order the signals came in, not Python's order
    machine.heard(signum, HANDLER)
    # Whatever this delivery was (the first, a copy, an absorbed second signal, or one heard by a
    # handler run nested inside this one): Signalled is raised once, as soon as it is due.
    if not machine.want_raise():
        return
    guard = _stack[-1] if _stack else None
    if guard is not None and not guard.block.raises:
        # The block is an asyncio task or a trio cancel scope: cancel it, as asyncio.run does
        # for Ctrl-C; its cancellation becomes Signalled again where the block ends.
        machine.mark_raised()
        guard.block.interrupt()
        return
    if frame is not None and (
        protection(frame, _handed_back) or exception_in_flight(frame) or at_with_exit(frame)
    ):
        # graceful's own exit path (it looks at the machine when it is done), a short critical
        # section (it raises the signal as it returns), an exception on its way to a handler,
        # or a ``with`` block ended and its ``__exit__`` not yet called (3.9, 3.10): the
        # watcher delivers the signal again once the main thread is out of there.
        machine.defer()
        return
    sig = machine.signal
    if sig is None:
        return
    machine.mark_raised()
    raise signalled(sig)


def _section_ended(frame: FrameType) -> None:
    """A critical section returned to ``frame``: a signal it deferred is raised now (main thread,
    and only where the handler itself would raise it)."""
    if not machine.want_raise() or not _stack or not _stack[-1].block.raises:
        return
    if not _threads.is_main_thread():
        return
    if protection(frame, _handed_back) or exception_in_flight(frame):
        return
    sig = machine.signal
    if sig is None:
        return
    machine.mark_raised()
    raise signalled(sig)


on_section_end(_section_ended)


class Block:
    """The block a guard guards, as the handler sees it: how a signal interrupts it, and what to
    put back when the guard closes (besides the dispositions the guard itself restores).

    This one is the main thread's frames: the handler interrupts them by raising ``Signalled``.
    An event loop's task is another kind (``_asyncio/block.py``): a signal cancels the task.
    """

    #: The handler raises Signalled into the block (else it calls :meth:`interrupt`).
    raises = True

    def interrupt(self) -> None:
        """A signal ends the block (when it is not ended by raising)."""

    def restore(self) -> None:
        """The guard closes: put back what this block installed."""

    def close_unless_signalled(self, guard: Guard, ours: bool) -> Optional[int]:
        """The outermost guard ends and no signal came: close it (put back what it replaced), as
        its last act, unless a signal came until then. Returns that signal (the guard may be
        closed already: the ending closes it again, or not), or None (the guard is closed).

        The main thread's frames: close, then look once more: a signal that came during the
        cleanups or the restore has its byte in the watcher's pipe even if Python dropped it.
        After this a signal meets the previous disposition."""
        guard.close()
        _watcher.drain()
        return machine.signal if ours else None


#: The main thread's frames: one for every synchronous guard.
FRAMES = Block()


class Guard:
    """Handles signals while active; see :func:`guard`. Not re-entrant: nest new guards instead.

    Also a decorator: each call of the decorated function gets a fresh guard with the same
    options.
    """

    __slots__ = (
        "_active",
        "_at_exit",
        "_block_cleanups",
        "_ended_by_sig",
        "_held",
        "_inert",
        "_late",
        "_program",
        "_saved",
        "_sig_named",
        "_wakeup",
        "block",
        "options",
    )

    def __init__(self, options: Options, *, program: bool = False, at_exit: bool = False) -> None:
        self.options = options
        self._ended_by_sig: Optional[int] = None
        self._sig_named = False  # _ended_by_sig is a number to read as a signal.Signals
        # The block's own cleanups (Guard.register): the registry is loaded on the first.
        self._block_cleanups: Optional[Registry] = None
        self._saved: list[_dispositions.Saved] = []
        self._wakeup: Optional[int] = None  # the previous wakeup fd, when we are the outermost
        self._active = False
        self._inert = False  # inherited by a forked child: does nothing
        self._late = False  # entered during a shutdown's cleanups: the shutdown is not ours
        self._program = program  # @graceful.main: its end runs the registered cleanups
        self._at_exit = at_exit  # entered at interpreter exit: protects the atexit functions
        self._held: frozenset[int] = frozenset()  # the signals this guard handles now
        #: What is guarded: the main thread's frames, or an event loop's task (``Block``).
        self.block: Block = FRAMES

    @property
    def signal(self) -> Optional[int]:
        """The signal that ended the block (a ``signal.Signals``), or None."""
        if self._sig_named and self._ended_by_sig is not None:
            self._ended_by_sig = _signal_of(self._ended_by_sig)  # made when read: imports signal
            self._sig_named = False
        return self._ended_by_sig

    @signal.setter
    def signal(self, value: Optional[int]) -> None:
        self._ended_by_sig = value
        self._sig_named = False

    def ended_by(self, sig: int) -> None:
        """The block ended by ``sig`` (read as a ``signal.Signals`` when :attr:`signal` is)."""
        self._ended_by_sig = sig
        self._sig_named = True

    @property
    def _cleanups(self) -> Registry:
        if self._block_cleanups is None:
            from .registry import Registry

            self._block_cleanups = Registry("guard cleanup")
        return self._block_cleanups

    def _run_block_cleanups(self) -> None:
        if self._block_cleanups is not None:
            self._block_cleanups.run_all()

    # The options, readable on the guard itself.
    @property
    def signals(self) -> tuple[int, ...]:
        return self.options.signals

    @property
    def timeout(self) -> Optional[float]:
        return self.options.timeout

    @property
    def on_signal(self) -> Literal["reraise", "exit", "raise"]:
        return self.options.on_signal

    def register(
        self, func: Callable[_P, _R], /, *args: _P.args, **kwargs: _P.kwargs
    ) -> Callable[_P, _R]:
        """Run ``func(*args, **kwargs)`` when this block ends, however it ends; newest first."""
        check_callable(func, "Guard.register()")
        self._cleanups.add(func, args, kwargs)
        return func

    def __call__(self, func: _F) -> _F:
        import functools  # only for the decorator: an idle guard does without it

        options = self.options

        @functools.wraps(func)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            with Guard(options):
                return func(*args, **kwargs)

        return guarded  # type: ignore[return-value]

    def __repr__(self) -> str:
        state = "active" if self._active else "inactive"
        return f"<graceful.Guard {state} {self.options!r}>"

    async def __aenter__(self) -> Guard:
        """In a running event loop: install through the loop's library (asyncio, or trio); the
        block is the current task."""
        return await _async_driver().enter(self)  # type: ignore[no-any-return]

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool:
        return await _async_driver().exit(self, exc)  # type: ignore[no-any-return]

    # --- for the drivers that install a guard by other means (``_asyncio``) ------------------

    @property
    def active(self) -> bool:
        """The guard is in place (entered and not closed)."""
        return self._active

    @property
    def late(self) -> bool:
        """Entered during a shutdown's cleanups: the shutdown is not this guard's."""
        return self._late

    @property
    def cleanups(self) -> Registry:
        """The block's own cleanups (``Guard.register``)."""
        return self._cleanups

    @property
    def own_cleanups(self) -> Optional[Registry]:
        """The block's own cleanups, or None if none was ever registered (nothing loaded)."""
        return self._block_cleanups

    @property
    def outermost(self) -> bool:
        """The outermost active guard: its end ends the shutdown (or the program)."""
        return bool(_stack) and _stack[0] is self

    @property
    def at_exit(self) -> bool:
        """Entered at the interpreter's exit: it protects the ``atexit`` functions."""
        return self._at_exit

    def check_inactive(self) -> None:
        if self._active:
            raise RuntimeError(
                "this Guard is already active; use a new graceful.guard() for a nested block"
            )

    @property
    def program(self) -> bool:
        """The program's guard (``@graceful.main``): its end runs the registered cleanups."""
        return self._program

    def adopt(
        self,
        block: Block,
        sigs: tuple[int, ...],
        wakeup: Optional[int],
        *,
        install_handler: bool = False,
    ) -> None:
        """The guard was installed through ``block`` (an event loop) for ``sigs``, with the
        previous wakeup fd ``wakeup`` if it replaced it: it joins the stack, active. With
        ``install_handler`` (a loop without ``add_signal_handler``: trio), graceful's own Python
        handler is installed for ``sigs`` first (all or nothing), and :meth:`close` puts back
        what it replaced. Call it with ``sigs`` blocked."""
        if install_handler:
            self._saved = _dispositions.install(sigs, _handler)
        self.block = block
        self._wakeup = wakeup
        self._late = machine.phase >= Phase.CLEANING
        self._held = frozenset(sigs)
        self._active = True
        self.signal = None
        _stack.append(self)
        _update_handled()

    def close(self) -> None:
        """Put back what the guard replaced and leave the stack (see :meth:`_close`)."""
        self._close()

    def exit_inner(self, exc: Optional[BaseException]) -> bool:
        """An inner guard's end (see :meth:`_exit_inner`)."""
        return self._exit_inner(exc)

    def end(self, sig: int, exc: Optional[BaseException]) -> bool:
        """The outermost guard ends the process by ``sig`` (see :meth:`_end`)."""
        return self._end(sig, exc)

    @exit_path
    def __enter__(self) -> Guard:
        check_main_thread("graceful.guard()")
        check_posix("graceful.guard()")
        _check_no_running_loop()
        self.check_inactive()
        options = self.options
        sigs = tuple(
            s
            for s in options.signums
            if options.override_ignored or not _dispositions.is_ignored(s)
        )
        outermost = not _stack
        # Block our signals while installing, so the handler never sees half a guard.
        blocked = _dispositions.block(sigs)
        try:
            if outermost:
                self._wakeup = _install_watcher()  # all or nothing: OSError, RuntimeError
            # The machine knows the guard before the handler is in place: a signal that
            # arrives in between is already the guard's.
            machine.arm(options, _handler)
            machine.set_handled(machine.handled | frozenset(sigs))
            self._late = machine.phase >= Phase.CLEANING
            self._saved = _dispositions.install(sigs, _handler)
            self._held = frozenset(sigs)
            self._active = True
            self.signal = None
            _stack.append(self)
            _update_handled()
        except BaseException:
            self._undo_enter()
            _dispositions.set_mask(blocked)
            raise
        # A signal that arrived meanwhile reaches the handler now (which spares this frame).
        _dispositions.set_mask(blocked)
        if machine.want_raise() and not self._late:
            machine.defer()  # raised inside the block, a moment from now
        return self

    def _undo_enter(self) -> None:
        try:
            _dispositions.restore(self._saved, _handler)
        finally:
            if self in _stack:
                _stack.remove(self)
            _update_handled()
            self._active = False
            if self._wakeup is not None:
                _watcher.uninstall(self._wakeup)
                self._wakeup = None
            if not _stack:
                machine.disarm()

    @exit_path
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> Literal[False]:
        global _handed_back
        _handed_back = ()  # an earlier inner exit's frames are gone
        if self._inert:
            self._run_block_cleanups()  # only what the child registered itself
            return False
        if not self._active:
            return False
        # The ending, written once (block_end.py), run by blocking at each of its waits.
        _block_end.drive(_block_end.steps(self, exc))
        return False

    def _exit_inner(self, exc: Optional[BaseException]) -> bool:
        """An inner guard ends: the enclosing block gets the signal, if one is due."""
        self._close()
        global _handed_back
        _handed_back = _exit_frames(sys._getframe())
        sig = machine.signal
        if sig is None or self._late or machine.phase not in (Phase.SIGNALLED, Phase.BREAKING):
            return False
        self.ended_by(sig)
        if isinstance(exc, Signalled):
            return False
        machine.mark_raised()
        raise signalled(sig) from exc  # the block swallowed it, or ended as it arrived

    def _end(self, sig: int, exc: Optional[BaseException]) -> bool:
        """The outermost guard ends the process by ``sig`` as its options say."""
        options = self.options
        if options.on_signal == "raise":
            self.end_episode(sig)
            if isinstance(exc, Signalled):
                return False
            raise signalled(sig) from exc
        machine.enter_ending()
        _timeline.flush()
        status = options.exit_status(sig)
        # A forked child skips the inherited atexit functions: mostly the parent's (a
        # conn.close on a shared socket), and Python's own death by a signal would skip them.
        # At interpreter exit they are running already.
        run_atexit = not (_forking.forked or self._at_exit)
        if options.on_signal == "exit":
            if run_atexit:
                import atexit

                atexit._run_exitfuncs()  # with our handler still in place (on_second_signal)
            self._close()
            _timeline.end("exit", sig, status)
            if self._at_exit:
                _ending.exit_now(status)  # SystemExit would be ignored inside atexit
            raise SystemExit(status)
        _ending.reraise(sig, self._close, run_atexit=run_atexit)
        # Still alive: the previous disposition ignores the signal, or a Python handler returned.
        if self._at_exit:
            _ending.exit_now(status)
        raise SystemExit(status)

    def end_episode(self, sig: int) -> None:
        """``on_signal="raise"``: the shutdown by ``sig`` is over and the program goes on (the
        caller raises ``Signalled``)."""
        self._close()
        _watcher.drain()  # bytes of this episode must not start the next one
        machine.end_episode()
        machine.disarm()
        _timeline.end("raise", sig, None)

    def _close(self) -> None:
        """Put back what we replaced (where our handler is still installed) and leave the stack."""
        if not self._active:
            return
        try:
            kept = _dispositions.restore(self._saved, _handler)
            self.block.restore()
        finally:
            if self in _stack:
                _stack.remove(self)
            self._held = frozenset()
            _update_handled()
            self._active = False
            if self._wakeup is not None:
                _watcher.uninstall(self._wakeup)
                self._wakeup = None
        reset = [s for s in kept if _signal.getsignal(s) in (_signal.SIG_DFL, _default_int)]
        if reset:  # an event loop's remove_signal_handler (aiohttp's web.run_app does so)
            _timeline.log_warning(
                "graceful: %s: reset to the default inside the guard (an event loop's signal "
                "handler, removed: aiohttp's web.run_app does so); graceful did not hear them "
                "meanwhile, so the program does not end by them: run the server through "
                "graceful.integrations (aiohttp.run_app, uvicorn.run, wait_for_stop)",
                ", ".join(_signal_name(s) for s in reset),
            )
        elif kept:
            names = ", ".join(_signal_name(s) for s in kept)
            _timeline.log_info(
                "graceful: %s handled by a handler installed inside the guard; it stays "
                "installed (graceful put back only what is still its own)",
                names,
            )


def _exit_frames(here: FrameType) -> tuple[FrameType, ...]:
    """The frames of an inner guard's exit, from ``here`` up to ``Guard.__exit__`` (the
    procedure's and its driver's between them): once it has closed, they protect nothing."""
    frames: list[FrameType] = []
    frame: Optional[FrameType] = here
    while frame is not None and len(frames) < 8:
        frames.append(frame)
        if frame.f_code is _EXIT_CODE:
            return tuple(frames)
        frame = frame.f_back
    return tuple(frames[:2])  # an awaiting driver's: its block does not raise


_EXIT_CODE = Guard.__exit__.__code__


def _install_watcher() -> int:
    try:
        return _watcher.install()
    except RuntimeError as exc:
        raise RuntimeError(
            f"graceful.guard(): could not start its watcher thread ({exc}); without it no "
            "deadline could end a hung shutdown, so the guard was not entered and nothing was "
            "changed. Enter the guard early, before the program reaches its thread or memory "
            "limits (a guard started once keeps its thread for every later guard)"
        ) from exc


def _update_handled() -> None:
    machine.set_handled(frozenset(sig for g in _stack for sig in g._held))


def arm(options: Options) -> None:
    """A guard is about to be installed by other means (an event loop): the machine takes its
    options, and knows graceful's handler."""
    machine.arm(options, _handler)


def is_handler(handler: object) -> bool:
    """``handler`` (a ``signal.getsignal`` answer) is graceful's own Python handler."""
    return handler is _handler


def active() -> tuple[Guard, ...]:
    """The active guards of this process, outermost first (a snapshot)."""
    return tuple(_stack)


def _check_no_running_loop() -> None:
    """A plain ``with`` guard inside a coroutine would raise Signalled into the event loop's own
    code (between two callbacks, say): inside a running loop the guard must be ``async with``."""
    if _running_driver() is not None:
        raise RuntimeError(
            "graceful.guard(): an event loop is running in this thread; use `async with "
            "graceful.guard():` inside a coroutine (a signal then cancels the task that entered "
            "it), or @graceful.main on your `async def main()`"
        )


def _running_driver() -> Optional[ModuleType]:
    """The driver whose library runs the current task, if one does. The facade's table names the
    drivers (``modules.drivers()``: each by its library, in the order to ask them); one whose
    library this program has not loaded is not asked (nor loaded: a program that has not
    imported a library is not running it), the others answer by their ``running()``."""
    for library in drivers():
        if loaded(library) is not None:
            driver = provider(library)
            if driver.running():
                return driver
    return None


def _async_driver() -> Any:
    """The driver of the library running this coroutine (trio's in a trio task: trio, anyio on
    trio), else the table's last, the default (asyncio's: asyncio, uvloop, anyio on asyncio).
    Each is loaded on first use, through the facade (``modules.provider``: ``_core`` does not
    import a higher layer)."""
    default = drivers()[-1:] or ("async driver",)  # none: provider says the facade is missing
    return _running_driver() or provider(default[0])


def _signal_of(sig: int) -> int:
    from .signals import as_signal

    return as_signal(sig)


_default_int = getattr(_signal, "default_int_handler", None)


def _signal_name(sig: int) -> str:
    from .signals import name

    return name(sig)


def guard(
    *signals: SignalLike,
    timeout: Optional[float] = DEFAULT_TIMEOUT,
    on_signal: Literal["reraise", "exit", "raise"] = "reraise",
    exit_code: Optional[int] = None,
    on_second_signal: Literal["force", "ignore"] = "force",
    override_ignored: bool = False,
    drain: float = 0.0,
) -> Guard:
    """Handle ``signals`` (default: HUP, INT, QUIT, TERM) while a block or function runs.

    A handled signal raises :class:`Signalled` in the main thread; the block unwinds, its
    cleanups run, and the outermost guard then runs every ``graceful.register`` cleanup and ends
    the process by ``on_signal``: ``"reraise"`` (die by the same signal), ``"exit"`` (exit with
    ``exit_code`` or 128 + signum) or ``"raise"`` (let ``Signalled`` propagate). ``timeout``
    bounds the shutdown from its start (None: no deadline). A repeat of a signal, or SIGINT or
    SIGQUIT, during the shutdown ends the process at once (``on_second_signal="force"``) or is
    absorbed (``"ignore"``); other signals are absorbed. ``drain`` seconds, if given, pass with
    ``graceful.draining`` set before the shutdown begins. Signals ignored (``SIG_IGN``) on entry
    stay ignored unless ``override_ignored=True``.
    """
    return Guard(
        Options.parse(
            signals,
            what="graceful.guard()",
            timeout=timeout,
            on_signal=on_signal,
            exit_code=exit_code,
            on_second_signal=on_second_signal,
            override_ignored=override_ignored,
            drain=drain,
        )
    )


def after_fork_in_child() -> None:
    """Guards inherited from the parent become inert; the child gets back the dispositions
    (and wakeup fd) they replaced, so it behaves as if no guard were active until it enters
    its own."""
    inherited = list(_stack)
    _stack.clear()
    for g in reversed(inherited):
        g._inert = True
        g._active = False
        try:
            _dispositions.restore(g._saved, _handler)
            if g._wakeup is not None:
                _signal.set_wakeup_fd(g._wakeup)
        except (OSError, ValueError, TypeError):
            pass  # best effort: the child must not fail inside fork
