"""The shutdown timeline: one record per step, with its time since the signal.

Each record is logged on the ``graceful`` logger at INFO, its facts in ``record.graceful`` (a
dict: :data:`EXTRA_KEY`) for JSON log handlers, ``record.created`` the time of the event; when
the environment variable ``GRACEFUL_TIMELINE`` names a file, the same facts are appended to it
as one JSON line (one ``write`` with ``O_APPEND``: lines of several processes never interleave),
which is how ``graceful.testing`` reads a program's shutdown.

No I/O of the timeline's may block a shutdown (``docs/internals.md``, "The timeline's I/O"):
the file is opened once per process with ``O_NONBLOCK`` (a FIFO with no reader, or one whose
reader never reads, loses the line instead of hanging the process) and kept open. A record is
logged by the thread that makes it, unless it is ``defer``red (the signal handler, the watcher:
neither may wait for a logging lock or a full stderr); deferred records are logged as soon as
possible by a short-lived ``graceful-log`` thread, which only a thread other than the main one
starts (:func:`hand_off`), never a signal handler.

``logging`` is never imported here: if the program has not imported it, nobody configured it, so
INFO records would go nowhere (they are not even kept), and warnings and errors are written to
stderr as logging's last resort would write them. (Importing a module while the interpreter
exits even changes the exit status: CPython forgets that an uncaught KeyboardInterrupt should
end it by SIGINT.)
"""

from __future__ import annotations

import _thread
import os
import sys
import time

from . import threads as _threads

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
#: Records waiting to be logged, oldest first: (message, facts, wall-clock time of the event).
#: A list, not a deque: ``collections`` costs an idle guard its RSS (append and pop(0) are
#: atomic all the same, and the queue stays short).
_queue: list[tuple[str, dict[str, Any], float]] = []
#: Held by the thread logging the queue; others leave their records to it (never wait for it).
_flushing = _thread.allocate_lock()
#: Guards starting the ``graceful-log`` thread (never taken in the main thread: see hand_off).
_starting = _thread.allocate_lock()
_logger_running = False
_logger: Optional[logging.Logger] = None
#: The timeline file, open: (pid, path, fd), or None.
_file: Optional[tuple[int, str, int]] = None
_encode: Optional[Callable[[object], str]] = None
_quote: Optional[Callable[[str], str]] = None  # a str as a JSON string (json's C function)
#: ``$GRACEFUL_TIMELINE`` as last read (at a guard's entry, a shutdown's start, each record but
#: the cleanups': reading the environment is most of a cleanup record's cost), and our PID.
_path: Optional[str] = None
_pid = os.getpid()
#: Called with each record's facts (the receipt's collector, ``_core.receipt``); must not block.
_observers: list[Callable[[dict[str, Any]], object]] = []


def on_record(observer: Callable[[dict[str, Any]], object]) -> None:
    """Have ``observer(facts)`` called with every record from now on (once per observer)."""
    if observer not in _observers:
        _observers.append(observer)


def logger() -> Optional[logging.Logger]:
    """The ``graceful`` logger, if the program uses logging at all."""
    global _logger
    log = _logger
    if log is None:
        module = sys.modules.get("logging")
        if module is None:
            return None
        log = _logger = module.getLogger("graceful")
    return log


def prepare() -> None:
    """At a guard's entry (main thread): import what writing records needs, not in a handler."""
    global _encode, _quote
    if _refresh() and _encode is None:
        import json

        _quote = json.encoder.encode_basestring_ascii
        _encode = json.JSONEncoder(default=str).encode


def _refresh() -> Optional[str]:
    global _path
    _path = os.environ.get(ENV) or None
    return _path


prepare()


def start(t0: float) -> None:
    """The shutdown's time zero: its first signal, or the start of a normal end's cleanups."""
    global _t0
    _t0 = t0
    _refresh()


def elapsed() -> float:
    return 0.0 if _t0 is None else time.monotonic() - _t0


def wanted() -> bool:
    """Whether a record would be kept: a timeline file, an observer (the receipt), or a logger
    that logs INFO."""
    if _path or _observers:
        return True
    log = logger()
    return log is not None and log.isEnabledFor(20)  # logging.INFO


