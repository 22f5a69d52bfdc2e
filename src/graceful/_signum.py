"""Check a signal argument at the call, so a typo fails there and not at shutdown."""

from __future__ import annotations

import signal as _signal


def check_signal(sig: object, what: str) -> int:
    """Return ``sig`` as an int if it is a real signal of this platform; raise otherwise.

    SIGKILL and SIGSTOP are accepted: they cannot be caught, but they can be sent.
    """
    if isinstance(sig, bool) or not isinstance(sig, int):
        raise TypeError(
            f"{what}: signal must be a signal number such as signal.SIGTERM, "
            f"got {type(sig).__name__} {sig!r}"
        )
    if sig == 0:
        raise ValueError(
            f"{what}: signal 0 only probes whether a process exists and stops nothing; "
            "pass a real signal such as signal.SIGTERM"
        )
    if sig not in _signal.valid_signals():
        raise ValueError(
            f"{what}: {sig!r} is not a signal on this platform; pass one of the signal.SIG* "
            "constants, such as signal.SIGTERM"
        )
    return int(sig)
