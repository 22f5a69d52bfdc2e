"""The shutdown timeline: one record per step, with its time since the signal.

Each record is logged on the ``graceful`` logger at INFO, its facts in ``record.graceful`` (a
dict: :data:`EXTRA_KEY`) for JSON log handlers; when the environment variable
``GRACEFUL_TIMELINE`` names a file, the same facts are appended to it as one JSON line (one
``write`` with ``O_APPEND``: lines of several processes never interleave), which is how
``graceful.testing`` reads a program's shutdown. Records made by the watcher thread are queued
and logged by the next thread that logs: the watcher must never wait for a logging lock that an
interrupted main thread may hold.

``logging`` is never imported here: if the program has not imported it, nobody configured it, so
INFO records would go nowhere, and warnings and errors are written to stderr as logging's last
resort would write them. (Importing a module while the interpreter exits even changes the exit
status: CPython forgets that an uncaught KeyboardInterrupt should end it by SIGINT.)
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False  # typing costs import time; annotations are strings here
if TYPE_CHECKING:
    from typing import Any, Callable, Optional


if TYPE_CHECKING:
    import logging

#: The attribute of each log record that carries the facts (``record.graceful``).
EXTRA_KEY = "graceful"
#: The environment variable naming the file that receives the records as JSON lines.
ENV = "GRACEFUL_TIMELINE"

_t0: Optional[float] = None
_queue: list[tuple[str, dict[str, Any]]] = []
#: Called with each record's facts (the receipt's collector, ``_core.receipt``); must not block.
_observers: list[Callable[[dict[str, Any]], object]] = []


def on_record(observer: Callable[[dict[str, Any]], object]) -> None:
    """Have ``observer(facts)`` called with every record from now on (once per observer)."""
    if observer not in _observers:
        _observers.append(observer)


def logger() -> Optional[logging.Logger]:
    """The ``graceful`` logger, if the program uses logging at all."""
    module = sys.modules.get("logging")
    return None if module is None else module.getLogger("graceful")


def prepare() -> None:
    """At a guard's entry (main thread): import what writing records needs, not in a handler."""
    if os.environ.get(ENV):
        import json  # noqa: F401


prepare()


def start(t0: float) -> None:
    """The shutdown's time zero: its first signal, or the start of a normal end's cleanups."""
    global _t0
    _t0 = t0


def elapsed() -> float:
    return 0.0 if _t0 is None else time.monotonic() - _t0


def record(
    event: str, message: str, *, defer: bool = False, at: Optional[float] = None, **facts: Any
) -> None:
    """One step of the shutdown: written to the timeline file now, logged now or (``defer``,
    from the watcher) by the next thread that logs. ``at``: its time, if not now."""
    t = round(elapsed() if at is None else at, 6)
    facts = {"event": event, "t": t, "pid": os.getpid(), **facts}
    _write_line(facts)
    for observer in _observers:
        observer(facts)
    _queue.append((message, facts))
    if not defer:
        flush()


def flush() -> None:
    """Log the queued records, oldest first."""
    while _queue:
        try:
            message, facts = _queue.pop(0)
        except IndexError:  # another thread took the last one
            return
        log = logger()
        if log is not None:
            log.info("graceful: +%.3fs %s", facts["t"], message, extra={EXTRA_KEY: facts})


def _write_line(facts: dict[str, Any]) -> None:
    path = os.environ.get(ENV)
    if not path:
        return
    try:
        import json

        line = (json.dumps(facts, default=str) + "\n").encode()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    except (OSError, ValueError, TypeError):
        pass  # a timeline must never break a shutdown


def cleanup(name: str, duration: float, error: Optional[BaseException], kind: str) -> None:
    ok = error is None
    text = "ok" if ok else f"raised {type(error).__name__}: {error}"
    record(
        "cleanup",
        f"{kind} {name}: {text} ({duration:.3f} s)",
        name=name,
        kind=kind,
        duration=round(duration, 6),
        ok=ok,
        error=None if ok else f"{type(error).__name__}: {error}",
    )


def backend(pid: int, how: str, duration: float) -> None:
    record(
        "backend",
        f"backend PID {pid} {how} ({duration:.3f} s)",
        backend_pid=pid,
        how=how,
        duration=round(duration, 6),
    )


def end(how: str, sig: Optional[int], exit_code: Optional[int], *, defer: bool = False) -> None:
    """How the process ends: reraise, exit, raise, forced, deadline or normal."""
    from .signals import name

    total = round(elapsed(), 6)
    what = {
        "reraise": "dying by {sig}",
        "exit": "exiting with status {code}",
        "raise": "raising Signalled({sig}); the program goes on",
        "forced": "forced: dying by {sig} now",
        "deadline": "deadline passed: ending now",
        "normal": "normal end, exit status {code}",
    }.get(how, how)
    signame = None if sig is None else name(sig)
    record(
        "end",
        what.format(sig=signame, code=exit_code) + f" (total {total:.3f} s)",
        defer=defer,
        at=total,
        how=how,
        signal=signame,
        exit_code=exit_code,
        total=total,
    )


def log_exception(message: str, *args: object, exc_info: Optional[tuple[Any, ...]] = None) -> None:
    """ERROR with a traceback: ``exc_info``'s, or the exception being handled."""
    flush()
    exc = exc_info if exc_info is not None else sys.exc_info()
    log = logger()
    if log is not None:
        log.error(message, *args, exc_info=exc)
        return
    _stderr(message % args)
    if exc[0] is not None:
        try:
            sys.__excepthook__(*exc)
        except Exception:
            pass


def log_error(message: str, *args: object) -> None:
    flush()
    log = logger()
    if log is not None:
        log.error(message, *args)
    else:
        _stderr(message % args)


def log_info(message: str, *args: object) -> None:
    """INFO: only where the program configured logging (nobody else would see it)."""
    flush()
    log = logger()
    if log is not None:
        log.info(message, *args)


def log_warning(message: str, *args: object) -> None:
    flush()
    log = logger()
    if log is not None:
        log.warning(message, *args)
    else:
        _stderr(message % args)


def _stderr(text: str) -> None:
    stream = sys.stderr
    try:
        if stream is not None:
            stream.write(text + "\n")
            stream.flush()
    except Exception:
        pass


def after_fork_in_child() -> None:
    global _t0
    _t0 = None
    _queue.clear()
