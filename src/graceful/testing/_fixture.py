"""The object behind the ``shutdown`` fixture: the functions, plus cleanup at the end of a test."""

from __future__ import annotations

from ._program import Program, collect, run, start, stop_collecting
from ._sweep import sweep


class Shutdown:
    """The ``shutdown`` fixture: :func:`start`, :func:`run` and :func:`sweep`. At the end of the
    test, every program started during it (through the fixture or not) is killed with what it
    left."""

    __module__ = "graceful.testing"

    start = staticmethod(start)
    run = staticmethod(run)
    sweep = staticmethod(sweep)

    def __init__(self) -> None:
        self._programs: list[Program] = []
        collect(self._programs)

    def close(self) -> None:
        """Kill every program still running, and everything it started."""
        stop_collecting(self._programs)
        errors = []
        for program in reversed(self._programs):
            try:
                program.close()
            except Exception as exc:
                errors.append(f"{program!r}: {exc}")
        self._programs.clear()
        if errors:
            raise RuntimeError("graceful.testing could not clean up: " + "; ".join(errors))
