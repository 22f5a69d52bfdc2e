"""The exceptions graceful raises: each subclasses the builtin it refines."""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]

from . import signals as _signals


class Signalled(BaseException):
    """Raised in the main thread when a guarded signal arrives, so ``finally`` and ``with`` unwind.

    A ``BaseException`` (like ``KeyboardInterrupt``) so that ``except Exception`` does not swallow
    it. ``.signal`` is the signal that arrived (a :class:`signal.Signals`, or an int for a
    realtime signal). For SIGINT the instance is also a ``KeyboardInterrupt``, so existing
    ``except KeyboardInterrupt`` code keeps working.
    """

    def __init__(self, sig: int) -> None:
        super().__init__(sig)
        self._signum = int(sig)
        self._signal: object = None  # the signal.Signals, made when first read

    @property
    def signal(self) -> int:
        # Made when read: ``import signal`` (its enums) is not for graceful's own path.
        if self._signal is None:
            self._signal = _signals.as_signal(self._signum)
        return self._signal  # type: ignore[return-value]

    @signal.setter
    def signal(self, value: int) -> None:
        self._signal = value
        self._signum = int(value)

    def __str__(self) -> str:
        return f"received {_signals.name(self._signum)}"

    def __reduce__(self) -> tuple[type[Signalled], tuple[int]]:
        return (type(self), (self._signum,))


class SignalledInterrupt(Signalled, KeyboardInterrupt):
    """``Signalled`` for SIGINT: also a ``KeyboardInterrupt``."""


def signalled(sig: int) -> Signalled:
    """The exception to raise for ``sig``."""
    if sig == _signal.SIGINT:
        return SignalledInterrupt(sig)
    return Signalled(sig)


class RegistrationClosed(RuntimeError):
    """``graceful.register()`` was called after this process ran its final cleanups.

    The process is ending (by a signal, or at exit) and will not look at the list again, so the
    cleanup would silently never run; raising says so at the call instead.
    """
