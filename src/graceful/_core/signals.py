"""Naming signals, and installing handlers so that exactly the previous disposition comes back."""

from __future__ import annotations

import signal
from typing import Any, Callable, Optional, Union

SignalLike = Union[signal.Signals, int, str]
Handler = Union[Callable[[int, Any], Any], int, signal.Handlers, None]

DOCS = "docs/signals.md"

#: Handled when a guard names no signals: those of HUP, INT, QUIT, TERM the platform has.
DEFAULT_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name)
    for name in ("SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM")
    if hasattr(signal, name)
)

_UNCATCHABLE = {getattr(signal, n) for n in ("SIGKILL", "SIGSTOP") if hasattr(signal, n)}
_SYNCHRONOUS = {
    getattr(signal, n) for n in ("SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL") if hasattr(signal, n)
}


_NAMES = frozenset(n for n in signal.Signals.__members__ if not n.startswith("SIG_"))


def resolve(sig: SignalLike) -> signal.Signals:
    """Turn a ``signal.Signals``, an int or a name (``"TERM"``, ``"sigterm"``) into a signal
    that can be handled, or raise a precise error."""
    if isinstance(sig, bool) or not isinstance(sig, (int, str)):
        raise TypeError(
            "a signal is a signal.Signals, an int or a name such as 'TERM', "
            f"got {type(sig).__name__} {sig!r}"
        )
    if isinstance(sig, str):
        name = sig.strip().upper()
        if not name.startswith("SIG"):
            name = "SIG" + name
        if name.startswith("SIG_") or name not in signal.Signals.__members__:
            raise ValueError(
                f"unknown signal name {sig!r}; use a name such as 'TERM', 'SIGTERM' or 'USR1' "
                f"(this platform has: {', '.join(sorted(n[3:] for n in _NAMES))})"
            )
        result = signal.Signals[name]
    else:
        try:
            result = signal.Signals(sig)
        except ValueError:
            raise ValueError(
                f"unknown signal number {sig!r}; use signal.SIGTERM or a name such as 'TERM'"
            ) from None
    if result in _UNCATCHABLE:
        raise ValueError(
            f"{result.name} cannot be caught, blocked or ignored, so no cleanup can run on it; "
            f"see {DOCS} ('SIGKILL and SIGSTOP') for what survives it: transactions, idempotent "
            "start-up recovery, and children that watch for their parent's death"
        )
    if result in _SYNCHRONOUS:
        raise ValueError(
            f"{result.name} reports a fault in the running code and is not safe to handle in "
            "Python (the faulting instruction runs again when a handler returns); call "
            "faulthandler.enable() to get a traceback, and let a parent or supervisor clean up "
            f"(see {DOCS})"
        )
    return result


def resolve_all(signals: tuple[SignalLike, ...]) -> tuple[signal.Signals, ...]:
    """Resolve and de-duplicate, keeping order; no signals means the defaults."""
    if not signals:
        return DEFAULT_SIGNALS
    seen: dict[signal.Signals, None] = {}
    for sig in signals:
        seen[resolve(sig)] = None
    return tuple(seen)


class Saved:
    """One signal's disposition as it was before we replaced it, and how to put it back.

    ``signal.signal`` returns None when the handler was installed from C; Python cannot put
    ``None`` back, so for that case the raw ``sigaction`` is saved and restored through libc
    (ctypes is imported only then, never on the common path).
    """

    __slots__ = ("handler", "raw", "sig")

    def __init__(self, sig: signal.Signals, handler: Handler, raw: Optional[object]) -> None:
        self.sig = sig
        self.handler = handler
        self.raw = raw

    @property
    def ignored(self) -> bool:
        return self.handler == signal.SIG_IGN

    def restore(self) -> None:
        if self.raw is not None:
            from . import libc as _csignal

            # Python's own table must stop pointing at our handler; then put the C one back.
            signal.signal(self.sig, signal.SIG_DFL)
            _csignal.restore(self.sig, self.raw)
        else:
            signal.signal(self.sig, self.handler)


def install(sigs: tuple[signal.Signals, ...], handler: Callable[[int, Any], Any]) -> list[Saved]:
    """Install ``handler`` for each signal; if one fails, put back those already replaced."""
    saved: list[Saved] = []
    try:
        for sig in sigs:
            raw = None
            if signal.getsignal(sig) is None:
                from . import libc as _csignal

                raw = _csignal.save(sig)
            previous = signal.signal(sig, handler)
            saved.append(Saved(sig, previous, raw))
    except BaseException:
        restore(saved)
        raise
    return saved


def restore(saved: list[Saved]) -> None:
    """Put back every saved disposition, newest first; the first error is raised after all."""
    error: Optional[BaseException] = None
    for item in reversed(saved):
        try:
            item.restore()
        except BaseException as exc:
            error = error or exc
    saved.clear()
    if error is not None:
        raise error


def is_ignored(sig: signal.Signals) -> bool:
    return signal.getsignal(sig) == signal.SIG_IGN
