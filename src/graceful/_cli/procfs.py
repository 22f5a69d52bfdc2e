"""Read what the kernel says about processes in ``/proc`` (Linux): states, parents, signal masks.

The supervisor finds its descendants here (the kernel keeps no list of grandchildren), the doctor
reads the inherited signal masks, and the demo checks that no process is left. Every reader
tolerates a process that vanishes while it is being read: that is the normal case.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing costs the supervisor's start-up time; annotations are strings here
if TYPE_CHECKING:
    from typing import Optional, Union

PROC = "/proc"


class Stat:
    """The fields of ``/proc/<pid>/stat`` we use (a plain class: ``typing.NamedTuple`` would cost
    the supervisor's start-up time)."""

    __slots__ = ("comm", "pgrp", "pid", "ppid", "session", "state")

    def __init__(
        self, *, pid: int, comm: str, state: str, ppid: int, pgrp: int, session: int
    ) -> None:
        self.pid = pid
        self.comm = comm
        self.state = state  # R, S, D, Z (zombie), X (dead), T (stopped) ...
        self.ppid = ppid
        self.pgrp = pgrp
        self.session = session

    def _fields(self) -> tuple[object, ...]:
        return (self.pid, self.comm, self.state, self.ppid, self.pgrp, self.session)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Stat):
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return (
            f"Stat(pid={self.pid}, comm={self.comm!r}, state={self.state!r}, ppid={self.ppid}, "
            f"pgrp={self.pgrp}, session={self.session})"
        )

    @property
    def alive(self) -> bool:
        """Not a zombie: still running code, or able to."""
        return self.state not in ("Z", "X")


def available() -> bool:
    return os.path.isfile(f"{PROC}/self/stat")


def stat(pid: int) -> Optional[Stat]:
    """``pid``'s stat, or None if it has no entry (never existed, or reaped)."""
    try:
        with open(f"{PROC}/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:  # FileNotFoundError, ProcessLookupError (ESRCH while reading)
        return None
    # "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses.
    left, right = raw.index(b"("), raw.rindex(b")")
    fields = raw[right + 2 :].split()
    return Stat(
        pid=int(raw[:left]),
        comm=raw[left + 1 : right].decode("utf-8", "replace"),
        state=fields[0].decode(),
        ppid=int(fields[1]),
        pgrp=int(fields[2]),
        session=int(fields[3]),
    )


def processes() -> list[Stat]:
    """Every process this PID namespace shows."""
    found = []
    for name in os.listdir(PROC):
        if name.isdigit():
            entry = stat(int(name))
            if entry is not None:
                found.append(entry)
    return found


def descendants(root: int, table: Optional[list[Stat]] = None) -> list[Stat]:
    """Every process below ``root`` in the parent tree (children, their children, ...)."""
    table = processes() if table is None else table
    children: dict[int, list[Stat]] = {}
    for entry in table:
        children.setdefault(entry.ppid, []).append(entry)
    found: list[Stat] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child.pid != root:
                found.append(child)
                todo.append(child.pid)
    return found


def status(pid: Union[int, str] = "self") -> dict[str, str]:
    """``/proc/<pid>/status`` as a dict of its ``Key: value`` lines ({} if it cannot be read)."""
    try:
        with open(f"{PROC}/{pid}/status", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return {}
    fields = {}
    for line in lines:
        key, sep, value = line.partition(":")
        if sep:
            fields[key] = value.strip()
    return fields


def signal_set(mask: str) -> list[int]:
    """The signal numbers in a hex mask from ``/proc/<pid>/status`` (bit n-1 is signal n)."""
    bits = int(mask, 16) if mask else 0
    return [n + 1 for n in range(bits.bit_length()) if bits >> n & 1]


def cmdline(pid: int) -> str:
    """The command line of ``pid`` as one string (its comm in brackets if it has none)."""
    try:
        with open(f"{PROC}/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return ""
    if raw:
        return " ".join(arg.decode("utf-8", "replace") for arg in raw.rstrip(b"\0").split(b"\0"))
    entry = stat(pid)
    return f"[{entry.comm}]" if entry else ""


def wchan(pid: int) -> str:
    """Where in the kernel ``pid`` waits (``do_sigtimedwait``, ...); "" if it cannot be read."""
    try:
        with open(f"{PROC}/{pid}/wchan", encoding="ascii", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return ""
