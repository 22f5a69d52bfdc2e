"""Raw ``sigaction`` through libc, for what the ``signal`` module cannot do.

Imported lazily: only when a handler installed from C must be saved and restored, or when the
process must die by a signal from a thread other than the main one (``signal.signal`` refuses
there). The ``struct sigaction`` is kept as opaque bytes: we never need to read its fields.
"""

from __future__ import annotations

import ctypes
import os

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


def save(sig: int) -> bytes:
    """The current ``struct sigaction`` for ``sig``, as bytes."""
    buf = ctypes.create_string_buffer(_SIZE)
    _check(_libc.sigaction(sig, None, buf))
    return buf.raw


def restore(sig: int, raw: object) -> None:
    """Install a ``struct sigaction`` saved by :func:`save`."""
    assert isinstance(raw, bytes)
    buf = ctypes.create_string_buffer(raw, _SIZE)
    _check(_libc.sigaction(sig, buf, None))


def set_default(sig: int) -> None:
    """``SIG_DFL`` at the C level, from any thread (Python's table is left as it is)."""
    _check(0 if _libc.signal(sig, 0) != ctypes.c_void_p(-1).value else -1)
