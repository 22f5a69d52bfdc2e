"""How a program ended, and assertions about it whose failures tell the whole story."""

from __future__ import annotations

import os
import signal as _signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from . import _timeline

#: A signal as the API takes it: a ``signal.Signals``, its number, or its name ("TERM", "SIGTERM").
SignalLike = Union[_signal.Signals, int, str]

_STDERR_TAIL = 20
_STDOUT_TAIL = 10


def to_signal(sig: SignalLike) -> int:
    """``sig`` as a signal number (a ``signal.Signals`` where Python has a name for it)."""
    if isinstance(sig, str):
        name = sig.upper() if sig.upper().startswith("SIG") else "SIG" + sig.upper()
        value = getattr(_signal, name, None)
        if not isinstance(value, _signal.Signals):
            raise ValueError(
                f"unknown signal name {sig!r}: use a signal.Signals member, a number, "
                f"or a name such as 'TERM' or 'SIGTERM'"
            )
        return value
    if isinstance(sig, bool) or not isinstance(sig, int):
        raise TypeError(f"a signal is a signal.Signals, an int or a name, not {type(sig).__name__}")
    if sig not in _signal.valid_signals():
        raise ValueError(f"{sig} is not a valid signal number on this platform")
    try:
        return _signal.Signals(sig)
    except ValueError:
        return sig  # a realtime signal Python has no name for


def signal_name(sig: int) -> str:
    try:
        return _signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


@dataclass(frozen=True)
class SentSignal:
    """A signal the harness sent."""

    __module__ = "graceful.testing"

    signal: int
    at: float  #: seconds after the first signal
    to: str  #: "process" or "group"; "self": the program sent it to itself (a sweep)
    delivered: bool  #: False: the program (or its group) was already gone

    def __str__(self) -> str:
        if self.to == "self":
            return f"{signal_name(self.signal)} sent by the program to itself at +{self.at:.3f} s"
        where = "the process group" if self.to == "group" else "the process"
        gone = "" if self.delivered else " (already gone: not delivered)"
        return f"{signal_name(self.signal)} to {where} at +{self.at:.3f} s{gone}"


@dataclass(frozen=True)
class LeftoverProcess:
    """A process the program started and left alive; the harness killed it after noting it."""

    __module__ = "graceful.testing"

    pid: int
    ppid: int
    pgid: int
    sid: int
    state: str
    cmdline: tuple[str, ...]
    found: str  #: how it was found: why it counts as the program's
    starttime: int = 0  #: clock ticks after boot (/proc/PID/stat): with pid, names the process

    def __str__(self) -> str:
        command = " ".join(self.cmdline) or "?"
        return (
            f"pid {self.pid} `{command[:120]}`: {self.found} "
            f"(parent {self.ppid}, group {self.pgid}, session {self.sid}, state {self.state})"
        )


