"""Start a program under the launcher, wait until it is ready, signal it, collect how it ended."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shlex
import signal as _signal
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Optional, Union

from . import _launcher, _timeline
from ._channel import Channel
from ._output import LinePattern, Matcher, Output
from ._result import (
    LeftoverProcess,
    SentSignal,
    ShutdownResult,
    SignalLike,
    to_signal,
    wait_status_details,
)

StrPath = Union[str, "os.PathLike[str]"]

#: Defaults, in seconds.
READY_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
GRACE = 0.25
_CLOSE_TIMEOUT = 5.0
_FILE_POLL = 0.005


class NotReady(AssertionError):
    """The program ended, or the timeout passed, before it was ready.

    ``result`` is how it ended (killed by the harness after a timeout).
    """

    __module__ = "graceful.testing"

    def __init__(self, message: str, result: Optional[ShutdownResult] = None) -> None:
        super().__init__(message)
        self.result = result

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.result))


def check_one_program(**given: object) -> None:
    """TypeError unless exactly one of script=, module=, command=, code= was given."""
    names = [name for name, value in given.items() if value is not None]
    if len(names) != 1:
        raise TypeError(
            "pass exactly one of script= (a Python file), module= (python -m), code= (a Python "
            f"snippet) or command= (any executable, as a list); got {names or 'none'}"
        )


def _argv(
    *,
    script: Optional[StrPath],
    module: Optional[str],
    command: Union[str, Sequence[StrPath], None],
    code: Optional[str],
    args: Sequence[StrPath],
    python: StrPath,
) -> list[str]:
    check_one_program(script=script, module=module, command=command, code=code)
    extra = [os.fspath(a) for a in args]
    py = [os.fspath(python), "-u"]
    if script is not None:
        return [*py, os.fspath(script), *extra]
    if module is not None:
        return [*py, "-m", module, *extra]
    if code is not None:
        return [*py, "-c", textwrap.dedent(code), *extra]
    argv = (
        shlex.split(command) if isinstance(command, str) else [os.fspath(a) for a in command or ()]
    )
    if not argv:
        raise ValueError("command= is empty: give the program and its arguments")
    return argv + extra


class Program:
    """A running program started by :func:`start`: wait for lines, signal it, stop it.

    Use it as a context manager (or call :meth:`close`): whatever happens in the block, the
    program and everything it started are killed at the end. Not thread-safe.
    """

    __module__ = "graceful.testing"

    def __init__(
        self,
        argv: list[str],
        *,
        env: Optional[Mapping[str, str]],
        cwd: Optional[StrPath],
    ) -> None:
        self.command: tuple[str, ...] = tuple(argv)
        self.result: Optional[ShutdownResult] = None
        #: The match of the readiness line, if one was awaited; ``.group(1)`` for a port, say.
        self.ready_match: Optional[re.Match[str]] = None
        self._sent: list[tuple[int, str, Optional[float]]] = []  # signal, target, time sent
        self._cursor = 0  # lines before this index were consumed by a wait
        self._cond = threading.Condition()
        fd, self._timeline_path = tempfile.mkstemp(prefix="graceful-timeline-", suffix=".jsonl")
        os.close(fd)
        full_env = dict(os.environ if env is None else env)
        full_env[_timeline.ENV] = self._timeline_path
        full_env.setdefault("PYTHONUNBUFFERED", "1")
        self._started_at = time.monotonic()
        self._ended_at = self._started_at  # set when it has ended
        try:
            self._channel = Channel(
                argv, env=full_env, cwd=None if cwd is None else os.fspath(cwd), cond=self._cond
            )
        except BaseException:
            _remove(self._timeline_path)
            raise
        self._output = Output(self._cond, self._channel.stdout, self._channel.stderr)
        try:
            #: The program's PID. Signal it through :meth:`send`, never by number.
            self.pid = self._channel.started()
        except OSError as exc:
            self._close_quietly()
            raise type(exc)(
                exc.errno,
                f"cannot start {argv[0]!r}: {exc.strerror} (command= is a list of the program "
                "and its arguments, found on PATH; use script= for a Python file)",
            ) from None
        except BaseException:
            self._close_quietly()
            raise

    # --- while it runs -------------------------------------------------------------------------

    @property
    def stdout(self) -> str:
        """What the program has written to stdout so far."""
        return self._output.stdout()

    @property
    def stderr(self) -> str:
        """What the program has written to stderr so far."""
        return self._output.stderr()

    @property
    def running(self) -> bool:
        return self._channel.status is None and self.result is None

    def wait_for(self, line: LinePattern, timeout: float = READY_TIMEOUT) -> re.Match[str]:
        """Wait for a line on stdout or stderr that comes after the last one waited for.

        ``line`` is a str (one whole line, exactly) or a compiled pattern (``re.compile``, searched
        in each line). Returns the match; raises :class:`NotReady` if the program ends or the
        timeout passes first.
        """
        __tracebackhide__ = True
        matcher = Matcher(line)
        found = self._wait_line(matcher, time.monotonic() + timeout)
        if found is None:
            raise self._not_ready(matcher, timeout)
        return found

    def _wait_line(self, matcher: Matcher, deadline: float) -> Optional[re.Match[str]]:
        """The next matching line, or None if the program ended or the deadline passed first.

        When the program ends, its last lines may still be on their way through the pipes: the
        end is collected first (:meth:`_finish`, which reads the pipes to their end), then the
        lines are searched once more.
        """
        with self._cond:
            while True:
                hit = self._output.find(matcher, self._cursor)
                if hit is not None:
                    self._cursor = hit[0] + 1
                    return hit[1]
                remaining = deadline - time.monotonic()
                ended = self._channel.status is not None or self._channel.closed
                if ended or remaining <= 0:
                    break
                self._cond.wait(remaining)
        if not ended:
            return None
        self._finish(timed_out=False, timeout=0.0)
        hit = self._output.find(matcher, self._cursor)
        if hit is None:
            return None
        self._cursor = hit[0] + 1
        return hit[1]

    def _wait_file(self, path: str, deadline: float) -> bool:
        with self._cond:
            while not os.path.exists(path):
                remaining = deadline - time.monotonic()
                if self._channel.status is not None or self._channel.closed or remaining <= 0:
                    return os.path.exists(path)
                self._cond.wait(min(remaining, _FILE_POLL))
        return True

    def _not_ready(self, what: Union[Matcher, str], timeout: float) -> NotReady:
        __tracebackhide__ = True
        ended_first = self._channel.status is not None
        if not ended_first:
            self._kill()
        result = self._finish(timed_out=not ended_first, timeout=timeout)
        awaited = what.description + " on stdout or stderr" if isinstance(what, Matcher) else what
        if ended_first:
            reason = f"the program ended before {awaited} appeared"
        else:
            reason = (
                f"{awaited} did not appear within {timeout:g} s; the harness killed the program"
            )
        hint = what.near_miss(self._output.lines) if isinstance(what, Matcher) else None
        if hint:
            reason += f"\nhint: {hint}"
        return NotReady(f"{reason}\n\n{result.report()}", result)

    def send(self, sig: SignalLike = "TERM", *, to: str = "process") -> bool:
        """Send one signal now, to the program (``to="process"``) or its process group
        (``to="group"``, as Ctrl-C in a terminal does); False if it had already ended."""
        number = to_signal(sig)
        if to not in ("process", "group"):
            raise ValueError(f"to= is 'process' or 'group', not {to!r}")
        if self.result is not None:
            return False
        with self._cond:  # lines from here on count as "after" this signal
            self._cursor = len(self._output.lines)
        at = self._channel.send(number, to)
        self._sent.append((number, to, at))
        return at is not None

    # --- the end -------------------------------------------------------------------------------

    def stop(
        self,
        *signals: SignalLike,
        interval: Optional[float] = None,
        after: Union[LinePattern, Sequence[LinePattern], None] = None,
        to: str = "process",
        timeout: float = STOP_TIMEOUT,
        grace: float = GRACE,
    ) -> ShutdownResult:
        """Send ``signals`` (SIGTERM if none) and wait for the end; return how it ended.

        Several signals are spaced by ``interval`` seconds, or each sent once ``after`` (one
        line, or one per later signal) appears after the previous signal. ``timeout`` counts
        from the first signal; a program still running then is SIGKILLed (``timed_out``).
        Processes it leaves alive are looked for until ``grace`` seconds after its end, then
        killed.
        """
        if self.result is not None:
            return self.result
        numbers = [to_signal(s) for s in signals] or [to_signal("TERM")]
        triggers = _triggers(len(numbers), interval, after)
        self.send(numbers[0], to=to)
        first = next((t for _, _, t in self._sent if t is not None), time.monotonic())
        deadline = first + timeout
        for number, trigger in zip(numbers[1:], triggers):
            if isinstance(trigger, Matcher):
                if self._wait_line(trigger, deadline) is None:
                    break
            elif self._channel.wait_end(min(trigger, max(0.0, deadline - time.monotonic()))):
                break
            if not self.running or time.monotonic() >= deadline:
                break
            self.send(number, to=to)
        return self._end(max(0.0, deadline - time.monotonic()), grace, timeout)

    def wait(self, timeout: float = STOP_TIMEOUT, *, grace: float = GRACE) -> ShutdownResult:
        """Wait for the program to end by itself (or by signals already sent); see :meth:`stop`."""
        return self._end(timeout, grace, timeout)

    def _end(self, wait: float, grace: float, timeout: float) -> ShutdownResult:
        if self.result is not None:
            return self.result
        timed_out = not self._channel.wait_end(wait)
        if timed_out:
            self._kill()
        return self._finish(timed_out=timed_out, timeout=timeout, grace=grace)

    def close(self) -> None:
        """Kill the program and everything it started, if still running. Idempotent."""
        if self.result is None:
            if self.running:
                self._kill()
            self._finish(timed_out=False, timeout=0.0, grace=0.0)

    def __enter__(self) -> Program:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def _kill(self) -> None:
        self._channel.send(_signal.SIGKILL, "process")
        if not self._channel.wait_end(_CLOSE_TIMEOUT):
            raise RuntimeError(f"program pid {self.pid} survived SIGKILL for {_CLOSE_TIMEOUT} s")

    def _close_quietly(self) -> None:
        self._channel.close(_CLOSE_TIMEOUT)
        self._output.join(_CLOSE_TIMEOUT)
        _remove(self._timeline_path)

    def _leftovers(self, grace: float) -> list[dict[str, Any]]:
        """The live processes under the launcher, once those dying anyway had ``grace`` s."""
        deadline = time.monotonic() + grace
        while True:
            left = self._channel.scan()
            if not left or time.monotonic() >= deadline:
                return left
            with self._cond:
                self._cond.wait(0.01)

    def _finish(self, *, timed_out: bool, timeout: float, grace: float = GRACE) -> ShutdownResult:
        """The program has ended: note what it left, kill that, collect everything."""
        if self.result is not None:
            return self.result
        left = self._leftovers(grace) if self._channel.status is not None else []
        self._channel.close(_CLOSE_TIMEOUT)
        notes = []
        if not self._output.join(_CLOSE_TIMEOUT):
            notes.append("stdout or stderr was still open after the tree was killed")
        records, problems = _timeline.read(self._timeline_path)
        _remove(self._timeline_path)
        status = self._channel.status
        if status is None:  # the launcher failed to report: should not happen
            returncode, core = -9, False
            notes.append("the harness lost track of the program's exit status")
        else:
            returncode, core = wait_status_details(status)
        self._ended_at = self._channel.ended_at or time.monotonic()
        self.result = ShutdownResult(
            command=self.command,
            pid=self.pid,
            returncode=returncode,
            stdout=self._output.stdout(),
            stderr=self._output.stderr(),
            **self._timing(),
            timeline=tuple(records),
            timeline_problems=tuple(problems),
            orphans=tuple(self._describe(info) for info in left),
            orphans_checked=_launcher.HAS_PROC,
            timed_out=timed_out,
            timeout=timeout,
            core_dumped=core,
            notes=tuple(notes),
        )
        return self.result

    def _timing(self) -> dict[str, Any]:
        """``elapsed`` and ``signals_sent``: times count from the first signal that went."""
        first = next((t for _, _, t in self._sent if t is not None), None)
        origin = first if first is not None else self._started_at
        return {
            "elapsed": max(0.0, self._ended_at - origin),
            "signals_sent": tuple(
                SentSignal(
                    sig, 0.0 if at is None or first is None else at - first, to, at is not None
                )
                for sig, to, at in self._sent
            ),
        }

    def note_signal(self, sig: SignalLike, at: float) -> None:
        """Record a signal the program sent itself at ``time.monotonic()`` ``at`` (a sweep's
        tracer does): ``signals_sent``, ``elapsed`` and ``ended_within`` count from it, as from
        a signal :meth:`send` sent. Also after the end: the result is updated."""
        self._sent.append((to_signal(sig), "self", at))
        self._sent.sort(key=lambda sent: float("inf") if sent[2] is None else sent[2])
        if self.result is not None:
            self.result = dataclasses.replace(self.result, **self._timing())

    def _describe(self, info: dict[str, Any]) -> LeftoverProcess:
        launcher = self._channel.proc.pid
        if info["ppid"] == launcher:
            found = "re-parented to the harness's subreaper when its parent ended"
        else:
            found = f"a child of leftover pid {info['ppid']}"
        if info["sid"] != self.pid:
            found += "; it left the program's session (setsid: daemonized)"
        elif info["pgid"] != self.pid:
            found += "; it left the program's process group"
        return LeftoverProcess(
            pid=info["pid"],
            ppid=info["ppid"],
            pgid=info["pgid"],
            sid=info["sid"],
            state=info["state"],
            cmdline=tuple(info.get("cmdline") or [info.get("comm", "?")]),
            found=found,
            starttime=info["starttime"],
        )

    def __repr__(self) -> str:
        state = "running" if self.running else "ended"
        return f"<Program pid={getattr(self, 'pid', None)} {state} {self.command[:3]!r}>"


def _remove(path: str) -> None:
    """Remove the timeline file (the launcher removes it itself when the harness died)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _triggers(
    count: int, interval: Optional[float], after: Union[LinePattern, Sequence[LinePattern], None]
) -> list[Union[float, Matcher]]:
    """What to wait for before each signal after the first."""
    if count == 1:
        return []
    if (interval is None) == (after is None):
        which = "neither was given" if interval is None else "pass one of them, not both"
        raise ValueError(
            f"{count} signals need interval= (seconds between them) or after= (the line to wait "
            f"for before each later one); {which}: signals sent back to back are merged by the "
            "kernel into one"
        )
    if interval is not None:
        if interval < 0:
            raise ValueError(f"interval= must be >= 0, not {interval}")
        return [float(interval)] * (count - 1)
    assert after is not None
    lines = [after] * (count - 1) if isinstance(after, (str, re.Pattern)) else list(after)
    if len(lines) != count - 1:
        raise ValueError(f"after= needs one line for each signal after the first ({count - 1})")
    return [Matcher(line) for line in lines]


