"""The exception a handled signal raises in the main thread."""

from __future__ import annotations

import signal


class Signalled(BaseException):
    """Raised in the main thread when a guarded signal arrives, so ``finally`` and ``with`` unwind.

    A ``BaseException`` (like ``KeyboardInterrupt``) so that ``except Exception`` does not swallow
    it. ``.signal`` is the :class:`signal.Signals` that arrived. For SIGINT the instance is also a
    ``KeyboardInterrupt`` (see :func:`signalled`), so existing ``except KeyboardInterrupt`` works.
    """

    def __init__(self, sig: signal.Signals) -> None:
        super().__init__(sig)
        self.signal = signal.Signals(sig)

    def __str__(self) -> str:
        return f"received {self.signal.name}"


class SignalledInterrupt(Signalled, KeyboardInterrupt):
    """``Signalled`` for SIGINT: also a ``KeyboardInterrupt``."""


def signalled(sig: signal.Signals) -> Signalled:
    """The exception to raise for ``sig``."""
    if sig == signal.SIGINT:
        return SignalledInterrupt(sig)
    return Signalled(sig)
