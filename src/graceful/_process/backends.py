"""Tracked backend processes: break them (a signal), exit them (close pipes, wait), reap them.

One process-wide tracker registers a single ``graceful.register`` cleanup, so all children share
one deadline, and a ``graceful.register_break`` callback, so the break signal goes out as soon as
a handled signal arrives, while the main thread is still unwinding.
"""

from __future__ import annotations

import contextlib
import os
import signal as _signal
import sys
import threading
import time
import warnings
from typing import IO, TYPE_CHECKING, Any, Optional, TypeVar, Union

from .._core import registry as _registry
from .._core.checks import check_signal, check_timeout
from .._core.machine import machine as _machine
from . import pidfd as _pidfd

if TYPE_CHECKING:
    import subprocess
    from multiprocessing.process import BaseProcess

_P = TypeVar("_P", bound="Union[subprocess.Popen[Any], BaseProcess]")

#: After SIGKILL, how long to wait for the kernel to finish a child before giving up on it.
KILL_GRACE = 2.0
#: SIGKILL goes out this long before the guard's own shutdown deadline, which ends the process.
DEADLINE_MARGIN = 0.25
#: How often to look again at what pidfds cannot report (process groups, platforms without pidfd).
POLL_INTERVAL = 0.02

_break_lock = threading.Lock()


class Backend:
    """One tracked child: how to signal, watch and reap it without ever hitting a stranger."""

    def __init__(self, proc: Any, sig: int, timeout: Optional[float], group: bool) -> None:
        self.proc = proc
        self.pid: int = proc.pid
        self.signal = sig
        self.timeout = timeout
        self.group = group
        self.is_popen = _kind(proc) == "popen"
        self.broken_at: Optional[float] = None
        self.killed = False
        self.reaped = False
        self.pidfd = _pidfd.open_pidfd(self.pid)
        # Opened before the check: if nobody had reaped the child by now, the pidfd names it.
        if self.returncode_known():
            _pidfd.close(self.pidfd)
            self.pidfd = None
            self.reaped = True

    def __repr__(self) -> str:
        args = getattr(self.proc, "args", None) or getattr(self.proc, "name", "")
        return f"{args!r} (PID {self.pid}{', group' if self.group else ''})"

    @property
    def deadline(self) -> Optional[float]:
        if self.broken_at is None or self.timeout is None:
            return None
        return self.broken_at + self.timeout

    def returncode_known(self) -> bool:
        """True once the owning object has reaped the child (its PID may be reused from then on)."""
        if self.is_popen:
            return self.proc.returncode is not None
        popen = getattr(self.proc, "_popen", None)
        return popen is None or popen.returncode is not None

    def exited(self) -> bool:
        """True once the child has exited, reaped or not; never reaps."""
        if self.reaped:
            return True
        if self.pidfd is not None:
            return _pidfd.has_exited(self.pidfd)
        if self.returncode_known():
            return True
        try:
            return os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True

    def send(self, sig: int) -> None:
        """Signal the child (or its group); a child that is gone is silently skipped."""
        if self.reaped or self.pid <= 0:
            return
        if self.group:
            if self.pidfd is not None and _pidfd.send_group(self.pidfd, sig) is not None:
                return
            # killpg by number is safe only while the leader is our unreaped child: its PID, and
            # so the group ID, cannot be reused until it is reaped.
            if self._unreaped() and self.pid != os.getpgrp():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, sig)
            return
        if self.pidfd is not None:
            _pidfd.send(self.pidfd, sig)
        elif not self.returncode_known():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def _unreaped(self) -> bool:
        if self.returncode_known():
            return False
        return self.pidfd is None or not _pidfd.reaped_elsewhere(self.pidfd)

    def break_(self, notes: list[str]) -> None:
        """Send the break signal once, however many threads ask."""
        with _break_lock:
            if self.broken_at is not None:
                return
            self.broken_at = time.monotonic()
        try:
            self.send(self.signal)
        except OSError as exc:
            notes.append(f"could not send {_name(self.signal)} to {self!r}: {exc}")

    def kill(self, notes: list[str], why: str) -> None:
        self.killed = True
        try:
            self.send(_signal.SIGKILL)
        except OSError as exc:
            notes.append(f"could not send SIGKILL to {self!r}: {exc}")
            return
        notes.append(f"{self!r} {why}; sent SIGKILL")

    def reap(self) -> bool:
        """Collect the exit status through the owning object; True once nothing is left."""
        if self.reaped:
            return True
        if (
            self.pidfd is not None
            and not self.returncode_known()
            and _pidfd.reaped_elsewhere(self.pidfd)
        ):
            # Someone else collected it: never waitpid() a number that may be a stranger's now.
            done = True
        elif self.is_popen:
            done = self.proc.poll() is not None
        else:
            self.proc.join(0)
            done = self.proc.exitcode is not None
        if done:
            self.reaped = True
            _pidfd.close(self.pidfd)
            self.pidfd = None
        return done

    def streams(self) -> list[IO[Any]]:
        """The pipes the caller opened to a Popen child, stdin first (EOF is the polite "exit")."""
        if not self.is_popen:
            return []
        found = (self.proc.stdin, self.proc.stdout, self.proc.stderr)
        return [s for s in found if s is not None and not s.closed]

    def forget(self) -> None:
        _pidfd.close(self.pidfd)
        self.pidfd = None


