"""Process file descriptors (Linux >= 5.3): name a process so that a reused PID is never hit.

A pidfd refers to one process, not to a number. Signalling through it fails with ESRCH once that
process is gone, even if its PID now belongs to someone else; polling it says "exited" without
reaping; ``waitid(P_PIDFD, ..., WNOWAIT)`` says ECHILD once someone else has reaped it.
``GRACEFUL_DISABLE=pidfd`` hides them (see ``features``), so the PID-based fallback runs.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # the C module, as in _core: no enums
import errno
import os
import select

from . import features as _features

TYPE_CHECKING = False  # typing costs import time; annotations are strings here
if TYPE_CHECKING:
    from typing import Optional

#: linux/pidfd.h: signal the process group of the process the pidfd refers to (Linux >= 6.9).
PIDFD_SIGNAL_PROCESS_GROUP = 1 << 2

#: The platform and Python have pidfds (Linux >= 5.3, Python >= 3.9).
SUPPORTED = hasattr(os, "pidfd_open") and hasattr(_signal, "pidfd_send_signal")
#: graceful uses them: supported, and not hidden by ``GRACEFUL_DISABLE=pidfd``.
AVAILABLE = SUPPORTED and _features.uses("pidfd")

#: None until the first group signal tells whether the kernel knows PIDFD_SIGNAL_PROCESS_GROUP.
_group_flag_works: Optional[bool] = None


def open_pidfd(pid: int) -> Optional[int]:
    """A pidfd for ``pid``, or None where the platform, kernel or sandbox has none.

    The caller must check afterwards that the process was not reaped before the pidfd was opened
    (for a Popen: ``returncode is None``); only then does the pidfd name the right process.
    """
    if not AVAILABLE or pid <= 0:
        return None
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


def send(pidfd: int, sig: int) -> bool:
    """Send ``sig`` to the process; False if it has already exited (never a stranger)."""
    try:
        _signal.pidfd_send_signal(pidfd, sig)
    except ProcessLookupError:
        return False
    return True


def send_group(pidfd: int, sig: int) -> Optional[bool]:
    """Signal the pidfd's process group by identity; False if empty, None if the kernel can't."""
    global _group_flag_works
    if _group_flag_works is False:
        return None
    try:
        _signal.pidfd_send_signal(pidfd, sig, None, PIDFD_SIGNAL_PROCESS_GROUP)
    except ProcessLookupError:
        _group_flag_works = True
        return False
    except OSError as exc:
        if exc.errno == errno.EINVAL and _group_flag_works is None:
            _group_flag_works = False
            return None
        raise
    _group_flag_works = True
    return True


def has_exited(pidfd: int) -> bool:
    """True once the process has exited (reaped or not); never blocks, never reaps."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(0))


def close(pidfd: Optional[int]) -> None:
    if pidfd is not None:
        try:
            os.close(pidfd)

        except OSError:
            pass
