"""``graceful.die_with_parent``: a child gets a signal when its parent dies, even by SIGKILL.

Two mechanisms, because each covers the other's holes:

* ``PR_SET_PDEATHSIG`` (Linux): the kernel sends the signal the moment the parent exits, even
  when no Python code in this process can run. But it fires when the parent *thread* that forked
  us exits, it is lost if the parent died before ``prctl()`` ran, and it is cleared when this
  process changes credentials. It is armed only when ``graceful.spawn`` started us (spawn forks
  from a thread that lives as long as its process), and only from our main thread.
* A watcher thread, the authoritative check: it blocks on a pidfd of the parent (Linux >= 5.3),
  else on the lifeline pipe spawn passed, else polls ``os.getppid()`` against the parent PID
  recorded before the fork (never against 1: a subreaper or a container's init adopts orphans).
  It sends the signal itself unless the kernel already has, so the child's guard never mistakes
  one parent death for a second signal.

``GRACEFUL_DISABLE=pdeathsig`` keeps ``prctl()`` out of it, and ``GRACEFUL_DISABLE=pidfd`` the
pidfd (see ``features``), so the watcher's fallbacks run. Where signals are not POSIX (Windows)
the call raises ``NotImplementedError``: a process cannot signal itself there.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # the C module, as in _core: no enums
import collections
import os
import select
import sys
import threading
import time

from .._core.checks import check_signal
from .._core.machine import machine as _machine
from . import features as _features
from . import pidfd as _pidfd
from .launcher import ENV

TYPE_CHECKING = False  # typing costs import time; annotations are strings here
if TYPE_CHECKING:
    from typing import Callable, Optional

    from .._core.signals import SignalLike

#: How often the last-resort method looks at ``os.getppid()``.
POLL_INTERVAL = 0.1
METHODS = ("pidfd", "lifeline", "poll")


class Marker(collections.namedtuple("Marker", "ppid signal lifeline")):
    """What the launcher recorded for this very process (by PID) before exec: the parent's PID,
    the parent-death signal armed (0: none), the lifeline fd (None: none)."""

    __slots__ = ()
    ppid: int
    signal: int
    lifeline: Optional[int]


def read_marker() -> Optional[Marker]:
    """Take the launcher's note from the environment, if it was written for this process.

    The variable is removed, so this program's own children do not inherit a stale note.
    """
    raw = os.environ.pop(ENV, None)
    if raw is None:
        return None
    try:
        pid, ppid, sig, lifeline = (int(part) for part in raw.split(":"))
    except ValueError:
        return None
    if pid != os.getpid():
        return None  # written for an ancestor and inherited: not about our parent
    return Marker(ppid, sig, lifeline if lifeline >= 0 else None)


def _creds() -> tuple[int, int]:
    return os.geteuid(), os.getegid()


class _State:
    def __init__(self, expected: int, lifeline: Optional[int], kernel_signal: int) -> None:
        self.pid = os.getpid()
        self.expected = expected
        self.lifeline = lifeline
        # Armed by spawn's launcher: spawn forks from a thread that lives as long as its process,
        # so arming it again (with another signal, say) cannot fire early.
        self.may_arm = kernel_signal != 0
        #: The parent-death signal armed on the main thread (by the launcher or by us), 0 if none.
        self.kernel_signal = kernel_signal
        self.creds = _creds()
        self.signal: int = _signal.SIGTERM
        self.thread: Optional[threading.Thread] = None
        self.method = ""
        self.gone_at_start = False


_lock = threading.Lock()
_state: Optional[_State] = None


def die_with_parent(signal: SignalLike = _signal.SIGTERM) -> None:
    """Get ``signal`` when the parent process dies, however it dies (SIGKILL, a crash).

    Call it early in a child program, ideally from the main thread, then let your guard handle
    ``signal`` like any other: its cleanups run. If the parent is already gone, the signal is sent
    at once. Calling it again changes the signal.
    """
    _check_platform()
    watch_parent(check_signal(signal, "graceful.die_with_parent()"))


def _check_platform() -> None:
    if os.name != "posix":
        raise NotImplementedError(
            "graceful.die_with_parent() turns the parent's death into a POSIX signal that this "
            f"process's guard handles; {sys.platform} has no such signals (os.kill() of this "
            "process would end it without cleanups). Have the parent put this process in a Job "
            "object with JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE, or watch a pipe from the parent "
            "and run your cleanups when it reaches EOF (see `graceful docs portability`)"
        )


def watch_parent(
    sig: int,
    *,
    method: Optional[str] = None,
    lifeline: Optional[int] = None,
    expected: Optional[int] = None,
) -> str:
    """``die_with_parent`` with the detection method chosen (for tests and benchmarks).

    Returns the method in use: "pidfd", "lifeline" or "poll".
    """
    global _state
    if method is not None and method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "pidfd" and not _pidfd.AVAILABLE:
        why = "hidden by GRACEFUL_DISABLE=pidfd" if _pidfd.SUPPORTED else "missing here"
        raise ValueError(
            f"the pidfd method needs pidfds (Linux >= 5.3), {why}; use method='lifeline' "
            "or 'poll', or None for the best available"
        )
    with _lock:
        st = _state if _state is not None and _state.pid == os.getpid() else None
        if st is None:
            marker = read_marker()
            if marker is not None:
                st = _State(marker.ppid, marker.lifeline, marker.signal)
            else:
                st = _State(os.getppid(), None, 0)
            _state = st
        if expected is not None:
            st.expected = expected
        if lifeline is not None:
            st.lifeline = lifeline
        st.signal = sig
        if st.may_arm and threading.current_thread() is threading.main_thread():
            _arm(st, sig if _features.uses("pdeathsig") else 0)
        gone = _start_watcher(st, method) if st.thread is None else False
        # The kernel sends the parent-death signal again for each thread of a multi-threaded
        # parent that exits after the one that forked us: once the parent is gone, a repeat of
        # the signal is that, not a person insisting (which would force the end at once).
        expected_parent = st.expected
        _machine.not_insisting(sig, lambda: os.getppid() != expected_parent)
    if gone:
        # Gone before the watcher could look, maybe before prctl() too, when the kernel sends
        # nothing: send it (if the kernel did send it as well, the two are a few µs apart).
        os.kill(os.getpid(), sig)
    return st.method


def _arm(st: _State, sig: int) -> None:
    """Set the kernel's parent-death signal on this (main) thread; 0 clears it. With
    ``GRACEFUL_DISABLE=pdeathsig`` what the launcher armed is cleared, so the watcher alone
    notices the parent's death, as where the kernel has no such signal."""
    from .._core import libc as _prctl

    if _prctl.HAS_PRCTL:
        _prctl.set_pdeathsig(sig)
        st.kernel_signal, st.creds = sig, _creds()


