"""The helper thread that hears guarded signals at once, through ``signal.set_wakeup_fd``.

Python runs signal handlers only in the main thread, and only between bytecodes: a main thread
blocked in C code that retries on EINTR (a libpq query, say) hears nothing. The C-level handler
writes each signal's number to the wakeup fd at once, so this thread can set
``shutdown_event``, run break callbacks, notice a second signal and enforce the deadline. The
wakeup fd is one process-wide slot (asyncio uses it too): whatever was there gets every byte
forwarded, and is put back when the outermost guard ends.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
import time
from typing import Optional

from . import shutdown as _shutdown

_POKE = b"\0"  # not a signal number: "look at the deadline again"
_STOP = b"\xff"  # not a signal number either: "exit the thread" (before a fork)
_SYNC = 0xFE  # "tell me when you have read everything before this byte"


class _Watcher:
    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()  # both close-on-exec: nothing leaks into children
        os.set_blocking(self.write_fd, False)
        self.forward_to = -1
        self.pid = os.getpid()
        self.ident: Optional[int] = None
        self.stopped = threading.Event()
        self.synced = threading.Event()
        self._start()

    def _start(self) -> None:
        self.stopped.clear()
        thread = threading.Thread(target=self._main, name="graceful-watcher", daemon=True)
        thread.start()
        self.ident = thread.ident

    def _main(self) -> None:
        try:
            self._run()
        finally:
            self.stopped.set()

    @property
    def running(self) -> bool:
        return not self.stopped.is_set()

    def pause(self) -> bool:
        """Stop the thread (its pipe stays: bytes wait in it); True if it was running."""
        if not self.running or self.ident == threading.get_ident():
            return False
        with contextlib.suppress(OSError):
            os.write(self.write_fd, _STOP)
        return self.stopped.wait(1.0)

    def resume(self) -> None:
        if not self.running:
            self._start()

    def _run(self) -> None:
        while True:
            now = time.monotonic()
            remaining = _shutdown.overdue(now)
            if remaining is not None and remaining <= 0:
                _shutdown.deadline_passed()
            redelivery = _shutdown.until_redelivery(now)
            if redelivery is not None:
                if redelivery <= 0:
                    _shutdown.redeliver(now)
                    continue
                remaining = redelivery if remaining is None else min(remaining, redelivery)
            ready, _, _ = select.select([self.read_fd], [], [], remaining)
            if not ready:
                continue
            _shutdown.act()  # whatever the main thread's handler recorded and poked us about
            try:
                data = os.read(self.read_fd, 4096)
            except OSError:
                return  # closed after a fork, or at interpreter exit
            if not data:
                return
            stop = data.find(_STOP)
            if stop >= 0:
                # Bytes after the stop mark were read already: handle them, then exit.
                data = data[:stop] + data[stop + 1 :]
            self._forward(data)
            for byte in data:
                self._heard(byte)
            if stop >= 0:
                return

    def _forward(self, data: bytes) -> None:
        target = self.forward_to
        if target < 0:
            return
        payload = data.replace(_POKE, b"").replace(bytes([_SYNC]), b"")
        if payload:
            # A full or closed buffer: the previous owner would have lost the byte too.
            with contextlib.suppress(OSError):
                os.write(target, payload)

    def _heard(self, byte: int) -> None:
        if byte == _SYNC:
            self.synced.set()
            return
        if byte == 0:
            return
        try:
            sig = signal.Signals(byte)
        except ValueError:
            return
        if sig in _shutdown.handled:
            _shutdown.hear(sig, "watcher")


_watcher: Optional[_Watcher] = None


def install() -> int:
    """Make the watcher the wakeup fd (main thread only); return what was there before."""
    global _watcher
    if _watcher is None or _watcher.pid != os.getpid():
        _watcher = _Watcher()
    previous = signal.set_wakeup_fd(_watcher.write_fd)
    _watcher.forward_to = previous if previous != _watcher.write_fd else -1
    return previous


def uninstall(previous: int) -> None:
    """Put back the wakeup fd that :func:`install` replaced."""
    signal.set_wakeup_fd(previous)
    if _watcher is not None:
        _watcher.forward_to = -1


def poke() -> None:
    """Wake the watcher so it re-reads the deadline."""
    watcher = _watcher
    if watcher is not None and watcher.pid == os.getpid():
        with contextlib.suppress(OSError):
            os.write(watcher.write_fd, _POKE)


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
        watcher.resume()
    _paused = False


def sync() -> None:
    """Wait (briefly) until the watcher has read every signal byte written so far, so that
    an episode that ends does not leave bytes behind to be counted in the next one."""
    watcher = _watcher
    if watcher is None or watcher.pid != os.getpid() or not watcher.running:
        return
    watcher.synced.clear()
    try:
        os.write(watcher.write_fd, bytes([_SYNC]))
    except OSError:
        return
    watcher.synced.wait(1.0)


def after_fork_in_child() -> None:
    """The thread did not survive the fork; close its inherited pipe and start afresh later."""
    global _watcher
    watcher = _watcher
    _watcher = None
    if watcher is not None:
        for fd in (watcher.read_fd, watcher.write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
