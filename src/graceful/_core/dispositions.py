"""Installing handlers so that exactly the previous disposition comes back."""

from __future__ import annotations

import signal
from typing import Any, Callable, Optional, Union

Handler = Union[Callable[[int, Any], Any], int, signal.Handlers, None]


class Saved:
    """One signal's disposition as it was before we replaced it, and how to put it back.

    ``signal.signal`` returns None when the handler was installed from C; Python cannot put
    ``None`` back, so for that case the raw ``sigaction`` is saved and restored through libc
    (ctypes is imported only then, never on the common path).
    """

    __slots__ = ("handler", "raw", "sig")

    def __init__(self, sig: int, handler: Handler, raw: Optional[object]) -> None:
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


def install(sigs: tuple[int, ...], handler: Callable[[int, Any], Any]) -> list[Saved]:
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


def is_ignored(sig: int) -> bool:
    return signal.getsignal(sig) == signal.SIG_IGN