@dataclass(frozen=True)
class ShutdownResult:
    """How a program ended: status, output, timing, timeline, and what it left alive."""

    __module__ = "graceful.testing"

    command: tuple[str, ...]
    pid: int  #: the program's PID (reaped now: the number may belong to someone else)
    returncode: int  #: as subprocess reports it: -N if it died by signal N
    stdout: str
    stderr: str
    elapsed: float  #: seconds from the first signal (or from the start, if none) to the end
    signals_sent: tuple[SentSignal, ...]
    timeline: tuple[dict[str, Any], ...]  #: the records of every process, in file order
    timeline_problems: tuple[str, ...]  #: lines of the timeline file that were not records
    orphans: tuple[LeftoverProcess, ...]  #: processes left alive; all killed since
    orphans_checked: bool  #: False where the process tree cannot be read (no /proc)
    timed_out: bool  #: the program did not end in time; the harness SIGKILLed it
    timeout: float
    core_dumped: bool = False
    notes: tuple[str, ...] = field(default=())

    # --- facts ---------------------------------------------------------------------------------

    @property
    def signal(self) -> Optional[int]:
        """The signal the program died by, or None if it exited."""
        return to_signal(-self.returncode) if self.returncode < 0 else None

    @property
    def exit_code(self) -> Optional[int]:
        """The program's exit status, or None if it died by a signal."""
        return self.returncode if self.returncode >= 0 else None

    @property
    def cleanups(self) -> list[dict[str, Any]]:
        """The ``cleanup`` records of the timeline, in the order they ran."""
        return [r for r in self.timeline if r.get("event") == "cleanup"]

    def events(self, event: str) -> list[dict[str, Any]]:
        """The timeline records of one kind (``"signal"``, ``"backend"``, ``"end"``, ...)."""
        return [r for r in self.timeline if r.get("event") == event]

    def how_it_ended(self) -> str:
        if self.timed_out:
            first = signal_name(self.signals_sent[0].signal) if self.signals_sent else "the start"
            return (
                f"still running {self.timeout:g} s after {first}; the harness SIGKILLed it "
                f"(returncode {self.returncode})"
            )
        if self.returncode < 0:
            core = ", core dumped" if self.core_dumped else ""
            ended = (
                f"killed by {signal_name(-self.returncode)}{core} (returncode {self.returncode})"
            )
        else:
            ended = f"exited with status {self.returncode}"
        if not self.signals_sent:
            return f"{ended}, {self.elapsed:.3f} s after it started (no signal was sent)"
        if not self.signals_sent[0].delivered:
            return f"{ended} before the first signal could be sent"
        return f"{ended}, {self.elapsed:.3f} s after the first signal"

    # --- the report ----------------------------------------------------------------------------

    def report(self) -> str:
        """Everything a failure message shows: how it ended, the timeline, leftovers, output."""
        lines = [
            f"program: {_short_command(self.command)} (pid {self.pid})",
            f"ended:   {self.how_it_ended()}",
            "signals: " + ("; ".join(map(str, self.signals_sent)) or "none sent"),
        ]
        lines += [f"note:    {note}" for note in self.notes]
        if self.timeline:
            lines.append(f"timeline ({len(self.timeline)} records, from ${_timeline.ENV}):")
            lines += ["  " + _timeline.format_record(r) for r in self.timeline]
        else:
            lines.append(
                f"timeline: no records (${_timeline.ENV} was set; the program does not run "
                "graceful, or ended before writing any)"
            )
        lines += [f"  timeline problem: {p}" for p in self.timeline_problems]
        if not self.orphans_checked:
            lines.append("left alive: unknown (no /proc here to read the process tree)")
        elif self.orphans:
            lines.append(f"left alive ({len(self.orphans)}, killed by the harness since):")
            lines += [f"  {p}" for p in self.orphans]
        else:
            lines.append("left alive: nothing")
        lines += _tail("stderr", self.stderr, _STDERR_TAIL)
        lines += _tail("stdout", self.stdout, _STDOUT_TAIL)
        return "\n".join(lines)

    def _fail(self, reason: str) -> AssertionError:
        return AssertionError(f"{reason}\n\n{self.report()}")

    # --- assertions ----------------------------------------------------------------------------

    def died_by(self, sig: SignalLike) -> ShutdownResult:
        """Assert the program died by ``sig`` (as graceful's re-raise makes it); returns self."""
        __tracebackhide__ = True
        want = to_signal(sig)
        if self.returncode == -want and not self.timed_out:
            return self
        why = f"expected the program to die by {signal_name(want)}, but it "
        if self.timed_out:
            why += "did not end in time (see below)"
        elif self.returncode < 0:
            why += f"died by {signal_name(-self.returncode)}"
        elif self.returncode == 128 + want:
            why += (
                f"exited with status {self.returncode} (128 + {signal_name(want)}): it caught "
                "the signal and exited instead of dying by it (on_signal='exit', or sys.exit "
                "in a handler); graceful's default on_signal='reraise' dies by the signal"
            )
        else:
            why += f"exited with status {self.returncode}"
        return self._raise(why)

    def exited_with(self, code: int) -> ShutdownResult:
        """Assert the program exited with status ``code`` (not by a signal); returns self."""
        __tracebackhide__ = True
        if self.returncode == code and not self.timed_out:
            return self
        if self.timed_out:
            return self._raise(f"expected exit status {code}, but it did not end in time")
        if self.returncode < 0:
            return self._raise(
                f"expected exit status {code}, but it died by {signal_name(-self.returncode)}"
            )
        return self._raise(f"expected exit status {code}, but it exited with {self.returncode}")

    def cleanups_ran(
        self, names: Sequence[str], *, only: bool = False, ok: Optional[bool] = True
    ) -> ShutdownResult:
        """Assert the cleanups ``names`` ran, in this order; returns self.

        A name matches a record whose qualified name equals it or ends with ``.`` + it
        (``"close_db"`` matches ``"app.close_db"``). Other cleanups may run in between unless
        ``only`` is true. ``ok=True`` (the default) also asserts each of them succeeded,
        ``ok=False`` that each raised, ``ok=None`` does not look.
        """
        __tracebackhide__ = True
        if isinstance(names, str):
            raise TypeError(f"cleanups_ran takes a list of names: cleanups_ran([{names!r}])")
        ran = self.cleanups
        ran_names = [r.get("name") for r in ran]
        position = 0
        for wanted in names:
            for index in range(position, len(ran)):
                if _timeline.name_matches(ran[index].get("name"), wanted):
                    break
            else:
                if any(_timeline.name_matches(n, wanted) for n in ran_names[:position]):
                    return self._raise(
                        f"expected cleanups {list(names)} in this order, but {wanted!r} ran "
                        f"before {names[list(names).index(wanted) - 1]!r}; ran: {ran_names}"
                    )
                return self._raise(
                    f"expected cleanups {list(names)}, but {wanted!r} did not run; "
                    f"ran: {ran_names}{_no_timeline_hint(self)}"
                )
            record = ran[index]
            if ok is not None and bool(record.get("ok")) != ok:
                state = f"failed: {record.get('error')}" if ok else "succeeded"
                return self._raise(
                    f"expected cleanup {wanted!r} to {'succeed' if ok else 'fail'}, "
                    f"but {record.get('name')} {state}"
                )
            position = index + 1
        if only and len(names) != len(ran):
            return self._raise(
                f"expected only the cleanups {list(names)}, but these ran: {ran_names}"
            )
        return self

    def no_orphans(self) -> ShutdownResult:
        """Assert the program left no process alive (the harness has killed any); returns self."""
        __tracebackhide__ = True
        if not self.orphans_checked:
            return self._raise(
                "cannot tell whether the program left processes alive: reading the process "
                "tree needs Linux /proc"
            )
        if self.orphans:
            return self._raise(
                f"expected no processes left alive, but the program left {len(self.orphans)}: "
                "stop them before the program ends (graceful.spawn, graceful.track)"
            )
        return self

    def ended_within(self, seconds: float) -> ShutdownResult:
        """Assert the program ended at most ``seconds`` after the first signal; returns self."""
        __tracebackhide__ = True
        if not self.timed_out and self.elapsed <= seconds:
            return self
        since = "the first signal" if self.signals_sent else "its start"
        took = "did not end in time" if self.timed_out else f"took {self.elapsed:.3f} s"
        return self._raise(f"expected the program to end within {seconds:g} s of {since}; {took}")

    def _raise(self, reason: str) -> ShutdownResult:
        __tracebackhide__ = True
        raise self._fail(reason)


