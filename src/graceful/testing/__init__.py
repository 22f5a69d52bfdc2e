"""graceful.testing: prove that a program ends well, in a test.

Start a program in its own session, wait until it is ready, signal it, and check how it ended:
``died_by``, ``cleanups_ran``, ``no_orphans``, ``ended_within``. With pytest, use the ``shutdown``
fixture (this package registers it as a plugin); elsewhere, :func:`start` and :func:`run`.
:func:`sweep` sends a signal at every line of the program's own code, one run per line.

Importing this package loads nothing else: the names below are imported on first use, so the
pytest plugin costs nothing in a test session that does not use it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._fixture import Shutdown
    from ._output import LinePattern
    from ._program import NotReady, Program, run, start
    from ._receipt import read_receipts
    from ._result import LeftoverProcess, SentSignal, ShutdownResult, SignalLike
    from ._sweep import RUN_DIR, sweep
    from ._sweep_result import SweepFailed, SweepPoint, SweepResult, SweepRun

_WHERE = {
    "LeftoverProcess": "._result",
    "LinePattern": "._output",
    "NotReady": "._program",
    "Program": "._program",
    "RUN_DIR": "._sweep",
    "SentSignal": "._result",
    "Shutdown": "._fixture",
    "ShutdownResult": "._result",
    "SignalLike": "._result",
    "read_receipts": "._receipt",
    "SweepFailed": "._sweep_result",
    "SweepPoint": "._sweep_result",
    "SweepResult": "._sweep_result",
    "SweepRun": "._sweep_result",
    "run": "._program",
    "start": "._program",
    "sweep": "._sweep",
}

__all__ = [
    "RUN_DIR",
    "LeftoverProcess",
    "LinePattern",
    "NotReady",
    "Program",
    "SentSignal",
    "Shutdown",
    "ShutdownResult",
    "SignalLike",
    "SweepFailed",
    "SweepPoint",
    "SweepResult",
    "SweepRun",
    "read_receipts",
    "run",
    "start",
    "sweep",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'graceful.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
