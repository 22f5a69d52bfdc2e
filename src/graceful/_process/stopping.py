"""Stopping many children on one deadline: break, close pipes, wait, SIGKILL, reap.

Every child is signalled first, then all are waited for together (on pidfds where there are
some, so the wait wakes the moment each exits), each against its own ``broken_at + timeout``.
Problems are collected as notes and reported as one RuntimeWarning at the very end, so a
warnings filter set to "error" cannot cut the work short.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # the C module, as in _core: no enums
import os
import threading
import time

from .._core import timeline as _timeline
from . import features as _features
from . import pidfd as _pidfd
from .backend import Backend, signal_name

TYPE_CHECKING = False  # typing costs import time; annotations are strings here
if TYPE_CHECKING:
    from typing import IO, Any, Optional

#: After SIGKILL, how long to wait for the kernel to finish a child before giving up on it.
KILL_GRACE = 2.0
#: SIGKILL goes out this long before the guard's own shutdown deadline, which ends the process.
DEADLINE_MARGIN = 0.25
#: How often to look again at what pidfds cannot report (process groups, platforms without pidfd).
POLL_INTERVAL = 0.02


def shutdown(backends: list[Backend], guard_deadline: Optional[float] = None) -> None:
    """Stop ``backends`` (see :func:`stop`), then warn once about any problem."""
    notes: list[str] = []
    stop(backends, notes, guard_deadline)
    warn(notes)


def warn(notes: list[str]) -> None:
    if notes:
        import warnings  # only when there is something to say

        warnings.warn(
            "graceful: while stopping backends: " + "; ".join(notes), RuntimeWarning, stacklevel=3
        )


def stop(backends: list[Backend], notes: list[str], guard_deadline: Optional[float]) -> None:
    """Break every live child, close its pipes, wait on one shared deadline, kill, reap.

    Children already gone are only reaped. ``guard_deadline`` (a ``time.monotonic()`` value, or
    None) is when the guard ends this process: SIGKILL goes out just before it.
    """
    # A group outlives its leader: it stays in the running until no member is left.
    live = [b for b in backends if not b.exited() or (b.group and not b.reaped)]
    for b in live:
        b.break_(notes)
    fit_deadline(live, guard_deadline)
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


def fit_deadline(live: list[Backend], guard_deadline: Optional[float]) -> None:
    """Shorten timeouts so SIGKILL goes out before the guard's deadline ends this process.

    Past that deadline the guard dies at once; a child still waiting for its SIGKILL would be
    orphaned.
    """
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
                b.kill(notes, f"was still running {b.timeout:g} s after {signal_name(b.signal)}")
            still.append(b)
        for b in _groups_still_alive(leaders_gone):
            deadline = b.deadline
            if deadline is not None and now >= deadline:
                b.kill(notes, f"still had members {b.timeout:g} s after {signal_name(b.signal)}")
            else:
                still.append(b)
        pending = still
        if pending:
            _sleep_until_change(pending, now)


def _sleep_until_change(pending: list[Backend], now: float) -> None:
    """Block until a pending child exits or the next deadline (or poll tick) comes."""
    wake = min((b.deadline for b in pending if b.deadline is not None), default=now + 3600.0)
    watched = [fd for fd in (b.pidfd for b in pending if not b.exited()) if fd is not None]
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

    Without /proc (or with ``GRACEFUL_DISABLE=proc``) there is no cheap way to tell, so such
    groups get SIGKILL at once and are not waited for (see docs/portability.md).
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
    if not _features.uses("proc") or not os.path.isdir("/proc"):
        for b in candidates:
            # Members may be running, or only zombies: no way to tell, so the rest of the group
            # gets SIGKILL now (documented, not warned about: it is the normal case here).
            b.kill(None, "")
        return []
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
        done = b.reap()
    except (OSError, ValueError, AssertionError) as exc:
        notes.append(f"could not reap {b!r}: {exc}")
        return True
    if done and b.broken_at is not None:
        _record(b)
    return done


def _record(b: Backend) -> None:
    """The backend's line on the shutdown timeline: how it ended, and how long it took."""
    code = getattr(b.aproc or b.proc, "returncode", None)
    if code is None:
        code = getattr(b.proc, "exitcode", None)
    if code is None:
        how = "ended (its owner collects the status)"
    elif b.killed and code == -_signal.SIGKILL:
        how = f"SIGKILLed after {b.timeout:g} s" if b.timeout is not None else "SIGKILLed"
    elif code < 0:
        how = f"killed by {signal_name(-code)}"
    else:
        how = f"exited {code}"
    _timeline.backend(b.pid, how, time.monotonic() - (b.broken_at or time.monotonic()))


def _close_pipes(backends: list[Backend]) -> list[threading.Thread]:
    """Close the caller's pipes to each child; in helper threads if another thread might hold one.

    Closing a buffered pipe waits for its lock, which a thread blocked in ``proc.stdout.read()``
    holds until the child writes or dies; a helper thread keeps that from stalling the shutdown.
    """
    jobs = [b.streams() for b in backends]
    jobs = [streams for streams in jobs if streams]
    if not jobs:
        return []
    if not _other_threads():
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


def _other_threads() -> bool:
    """Threads of the program's own, that could hold a pipe's lock (graceful's never do)."""
    me = threading.current_thread()
    return any(t is not me and not t.name.startswith("graceful-") for t in threading.enumerate())


def _close_streams(streams: list[IO[Any]]) -> None:
    for stream in streams:
        # BrokenPipeError flushing stdin: the child is gone, and the fd is closed anyway.
        try:
            stream.close()

        except (OSError, ValueError):
            pass
