"""The helper thread that hears guarded signals at once, through ``signal.set_wakeup_fd``.

Python runs signal handlers only in the main thread, and only between bytecodes: a main thread
blocked in C code that retries on EINTR (a libpq query, say) hears nothing. The C-level handler
writes each signal's number to the wakeup fd at once, so this thread can report it to the
machine, and then do what the machine says is due: begin the break callbacks, end the drain,
enforce the deadline, force the end on a second signal, deliver a deferred signal again. The
wakeup fd is one process-wide slot (asyncio uses it too): whatever was there gets every signal
byte forwarded, and is put back when the outermost guard ends.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]
import os
import time

from . import dispositions as _dispositions
from . import threads as _threads
from . import timeline as _timeline
from . import wakeup as _wakeup
from .machine import machine
from .protect import not_interruptible

TYPE_CHECKING = False  # typing costs import time; annotations are strings here
if TYPE_CHECKING:
    from typing import Optional

_POKE = 0  # not a signal number: "look at the machine again"
_STOP = 0xFF  # not a signal number either: "exit the thread" (before a fork)
#: The longest single wait: a deadline far away is looked at again from time to time.
_MAX_WAIT = 3600.0


class _Watcher:
    def __init__(self) -> None:
        self.wakeup = _wakeup.make()  # how a signal wakes this thread (wakeup.py)
        self.forward_to = -1
        self.pid = os.getpid()
        self.stopped = _threads.Event()
        self.stopped.set()
        # Whoever reads the pipe (this thread, or the main thread in drain()) holds this while
        # it reads and reports, so "drained" means "every byte written so far was reported".
        self.read_lock = _threads.Lock()
        self.reader: Optional[int] = None  # the thread in drain() right now
        self.ident: Optional[int] = None

    def start(self) -> None:
        self.stopped.clear()
        try:
            _threads.start(self._main, "graceful-watcher")
        except BaseException:
            self.stopped.set()
            raise

    def close(self) -> None:
        self.wakeup.close()

    @property
    def running(self) -> bool:
        return not self.stopped.is_set()

    def _main(self) -> None:
        self.ident = _threads.get_ident()
        _timeline.never_block_here()  # the deadline depends on this thread: it never logs itself
        # Asynchronous signals go to the main thread (or the program's threads), never here:
        # the C handler then interrupts the main thread's blocking call at once.
        _dispositions.block(_dispositions.ASYNC_SIGNALS)
        try:
            while self._step():
                pass
        finally:
            self.stopped.set()

    def _step(self) -> bool:
        """One turn of the loop; False when the thread should exit."""
        try:
            wait = machine.tick(time.monotonic())
            wait = _MAX_WAIT if wait is None else min(max(wait, 0.0), _MAX_WAIT)
            if not self.wakeup.wait(wait):
                return True
            return self.drain()
        except (OSError, ValueError):
            return False  # the pipe was closed (a fork, the interpreter's end)
        except Exception:
            # Never die: the deadline depends on this thread.
            _timeline.log_exception("graceful: the signal watcher hit an error and goes on")
            return True

    @not_interruptible  # Signalled raised in here (a nested handler) would leak read_lock
    def drain(self, *, timeout: float = -1) -> bool:
        """Read and report every byte in the pipe now; False if a stop byte was among them.

        If another thread is reading, wait until it has reported what it read (at most
        ``timeout`` seconds; -1: no limit); a handler run inside this thread's own drain()
        returns at once: the outer call reports the bytes, in order."""
        me = _threads.get_ident()
        if self.reader == me or not self.read_lock.acquire(True, timeout):
            return True
        self.reader = me
        try:
            read = machine.read_begins()
            try:
                data = self.wakeup.read()
            except BlockingIOError:
                machine.heard_read(b"", read)  # nothing new: what waited for a read is judged
                return True
            if not data:
                return False
            stop = _STOP in data
            signals = bytes(b for b in data if b not in (_POKE, _STOP))
            if signals and self.forward_to >= 0:
                # A full or closed buffer: the previous owner would have lost the byte too.
                try:
                    os.write(self.forward_to, signals)
                except OSError:
                    pass
            machine.heard_read(signals, read)
            if (signals or _POKE in data) and _threads.get_ident() != self.ident:
                # The thread acts on what was heard (breaks, deadline, force), and on a poke
                # that was meant for it (graceful.end_drain() from another thread, say).
                self.poke()
            if stop and _threads.get_ident() != self.ident:
                # Not ours to act on: the thread must see its stop byte (a fork is waiting).
                try:
                    self.wakeup.write(bytes([_STOP]))
                except OSError:
                    pass
                return True
            return not stop
        finally:
            self.reader = None
            self.read_lock.release()

    def poke(self) -> None:
        """Wake the thread so it asks the machine again."""
        if self.pid == os.getpid():
            try:
                self.wakeup.write(bytes([_POKE]))
            except OSError:
                pass

    def pause(self) -> bool:
        """Stop the thread (its pipe stays: bytes wait in it); True if it was running."""
        if not self.running:
            return False
        try:
            self.wakeup.write(bytes([_STOP]))
        except OSError:
            pass
        return self.stopped.wait(1.0)


_watcher: Optional[_Watcher] = None
_lock = _threads.Lock()


def start_thread() -> _Watcher:
    """Make sure this process's watcher thread runs (it is not the wakeup fd until installed).
    All or nothing: RuntimeError or OSError if it cannot start, and nothing changed."""
    global _watcher
    with _lock:
        watcher = _watcher
        if watcher is None or watcher.pid != os.getpid():
            watcher = _Watcher()
        try:
            if not watcher.running:
                watcher.start()  # RuntimeError if no thread can start
        except BaseException:
            if watcher is not _watcher:
                watcher.close()
            raise
        _watcher = watcher
        machine.attach_waker(watcher.poke)
        return watcher


def install() -> int:
    """Make the watcher the wakeup fd and make sure its thread runs (main thread only); return
    the wakeup fd that was there before. All or nothing: on failure nothing was changed."""
    watcher = start_thread()
    previous: int = _signal.set_wakeup_fd(watcher.wakeup.fd)
    watcher.forward_to = previous if previous != watcher.wakeup.fd else -1
    return previous


def uninstall(previous: int) -> None:
    """Put back the wakeup fd that :func:`install` replaced, where the watcher's is still the
    one installed; the thread stays for the next guard (and for a shutdown still in progress:
    the deadline).

    Restore policy, as for the dispositions: a wakeup fd someone set inside the block is theirs
    and stays. asyncio sets -1 when its loop's last signal handler is removed (an ``async with``
    guard's exit removes its own): putting back the loop's fd then would leave it installed
    once the loop has closed it, and the next ``set_wakeup_fd`` fails (EBADF)."""
    watcher = _watcher
    ours = watcher.wakeup.fd if watcher is not None and watcher.pid == os.getpid() else None
    try:
        current: int = _signal.set_wakeup_fd(previous)
    except (OSError, ValueError):  # the fd that was there is closed by now: nothing goes back
        current = _signal.set_wakeup_fd(-1)
    if current not in (ours, previous):
        _signal.set_wakeup_fd(current)  # theirs, set inside the block: it stays
    if watcher is not None:
        watcher.forward_to = -1


def drain() -> None:
    """In the main thread: report every signal byte written so far, before deciding anything
    on it (a signal the C handler saw just before a handler was restored reaches Python no
    more, but its byte is here)."""
    watcher = _watcher
    if watcher is not None and watcher.pid == os.getpid():
        watcher.drain()
        machine.tick(time.monotonic())


#: How long the handler waits for the watcher to report the bytes it has just read. Short: the
#: main thread may hold the machine's lock the watcher needs (a handler run inside a transition).
HEAR_WAIT = 0.05


def hear_pending() -> None:
    """From the handler (main thread): report the signal bytes written so far, first.

    Python runs pending handlers by signal number, not by arrival: SIGTERM then SIGHUP, sent
    together (systemd's SendSIGHUP), reach the handler as HUP first. The bytes are in the
    order the signals came (as the kernel delivered them: when both are pending at once, the
    lower number first). If the watcher has just read them, wait a moment until it has
    reported them, so the signal sent first is usually the first one. No verdict depends on
    this wait: a SIGINT/SIGQUIT the handler hears first is judged once its byte is read
    (``machine.heard_read``).
    """
    watcher = _watcher
    if watcher is not None and watcher.pid == os.getpid():
        watcher.drain(timeout=HEAR_WAIT)


_paused = False


def before_fork() -> None:
    """A thread that holds a lock when the process forks leaves that lock held forever in the
    child: the watcher steps aside for the fork (its pipe keeps any signal bytes meanwhile)."""
    global _paused
    watcher = _watcher
    _paused = watcher is not None and watcher.pid == os.getpid() and watcher.pause()


def after_fork_in_parent() -> None:
    global _paused
    watcher = _watcher
    if _paused and watcher is not None:
        try:
            watcher.start()
        except RuntimeError:
            _timeline.log_error(
                "graceful: could not restart the signal watcher after a fork; "
                "signals are still handled, but without a deadline"
            )
    _paused = False


def after_fork_in_child() -> None:
    """The thread did not survive the fork; close its inherited pipe and start afresh later."""
    global _watcher, _paused, _lock
    watcher, _watcher, _paused = _watcher, None, False
    _lock = _threads.Lock()
    if watcher is not None:
        watcher.close()
