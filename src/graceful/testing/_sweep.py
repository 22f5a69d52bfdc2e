"""``sweep``: a signal at every line of the user's own code, one run per line, each checked.

One run counts the points (the lines of ``where`` that run, each as often as it runs); then one
run per point, the signal sent by the program to itself at that point (``_tracer.py``), in
parallel, within ``max_points`` and a time budget. ``check(result)`` judges every run.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import inspect
import itertools
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Optional, Union

from . import _tracer
from ._program import GRACE, STOP_TIMEOUT, StrPath, start
from ._result import ShutdownResult, SignalLike, signal_name
from ._sweep_args import (
    Target,
    Then,
    Where,
    catchable,
    excluded,
    find_target,
    parse_only,
    shown_name,
    source_line,
    then_rule,
    where_rules,
)
from ._sweep_result import SweepFailed, SweepPoint, SweepResult, SweepRun

#: In ``args``, an ``env`` value or ``cwd``: a fresh empty directory for each run (removed after
#: its check). The program also finds it in ``$GRACEFUL_SWEEP_DIR``.
RUN_DIR = "{run_dir}"
DIR_ENV = "GRACEFUL_SWEEP_DIR"

#: Defaults.
BUDGET = 60.0  # seconds for a whole sweep

Check = Callable[..., Any]


# --- choosing the points ---------------------------------------------------------------------


def _spread(points: list[SweepPoint], n: int) -> list[SweepPoint]:
    """``n`` of ``points``: every line's first run first, the rest spread evenly."""
    if n >= len(points):
        return list(points)
    firsts = [p for p in points if p.k == 1]
    if n <= len(firsts):
        return [firsts[i * len(firsts) // n] for i in range(n)]
    rest = [p for p in points if p.k > 1]
    extra = n - len(firsts)
    chosen = set(firsts) | {rest[i * len(rest) // extra] for i in range(extra)}
    return [p for p in points if p in chosen]


def _interleaved(items: list[Any]) -> list[Any]:
    """The items in an order that covers them evenly however early it is cut short."""

    def key(i: int) -> float:
        fraction, weight = 0.0, 0.5
        while i:
            fraction += weight * (i & 1)
            i >>= 1
            weight /= 2
        return fraction

    return [items[i] for i in sorted(range(len(items)), key=key)]


# --- one run -----------------------------------------------------------------------------------


_SHIM = """\
# graceful.testing sweep: runs the tracer, then the real sitecustomize (see _tracer.py)
_path = {tracer!r}
with open(_path, "rb") as _file:
    _namespace = {{"__name__": "graceful_sweep_tracer", "__file__": _path}}
    exec(compile(_file.read(), _path, "exec"), _namespace)
_namespace["bootstrap"](__file__)
"""


class _Sweeper:
    def __init__(
        self,
        target: Target,
        *,
        args: Sequence[StrPath],
        env: Optional[Mapping[str, str]],
        cwd: Optional[StrPath],
        python: StrPath,
        timeout: float,
        grace: float,
        workdir: str,
    ) -> None:
        self.target = target
        self.args = [os.fspath(a) for a in args]
        self.env = dict(os.environ if env is None else env)
        self.cwd = None if cwd is None else os.fspath(cwd)
        self.python = python
        self.timeout = timeout
        self.grace = grace
        self.workdir = workdir
        self.shim_dir = os.path.join(workdir, "shim")
        os.mkdir(self.shim_dir)
        with open(os.path.join(self.shim_dir, "sitecustomize.py"), "w") as f:
            f.write(_SHIM.format(tracer=os.path.abspath(_tracer.__file__)))
        self.common = [("root", r) for r in target.roots] + [("exclude", e) for e in excluded()]
        if "PYTHONPATH" in self.env:
            self.common.append(("pythonpath", self.env["PYTHONPATH"]))
        self.serial = itertools.count(1)  # next() is atomic: runs start from several threads

    def run(
        self, settings: list[tuple[str, ...]]
    ) -> tuple[ShutdownResult, list[tuple[str, list[str]]], str]:
        """One run with the tracer's ``settings``: the result, the tracer's report, the dir."""
        name = os.path.join(self.workdir, f"run{next(self.serial)}")
        run_dir = name + ".dir"
        os.mkdir(run_dir)
        with open(name + ".settings", "w", encoding="utf-8", errors="surrogateescape") as f:
            for key, *fields in [("out", name + ".out"), *self.common, *settings]:
                f.write("\t".join([key, *fields]) + "\n")

        def fill(value: str) -> str:
            return run_dir if value == RUN_DIR else value

        env = {k: fill(v) for k, v in self.env.items()}
        env[_tracer.ENV] = name + ".settings"
        env["PYTHONPATH"] = os.pathsep.join(
            [self.shim_dir] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        )
        env[DIR_ENV] = run_dir
        cwd = None if self.cwd is None else fill(self.cwd)
        with start(
            **self.target.start,
            args=[fill(a) for a in self.args],
            env=env,
            cwd=cwd,
            python=self.python,
        ) as program:
            program.wait(self.timeout, grace=self.grace)
            report = _read_report(name + ".out")
            for word, fields in report:
                if word == "fired":
                    program.note_signal(int(fields[0]), float(fields[1]))
            assert program.result is not None
            return program.result, report, run_dir


def _read_report(path: str) -> list[tuple[str, list[str]]]:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
    except FileNotFoundError:
        return []
    found = []
    for raw in text.splitlines():
        word, *fields = raw.split("\t")
        found.append((word, fields))
    return found


def _default_check(result: ShutdownResult, run: SweepRun) -> None:
    """The program died by a signal it was sent, and left nothing running."""
    __tracebackhide__ = True
    sent = {s.signal for s in result.signals_sent}
    if result.signal is None or result.signal not in sent:
        result.died_by(run.then if run.then_at is not None and run.then else run.signal)
    result.no_orphans()


def _call_check(check: Check, result: ShutdownResult, run: SweepRun) -> Optional[str]:
    try:
        takes_run = len(inspect.signature(check).parameters) >= 2
    except (TypeError, ValueError):
        takes_run = False
    try:
        if takes_run:
            check(result, run)
        else:
            check(result)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # pytest.fail() and pytest.skip() raise BaseExceptions too
        text = str(exc)
        return text if isinstance(exc, AssertionError) and text else f"{type(exc).__name__}: {exc}"
    return None


# --- the sweep ----------------------------------------------------------------------------------


def sweep(
    *,
    script: Optional[StrPath] = None,
    module: Optional[str] = None,
    command: Union[str, Sequence[StrPath], None] = None,
    code: Optional[str] = None,
    args: Sequence[StrPath] = (),
    env: Optional[Mapping[str, str]] = None,
    cwd: Optional[StrPath] = None,
    python: StrPath = sys.executable,
    signal: Union[SignalLike, Sequence[SignalLike]] = "TERM",
    where: Where = None,
    check: Optional[Check] = None,
    then: Then = None,
    only: Optional[str] = None,
    max_points: Optional[int] = None,
    budget: float = BUDGET,
    jobs: Optional[int] = None,
    timeout: float = STOP_TIMEOUT,
    grace: float = GRACE,
) -> SweepResult:
    """Send ``signal`` at every line of the program's own code that runs, one run per point.

    A first run, without a signal, counts the points: each time a line of ``where`` runs
    (default: every file under the script's or module's directory, not the standard library,
    site-packages or graceful). Then one run per point, the program sending the signal to itself
    just before that line runs; ``check(result)`` (or ``check(result, run)``) judges each
    (default: it died by the signal and left nothing running). Runs go in parallel on ``jobs``
    cores; with more points than ``max_points`` or than ``budget`` seconds allow, every line's
    first run is kept and the rest spread evenly. Raises :class:`SweepFailed` (an
    ``AssertionError``) naming the failing points grouped by line; returns the
    :class:`SweepResult` otherwise. ``only="app.py:42#3"`` runs that one point.
    """
    __tracebackhide__ = True
    began = time.monotonic()
    signals = [
        catchable(s, "signal=")
        for s in ([signal] if isinstance(signal, (int, str)) else list(signal))
    ]
    if not signals:
        raise ValueError("signal= is empty: give a signal, or several: signal=('TERM', 'INT')")
    if max_points is not None and max_points < 1:
        raise ValueError(f"max_points= must be at least 1, not {max_points}")
    if budget <= 0:
        raise ValueError(f"budget= is seconds for the whole sweep, more than 0, not {budget}")
    jobs = (os.cpu_count() or 1) if jobs is None else jobs
    if jobs < 1:
        raise ValueError(f"jobs= must be at least 1, not {jobs}")
    given_cwd = None if cwd is None else os.fspath(cwd)
    here = os.path.abspath(given_cwd) if given_cwd not in (None, RUN_DIR) else os.getcwd()
    target = find_target(script, module, command, code, here)
    lines, funcs, extra, what = where_rules(where, target, here)
    target.roots += extra
    second = then_rule(then, target, here)
    what = f"{' and '.join(signal_name(s) for s in signals)} at {what}"
    if second is not None:
        what += f", {second[2]}"
    rules = [("lines", f, str(a), str(b)) for f, a, b in lines] + [("func", f) for f in funcs]
    with tempfile.TemporaryDirectory(prefix="graceful-sweep-") as workdir:
        sweeper = _Sweeper(
            target,
            args=args,
            env=env,
            cwd=given_cwd,
            python=python,
            timeout=timeout,
            grace=grace,
            workdir=workdir,
        )
        state = _Sweep(sweeper, SweepResult([], [], [], None, what, 0.0, jobs), check, second)
        per_run = 0.0
        if only is not None:
            file, line, k = parse_only(only, target, here)
            shown, text = shown_name(file, target), source_line(file, line, target)
            state.result.points = [SweepPoint(file, line, k, "?", shown, text)]
        else:
            counted_at = time.monotonic()
            count, report, count_dir = sweeper.run([("mode", "count"), *rules])
            shutil.rmtree(count_dir, ignore_errors=True)
            per_run = time.monotonic() - counted_at
            state.result.count_result = count
            state.result.points = _points(report, target, count, state.result.notes)
        plan = state.plan(signals, max_points, began + budget, per_run, budget)
        state.execute(plan, began + budget, max_points)
        order = {p: i for i, p in enumerate(state.result.points)}
        state.result.runs.sort(key=lambda r: (order.get(r.point, -1), r.signal))
        state.result.seconds = time.monotonic() - began
    if state.result.failures:
        raise SweepFailed(state.result.report(), state.result)
    if not state.result.runs:
        raise SweepFailed(
            f"sweep: the budget of {budget:g} s ran out before the first run (the counting run "
            f"took {per_run:.1f} s): give budget= more seconds\n\n{state.result.summary()}",
            state.result,
        )
    return state.result


def _points(
    report: list[tuple[str, list[str]]],
    target: Target,
    count: ShutdownResult,
    notes: list[str],
) -> list[SweepPoint]:
    """The points the counting run's tracer reported, in the order their lines first ran."""
    seen: dict[tuple[str, int], str] = {}
    counts: dict[tuple[str, int], int] = {}
    done = False
    for word, fields in report:
        if word == "seen":
            seen[(fields[0], int(fields[1]))] = fields[2]
        elif word == "count":
            counts[(fields[0], int(fields[1]))] = int(fields[2])
        elif word == "done":
            done = True
    if not seen:
        raise SweepFailed(
            "sweep: the counting run (no signal) ran no line to sweep: where= names lines that "
            "did not run, or the program is not a Python program that reads PYTHONPATH (-I and "
            f"-E ignore it)\n\n{count.report()}"
        )
    if count.timed_out:
        notes.append(
            f"the counting run did not end within {count.timeout:g} s and was killed: the "
            "sweep covers the lines it ran until then (a program swept must end by itself)"
        )
    elif not done:
        notes.append(
            "the counting run ended without its exit handlers (os._exit, or a signal): each "
            "line is swept at its first run only"
        )
    if count.returncode != 0:
        notes.append(f"the counting run (no signal) {count.how_it_ended()}")
    points = []
    for (file, line), name in seen.items():
        shown, source = shown_name(file, target), source_line(file, line, target)
        for k in range(1, (counts.get((file, line)) or 1) + 1):
            points.append(SweepPoint(file, line, k, name, shown, source))
    return points


class _Sweep:
    """Choosing the runs, running them in parallel, judging each as it ends."""

    def __init__(
        self,
        sweeper: _Sweeper,
        result: SweepResult,
        check: Optional[Check],
        second: Optional[tuple[int, list[str], str]],
    ) -> None:
        self.sweeper = sweeper
        self.result = result
        self.check = check or _default_check
        self.second = second
        self.every = second is not None and second[1] == ["count"]

    def plan(
        self,
        signals: list[int],
        max_points: Optional[int],
        deadline: float,
        per_run: float,
        budget: float,
    ) -> list[tuple[SweepPoint, int]]:
        """The (point, signal) runs to make, in an order that covers evenly if cut short."""
        points = self.result.points
        plan = [(p, s) for p in points for s in signals]
        allowed, why = len(plan), ""
        if max_points is not None and allowed > max_points:
            allowed, why = max_points, f"beyond max_points={max_points}"
        if per_run and not self.every:
            affordable = int((deadline - time.monotonic()) * self.result.jobs / per_run)
            if affordable < allowed:
                allowed, why = max(1, affordable), f"beyond what the budget of {budget:g} s allows"
        if allowed < len(plan):
            chosen = set(_spread(points, max(1, allowed // len(signals))))
            self.result.not_covered += [(p, s, why) for p, s in plan if p not in chosen]
            plan = [(p, s) for p, s in plan if p in chosen]
        return _interleaved(plan)

    def one(
        self, point: SweepPoint, sig: int, then: Optional[tuple[str, ...]], deadline: float
    ) -> Optional[tuple[ShutdownResult, list[tuple[str, list[str]]], str]]:
        if time.monotonic() >= deadline:
            return None
        settings: list[tuple[str, ...]] = [
            ("fire", str(int(sig)), point.file, str(point.line), str(point.k))
        ]
        if then is not None:
            settings.append(then)
        return self.sweeper.run(settings)

    def execute(
        self, plan: list[tuple[SweepPoint, int]], deadline: float, max_points: Optional[int]
    ) -> None:
        then = None if self.second is None else ("then", str(int(self.second[0])), *self.second[1])
        pairs: list[tuple[SweepPoint, int, int]] = []  # then="every": (point, signal, j)
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.result.jobs) as pool:
            futures = {pool.submit(self.one, p, s, then, deadline): (p, s) for p, s in plan}
            for future in concurrent.futures.as_completed(futures):
                point, sig = futures[future]
                outcome = future.result()
                if outcome is None:
                    self.result.not_covered.append((point, sig, "past the time budget"))
                elif self.every and outcome[1]:
                    after = sum(1 for word, _ in outcome[1] if word == "a")
                    pairs += [(point, sig, j) for j in range(1, after + 1)]
                    shutil.rmtree(outcome[2], ignore_errors=True)
                else:
                    self.judge(point, sig, *outcome)
            if not pairs or self.second is None:
                return
            if max_points is not None and len(pairs) > max_points:
                self.result.notes.append(
                    f"then='every': {max_points} of {len(pairs)} (point, later point) pairs ran "
                    "(max_points), spread evenly"
                )
                pairs = [pairs[i * len(pairs) // max_points] for i in range(max_points)]
            second = str(int(self.second[0]))
            futures = {
                pool.submit(self.one, p, s, ("then", second, "after", str(j)), deadline): (p, s)
                for p, s, j in _interleaved(pairs)
            }
            for future in concurrent.futures.as_completed(futures):
                point, sig = futures[future]
                outcome = future.result()
                if outcome is None:
                    self.result.not_covered.append((point, sig, "past the time budget (then=)"))
                else:
                    self.judge(point, sig, *outcome)

    def judge(
        self,
        point: SweepPoint,
        sig: int,
        shutdown: ShutdownResult,
        report: list[tuple[str, list[str]]],
        run_dir: str,
    ) -> None:
        fired = [fields for word, fields in report if word == "fired"]
        then_at = None
        if len(fired) > 1:
            then_at = f"{shown_name(fired[1][2], self.sweeper.target)}:{fired[1][3]}"
        run = SweepRun(
            point=point,
            signal=sig,
            then=None if self.second is None else self.second[0],
            then_at=then_at,
            reached=bool(fired),
            result=shutdown,
            error=None,
            dir=run_dir,
        )
        try:
            if run.reached:
                run = dataclasses.replace(run, error=_call_check(self.check, shutdown, run))
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
        self.result.runs.append(run)
