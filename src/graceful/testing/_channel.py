"""The harness's side of the launcher: start it, send it commands, hear what it reports."""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import IO, Any, Optional

from . import _launcher

_LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_launcher.py")
_REPLY_TIMEOUT = 10.0  # the launcher answers at once; this only bounds a wedged machine


class LauncherError(RuntimeError):
    """The launcher stopped answering or misbehaved: a bug in graceful.testing, please report."""


class Channel:
    """A running launcher (our child) and the program it started (the launcher's child)."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Optional[str],
        cond: threading.Condition,
    ) -> None:
        self.cond = cond
        self.pid = 0  # the program's
        self.status: Optional[int] = None  # the program's wait status, once reaped
        self.ended_at: Optional[float] = None  # time.monotonic() when reaped
        self.closed = False  # the launcher's end of the socket is closed
        self.shut = False  # we have closed ours: the launcher has killed everything
        self._replies: collections.deque[str] = collections.deque()
        self._ask = threading.Lock()  # one command and its reply at a time
        ours, theirs = socket.socketpair()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-S", _LAUNCHER, str(theirs.fileno()), "--", *argv],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=[theirs.fileno()],
                env=dict(env),
                cwd=cwd,
                # Out of the test process's group: a group kill (a CI runner ending the job,
                # `timeout -s KILL ... pytest`) must leave the launcher alive to see the socket
                # close and kill the program's tree.
                start_new_session=True,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._sock = ours
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def stdout(self) -> IO[bytes]:
        assert self.proc.stdout is not None
        return self.proc.stdout

    @property
    def stderr(self) -> IO[bytes]:
        assert self.proc.stderr is not None
        return self.proc.stderr

    def _read(self) -> None:
        try:
            with self._sock.makefile("rb") as stream:
                for raw in stream:
                    self._hear(raw.decode().rstrip("\n"))
        except OSError:  # ECONNRESET: the launcher ended with a command unread
            pass
        finally:
            with self.cond:
                self.closed = True
                self.cond.notify_all()

    def _hear(self, line: str) -> None:
        word, _, rest = line.partition(" ")
        with self.cond:
            if word == "exited":
                status, at = rest.split()
                self.status, self.ended_at = int(status), float(at)
            else:
                self._replies.append(line)
            self.cond.notify_all()

    def _reply(self) -> str:
        with self.cond:
            if not self.cond.wait_for(lambda: self._replies or self.closed, _REPLY_TIMEOUT):
                raise LauncherError(f"the launcher (pid {self.proc.pid}) did not answer")
            if not self._replies:
                raise LauncherError(
                    f"the launcher (pid {self.proc.pid}) ended unexpectedly: "
                    f"{_exit_description(self.proc.wait())}"
                )
            return self._replies.popleft()

    def started(self) -> int:
        """The program's PID, once the launcher has started it; raises what exec raised."""
        word, _, rest = self._reply().partition(" ")
        if word == "error":
            number, _, message = rest.partition(" ")
            raise OSError(int(number), message)
        if word != "started":
            raise LauncherError(f"the launcher said {word} {rest} instead of started")
        self.pid = int(rest)
        return self.pid

    def send(self, sig: int, to: str) -> Optional[float]:
        """Signal the program (``to="process"``) or its group; when it went, or None if gone."""
        with self._ask:
            self._sock.sendall(f"signal {int(sig)} {to}\n".encode())
            word, _, rest = self._reply().partition(" ")
        if word == "sent":
            return float(rest.split()[1])
        if word == "gone":
            return None
        raise LauncherError(f"the launcher said {word} {rest} to a signal")

    def scan(self) -> list[dict[str, Any]]:
        """The live processes of the tree under the launcher (the program's, if it still runs)."""
        if self.shut:
            return []
        with self._ask:
            self._sock.sendall(b"scan\n")
            word, _, rest = self._reply().partition(" ")
        if word != "tree":
            raise LauncherError(f"the launcher said {word} {rest} to a scan")
        return _launcher.decode_tree(rest)

    def wait_end(self, timeout: float) -> bool:
        """Wait until the program has ended (and was reaped); False at the timeout."""
        with self.cond:
            return self.cond.wait_for(lambda: self.status is not None or self.closed, timeout)

    def close(self, timeout: float) -> None:
        """Let the launcher kill and reap the whole tree and exit; force it if it does not."""
        if self.shut:
            return
        last: list[dict[str, Any]] = []
        with contextlib.suppress(LauncherError, OSError):
            last = self.scan() if not self.closed else []
        with contextlib.suppress(OSError):
            self._sock.sendall(b"bye\n")  # we read the timeline file: the launcher leaves it
            self._sock.shutdown(socket.SHUT_WR)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            # The launcher is wedged: kill it (our own child), then what it last said it had.
            self.proc.kill()
            self.proc.wait()
            for info in last:
                _launcher.kill_verified(info, signal.SIGKILL)
        self._reader.join(timeout)
        self._sock.close()
        self.shut = True


def _exit_description(returncode: int) -> str:
    return f"killed by signal {-returncode}" if returncode < 0 else f"exit status {returncode}"