#: Lists that every new Program is appended to: one per active ``shutdown`` fixture.
_collectors: list[list[Program]] = []


def collect(programs: list[Program]) -> None:
    """Append every Program started from now on to ``programs``, until :func:`stop_collecting`
    (the ``shutdown`` fixture: it kills them at the end of the test)."""
    _collectors.append(programs)


def stop_collecting(programs: list[Program]) -> None:
    """Append no more Programs to ``programs`` (given to :func:`collect`)."""
    _collectors[:] = [c for c in _collectors if c is not programs]


def start(
    *,
    script: Optional[StrPath] = None,
    module: Optional[str] = None,
    command: Union[str, Sequence[StrPath], None] = None,
    code: Optional[str] = None,
    args: Sequence[StrPath] = (),
    ready: Optional[LinePattern] = None,
    ready_file: Optional[StrPath] = None,
    ready_timeout: float = READY_TIMEOUT,
    env: Optional[Mapping[str, str]] = None,
    cwd: Optional[StrPath] = None,
    python: StrPath = sys.executable,
) -> Program:
    """Start a program in its own session and wait until it is ready.

    Exactly one of ``script`` (a Python file), ``module`` (``python -m``), ``code`` (a Python
    snippet, dedented) or ``command`` (any executable: a list, or a str split like a shell
    would, without a shell). Python ones run with ``python -u``; ``args`` are appended.
    ``ready`` waits for a line on stdout or stderr (a str: that whole line; ``re.compile(...)``:
    searched), ``ready_file`` for a file to exist, both within ``ready_timeout`` seconds.
    ``env`` replaces the environment (default: this one); ``$GRACEFUL_TIMELINE`` is always set.
    """
    __tracebackhide__ = True
    argv = _argv(script=script, module=module, command=command, code=code, args=args, python=python)
    file = None if ready_file is None else os.fspath(ready_file)
    if file is not None and os.path.exists(file):
        raise FileExistsError(
            f"ready_file={file!r} exists before the program started: remove it first, or use "
            "a fresh path (pytest's tmp_path)"
        )
    matcher = None if ready is None else Matcher(ready)  # a bad pattern fails before the start
    program = Program(argv, env=env, cwd=cwd)
    for collector in _collectors:
        collector.append(program)
    try:
        deadline = time.monotonic() + ready_timeout
        if matcher is not None:
            program.ready_match = program._wait_line(matcher, deadline)
            if program.ready_match is None:
                raise program._not_ready(matcher, ready_timeout)
        if file is not None and not program._wait_file(file, deadline):
            raise program._not_ready(f"the file {file!r}", ready_timeout)
    except BaseException:
        program.close()
        raise
    return program


