"""End this process exactly as a child ended: with its exit code, or killed by its signal.

``exit(128 + n)`` would tell the parent a lie (``subprocess`` sees 143, not -15; bash carries on
after a Ctrl-C; systemd counts a failure), so a signal is re-raised with its default action.
Only where the kernel refuses to kill us (PID 1 of a PID namespace ignores its own default-action
signals) is the status 128 + n, which is what docker reports anyway.
"""

from __future__ import annotations

import os
import sys

from .._process.launcher import C_SIGNAL as _signal


def exit_code(status: int) -> int:
    """The exit code for a wait status: the code itself, or 128 + the signal that killed it."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


def exit_like(status: int) -> int:
    """Return the exit code of an exited child; for a killed one, die by its signal first."""
    if os.WIFSIGNALED(status):
        die_by(os.WTERMSIG(status))
    return exit_code(status)


def die_by(sig: int) -> None:
    """Die by ``sig`` with its default action; return only if the kernel would not kill us."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    from .._core import signals as _signals

    if _signals.default_action(sig) == "core":
        # The command has dumped its core (if allowed); a second one, of the supervisor, is noise.
        import resource

        _, hard = resource.getrlimit(resource.RLIMIT_CORE)
        resource.setrlimit(resource.RLIMIT_CORE, (0, hard))
    if sig not in (_signal.SIGKILL, _signal.SIGSTOP):
        _signal.signal(sig, _signal.SIG_DFL)
    os.kill(os.getpid(), sig)
    _signal.pthread_sigmask(_signal.SIG_UNBLOCK, {sig})  # delivered here, if it is going to be
