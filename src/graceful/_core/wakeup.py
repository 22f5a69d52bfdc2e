"""How a signal wakes the watcher thread: the platform seam.

CPython's C-level handler writes each signal's number to one file descriptor
(``signal.set_wakeup_fd``); the watcher waits on it. On POSIX that is a non-blocking pipe waited on
with ``select``: :class:`PipeWakeup`. Another platform's way (a Windows event, kqueue's
EVFILT_SIGNAL) is one new class with the same five members, chosen in :func:`make`.
"""

import os
import select


class PipeWakeup:
    """A pipe: its write end is the wakeup fd, the watcher reads the other end."""

    def __init__(self) -> None:
        self._read_fd, self.fd = os.pipe()  # both close-on-exec: nothing leaks into children
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self.fd, False)

    def wait(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for bytes; True if there are some."""
        ready, _, _ = select.select([self._read_fd], [], [], timeout)
        return bool(ready)

    def read(self) -> bytes:
        """The bytes written so far (BlockingIOError: none; b"": closed)."""
        return os.read(self._read_fd, 4096)

    def write(self, data: bytes) -> None:
        """Add bytes of graceful's own (a poke, a stop); OSError if full or closed."""
        os.write(self.fd, data)

    def close(self) -> None:
        for fd in (self._read_fd, self.fd):
            try:
                os.close(fd)
            except OSError:
                pass


def make() -> PipeWakeup:
    """This platform's wakeup."""
    return PipeWakeup()