def run(
    *,
    script: Optional[StrPath] = None,
    module: Optional[str] = None,
    command: Union[str, Sequence[StrPath], None] = None,
    code: Optional[str] = None,
    args: Sequence[StrPath] = (),
    ready: Optional[LinePattern] = None,
    ready_file: Optional[StrPath] = None,
    ready_timeout: float = READY_TIMEOUT,
    env: Optional[Mapping[str, str]] = None,
    cwd: Optional[StrPath] = None,
    python: StrPath = sys.executable,
    signal: Union[SignalLike, Sequence[SignalLike], None] = "TERM",
    interval: Optional[float] = None,
    after: Union[LinePattern, Sequence[LinePattern], None] = None,
    to: str = "process",
    timeout: float = STOP_TIMEOUT,
    grace: float = GRACE,
) -> ShutdownResult:
    """:func:`start` a program, then :meth:`Program.stop` it with ``signal`` (one or a list).

    ``signal=None`` sends nothing and waits for the program to end by itself. Everything the
    program started is gone when this returns.
    """
    __tracebackhide__ = True
    with start(
        script=script,
        module=module,
        command=command,
        code=code,
        args=args,
        ready=ready,
        ready_file=ready_file,
        ready_timeout=ready_timeout,
        env=env,
        cwd=cwd,
        python=python,
    ) as program:
        if signal is None:
            return program.wait(timeout, grace=grace)
        signals = [signal] if isinstance(signal, (int, str)) else list(signal)
        return program.stop(
            *signals, interval=interval, after=after, to=to, timeout=timeout, grace=grace
        )
