"""``graceful run --grace/--drain``: the supervisor's stop budget, its drain and its receipt.

From the first stop signal the supervisor knows the whole budget: the drain (the signal is held,
the readiness file removed, the command keeps serving), then the forward, then the SIGKILL of
the whole tree at the end of the grace less ``--margin``. Before it forwards anything it
publishes that SIGKILL time in the file that the command's ``GRACEFUL_DEADLINE`` names
(``_core.budget``), so every graceful program below fits its own end inside it. A budget
inherited from above (a nested supervisor, ``graceful.spawn(supervise=True)``) caps it.

Only a supervisor with a budget imports this module's helpers; a plain ``graceful run`` pays
for nothing here but :func:`inherited_text`.
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False  # typing costs the supervisor's start-up time; annotations are strings
if TYPE_CHECKING:
    from typing import Any, Callable, Optional

    from .run_options import Options

#: The variable a graceful program reads its budget from (``_core.budget.ENV``), and the one that
#: names the receipts' file (``_core.receipt.ENV``).
DEADLINE_ENV = "GRACEFUL_DEADLINE"
REPORT_ENV = "GRACEFUL_REPORT"


def _how(status: int, name: Callable[[int], str]) -> dict[str, Any]:
    if os.WIFSIGNALED(status):
        return {"how": "signal", "signal": name(os.WTERMSIG(status))}
    return {"how": "exit", "exit_code": os.waitstatus_to_exitcode(status)}


class Budget:
    """One run's budget: when to forward, when to SIGKILL, and what happened, for the receipt."""

    def __init__(
        self, opts: Options, say: Callable[[str], None], name: Callable[[int], str]
    ) -> None:
        """``say`` writes a line on stderr; ``name`` names a signal (the supervisor's own)."""
        from .._core import budget as core

        self.opts = opts
        self._say = say
        self._name = name
        self.core = core
        self.inherited = core.inherited()[0]  # checked by run_options.build: usable
        #: Where the receipt goes: --report, or the file a supervisor above named.
        self.report = opts.report or os.environ.get(REPORT_ENV) or None
        #: A deadline is passed down only under a budget; --report alone changes nothing else.
        self.passes = opts.grace is not None or bool(opts.drain) or self.inherited is not None
        self.file: Optional[str] = None
        self.child = 0
        self.started_at = time.monotonic()
        #: The first stop signal: the budget's time zero.
        self.first_at: Optional[float] = None
        self.kill_at: Optional[float] = None
        self.drain: float = 0.0
        self.drain_until: Optional[float] = None
        self.drain_end: Optional[tuple[float, str]] = None
        #: The stop signal held while draining.
        self.held: Optional[int] = None
        self.signals: list[dict[str, Any]] = []
        self.ended: list[dict[str, Any]] = []
        self.killed: dict[int, float] = {}

    # --- before the command runs ---------------------------------------------------------------

    def _expect(self) -> Optional[float]:
        """What the command can expect from its stop signal to the SIGKILL, known now."""
        opts = self.opts
        found = []
        if opts.timeout is not None:  # with --grace: grace - margin - drain (run_options)
            found.append(opts.timeout)
        if self.inherited is not None:
            above = self.inherited.expected()
            if above is not None:
                found.append(max(0.0, above - opts.margin - opts.drain))
        return min(found) if found else None

    def before_start(self) -> None:
        """The command's environment: its budget (a file, written at the stop) and receipts."""
        if self.report is not None:
            os.environ[REPORT_ENV] = self.report
        if not self.passes:
            return
        expect = self._expect()
        if expect is None and self.inherited is None:
            os.environ.pop(DEADLINE_ENV, None)  # no end to pass on
            return
        self.file = self.core.new_file_path()
        value = f"file={self.file}"
        if expect is not None:
            value = f"expect={expect:.6g},{value}"
        os.environ[DEADLINE_ENV] = value

    def started(self, child: int) -> None:
        self.child = child
        if self.opts.ready_file is not None:
            try:
                flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NONBLOCK | os.O_CLOEXEC
                fd = os.open(self.opts.ready_file, flags, 0o644)  # a FIFO: ENXIO, not a hang
                os.write(fd, b"ready\n")
                os.close(fd)
            except OSError as exc:
                self._say(f"cannot write --ready-file {self.opts.ready_file!r}: {exc.strerror}")

    # --- the stop -------------------------------------------------------------------------------

    def stop_signal(self, sig: int, target: int, now: float) -> bool:
        """A stop signal arrived; True if it is held (the drain), False to forward it now."""
        self.signals.append(
            {"t": now, "signal": self._name(sig), "event": "received", "to": os.getpid()}
        )
        if self.first_at is not None:
            if self.held is None:
                return False
            self.drain_until = now  # a second stop signal ends the drain: forward the first
            self.drain_end = (now, "second signal")
            return True
        self.first_at = now
        self._not_ready()
        if not self.passes:  # --report alone: the old countdown, only recorded
            return False
        self._fix_budget(now)
        if self.file is not None and self.kill_at is not None:
            try:
                self.core.write_file(self.file, self.kill_at)
            except OSError as exc:
                self._say(f"cannot publish the deadline in {self.file!r}: {exc.strerror}")
        self._tell_systemd(now)
        if not self.opts.quiet:
            self._announce(sig, now)
        if self.drain > 0:
            self.held = target
            self.drain_until = now + self.drain
            return True
        return False

    def _fix_budget(self, now: float) -> None:
        opts = self.opts
        own: Optional[float] = None
        if opts.grace is not None:
            own = now + opts.grace - opts.margin
        elif opts.timeout is not None:
            own = now + opts.drain + opts.timeout
        above: Optional[float] = None
        if self.inherited is not None:
            try:
                end = self.inherited.end_by()
            except ValueError as exc:
                self._say(f"{exc}: using this supervisor's own budget")
                end = None
            if end is not None:
                above = end - opts.margin
        self.drain = opts.drain
        if own is None or (above is not None and above < own):
            self.kill_at = above
            if above is not None:  # the budget above is the tighter: the drain gets half of it
                self.drain = min(opts.drain, max(0.0, (above - now) / 2))
        else:
            self.kill_at = own

    def _not_ready(self) -> None:
        if self.opts.ready_file is not None:
            try:
                os.unlink(self.opts.ready_file)
            except OSError:
                pass

    def _tell_systemd(self, now: float) -> None:
        """systemd's TimeoutStopSec must not cut the budget: extend it by what is really left."""
        if not os.environ.get("NOTIFY_SOCKET") or self.kill_at is None:
            return
        from .._integrations.systemd import notify

        left = max(0.0, self.kill_at - now) + self.opts.margin
        notify("STOPPING=1", f"EXTEND_TIMEOUT_USEC={int(left * 1_000_000)}")

    def _announce(self, sig: int, now: float) -> None:
        parts = []
        if self.drain > 0:
            parts.append(f"draining {self.drain:g} s before forwarding it")
        if self.kill_at is not None:
            parts.append(
                f"SIGKILL to what is left in {self.kill_at - now:.3g} s "
                f"(margin {self.opts.margin:g} s)"
            )
        if self.file is not None and self.kill_at is not None:
            parts.append(f"{DEADLINE_ENV} deadline published")
        self._say(f"{self._name(sig)}: " + "; ".join(parts or ["no SIGKILL"]))

    def drain_over(self, now: float, status: Optional[int]) -> Optional[int]:
        """The held signal, once the drain is over (None otherwise, or if the command ended)."""
        if self.held is None or self.drain_until is None:
            return None
        if status is not None:
            self.held = self.drain_until = None
            self.drain_end = (now, "command ended")
            return None
        if now < self.drain_until:
            return None
        held, self.held, self.drain_until = self.held, None, None
        if self.drain_end is None:
            self.drain_end = (now, "time")
        return held

    def forwarded(self, sig: int, pid: int, now: float) -> None:
        self.signals.append({"t": now, "signal": self._name(sig), "event": "forwarded", "to": pid})

    def told(self, sig: int, pid: int, now: float) -> None:
        """An adopted orphan, or what the command left behind, was told to stop."""
        self.signals.append({"t": now, "signal": self._name(sig), "event": "told", "to": pid})

    def reaped(self, pid: int, status: int, now: float) -> None:
        role = "command" if pid == self.child else "orphan"
        entry = {"pid": pid, "role": role, "t": now, **_how(status, self._name)}
        entry["killed"] = pid in self.killed
        self.ended.append(entry)

    def killed_now(self, pids: list[int], now: float) -> None:
        for pid in pids:
            self.killed.setdefault(pid, now)

    # --- the end --------------------------------------------------------------------------------

    def finish(self, status: Optional[int]) -> None:
        """Take the files back, and write the receipt."""
        now = time.monotonic()
        for path in (self.file, self.opts.ready_file):
            if path is not None:
                try:
                    os.unlink(path)
                except OSError:
                    pass
        if self.report is not None:
            self._write_receipt(status, now)

    def _write_receipt(self, status: Optional[int], now: float) -> None:
        import json

        t0 = self.first_at if self.first_at is not None else self.started_at
        opts = self.opts

        def rel(t: Optional[float]) -> Optional[float]:
            return None if t is None else round(t - t0, 6)

        end_of_budget = None
        if self.first_at is not None and opts.grace is not None:
            end_of_budget = self.first_at + opts.grace
        elif self.kill_at is not None:
            end_of_budget = self.kill_at + opts.margin
        drain = None
        if self.first_at is not None and self.drain > 0:
            end, why = self.drain_end if self.drain_end is not None else (None, None)
            drain = {"start": 0.0, "end": rel(end), "planned": self.drain, "ended_by": why}
        receipt = {
            "who": "graceful run",
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "command": list(opts.command),
            "clock": "CLOCK_MONOTONIC",
            "t0": round(t0, 6),
            "stopped": self.first_at is not None,
            "budget": {
                "grace": opts.grace,
                "drain": opts.drain,
                "margin": opts.margin,
                "kill_at": rel(self.kill_at),
                "inherited": None if self.inherited is None else self.inherited.text,
                "passed_down": os.environ.get(DEADLINE_ENV) if self.file else None,
            },
            "signals": [{**s, "t": rel(s["t"])} for s in self.signals],
            "drain": drain,
            "killed": [{"pid": p, "t": rel(t)} for p, t in sorted(self.killed.items())],
            "ended": [{**e, "t": rel(e["t"])} for e in self.ended],
            "exit": None if status is None else _how(status, self._name),
            "total": rel(now),
            "left": None if end_of_budget is None else round(end_of_budget - now, 6),
        }
        line = (json.dumps(receipt) + "\n").encode()
        assert self.report is not None
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(self.report, flags, 0o644)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError as exc:
            self._say(f"cannot write the receipt to {self.report!r}: {exc.strerror}")