def _name(sig: int) -> str:
    try:
        return _signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _kind(proc: object) -> str:
    subprocess = sys.modules.get("subprocess")
    if subprocess is not None and isinstance(proc, subprocess.Popen):
        return "popen"
    process = sys.modules.get("multiprocessing.process")
    if process is not None and isinstance(proc, process.BaseProcess):
        return "process"
    raise TypeError(
        "graceful.track() takes a subprocess.Popen or a multiprocessing.Process, got "
        f"{type(proc).__name__} {proc!r}; start the child with subprocess.Popen or "
        "graceful.spawn() (for asyncio, stop its processes in your own cleanup)"
    )


# --- stopping many children on one deadline -------------------------------------------------


def shutdown(backends: list[Backend]) -> None:
    """Break every live child, close its pipes, wait on one shared deadline, kill, reap.

    Children already gone are only reaped. Problems are collected and reported as one
    RuntimeWarning at the very end, so a warnings filter set to "error" cannot cut the work short.
    """
    notes: list[str] = []
    # A group outlives its leader: it stays in the running until no member is left.
    live = [b for b in backends if not b.exited() or (b.group and not b.reaped)]
    for b in live:
        b.break_(notes)
    _fit_guard_deadline(live)
    closers = _close_pipes(backends)
    try:
        _wait(live, notes)
    except BaseException:
        # Interrupted (a second signal, KeyboardInterrupt): forceful now, so nothing is orphaned.
        for b in live:
            if not b.exited():
                b.kill(notes, "was still running when the shutdown was interrupted")
        _reap_all(backends, notes, KILL_GRACE)
        raise
    _reap_all(backends, notes, KILL_GRACE)
    for t in closers:
        t.join(0.5)
        if t.is_alive():
            notes.append(f"{t.name}: another thread is still blocked on a pipe to the child")
    if notes:
        warnings.warn(
            "graceful: while stopping backends: " + "; ".join(notes), RuntimeWarning, stacklevel=2
        )


def _fit_guard_deadline(live: list[Backend]) -> None:
    """Shorten timeouts so SIGKILL goes out before the guard's deadline ends this process.

    Past that deadline the guard dies at once; a child still waiting for its SIGKILL would be
    orphaned.
    """
    guard_deadline = _machine.deadline
    if guard_deadline is None:
        return
    cap = guard_deadline - DEADLINE_MARGIN
    for b in live:
        if b.broken_at is not None and (b.deadline is None or b.deadline > cap):
            b.timeout = max(0.0, cap - b.broken_at)


