"""Argument checks for the public API: fail at the call, with a message that says what to do."""

from __future__ import annotations

from . import signals as _signals
from . import threads as _threads

TYPE_CHECKING = False  # typing costs import time; annotations are strings here
if TYPE_CHECKING:
    from typing import Any, Optional


def check_callable(func: Any, what: str) -> None:
    """Raise TypeError now, at registration, rather than when the cleanup would run at exit."""
    if callable(func):
        return
    if hasattr(func, "__await__") and hasattr(func, "send"):
        name = getattr(func, "__qualname__", "the coroutine function")
        raise TypeError(
            f"{what} got a coroutine object ({name}(...) was called); pass the coroutine "
            f"function itself, {name} (with its arguments after it), so graceful awaits it once "
            "when the program ends"
        )
    raise TypeError(
        f"{what} expects a callable (such as conn.close), got {type(func).__name__} {func!r}; "
        "pass the function itself, not the result of calling it"
    )


def check_timeout(
    timeout: Optional[float], what: str, name: str = "timeout", *, none: str = "None"
) -> Optional[float]:
    """The one rule for a limit in seconds (``docs/signals.md``): a number >= 0 that a clock can
    wait, or None for no limit (``none`` names it on the command line). Infinity is refused, here
    and by ``graceful run -t``: no limit has one spelling."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(
            f"{what}: {name} must be a number of seconds or {none} for no deadline, got "
            f"{type(timeout).__name__} {timeout!r}"
        )
    if timeout != timeout or timeout < 0:  # noqa: PLR0124  (NaN is not equal to itself)
        raise ValueError(
            f"{what}: {name} must be >= 0 seconds, or {none} for no deadline, got {timeout!r}"
        )
    if timeout > _threads.TIMEOUT_MAX:  # infinity too
        raise ValueError(
            f"{what}: {name}={timeout!r} is longer than this platform's clocks can wait "
            f"({_threads.TIMEOUT_MAX:.0f} s); pass {none} for no deadline"
        )
    return float(timeout)


def check_drain(drain: object, what: str) -> float:
    """A drain is a finite number of seconds >= 0 (0: none); there is no "no limit" for it."""
    if isinstance(drain, bool) or not isinstance(drain, (int, float)):
        raise TypeError(
            f"{what}: drain must be a number of seconds (0 for none), got "
            f"{type(drain).__name__} {drain!r}"
        )
    if drain != drain or drain < 0:  # noqa: PLR0124  (NaN)
        raise ValueError(f"{what}: drain must be >= 0 seconds (0 for none), got {drain!r}")
    if drain > _threads.TIMEOUT_MAX:  # infinity too
        raise ValueError(
            f"{what}: drain must be finite (at most {_threads.TIMEOUT_MAX:.0f} s), got {drain!r}; "
            "to drain until the work in flight is done, pass the longest drain you accept and "
            "call graceful.end_drain() when it is done"
        )
    return float(drain)


def check_bool(value: object, what: str, name: str) -> bool:
    """Flags are True or False: ``"yes"`` or ``0`` would silently mean something else."""
    if not isinstance(value, bool):
        raise TypeError(
            f"{what}: {name} must be True or False, got {type(value).__name__} {value!r}"
        )
    return value


def check_main_thread(what: str) -> None:
    """Signal handlers can only be installed from the main thread of the main interpreter."""
    if not _threads.is_main_thread():
        raise RuntimeError(
            f"{what} must be entered in the main thread: Python runs signal handlers only there. "
            "Wrap your program's entry point (the main thread) in graceful.guard() or "
            "@graceful.main, and in worker threads watch graceful.shutdown_event instead"
        )


def check_posix(what: str) -> None:
    """Guards need POSIX signals (a wakeup pipe, per-thread delivery); say so on Windows."""
    import sys

    if sys.platform == "win32":
        raise NotImplementedError(
            f"{what} handles POSIX signals, which Windows does not have: it delivers Ctrl-C, "
            "Ctrl-Break and console close events instead (see `graceful docs portability` for the "
            "design); on Windows, catch KeyboardInterrupt and use graceful.register() for "
            "cleanups at exit"
        )


def check_signal(sig: object, what: str) -> int:
    """A signal to SEND to end a process, as its number: what ``guard()`` accepts (a
    ``signal.Signals``, an int, a name such as ``"TERM"`` or ``"KILL"``), SIGKILL included, but
    never one that does not end a process (SIGSTOP, SIGCONT, SIGCHLD...): raise otherwise."""
    signum = _signals.number(sig, what)
    action = _signals.default_action(signum)
    if action in ("ignore", "stop", "continue"):
        does = {
            "ignore": "the process ignores it",
            "stop": "it stops the process",
            "continue": "it resumes a stopped process",
        }[action]
        raise ValueError(
            f"{what}: {_signals.name(signum)} does not end a process (by default {does}), "
            "so the process would go on; send SIGTERM (the default), SIGKILL, or another signal "
            "that ends it, such as 'INT' or 'HUP'"
        )
    return signum