def record(
    event: str, message: str, *, defer: bool = False, at: Optional[float] = None, **facts: Any
) -> None:
    """One step of the shutdown: written to the timeline file now (never blocking), logged now
    or (``defer``: a signal handler, the watcher) as soon as a thread may. ``at``: its time in
    the shutdown, if not now."""
    t = round(elapsed() if at is None else at, 6)
    _record({"event": event, "t": t, "pid": _pid, **facts}, message, defer)


def _record(facts: dict[str, Any], message: str, defer: bool, wait: float = 0.0) -> None:
    _write_line(facts)
    for observer in _observers:
        observer(facts)
    if "logging" not in sys.modules:
        return  # nobody configured logging: nobody would read the line
    _queue.append((message, facts, time.time()))
    if not defer:
        flush(wait)
    # else: the watcher's next turn hands it off (never here: the watcher may be reading signals)


#: How long the last record of a process waits for a thread that is logging the queue.
LAST_WAIT = 0.5


def flush(wait: float = 0.0) -> None:
    """Log the queued records, oldest first, in this thread; if another thread is logging
    them right now, leave them to it (it looks at the queue again before it stops), or wait
    for it at most ``wait`` seconds (the process is about to end)."""
    while _queue:
        if not _flushing.acquire(wait > 0, wait if wait > 0 else -1):
            return
        try:
            while True:
                try:
                    message, facts, created = _queue.pop(0)
                except IndexError:  # another thread took the last one
                    break
                _log(message, facts, created)
        finally:
            _flushing.release()


def _log(message: str, facts: dict[str, Any], created: float) -> None:
    log = logger()
    if log is None or not log.isEnabledFor(20):  # logging.INFO
        return
    rec = log.makeRecord(
        log.name,
        20,
        "(graceful)",
        0,
        "graceful: +%.3fs %s",
        (facts["t"], message),
        None,
        extra={EXTRA_KEY: facts},
    )
    # The event's time, not the time it was logged (a deferred record is logged a bit later).
    rec.relativeCreated -= (rec.created - created) * 1000
    rec.created = created
    rec.msecs = (created - int(created)) * 1000
    log.handle(rec)


def hand_off() -> None:
    """Have the deferred records logged now, by a short-lived ``graceful-log`` thread (from a
    thread other than the main one: starting a thread takes locks a signal handler must not
    take). It logs what is queued and ends, so no extra thread lives on between shutdown steps
    (nor across a fork)."""
    global _logger_running
    if not _queue or _thread.get_ident() == _threads.main_ident():
        return
    with _starting:
        if _logger_running:
            return
        _logger_running = True
    try:
        _threads.start(_log_queued, "graceful-log")
    except RuntimeError:  # no thread now (limits, interpreter exit): the next flush() logs them
        with _starting:
            _logger_running = False


def _log_queued() -> None:
    global _logger_running
    try:
        while True:
            flush()
            with _starting:
                if not _queue or _flushing.locked():  # done, or another thread logs them
                    _logger_running = False
                    return
    except BaseException:
        with _starting:
            _logger_running = False
        raise


def _write_line(facts: dict[str, Any]) -> None:
    path = _refresh()
    if not path:
        return
    try:
        encode = _encode
        if encode is None:
            prepare()
            encode = _encode
            assert encode is not None
        _write(path, encode(facts) + "\n")
    except (ValueError, TypeError):
        pass  # a timeline must never break a shutdown


def _write(path: str, line: str) -> None:
    try:
        fd = _open(path)
        if fd is not None:
            os.write(fd, line.encode())
    except OSError:
        pass  # a full FIFO, a full disk: the line is lost, the shutdown goes on


