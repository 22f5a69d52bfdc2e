"""What a sweep found: its points, its runs, its failures grouped by line, its summary."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, Optional

from ._result import ShutdownResult, signal_name


class SweepFailed(AssertionError):
    """At least one run of a sweep failed its check; ``result`` is the :class:`SweepResult`."""

    __module__ = "graceful.testing"

    def __init__(self, message: str, result: Optional[SweepResult] = None) -> None:
        super().__init__(message)
        self.result = result

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), None))


@dataclasses.dataclass(frozen=True)
class SweepPoint:
    """One place a signal can land: the ``k``-th time ``line`` of ``file`` runs."""

    __module__ = "graceful.testing"

    file: str  #: absolute path, or "<string>" for a code= snippet
    line: int
    k: int
    function: str  #: the qualified name of the function the line is in
    shown: str  #: the file as failures name it: relative to the program's directory
    source: str  #: the line itself, stripped

    @property
    def id(self) -> str:
        """``app.py:42#3``: what ``only=`` takes."""
        return f"{self.shown}:{self.line}#{self.k}"

    def __str__(self) -> str:
        return f"{self.id} in {self.function}: `{self.source}`"


@dataclasses.dataclass(frozen=True)
class SweepRun:
    """One run of a sweep: where the signal went, how the program ended, what ``check`` said."""

    __module__ = "graceful.testing"

    point: SweepPoint
    signal: int  #: the signal sent at ``point``
    then: Optional[int]  #: the second signal, if any
    then_at: Optional[str]  #: where it went (``cleanup.py:7``), None if it was not sent
    reached: bool  #: False: the program did not run ``point`` this time (no signal was sent)
    result: ShutdownResult
    error: Optional[str]  #: what check raised; None: it passed (or was not called)
    dir: str  #: the run's directory (removed once check returned)

    @property
    def failed(self) -> bool:
        return self.error is not None

    def describe(self) -> str:
        text = f"{signal_name(self.signal)} at {self.point.id}"
        if self.then is not None:
            second = self.then_at or "not sent: the program ended first"
            text += f", then {signal_name(self.then)} at {second}"
        return text


@dataclasses.dataclass
class SweepResult:
    """Every run of a sweep, and what it covered."""

    __module__ = "graceful.testing"

    points: list[SweepPoint]  #: every point the counting run saw (those of only=, with only=)
    runs: list[SweepRun]
    not_covered: list[tuple[SweepPoint, int, str]]  #: (point, signal, why) never run
    count_result: Optional[ShutdownResult]  #: the counting run (no signal); None with only=
    what: str  #: the sweep in words: "SIGTERM at each line of app.py:10-30"
    seconds: float
    jobs: int
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def failures(self) -> list[SweepRun]:
        return [r for r in self.runs if r.failed]

    @property
    def not_reached(self) -> list[SweepRun]:
        return [r for r in self.runs if not r.reached]

    def summary(self) -> str:
        lines = sorted({(p.file, p.line) for p in self.points})
        ran = [r for r in self.runs if r.reached]
        first = (
            f"sweep: {self.what}: {len(self.points)} points in {len(lines)} lines; "
            f"{len(self.runs)} runs in {self.seconds:.1f} s on {self.jobs} cores: "
            f"{len(ran) - len(self.failures)} passed, {len(self.failures)} failed"
        )
        out = [first]
        if self.not_reached:
            out.append(
                f"not reached: {len(self.not_reached)} runs ended without running their point "
                f"(the program took another path): {_ids(r.point for r in self.not_reached)}"
            )
        if self.not_covered:
            whys: dict[str, list[SweepPoint]] = {}
            for point, _, why in self.not_covered:
                whys.setdefault(why, []).append(point)
            for why, points in whys.items():
                missed = {(p.file, p.line) for p in points}
                whole = missed - {(r.point.file, r.point.line) for r in self.runs}
                out.append(
                    f"not covered: {len(points)} points ({why}); lines never signalled: "
                    + (_ids(p for p in points if (p.file, p.line) in whole) or "none")
                )
        else:
            out.append("not covered: nothing, every point ran")
        out += [f"note: {n}" for n in self.notes]
        return "\n".join(out)

    def report(self) -> str:
        """The failures grouped by line, then the first one in full, then the summary."""
        failures = self.failures
        if not failures:
            return self.summary()
        groups: dict[tuple[str, int], list[SweepRun]] = {}
        for run in failures:
            groups.setdefault((run.point.file, run.point.line), []).append(run)
        out = [
            f"sweep: {len(failures)} of {len(self.runs)} runs failed, at {len(groups)} "
            f"line{'s' if len(groups) > 1 else ''} ({self.what}):"
        ]
        for runs in groups.values():
            p = runs[0].point
            how = ", ".join(sorted({signal_name(r.signal) for r in runs}))
            ks = ", ".join(f"#{k}" for k in sorted({r.point.k for r in runs})[:8])
            more = "" if len({r.point.k for r in runs}) <= 8 else ", ..."
            count = f"{len(runs)} run{'s' if len(runs) > 1 else ''}"
            out.append(f"  {p.shown}:{p.line} in {p.function}: `{p.source}`")
            second = ""
            if runs[0].then is not None:
                where = sorted({r.then_at or "not sent" for r in runs})
                second = f"; then {signal_name(runs[0].then)} at {', '.join(where[:6])}"
                second += ", ..." if len(where) > 6 else ""
            out.append(f"      {count} ({ks}{more}; {how}{second})")
            said = (runs[0].error or "").strip().splitlines()
            out.append(f"      check said: {said[0] if said else '?'}")
        first = failures[0]
        out.append(f're-run one point: only="{first.point.id}"')
        out.append("")
        out.append(f"the first failure, {first.describe()}, in full:")
        out.append(f"check said: {(first.error or '').strip()}")
        if "\nprogram: " not in (first.error or ""):
            out.append("")
            out.append(first.result.report())
        out.append("")
        out.append(self.summary())
        return "\n".join(out)


def _ids(points: Iterable[SweepPoint], most: int = 10) -> str:
    seen: list[str] = []
    for p in points:
        name = f"{p.shown}:{p.line}"
        if name not in seen:
            seen.append(name)
    shown = ", ".join(seen[:most])
    return shown + (f" and {len(seen) - most} more" if len(seen) > most else "")