def _no_timeline_hint(result: ShutdownResult) -> str:
    if result.timeline:
        return ""
    return (
        f" (the timeline is empty: the program must run graceful, which writes it to the file "
        f"${_timeline.ENV} names)"
    )


_ARG_WIDTH = 60


def _short_arg(arg: str) -> str:
    """One argument as the report shows it: a snippet by its first line and its length, a long
    argument shortened in the middle (a path keeps its start and its file name)."""
    if "\n" in arg:
        lines = [line.strip() for line in arg.splitlines() if line.strip()]
        first = lines[0] if lines else ""
        if len(first) > 40:
            first = first[:37] + "..."
        return f"<code: {first} ({len(lines)} lines)>"
    if len(arg) <= _ARG_WIDTH:
        return arg
    tail = _ARG_WIDTH * 2 // 3
    return arg[: _ARG_WIDTH - tail - 3] + "..." + arg[-tail:]


def _short_command(command: Sequence[str]) -> str:
    parts = []
    for arg in command:
        one = _short_arg(arg)
        shown = one.startswith("<code: ") or (one and " " not in one)
        parts.append(one if shown else repr(one))
    return " ".join(parts)


def _tail(name: str, text: str, count: int) -> list[str]:
    lines = text.splitlines()
    if not lines:
        return [f"{name}: empty"]
    shown = lines[-count:]
    head = (
        f"{name} (last {len(shown)} of {len(lines)} lines):" if len(lines) > count else f"{name}:"
    )
    return [head] + [f"  | {line}" for line in shown]


def wait_status_details(status: int) -> tuple[int, bool]:
    """(returncode as subprocess reports it, core dumped) from a raw wait status."""
    returncode = os.waitstatus_to_exitcode(status)
    return returncode, os.WIFSIGNALED(status) and os.WCOREDUMP(status)