def _wait(live: list[Backend], notes: list[str]) -> None:
    pending = list(live)
    while pending:
        now = time.monotonic()
        still: list[Backend] = []
        leaders_gone: list[Backend] = []
        for b in pending:
            if b.exited():
                if b.group and not b.killed:
                    leaders_gone.append(b)
                continue
            if b.killed:
                if now < (b.deadline or now) + KILL_GRACE:
                    still.append(b)
                else:
                    notes.append(f"{b!r} survived SIGKILL for {KILL_GRACE} s")
                continue
            deadline = b.deadline
            if deadline is not None and now >= deadline:
                b.kill(notes, f"was still running {b.timeout:g} s after {_name(b.signal)}")
            still.append(b)
        for b in _groups_still_alive(leaders_gone):
            deadline = b.deadline
            if deadline is not None and now >= deadline:
                b.kill(notes, f"still had members {b.timeout:g} s after {_name(b.signal)}")
            else:
                still.append(b)
        pending = still
        if pending:
            _sleep_until_change(pending, now)


def _sleep_until_change(pending: list[Backend], now: float) -> None:
    """Block until a pending child exits or the next deadline (or poll tick) comes."""
    wake = min((b.deadline for b in pending if b.deadline is not None), default=now + 3600.0)
    watched = [b.pidfd for b in pending if b.pidfd is not None and not b.exited()]
    if len(watched) < len(pending):
        wake = min(wake, now + POLL_INTERVAL)
    delay = max(0.0, wake - time.monotonic())
    if watched:
        import select

        poller = select.poll()
        for fd in watched:
            poller.register(fd, select.POLLIN)
        poller.poll(max(1, int(delay * 1000 + 0.999)))
    else:
        time.sleep(delay)


def _groups_still_alive(leaders_gone: list[Backend]) -> list[Backend]:
    """Of groups whose leader has exited, those that still have a live (non-zombie) member.

    Without /proc there is no cheap way to tell, so such groups are treated as alive and get
    SIGKILL at once (see docs/backends.md).
    """
    if not leaders_gone:
        return []
    candidates = []
    for b in leaders_gone:
        if b.pidfd is not None and _pidfd.send_group(b.pidfd, 0) is False:
            continue  # the kernel says the group is empty (zombies still count, hence the scan)
        candidates.append(b)
    if not candidates:
        return []
    if not os.path.isdir("/proc"):
        for b in candidates:
            b.timeout = 0.0  # kill the rest of the group now
        return candidates
    alive = _live_process_groups({b.pid for b in candidates})
    return [b for b in candidates if b.pid in alive]


def _live_process_groups(pgids: set[int]) -> set[int]:
    """Which of ``pgids`` have a member that is not a zombie, read from /proc/<pid>/stat."""
    found: set[int] = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        fields = stat[stat.rindex(b")") + 2 :].split()
        if fields[0] in (b"Z", b"X"):
            continue
        pgrp = int(fields[2])
        if pgrp in pgids:
            found.add(pgrp)
            if found == pgids:
                break
    return found


def _reap_all(backends: list[Backend], notes: list[str], grace: float) -> None:
    deadline = time.monotonic() + grace
    left = [b for b in backends if not b.reaped]
    while left:
        left = [b for b in left if not _try_reap(b, notes)]
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(0.005)
    for b in left:
        notes.append(f"could not reap {b!r}; it may stay a zombie until this process exits")


def _try_reap(b: Backend, notes: list[str]) -> bool:
    if not b.exited():
        return False
    try:
        return b.reap()
    except (OSError, ValueError, AssertionError) as exc:
        notes.append(f"could not reap {b!r}: {exc}")
        return True


def _close_pipes(backends: list[Backend]) -> list[threading.Thread]:
    """Close the caller's pipes to each child; in helper threads if another thread might hold one.

    Closing a buffered pipe waits for its lock, which a thread blocked in ``proc.stdout.read()``
    holds until the child writes or dies; a helper thread keeps that from stalling the shutdown.
    """
    jobs = [b.streams() for b in backends]
    jobs = [streams for streams in jobs if streams]
    if not jobs:
        return []
    if threading.active_count() <= 1:
        for streams in jobs:
            _close_streams(streams)
        return []
    threads = []
    for streams in jobs:
        t = threading.Thread(
            target=_close_streams, args=(streams,), name="graceful-close-pipes", daemon=True
        )
        try:
            t.start()
        except RuntimeError:  # no new threads at interpreter shutdown
            _close_streams(streams)
            continue
        threads.append(t)
    return threads


