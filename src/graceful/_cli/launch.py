"""Start the supervised command through graceful's exec launcher, without ``subprocess``.

The supervisor reaps with ``waitpid(-1)``, which a ``subprocess.Popen`` would fight over, so the
child is forked by hand, the tini way: the supervisor has no other thread, so nothing can hold a
lock across the fork, and the child may run Python code until it execs. (``os.posix_spawn`` would
be shorter, but glibc's leaves its two internal signals, 32 and 33, ignored in the child, and exec
keeps that.) The child leads a new process group and runs the launcher's code
(``graceful/_process/launcher.py``) in place, with every signal still blocked, so nothing is
delivered to a half-made process; ``graceful.spawn``, whose caller may have threads, runs the same
code in a fresh interpreter instead. The launcher resets the signal dispositions, arms
PR_SET_PDEATHSIG with SIGKILL, so the command dies with the supervisor even if the supervisor is
SIGKILLed, checks that the supervisor is still its parent, and execs the command. It reports a
failed exec through a pipe, so the supervisor can say why, as a shell would.
"""

from __future__ import annotations

import os
import time

from .._process import launcher as _launcher
from .._process.launcher import C_SIGNAL as _signal

TYPE_CHECKING = False  # typing and contextlib cost start-up time; annotations are strings here
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Optional

#: prctl(2) through the launcher's libc function (``_core.libc`` would import all of ctypes).
prctl = _launcher.prctl
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

#: How long the launcher may take to exec the command (a loaded machine is slow).
LAUNCH_TIMEOUT = 30.0
LAUNCHER = os.path.abspath(_launcher.__file__)


class LaunchFailed(OSError):
    """The command could not be executed; ``report`` is the launcher's ``errno:message``."""

    def __init__(self, pid: int, report: str, command: str) -> None:
        code, _, message = report.partition(":")
        errno = int(code) if code.isdigit() else 0
        super().__init__(errno, message or report, command)
        self.pid = pid
        self.report = report

    @property
    def exit_status(self) -> int:
        """What a shell exits with: 127 for a command that is not there, 126 otherwise."""
        return 127 if self.errno == 2 else 126


class Launch:
    """A started launcher; :meth:`wait` returns once it has exec'ed the command."""

    def __init__(self, pid: int, report_fd: int, command: str) -> None:
        self.pid = pid
        self._fd = report_fd
        self._command = command

    def wait(self) -> None:
        """Return once the command runs; raise LaunchFailed if it could not be executed."""
        try:
            report = _read_report(self._fd, self.pid)
        finally:
            os.close(self._fd)
        if report:
            raise LaunchFailed(self.pid, report, self._command)


def start(
    command: list[str],
    executable: Optional[str],
    ignored: Iterable[int],
    pdeathsig: int = _signal.SIGKILL,
) -> Launch:
    """Start ``command`` through the launcher, in a new process group led by the command.

    Call only from a process with a single thread (the supervisor): it forks by hand.
    """
    read_end, write_end = os.pipe()
    keep = ",".join(str(int(s)) for s in sorted(ignored)) or "-"
    argv = [LAUNCHER, str(os.getpid()), str(int(pdeathsig))]
    argv += ["1", str(write_end), "-1", executable or command[0], keep, "--", *command]
    steps: object
    try:
        steps = _launcher.plan(argv)  # before the fork: the child then only makes system calls
    except Exception as exc:  # the child reports it, as it would have found it
        steps = exc
    try:
        pid = os.fork()
    except BaseException:
        os.close(read_end)
        os.close(write_end)
        raise
    if pid == 0:  # pragma: no cover - the child, until exec
        try:
            os.close(read_end)
            os.setpgid(0, 0)
            _launcher.main(argv, steps)  # execs the command, or reports why not and exits
        except BaseException as exc:
            errno = getattr(exc, "errno", 0) or 0
            try:
                os.write(write_end, f"{errno}:cannot start the launcher: {exc}".encode())
            except BaseException:
                pass
        finally:
            os._exit(127)
    os.close(write_end)
    try:
        os.setpgid(pid, pid)  # both sides, as a shell does: the group exists when we return
    except OSError:
        pass
    return Launch(pid, read_end, executable or command[0])


def _read_report(fd: int, pid: int) -> str:
    """What the launcher wrote before exec: nothing if the exec succeeded (EOF at exec)."""
    import select  # here, after the fork: the child execs meanwhile

    deadline = time.monotonic() + LAUNCH_TIMEOUT
    chunks: list[bytes] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            os.kill(pid, _signal.SIGKILL)  # our unreaped child: the PID cannot be someone else's
            return f"0:the launcher did not exec the command within {LAUNCH_TIMEOUT:g} s"
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        data = os.read(fd, 4096)
        if not data:
            return b"".join(chunks).decode("utf-8", "replace")
        chunks.append(data)
