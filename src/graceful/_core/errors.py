"""The exceptions graceful raises: each subclasses the builtin it refines."""

from __future__ import annotations

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
        self.signal: int = _signals.as_signal(sig)

    def __str__(self) -> str:
        return f"received {_signals.name(self.signal)}"

    def __reduce__(self) -> tuple[type[Signalled], tuple[int]]:
        return (type(self), (int(self.signal),))


class SignalledInterrupt(Signalled, KeyboardInterrupt):
    """``Signalled`` for SIGINT: also a ``KeyboardInterrupt``."""


def signalled(sig: int) -> Signalled:
    """The exception to raise for ``sig``."""
    import signal

    if sig == signal.SIGINT:
        return SignalledInterrupt(sig)
    return Signalled(sig)


class RegistrationClosed(RuntimeError):
    """``graceful.register()`` was called after this process ran its final cleanups.

    The process is ending (by a signal, or at exit) and will not look at the list again, so the
    cleanup would silently never run; raising says so at the call instead.
    """