def _close_streams(streams: list[IO[Any]]) -> None:
    for stream in streams:
        # BrokenPipeError flushing stdin: the child is gone, and the fd is closed anyway.
        with contextlib.suppress(OSError, ValueError):
            stream.close()


# --- the process-wide tracker ---------------------------------------------------------------


class Tracker:
    """The children this process tracks; forgotten in a forked child, which does not own them."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._backends: list[Backend] = []
        self._pid = os.getpid()
        self._hooked = False

    def _adopt_after_fork(self) -> None:
        if self._pid != os.getpid():
            for b in self._backends:
                b.forget()
            self._backends = []
            self._hooked = False
            self._pid = os.getpid()

    def add(self, backend: Backend) -> None:
        with self._lock:
            self._adopt_after_fork()
            self._prune()
            self._backends = [b for b in self._backends if b.proc is not backend.proc]
            self._backends.append(backend)
            hook, self._hooked = not self._hooked, True
        if hook:
            try:
                _hook(self)
            except BaseException:
                with self._lock:
                    self._hooked = False
                raise

    def _prune(self) -> None:
        keep = []
        for b in self._backends:
            if b.reaped or (b.returncode_known() and not b.group):
                b.forget()
            else:
                keep.append(b)
        self._backends = keep

    def snapshot(self) -> list[Backend]:
        with self._lock:
            self._adopt_after_fork()
            return list(self._backends)

    def break_all(self) -> None:
        """The ``register_break`` callback: send every live child its break signal now."""
        notes: list[str] = []
        for b in self.snapshot():
            if b.group or not b.exited():
                b.break_(notes)
        if notes:
            warnings.warn("graceful: " + "; ".join(notes), RuntimeWarning, stacklevel=2)

    def stop_all(self) -> None:
        """The ``register`` cleanup: stop every tracked child on one shared deadline."""
        backends = self.snapshot()
        try:
            shutdown(backends)
        finally:
            with self._lock:
                self._backends = [b for b in self._backends if not b.reaped]


def _hook(tracker: Tracker) -> None:
    _registry.register(tracker.stop_all)
    _registry.register_break(tracker.break_all)


tracker = Tracker()


def track(
    proc: _P,
    *,
    signal: int = _signal.SIGTERM,
    timeout: Optional[float] = 5.0,
    group: bool = False,
) -> _P:
    """Stop ``proc`` when this program ends: ``signal``, close its pipes, wait, SIGKILL, reap.

    Returns ``proc``. A child that has already been reaped is not tracked.
    """
    kind = _kind(proc)
    sig = check_signal(signal, "graceful.track()")
    wait = check_timeout(timeout, "graceful.track()")
    if not isinstance(group, bool):
        raise TypeError(f"graceful.track(): group must be True or False, got {group!r}")
    pid = proc.pid
    if kind == "process":
        if pid is None:
            raise ValueError(
                "graceful.track() needs a started process: call proc.start() first, then track it"
            )
        parent = getattr(proc, "_parent_pid", os.getpid())
        if parent != os.getpid():
            raise ValueError(
                f"graceful.track(): {proc!r} was started by process {parent}, not by this one; "
                "only the process that started a child can stop and reap it"
            )
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        raise ValueError(
            f"graceful.track() refuses PID {pid!r}: kill() with 0 or a negative PID signals a "
            "whole process group or every process; pass a started child"
        )
    if group:
        _check_group_leader(pid)
    backend = Backend(proc, sig, wait, group)
    if not backend.reaped:
        tracker.add(backend)
    return proc


def _check_group_leader(pid: int) -> None:
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return  # already reaped: nothing will be signalled
    if pgid != pid:
        ours = " (this program's own group)" if pgid == os.getpgrp() else ""
        raise ValueError(
            f"graceful.track(group=True) needs a child that leads its own process group, but PID "
            f"{pid} is in group {pgid}{ours}; start it with graceful.spawn(..., group=True), "
            "subprocess.Popen(..., start_new_session=True) or, on 3.11+, process_group=0"
        )
