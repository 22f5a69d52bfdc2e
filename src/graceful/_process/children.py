"""Is a process still our unreaped child? Asked with ``waitid(..., WNOWAIT)``, which never reaps.

A PID names a process only until it is reaped; after that the number may belong to anyone. The
kernel answers ECHILD to ``waitid`` for a process that is not our child (a stranger that reused
the number, or our child already reaped behind its owner's back), so graceful asks before it
trusts a number: through a pidfd where it has one (the pidfd names one process, never a
successor), else by PID. What no check can tell apart is *another child of this process* that
reused the number: both are ours.
"""

from __future__ import annotations

import errno
import os

TYPE_CHECKING = False  # typing costs import time; annotations are strings here
if TYPE_CHECKING:
    from typing import Optional


#: Our child, still running.
RUNNING = "running"
#: Our child, exited and not yet reaped (a zombie): its PID cannot be reused until it is.
EXITED = "exited"
#: Not our child (ECHILD): never signal or reap this number.
NOT_OURS = "not ours"
#: The platform has no ``os.waitid``: nothing can be said.
UNKNOWN = "unknown"

_FLAGS = getattr(os, "WEXITED", 0) | getattr(os, "WNOHANG", 0) | getattr(os, "WNOWAIT", 0)


def state(pid: int, pidfd: Optional[int] = None) -> str:
    """RUNNING, EXITED, NOT_OURS or UNKNOWN for ``pid`` (by ``pidfd`` when given)."""
    if not hasattr(os, "waitid"):
        return UNKNOWN
    if pidfd is not None and hasattr(os, "P_PIDFD"):
        try:
            return _ask(os.P_PIDFD, pidfd)
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # Linux 5.3 has pidfd_open but no P_PIDFD
                raise
    return _ask(os.P_PID, pid)


def _ask(idtype: int, ident: int) -> str:
    try:
        result = os.waitid(idtype, ident, _FLAGS)
    except ChildProcessError:
        return NOT_OURS
    return RUNNING if result is None else EXITED