def _start_watcher(st: _State, method: Optional[str]) -> bool:
    """Start the watcher thread; True if the parent was already gone when it looked."""
    ready = threading.Event()
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            wait = _waiter(st, method)
        except BaseException as exc:
            outcome.append(exc)
            return
        finally:
            ready.set()
        if wait is None:
            return
        wait()
        _fire(st)

    st.thread = threading.Thread(target=run, name="graceful-parent-watch", daemon=True)
    st.thread.start()
    if not ready.wait(10.0):
        raise RuntimeError("graceful.die_with_parent(): the watcher thread did not start in 10 s")
    if outcome:
        st.thread = None
        raise outcome[0]
    return st.gone_at_start


def _waiter(st: _State, method: Optional[str]) -> Optional[Callable[[], None]]:
    """Set up the chosen (or best available) way to block until the parent is gone.

    Returns None, with ``st.gone_at_start`` set, if the parent is gone already.
    """
    st.gone_at_start = False
    if method in (None, "pidfd") and _pidfd.AVAILABLE:
        fd = _pidfd.open_pidfd(st.expected)
        if fd is not None or method == "pidfd":
            st.method = "pidfd"
            # Checked after opening: if the parent is still ours, the pidfd names it, and not a
            # process that reused its PID.
            if fd is None or os.getppid() != st.expected:
                _pidfd.close(fd)
                st.gone_at_start = True
                return None
            return lambda: _block_readable(fd)
    if os.getppid() != st.expected:
        st.method = method or ("lifeline" if st.lifeline is not None else "poll")
        st.gone_at_start = True
        return None
    if method in (None, "lifeline") and st.lifeline is not None:
        st.method = "lifeline"
        lifeline = st.lifeline
        return lambda: _block_readable(lifeline)
    if method == "lifeline":
        raise ValueError("the lifeline method needs the lifeline fd that graceful.spawn() passes")
    st.method = "poll"
    return lambda: _poll_ppid(st.expected)


def _block_readable(fd: int) -> None:
    """A pidfd becomes readable when its process exits; a pipe's read end at EOF or error."""
    if not hasattr(select, "poll"):  # select() is limited to fds below FD_SETSIZE
        while not select.select([fd], [], [])[0]:
            pass
        return
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP)
    while not poller.poll():
        pass


def _poll_ppid(expected: int) -> None:
    while os.getppid() == expected:
        time.sleep(POLL_INTERVAL)


def _fire(st: _State) -> None:
    """The parent is gone: send the signal, unless the kernel already sent this very one."""
    if st.kernel_signal == st.signal and st.creds == _creds():
        return
    os.kill(os.getpid(), st.signal)


# --- the lifeline, parent side (used by spawn where pidfds are missing) ---------------------

_lifeline: Optional[tuple[int, int, int]] = None  # (owner pid, read end, write end)


def lifeline_for_child() -> int:
    """A read end to pass to a child: it reads EOF once every copy of our write end is closed,
    which the kernel does when this process dies, however it dies."""
    global _lifeline
    with _lock:
        if _lifeline is None or _lifeline[0] != os.getpid():
            read_end, write_end = os.pipe()  # close-on-exec: only pass_fds hands the read end on
            _lifeline = (os.getpid(), read_end, write_end)
        return _lifeline[1]


def after_fork_in_child() -> None:
    """A forked child must not hold its parent's write end, or the parent's death goes unseen
    (a step of graceful's one fork path, ``_core/forking.py``)."""
    global _lifeline
    if _lifeline is not None and _lifeline[0] != os.getpid():
        for fd in _lifeline[1:]:
            try:
                os.close(fd)
            except OSError:
                continue
        _lifeline = None
