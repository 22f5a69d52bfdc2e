"""``GRACEFUL_DISABLE``: hide Linux parts from graceful so that its fallback paths run.

A testing and diagnostic switch, read once at import:
``GRACEFUL_DISABLE=pidfd,pdeathsig,proc,setpriv`` (a comma-separated list, any case, spaces
allowed). With a part hidden, graceful behaves as on a system that lacks it (see
`graceful docs portability`):

* ``pidfd``: no process file descriptors. Children are signalled and reaped by PID, after a
  ``waitid(WNOWAIT)`` check that the PID is still our unreaped child; a parent's death is noticed
  through a lifeline pipe or by polling ``os.getppid()``.
* ``pdeathsig``: ``PR_SET_PDEATHSIG`` is never armed by ``die_with_parent``; the watcher thread
  alone notices the parent's death.
* ``setpriv``: ``spawn`` never starts its backend through util-linux ``setpriv`` and ``/bin/sh``
  (``native_launch``); its Python launcher runs, as where setpriv is missing.
* ``proc``: ``/proc`` is not read. A process group whose leader has exited gets SIGKILL at once,
  since graceful cannot tell whether other members are still running.

An unknown name is reported with a ``RuntimeWarning`` and otherwise ignored.
"""

from __future__ import annotations

import os

ENV = "GRACEFUL_DISABLE"
#: The parts that can be hidden.
PARTS = ("pidfd", "pdeathsig", "proc", "setpriv")


def parse(raw: str) -> frozenset[str]:
    """The known part names in ``raw``; unknown ones are warned about and dropped."""
    names = {word.strip().lower() for word in raw.split(",")} - {""}
    unknown = sorted(names - set(PARTS))
    if unknown:
        import warnings  # only when there is something to say

        warnings.warn(
            f"{ENV}: unknown part(s) {', '.join(unknown)} ignored; known parts are "
            f"{', '.join(PARTS)} (see `graceful docs portability`)",
            RuntimeWarning,
            stacklevel=2,
        )
    return frozenset(names & set(PARTS))


#: The parts hidden from graceful in this process (read once, at import).
disabled: frozenset[str] = parse(os.environ.get(ENV, ""))


def uses(part: str) -> bool:
    """False if ``GRACEFUL_DISABLE`` hides ``part`` (one of :data:`PARTS`)."""
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; known parts are {PARTS}")
    return part not in disabled
