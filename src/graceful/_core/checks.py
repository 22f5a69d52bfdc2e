"""Argument checks for the public API: fail at the call, with a message that says what to do."""

from __future__ import annotations

import math
import signal as _signal
import threading
from typing import Any, Optional


def check_callable(func: Any, what: str) -> None:
    """Raise TypeError now, at registration, rather than when the cleanup would run at exit."""
    if not callable(func):
        raise TypeError(
            f"{what} expects a callable (such as conn.close), got {type(func).__name__} {func!r}; "
            "pass the function itself, not the result of calling it"
        )


def check_timeout(timeout: Optional[float], what: str) -> Optional[float]:
    """Accept None (no deadline) or a finite number of seconds >= 0."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(
            f"{what}: timeout must be a number of seconds or None, got {type(timeout).__name__}"
        )
    if math.isnan(timeout) or timeout < 0:
        raise ValueError(
            f"{what}: timeout must be >= 0 seconds (or None for no deadline), got {timeout!r}"
        )
    return float(timeout)


def check_main_thread(what: str) -> None:
    """Signal handlers can only be installed from the main thread of the main interpreter."""
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(
            f"{what} must be entered in the main thread: Python runs signal handlers only there. "
            "Wrap your program's entry point (the main thread) in graceful.guard() or "
            "@graceful.main, and in worker threads watch graceful.shutdown_event instead"
        )


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
