"""libc through ctypes, for what the ``signal`` and ``os`` modules cannot do.

Raw ``sigaction``: to save and restore a handler installed from C, and to set ``SIG_DFL`` from a
thread other than the main one (``signal.signal`` refuses there); the ``struct sigaction`` is kept
as opaque bytes, we never read its fields. ``prctl`` (Linux): the parent-death signal and the
child subreaper. Imported lazily: ``import graceful`` must not load ctypes.
"""

from __future__ import annotations

import ctypes
import os
import sys

_SIZE = 512  # larger than struct sigaction on every libc we know (glibc x86_64: 152 bytes)
_libc = ctypes.CDLL(None, use_errno=True)
_libc.sigaction.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
_libc.sigaction.restype = ctypes.c_int
_libc.signal.argtypes = [ctypes.c_int, ctypes.c_void_p]
_libc.signal.restype = ctypes.c_void_p


def _check(result: int) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def save_sigaction(sig: int) -> bytes:
    """The current ``struct sigaction`` for ``sig``, as bytes."""
    buf = ctypes.create_string_buffer(_SIZE)
    _check(_libc.sigaction(sig, None, buf))
    return buf.raw


def restore_sigaction(sig: int, raw: bytes) -> None:
    """Install a ``struct sigaction`` saved by :func:`save_sigaction`."""
    buf = ctypes.create_string_buffer(raw, _SIZE)
    _check(_libc.sigaction(sig, buf, None))


def set_default(sig: int) -> None:
    """``SIG_DFL`` at the C level, from any thread (Python's table is left as it is)."""
    _check(0 if _libc.signal(sig, 0) != ctypes.c_void_p(-1).value else -1)


# --- prctl(2), Linux only ---------------------------------------------------------------------

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

#: prctl() exists (Linux).
HAS_PRCTL = sys.platform.startswith("linux")


def _prctl(option: int, arg: int) -> None:
    if not HAS_PRCTL:
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


def set_child_subreaper(on: bool) -> None:
    """Adopt orphaned descendants instead of letting init have them."""
    _prctl(PR_SET_CHILD_SUBREAPER, int(on))
