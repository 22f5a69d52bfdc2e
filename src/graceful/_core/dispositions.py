"""Installing a handler so that exactly the previous disposition can come back.

Restore policy (as trio and asyncio's Runner do): a guard puts back what it replaced only where
its own handler is still installed. If code inside the block installed a handler of its own (a
server that handles SIGHUP itself), that handler is theirs and stays when the guard ends.
"""

from __future__ import annotations

# The C functions themselves: signal.signal() and getsignal() wrap them to turn ints into enums,
# a third of what entering a guard costs, and ``import signal`` builds those enums (with ``enum``,
# ``functools`` and ``collections``: most of a megabyte of RSS). SIG_DFL and SIG_IGN come back as
# plain ints here, masks as sets of ints.
import _signal  # type: ignore[import-not-found]

from . import threads as _threads

TYPE_CHECKING = False  # typing costs import time; annotations are strings here
if TYPE_CHECKING:
    import signal
    from typing import Any, Callable, Optional, Union


if TYPE_CHECKING:
    from typing_extensions import TypeAlias

    Handler: TypeAlias = Union[Callable[[int, Any], Any], int, signal.Handlers, None]


class Saved:
    """One signal's disposition as it was before we replaced it, and how to put it back.

    ``signal.signal`` returns None when the handler was installed from C; Python cannot put
    ``None`` back, so for that case the raw ``sigaction`` is saved and restored through libc
    (ctypes is imported only then, never on the common path).
    """

    __slots__ = ("handler", "raw", "sig")

    def __init__(self, sig: int, handler: Handler, raw: Optional[bytes]) -> None:
        self.sig = sig
        self.handler = handler
        self.raw = raw

    def restore(self) -> None:
        if self.raw is not None:
            from . import libc

            # Python's own table must stop pointing at our handler; then put the C one back.
            _signal.signal(self.sig, _signal.SIG_DFL)
            libc.restore_sigaction(self.sig, self.raw)
        else:
            _signal.signal(self.sig, self.handler)


def install(sigs: tuple[int, ...], handler: Callable[[int, Any], Any]) -> list[Saved]:
    """Install ``handler`` for each signal, all or nothing: if one fails, the others come back."""
    saved: list[Saved] = []
    try:
        for sig in sigs:
            raw = None
            if _signal.getsignal(sig) is None:
                from . import libc

                raw = libc.save_sigaction(sig)
            previous = _signal.signal(sig, handler)
            saved.append(Saved(sig, previous, raw))
    except BaseException:
        restore(saved, handler)
        raise
    return saved


def restore(saved: list[Saved], ours: Callable[[int, Any], Any]) -> list[int]:
    """Put back each saved disposition where ``ours`` is still installed, newest first.

    Returns the signals left alone because someone replaced our handler. The first error is
    raised after every other signal has been put back.
    """
    kept: list[int] = []
    error: Optional[BaseException] = None
    for item in reversed(saved):
        try:
            if _signal.getsignal(item.sig) is ours:
                item.restore()
            else:
                kept.append(item.sig)
        except BaseException as exc:
            error = error or exc
    saved.clear()
    if error is not None:
        raise error
    return kept


def is_ignored(sig: int) -> bool:
    return bool(_signal.getsignal(sig) == _signal.SIG_IGN)


#: Where the C library has per-thread signal masks (POSIX); elsewhere nothing is blocked.
HAS_MASKS = hasattr(_signal, "pthread_sigmask")
#: What a thread can block: all but the uncatchable and those a fault raises in the thread.
ASYNC_SIGNALS = _signal.valid_signals() - {
    getattr(_signal, name)
    for name in ("SIGKILL", "SIGSTOP", "SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGTRAP", "SIGSYS")
    if hasattr(_signal, name)
}


def block(sigs: object) -> Optional[set[int]]:
    """Block ``sigs`` in this thread; return the mask to put back (None where there are none)."""
    if not HAS_MASKS:
        return None
    return set(_signal.pthread_sigmask(_signal.SIG_BLOCK, sigs))


def set_mask(mask: Optional[set[int]]) -> None:
    """Put back a mask that :func:`block` returned."""
    if mask is not None:
        _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)


def pending(sigs: tuple[int, ...]) -> bool:
    """One of ``sigs`` is waiting, blocked: unblocking it delivers it."""
    if not HAS_MASKS or not hasattr(_signal, "sigpending"):
        return False
    return bool(_signal.sigpending() & set(sigs))


def unblock(sigs: object) -> None:
    if HAS_MASKS:
        _signal.pthread_sigmask(_signal.SIG_UNBLOCK, sigs)


def raise_in_this_thread(sig: int) -> None:
    """Deliver ``sig`` to the calling thread (from any thread, where POSIX allows)."""
    if hasattr(_signal, "pthread_kill"):
        _signal.pthread_kill(_threads.get_ident(), sig)
    else:
        _signal.raise_signal(sig)
