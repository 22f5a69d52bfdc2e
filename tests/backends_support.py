"""Helpers for the backend and parent-death tests: /proc checks and leftover cleanup, the
``GRACEFUL_DISABLE`` switch, and strangers that take a given PID (no tests).

Orphans are reparented to init (or a subreaper), which may reap them late, so "dead" means: no
/proc entry, or a zombie. A test polls that with a deadline and, in its teardown, SIGKILLs any
survivor through a pidfd, so a number reused meanwhile is never hit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import textwrap
import time
from collections.abc import Iterable, Iterator
from typing import Optional

import pytest

from graceful._process import features as _features
from graceful._process import pidfd as _pidfd
from helpers import Child, skip_outside_ci

LINUX_PIDFD = hasattr(os, "pidfd_open") and os.path.isdir("/proc")
needs_linux = pytest.mark.skipif(not LINUX_PIDFD, reason="needs Linux /proc and pidfds")


def proc_stat(pid: int) -> Optional[tuple[str, int, int]]:
    """(state, ppid, pgrp) of ``pid`` from /proc, or None if it has no entry (reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()
    return fields[0].decode(), int(fields[1]), int(fields[2])


def is_dead(pid: int) -> bool:
    stat = proc_stat(pid)
    return stat is None or stat[0] in ("Z", "X")


def wait_dead(pids: Iterable[int], timeout: float) -> dict[int, float]:
    """Poll /proc until every pid is dead; return seconds each took; fail at the deadline."""
    start = time.monotonic()
    left = set(pids)
    took: dict[int, float] = {}
    while left:
        for pid in list(left):
            if is_dead(pid):
                took[pid] = time.monotonic() - start
                left.discard(pid)
        if not left:
            break
        if time.monotonic() - start > timeout:
            states = {pid: proc_stat(pid) for pid in left}
            raise AssertionError(f"still alive after {timeout} s: {states}")
        time.sleep(0.002)
    return took


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = proc_stat(int(name))
            if stat is not None and stat[2] == pgid and stat[0] not in ("Z", "X"):
                found.append(int(name))
    return found


def kill_by_pidfd(pid: int) -> None:
    if is_dead(pid):
        return
    with contextlib.suppress(OSError):
        fd = os.pidfd_open(pid)
        try:
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        finally:
            os.close(fd)


def leftovers_fixture() -> Iterator[list[int]]:
    """For a ``leftovers`` fixture: a list of PIDs that are SIGKILLed at teardown if alive."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        kill_by_pidfd(pid)
    with contextlib.suppress(AssertionError):
        wait_dead(pids, 5.0)


# --- GRACEFUL_DISABLE: the fallback paths, in the child programs and in this process ---------

#: The parts each family of tests runs without; "" is everything the machine has.
PIDFD_SWITCHES = ["", "pidfd"]
GROUP_SWITCHES = ["", "pidfd", "proc", "pidfd,proc"]
PARENT_SWITCHES = ["", "pidfd", "pdeathsig", "pidfd,pdeathsig"]


def disabled_fixture(value: str, monkeypatch: pytest.MonkeyPatch) -> frozenset[str]:
    """Hide ``value`` (a GRACEFUL_DISABLE list) from graceful for one test.

    Child programs get the environment variable (graceful reads it at import); this process
    gets the same effect through the test hook: the two module attributes that graceful
    computed from it at import. Returns the hidden parts.
    """
    parts = frozenset(p for p in value.split(",") if p)
    monkeypatch.setenv(_features.ENV, value)
    monkeypatch.setattr(_features, "disabled", parts)
    monkeypatch.setattr(_pidfd, "AVAILABLE", _pidfd.SUPPORTED and "pidfd" not in parts)
    return parts


# --- a stranger with a chosen PID, not a child of this process ---------------------------------

NS_LAST_PID = "/proc/sys/kernel/ns_last_pid"

#: Forks a stranger with PID argv[1] (ns_last_pid, then fork at once: other processes forking
#: meanwhile, in other checkouts or the other pytest-xdist worker, only cost a retry; each try
#: takes about a millisecond, and 200 were once not enough on a busy machine), reports it, and on
#: "check" says whether it still runs untouched (any signal graceful could send would have ended
#: it), then kills and reaps it. The stranger is this helper's child, never the test process's.
_CLAIMER = """
import os, signal, sys, time
target = int(os.environ["TARGET"])
for attempt in range(5000):
    with open("/proc/sys/kernel/ns_last_pid", "w") as f:
        f.write(str(target - 1))
    pid = os.fork()
    if pid == 0:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(sig, signal.SIG_DFL)
        while True:
            time.sleep(3600)
    if pid == target:
        break
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
else:
    print("no luck", flush=True)
    sys.exit(3)
print("claimed", flush=True)
sys.stdin.readline()
done, status = os.waitpid(pid, os.WNOHANG)
print("untouched" if done == 0 else f"ended {os.waitstatus_to_exitcode(status)}", flush=True)
if done == 0:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
print("checked", flush=True)
"""


class Stranger:
    """A process that took PID ``target`` and is not a child of this test process."""

    def __init__(self, target: int) -> None:
        self.pid = target
        self.helper = Child(textwrap.dedent(_CLAIMER), stdin=True, env={"TARGET": str(target)})

    def untouched(self) -> bool:
        """Ask the helper; True if the stranger still runs, never signalled. Ends it."""
        self.helper.write("check\n")
        self.helper.wait_for("checked")
        return self.helper.lines[-2] == "untouched"

    def close(self) -> None:
        self.helper.__exit__()


@contextlib.contextmanager
def stranger_with_pid(target: int) -> Iterator[Stranger]:
    """Start a stranger with PID ``target`` (root: ns_last_pid); skip, outside CI, if the number
    could not be had. The stranger and its helper are gone when the block ends."""
    if not os.access(NS_LAST_PID, os.W_OK):
        skip_outside_ci(f"choosing the next PID needs root ({NS_LAST_PID})")
    stranger = Stranger(target)
    try:
        try:
            stranger.helper.wait_for("claimed")
        except AssertionError:
            if stranger.helper.proc.poll() == 3:
                skip_outside_ci(f"could not get PID {target} back (other processes forking)")
            raise
        yield stranger
    finally:
        stranger.close()


def session_members(sid: int) -> list[int]:
    """Live (non-zombie) processes of session ``sid``."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        # "state ppid pgrp session ..." after the command name
        if int(fields[3]) == sid and fields[0] not in (b"Z", b"X"):
            found.append(int(name))
    return found