def _open(path: str) -> Optional[int]:
    """The timeline file's fd, opened once per process and path; never blocks: a FIFO with no
    reader is not opened (ENXIO), it is tried again at the next record."""
    global _file
    opened = _file
    pid = _pid
    if opened is not None and opened[0] == pid and opened[1] == path:
        return opened[2]
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(path, flags, 0o644)
    except OSError:
        return None
    _file = (pid, path, fd)
    if opened is not None and opened[0] == pid:
        _close(opened[2])  # the variable names another file now
    return fd


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def cleanup(name: str, duration: float, error: Optional[BaseException], kind: str) -> None:
    """One cleanup ran: the hot path of a shutdown with many cleanups (issue 28, item 10: its
    cost stays within 2x that of running an empty cleanup), so the file line is formatted by
    hand and the log message only built for a logger that logs INFO."""
    ok = error is None
    failure = None if ok else f"{type(error).__name__}: {error}"
    t = 0.0 if _t0 is None else time.monotonic() - _t0
    path = _path
    opened = _file
    if path:
        quote = _quote
        if quote is None:
            prepare()
            quote = _quote
            assert quote is not None
        error_json = "null" if failure is None else quote(failure)
        line = (
            # ".6f": the value round(x, 6) reads back as, at a third of repr(round(x, 6))'s cost
            f'{{"event": "cleanup", "t": {t:.6f}, "pid": {_pid}, "name": {quote(name)}, '
            f'"kind": {quote(kind)}, "duration": {duration:.6f}, '
            f'"ok": {"true" if ok else "false"}, '
            f'"error": {error_json}}}\n'
        )
        if opened is not None and opened[1] == path and opened[0] == _pid:
            try:
                os.write(opened[2], line.encode())  # the usual case, without a call
            except OSError:
                pass
        else:
            _write(path, line)
    log = logger() if "logging" in sys.modules else None
    if log is not None and not log.isEnabledFor(20):  # logging.INFO
        log = None
    if log is None and not _observers:
        return
    facts = {
        "event": "cleanup",
        "t": round(t, 6),
        "pid": _pid,
        "name": name,
        "kind": kind,
        "duration": round(duration, 6),
        "ok": ok,
        "error": failure,
    }
    for observer in _observers:
        observer(facts)
    if log is None:
        return
    text = "ok" if ok else f"raised {failure}"
    _queue.append((f"{kind} {name}: {text} ({duration:.3f} s)", facts, time.time()))
    flush()


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
    facts = {"event": "end", "t": total, "pid": _pid}
    facts.update(how=how, signal=signame, exit_code=exit_code, total=total)
    message = what.format(sig=signame, code=exit_code) + f" (total {total:.3f} s)"
    # The process ends next: what is queued is logged first (a logging thread is waited for).
    _record(facts, message, defer, LAST_WAIT)


#: Threads that must never wait for a log line (the watcher: the deadline depends on it).
_never_block: set[int] = set()


def never_block_here() -> None:
    """The calling thread never waits for a log line from now on (a full stderr pipe, a logging
    lock held by a stuck thread): its warnings and errors are written by a helper thread."""
    _never_block.add(_thread.get_ident())


def _elsewhere(func: Callable[..., None], *args: Any, **kwargs: Any) -> bool:
    """In a thread that must never block: run the log call in a helper thread (dropped if none
    can start: the line is not worth the deadline). False in any other thread."""
    if _thread.get_ident() not in _never_block:
        return False
    try:
        _threads.start(lambda: func(*args, **kwargs), "graceful-log")
    except RuntimeError:
        pass
    return True


def log_exception(message: str, *args: object, exc_info: Optional[tuple[Any, ...]] = None) -> None:
    """ERROR with a traceback: ``exc_info``'s, or the exception being handled."""
    exc = exc_info if exc_info is not None else sys.exc_info()
    if _elsewhere(log_exception, message, *args, exc_info=exc):
        return
    flush()
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
    if _elsewhere(log_error, message, *args):
        return
    flush()
    log = logger()
    if log is not None:
        log.error(message, *args)
    else:
        _stderr(message % args)


def log_info(message: str, *args: object) -> None:
    """INFO: only where the program configured logging (nobody else would see it)."""
    if _elsewhere(log_info, message, *args):
        return
    flush()
    log = logger()
    if log is not None:
        log.info(message, *args)


def log_warning(message: str, *args: object) -> None:
    if _elsewhere(log_warning, message, *args):
        return
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
    global _t0, _flushing, _starting, _logger_running, _file, _pid
    _t0 = None
    _pid = os.getpid()
    _never_block.clear()  # the watcher did not survive the fork
    _queue.clear()
    _flushing = _thread.allocate_lock()
    _starting = _thread.allocate_lock()
    _logger_running = False
    opened, _file = _file, None
    if opened is not None:
        _close(opened[2])  # the parent's: this process opens its own
