"""Linux prctl(2) through ctypes: the parent-death signal, and (for tests) the child subreaper.

Imported lazily: ``import graceful`` must not load ctypes.
"""

from __future__ import annotations

import ctypes
import os
import sys

PR_SET_PDEATHSIG = 1
PR_GET_PDEATHSIG = 2
PR_SET_CHILD_SUBREAPER = 36

AVAILABLE = sys.platform.startswith("linux")

_libc = ctypes.CDLL(None, use_errno=True) if AVAILABLE else None


def _prctl(option: int, arg: int) -> None:
    if _libc is None:
        raise OSError(f"prctl() exists only on Linux, not on {sys.platform}")
    if _libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def set_pdeathsig(sig: int) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent *thread* exits (0 = off).

    The setting belongs to the calling thread and survives execve (but not a set-user-ID exec, and
    it is cleared when the credentials change).
    """
    _prctl(PR_SET_PDEATHSIG, sig)


def get_pdeathsig() -> int:
    """The parent-death signal armed in the calling thread, 0 if none."""
    if _libc is None:
        return 0
    out = ctypes.c_int(0)
    if _libc.prctl(ctypes.c_int(PR_GET_PDEATHSIG), ctypes.byref(out), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return out.value


def set_child_subreaper(on: bool) -> None:
    """Adopt orphaned descendants instead of letting init have them (used by the tests)."""
    _prctl(PR_SET_CHILD_SUBREAPER, int(on))
