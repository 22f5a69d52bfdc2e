"""Helpers for the backend and parent-death tests: /proc checks and leftover cleanup (no tests).

Orphans are reparented to init (or a subreaper), which may reap them late, so "dead" means: no
/proc entry, or a zombie. A test polls that with a deadline and, in its teardown, SIGKILLs any
survivor through a pidfd, so a number reused meanwhile is never hit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable, Iterator
from typing import Optional

import pytest

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
