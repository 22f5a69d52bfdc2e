"""Helpers for the command-line tests (no tests here): run ``graceful run`` through ``Child``.

``supervised(options, code)`` is Python source for ``helpers.Child``: it execs ``graceful run
OPTIONS -- python -u -c CODE`` in place, so the Child's PID is the supervisor's and its stdout
pipe is the command's. Every supervisor starts in a session of its own; ``sessions`` kills what
is left of those sessions at teardown, and ``leftovers`` (from test_backends_support) what left
them (daemons that called setsid).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator

from backends_support import kill_by_pidfd, proc_stat, session_members, wait_dead
from helpers import TIMEOUT, Child, skip_outside_ci

PY = sys.executable
GRACEFUL = [PY, "-m", "graceful"]


def supervised(options: list[str], code: str, prefix: tuple[str, ...] = ()) -> str:
    """Source that replaces itself with ``[*prefix] graceful run OPTIONS -- python -u -c CODE``."""
    argv = [*prefix, *GRACEFUL, "run", *options, "--", PY, "-u", "-c", textwrap.dedent(code)]
    return f"import os; os.execvp({argv[0]!r}, {argv!r})"


def children_of(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (from /proc)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = proc_stat(int(name))
            if stat is not None and stat[1] == pid:
                found.append(int(name))
    return found


def kill_session(sid: int) -> None:
    """SIGKILL every process of session ``sid`` (by pidfd) and wait, bounded, until they die."""
    pids = session_members(sid)
    for pid in pids:
        kill_by_pidfd(pid)
    with contextlib.suppress(AssertionError):
        wait_dead(pids, 5.0)


def sessions_fixture() -> Iterator[list[int]]:
    """For a ``sessions`` fixture: session IDs whose processes are SIGKILLed at teardown."""
    sids: list[int] = []
    yield sids
    for sid in sids:
        kill_session(sid)


@contextlib.contextmanager
def supervisor_child(
    options: list[str], code: str, prefix: tuple[str, ...] = ()
) -> Iterator[Child]:
    """``Child(supervised(...))`` in a session of its own; on the way out, whatever the test
    did, the session is killed first, so no survivor holds the Child's pipes open."""
    child = Child(supervised(options, code, prefix), start_new_session=True)
    try:
        yield child
    finally:
        kill_session(child.pid)
        child.__exit__(None, None, None)


def need_pid_namespaces() -> None:
    """``unshare --pid --fork --mount-proc`` needs root (or user namespaces) and util-linux."""
    if shutil.which("unshare") is None:
        skip_outside_ci("needs unshare(1) from util-linux")
    if os.geteuid() != 0:
        skip_outside_ci("a new PID namespace with unshare --pid needs root here")


def read_to_eof(fd: int, timeout: float) -> bytes:
    """Everything readable from ``fd`` until EOF; fail if EOF does not come in ``timeout``."""
    import select
    import time

    deadline = time.monotonic() + timeout
    chunks = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no EOF within {timeout} s; read {b''.join(chunks)!r}")
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            data = os.read(fd, 4096)
            if not data:
                return b"".join(chunks)
            chunks.append(data)


def last_pid(lines: list[str], word: str = "pid") -> int:
    """The PID on the last line ``WORD PID`` of a child's output."""
    for line in reversed(lines):
        parts = line.split()
        if len(parts) >= 2 and parts[0] == word:
            return int(parts[1])
    raise AssertionError(f"no line '{word} PID' in {lines}")


def graceful_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m graceful ARGS``, captured."""
    return subprocess.run(
        [sys.executable, "-m", "graceful", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
