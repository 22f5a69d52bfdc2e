"""The receipt of a stop: one JSON line per process, appended to the file ``GRACEFUL_REPORT``
names, when the process ends.

It is made of the shutdown's timeline records (signals, the budget, the drain, each cleanup and
backend with its duration, the end), collected in memory as they are recorded, and written once,
with the ``end`` record: one ``write`` with ``O_APPEND``, so the receipts of a whole tree
(``graceful run --report FILE`` sets the variable for its command) land whole in one file. The
file is opened non-blocking: a FIFO with no reader is skipped, never waited for.
``graceful.testing.read_receipts`` reads the file back.
"""

from __future__ import annotations

import os
import sys
import time

from . import timeline as _timeline
from .modules import loaded

TYPE_CHECKING = False  # typing costs import time; annotations are strings here
if TYPE_CHECKING:
    from typing import Any

ENV = "GRACEFUL_REPORT"

_records: list[dict[str, Any]] = []
_t0: list[float] = []


def prepare() -> None:
    """At a guard's entry (main thread): collect records from now on if a receipt is wanted;
    import what writing it needs now, not in the signal path."""
    if not os.environ.get(ENV):
        return
    import json  # noqa: F401

    _timeline.on_record(_collect)


def _collect(facts: dict[str, Any]) -> None:
    if not _records:
        _t0.append(time.monotonic() - facts.get("t", 0.0))
    _records.append(facts)
    if facts.get("event") == "end":
        write(facts)


def _summary(end: dict[str, Any]) -> dict[str, Any]:
    def of(kind: str) -> list[dict[str, Any]]:
        return [r for r in _records if r.get("event") == kind]

    budget = of("budget")
    starts, ends = of("drain_start"), of("drain_end")
    drain = None
    if starts:
        drain = {"start": starts[0]["t"], "planned": starts[0].get("drain")}
        drain["end"] = ends[0]["t"] if ends else None
    machine = loaded("graceful._core.machine")
    deadline = None if machine is None else machine.machine.deadline
    return {
        "who": "graceful",
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "argv": list(sys.argv),
        "clock": "CLOCK_MONOTONIC",
        "t0": round(_t0[0], 6) if _t0 else None,
        "signals": [
            {"t": r["t"], "signal": r.get("signal"), "event": r["event"]}
            for r in _records
            if r.get("event") in ("signal", "second_signal")
        ],
        "budget": _without(budget[0], "event", "pid") if budget else None,
        "drain": drain,
        "cleanups": [
            {k: r.get(k) for k in ("t", "name", "kind", "duration", "ok", "error")}
            for r in of("cleanup")
        ],
        "backends": [
            {k: r.get(k) for k in ("t", "backend_pid", "how", "duration")} for r in of("backend")
        ],
        "end": {k: end.get(k) for k in ("t", "how", "signal", "exit_code", "total")},
        "left": None if deadline is None else round(deadline - time.monotonic(), 6),
        "steps": list(_records),
    }


def _without(facts: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in facts.items() if k not in keys}


def write(end: dict[str, Any]) -> None:
    """Append this process's receipt; never blocks, never raises."""
    path = os.environ.get(ENV)
    if not path:
        return
    try:
        import json

        line = (json.dumps(_summary(end), default=str) + "\n").encode()
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK
        fd = os.open(path, flags, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    except (OSError, ValueError, TypeError):
        pass  # a receipt must never break a shutdown


def after_fork_in_child() -> None:
    _records.clear()
    _t0.clear()
