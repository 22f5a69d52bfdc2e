"""``graceful run``: supervise one command the tini way, and leave nothing of it behind.

The supervisor blocks every asynchronous signal and takes them one at a time with
``signal.sigtimedwait``: no handler ever runs in it, so nothing interrupts it half-way, and it does
not use graceful's guard (it has no cleanups to run). A signal is forwarded to the command, or to
its process group (``--group``), rewritten on the way by ``--map``. SIGCHLD means "reap":
``waitpid(-1, WNOHANG)`` until nothing is left, adopted orphans included. A stop signal (INT,
QUIT, TERM) starts the countdown: after ``--timeout`` everything still running below the
supervisor is SIGKILLed, and the wait ends the moment the last of them is gone.

When the command ends, what it left behind (its process group, orphans the supervisor adopted as a
subreaper) is told to stop the same way; then the supervisor ends as the command did. The command
runs under PR_SET_PDEATHSIG=SIGKILL, so it dies with the supervisor even if the supervisor is
SIGKILLed; ``--die-with-parent`` ties the supervisor to its own parent with a catchable signal,
so that it can stop its whole tree when the parent dies.
"""

from __future__ import annotations

import os
import sys
import time

from .._process.launcher import C_SIGNAL as _signal
from . import ending, launch
from .run_options import PDEATH_SIGNAL

TYPE_CHECKING = False  # typing and contextlib cost start-up time; annotations are strings here
if TYPE_CHECKING:
    from typing import Optional

    from . import procfs
    from .run_budget import Budget
    from .run_options import Options

#: Never blocked: raised by the supervisor's own faults, which must not be hidden.
_SYNCHRONOUS = frozenset(
    getattr(_signal, n)
    for n in ("SIGKILL", "SIGSTOP", "SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGTRAP", "SIGSYS")
    if hasattr(_signal, n)
) | {_signal.SIGABRT}
#: Python ignores these at start-up itself, so SIG_IGN says nothing about what we inherited.
_PYTHON_IGNORES = frozenset(
    getattr(_signal, n) for n in ("SIGPIPE", "SIGXFSZ") if hasattr(_signal, n)
)
#: How often to look again for descendants that cannot wake us (only our children send SIGCHLD),
#: for the first second, and after that.
POLL = 0.02
SLOW_POLL = 0.25
#: While nothing is happening: how often to check the parent, in case PR_SET_PDEATHSIG was lost.
IDLE = 1.0
#: After SIGKILL, how long to wait for the kernel before giving up on a process (state D).
KILL_GRACE = 2.0
#: What spawn(supervise=True) reads on the report fd once the command runs.
READY = "ready"
#: A budget or a receipts' file inherited from a supervisor above.
_BUDGET_ENV = frozenset(("GRACEFUL_DEADLINE", "GRACEFUL_REPORT"))


def _say(text: str) -> None:
    """One line on stderr, unbuffered; a closed stderr must not stop the supervisor."""
    try:
        os.write(2, f"graceful run: {text}\n".encode("utf-8", "replace"))
    except OSError:
        pass


def _name(sig: int) -> str:
    from .._core import signals as _signals  # not on the way of a plain start: it imports signal

    return _signals.name(sig)


class Supervisor:
    """One run: start the command, forward, reap, escalate, sweep, and end as the command did."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.pid = os.getpid()
        self.ppid = opts.parent_pid if opts.parent_pid is not None else os.getppid()
        self.child = 0
        #: The command's wait status, once reaped, and when.
        self.status: Optional[int] = None
        self.ended_at: Optional[float] = None
        self.kill_at: Optional[float] = None
        self.killed_at: Optional[float] = None
        self.stopped_at: Optional[float] = None
        #: The first stop signal sent (after --map): what leftovers are told at the end.
        self.stop_signal: Optional[int] = None
        self.parent_gone = False
        #: The command's process group is empty, and its number may be reused: never look again.
        self.group_gone = False
        #: Every orphan below us becomes our child (PID 1 or a subreaper): no child, no descendant.
        self.adopts_orphans = False
        #: Leftovers already told to stop, by PID.
        self.told: set[int] = set()
        self.waited: frozenset[int] = frozenset()
        self.ignored: frozenset[int] = frozenset()
        self.tty: Optional[int] = None
        self.tty_pgrp = 0
        #: Signals that are only forwarded (no stop signal), and what each is sent as: while the
        #: command runs, :meth:`_wait` sends these on the spot.
        self.plain: dict[int, int] = {}
        #: The stop budget (``--grace``, ``--drain``, one inherited) and the receipt: see
        #: :mod:`.run_budget`, imported only then (a plain run pays nothing for it).
        self.budget: Optional[Budget] = None
        environ = os.environ
        if (
            opts.grace is not None
            or opts.drain
            or opts.report
            or opts.ready_file
            or _BUDGET_ENV & environ.keys()
        ):
            from .run_budget import Budget

            self.budget = Budget(opts, _say, _name)

    # --- start ------------------------------------------------------------------------------

    def run(self) -> int:
        if not hasattr(_signal, "sigtimedwait"):
            _say(f"needs signal.sigtimedwait(), which Python does not have on {sys.platform}")
            return 2
        threading = sys.modules.get("threading")
        if threading is not None and threading.active_count() > 1:
            # Signals blocked in one thread go to another; a fork copies no other thread.
            _say(
                "must be the only thread of its process: it blocks every signal and forks by "
                "hand; run `graceful run` as a command, not from a program with threads"
            )
            return 2
        if not self._prepare():
            ending.die_by(_signal.SIGTERM)  # our parent is gone: start nothing, end as it asked
            return 128 + int(_signal.SIGTERM)
        if self.budget is not None:
            self.budget.before_start()  # the command's GRACEFUL_DEADLINE and GRACEFUL_REPORT
        try:
            child = launch.start(self.opts.command, self.opts.executable, self.ignored)
        except OSError as exc:
            return self._not_started(f"0:{exc}", 126, f"cannot start the launcher: {exc}")
        self.child = child.pid
        self._hand_terminal()
        from . import procfs  # here, after the fork: the child execs meanwhile

        if not procfs.available() and not self.opts.quiet:
            _say("no /proc: what the command leaves behind cannot be found and stopped")
        try:
            child.wait()
        except launch.LaunchFailed as exc:
            os.waitpid(exc.pid, 0)
            message = f"cannot run {exc.filename!r}: {exc.strerror}"
            return self._not_started(exc.report, exc.exit_status, message)
        self._report(READY)
        if self.opts.verbose:
            _say(f"started PID {self.child}: {' '.join(self.opts.command)}")
        self._detach_stdio()
        if self.budget is not None:
            self.budget.started(self.child)
        try:
            self._loop()
        finally:
            self._take_terminal_back()
            if self.budget is not None:
                self._reap()  # zombies the loop no longer counts, so the receipt has their end
                self.budget.finish(self.status)
        assert self.status is not None
        return ending.exit_like(self.status)

    def _prepare(self) -> bool:
        """Block the signals, take over SIGCHLD, become a subreaper; False if the parent is gone."""
        opts = self.opts
        self.waited = frozenset(_signal.valid_signals()) - _SYNCHRONOUS
        _signal.pthread_sigmask(_signal.SIG_BLOCK, self.waited)
        # What we inherited as ignored (nohup: HUP; a background job: INT, QUIT) stays ignored
        # in the command and is not forwarded to it.
        self.ignored = (
            frozenset(s for s in self.waited if _signal.getsignal(s) == _signal.SIG_IGN)
            - _PYTHON_IGNORES
        )
        for sig in opts.forward - self.ignored - opts.stop:
            target = opts.remap.get(sig, sig)
            if target not in opts.stop and sig in self.waited and sig != _signal.SIGCHLD:
                self.plain[sig] = target
        # SIG_IGN for SIGCHLD would reap children behind our back: waitpid() would never see
        # the command's status.
        _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
        if opts.report_fd is not None:
            os.set_inheritable(opts.report_fd, False)
        if opts.own_group and os.getpgrp() != self.pid:
            os.setpgid(0, 0)
        if opts.die_with_parent:
            launch.prctl(launch.PR_SET_PDEATHSIG, PDEATH_SIGNAL)
            if os.getppid() != self.ppid:
                _say(f"parent PID {self.ppid} is already gone; not starting the command")
                return False
        if self.pid == 1:
            self.adopts_orphans = True
            if not opts.quiet:
                _say(
                    "running as PID 1: the kernel drops the signals a PID 1 has no handler for, "
                    "so graceful run takes them all, forwards them, and reaps every orphan here"
                )
        elif opts.subreaper:
            try:
                launch.prctl(launch.PR_SET_CHILD_SUBREAPER, 1)
                self.adopts_orphans = True
            except OSError as exc:
                if not opts.quiet:
                    _say(f"not a subreaper ({exc}): orphans of the command go to init")
        return True

    def _not_started(self, report: str, status: int, message: str) -> int:
        self._report(report)
        if self.opts.report_fd is None:  # otherwise spawn raises the error itself
            _say(message)
        return status

    def _report(self, text: str) -> None:
        """Tell ``graceful.spawn`` (``--report-fd``) whether the command runs."""
        fd = self.opts.report_fd
        if fd is None:
            return
        try:
            os.write(fd, text.encode("utf-8", "replace"))
        except OSError:
            pass
        try:
            os.close(fd)
        except OSError:
            pass

    def _hand_terminal(self) -> None:
        """Make the command's group the terminal's foreground, as a shell does for a job."""
        try:
            if os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp():
                self.tty_pgrp = os.getpgrp()
                os.tcsetpgrp(0, self.child)
                self.tty = os.dup(0)
        except OSError:
            pass

    def _take_terminal_back(self) -> None:
        if self.tty is not None:
            try:
                os.tcsetpgrp(self.tty, self.tty_pgrp)  # SIGTTOU is blocked: allowed
            except OSError:
                pass
            os.close(self.tty)
            self.tty = None

    def _detach_stdio(self) -> None:
        """Let go of stdin and stdout: a reader sees EOF when the command closes them."""
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1):
            try:
                os.dup2(null, fd)
            except OSError:
                pass
        os.close(null)

    # --- the loop ---------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            self._reap()
            now = time.monotonic()
            self._check_parent(now)
            held = None if self.budget is None else self.budget.drain_over(now, self.status)
            if held is not None:
                self._forward_stop(held, now)
            if self.status is not None:
                left = self._leftovers()
                if not left:
                    return
                self._tell_leftovers(left, now)
            if self.kill_at is not None and now >= self.kill_at:
                left = self._kill_everything(now)
                assert self.killed_at is not None
                if self.status is not None and now > self.killed_at + KILL_GRACE:
                    _say(f"gave up on PIDs {sorted(p.pid for p in left)}: SIGKILL did not end them")
                    return
            sig = self._wait(self._wait_time(now))
            if sig is not None:
                self._on_signal(sig)

    def _wait(self, timeout: float) -> Optional[int]:
        """Wait up to ``timeout`` s for a signal, and return it; None once the time is up.

        The hot path: a signal that is only forwarded (HUP, USR1, WINCH... while the command
        runs: no stop signal, nothing to reap or check) is sent before anything else, here, and
        the wait goes on, with no bookkeeping in between for the kernel to wait behind.
        """
        plain = self.plain if self.status is None else {}
        waited, child, verbose = self.waited, self.child, self.opts.verbose
        send = os.killpg if self.opts.group else os.kill
        sigtimedwait, monotonic = _signal.sigtimedwait, time.monotonic
        deadline = monotonic() + timeout
        while True:
            info = sigtimedwait(waited, timeout)
            if info is None:
                return None
            sig: int = info.si_signo
            target = plain.get(sig)
            if target is None:
                return sig
            try:
                send(child, target)
            except ProcessLookupError:
                if send is not os.kill:
                    self._send_command(target)  # the command left its group: to it alone
            if verbose:
                self._say_forwarded(sig, target)
            timeout = deadline - monotonic()
            if timeout <= 0:
                return None

    def _wait_time(self, now: float) -> float:
        wait = IDLE
        marks = [t for t in (self.ended_at, self.killed_at) if t is not None]
        if marks:
            # Grandchildren do not wake us: look again soon, less often as time goes by (a
            # leftover that ignores SIGTERM under --timeout none would keep us polling).
            wait = POLL if now - max(marks) < 1.0 else SLOW_POLL
        if self.kill_at is not None:
            wait = min(wait, max(0.0, self.kill_at - now))
        if self.budget is not None and self.budget.drain_until is not None:
            wait = min(wait, max(0.0, self.budget.drain_until - now))
        return wait

    def _reap(self) -> None:
        """Collect every child that has ended: the command, and any orphan we adopted."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.budget is not None:
                self.budget.reaped(pid, status, time.monotonic())
            if pid == self.child:
                self.status = status
                self.ended_at = time.monotonic()
                if self.opts.verbose:
                    _say(f"command PID {pid} ended ({_describe(status)})")
            elif self.opts.verbose > 1:
                _say(f"reaped PID {pid} ({_describe(status)})")

    def _on_signal(self, sig: int) -> None:
        if sig == _signal.SIGCHLD or (sig == PDEATH_SIGNAL and self.opts.die_with_parent):
            return  # reaping and the parent check happen at the top of the loop
        if sig not in self.opts.forward or sig in self.ignored or self.status is not None:
            if self.opts.verbose:
                _say(f"received {_name(sig)}: not forwarded")
            return
        target = self.opts.remap.get(sig, sig)
        stop = sig in self.opts.stop or target in self.opts.stop
        if stop and self.budget is not None:
            now = time.monotonic()
            if self.budget.stop_signal(sig, target, now):
                self.kill_at = self.budget.kill_at
                return  # held: the drain, or a second stop signal that ends it (forwarded next)
            self._forward_stop(target, now, sig)
            return
        self._send_command(target)
        if self.opts.verbose:
            self._say_forwarded(sig, target)
        if stop:
            self._stop(target, time.monotonic(), self.opts.timeout)

    def _forward_stop(self, target: int, now: float, sig: Optional[int] = None) -> None:
        """Under a budget: forward a stop signal (after the drain); the SIGKILL time is set."""
        assert self.budget is not None
        self._send_command(target)
        self.budget.forwarded(target, self.child, now)
        if self.opts.verbose:
            self._say_forwarded(target if sig is None else sig, target)
        if self.budget.kill_at is None:  # no budget (--report alone): the --timeout countdown
            self._stop(target, now, self.opts.timeout)
            self.budget.kill_at = self.kill_at
        else:
            self._stop(target, now, None)
            self.kill_at = self.budget.kill_at

    def _say_forwarded(self, sig: int, target: int) -> None:
        mapped = f" as {_name(target)}" if target != sig else ""
        _say(f"forwarded {_name(sig)}{mapped} to {self._target()}")

    def _check_parent(self, now: float) -> None:
        if not self.opts.die_with_parent or self.parent_gone or os.getppid() == self.ppid:
            return
        self.parent_gone = True
        target = self.opts.remap.get(_signal.SIGTERM, _signal.SIGTERM)
        if not self.opts.quiet:
            grace = self.opts.orphan_timeout
            when = "no SIGKILL" if grace is None else f"SIGKILL in {grace:g} s"
            what = f"sending {_name(target)} to {self._target()}; {when}"
            _say(f"parent PID {self.ppid} died: {what}")
        if self.status is None:
            self._send_command(target)
        self._stop(target, now, self.opts.orphan_timeout)

    def _stop(self, sig: int, now: float, timeout: Optional[float]) -> None:
        """A stop was sent to the command: tell adopted orphans too, and start the countdown."""
        if self.stop_signal is None:
            self.stop_signal = sig
            self.stopped_at = now
        self._tell_orphans(sig)
        if timeout is not None:
            at = now + timeout
            self.kill_at = at if self.kill_at is None else min(self.kill_at, at)

    # --- sending ----------------------------------------------------------------------------

    def _target(self) -> str:
        return f"process group {self.child}" if self.opts.group else f"PID {self.child}"

    def _send_command(self, sig: int) -> None:
        """Signal the command (or its group). Its PID cannot be reused while it is unreaped."""
        if self.status is not None:
            return
        if self.opts.group:
            try:
                os.killpg(self.child, sig)
                return
            except ProcessLookupError:
                pass  # the command left its group (setsid): it still gets the signal
        try:
            os.kill(self.child, sig)
        except ProcessLookupError:
            pass

    def _tell_orphans(self, sig: int) -> None:
        """Adopted orphans have nobody else to tell them to stop."""
        from . import procfs

        for p in procfs.processes() if procfs.available() else ():
            if p.ppid != self.pid or p.pid == self.child or not p.alive:
                continue
            if self.opts.group and p.pgrp == self.child and self.status is None:
                continue  # the group signal reached it
            try:
                os.kill(p.pid, sig)  # our unreaped child: the PID is still its own
            except ProcessLookupError:
                pass
            self.told.add(p.pid)
            if self.budget is not None:
                self.budget.told(sig, p.pid, time.monotonic())

    def _leftovers(self) -> list[procfs.Stat]:
        """Live processes below us, and in the command's process group."""
        from . import procfs

        if not procfs.available() or self._nothing_left():
            return []
        table = procfs.processes()
        found = {p.pid: p for p in procfs.descendants(self.pid, table)}
        if not self.group_gone:
            members = [p for p in table if p.pgrp == self.child and p.pid != self.pid]
            if not members and self.status is not None:
                self.group_gone = True  # empty, its number may be reused from now on
            for p in members:
                found.setdefault(p.pid, p)
        return [p for p in found.values() if p.alive]

    def _nothing_left(self) -> bool:
        """True, without reading all of /proc, when we have no child left (so, adopting orphans,
        no descendant) and the command's process group is empty."""
        if not self.adopts_orphans or self.status is None:
            return False
        try:
            os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            return False  # a child is left
        except ChildProcessError:
            pass
        if not self.group_gone:
            try:
                os.killpg(self.child, 0)
                return False  # a member is left (or we may not tell: look in /proc)
            except ProcessLookupError:
                self.group_gone = True
            except OSError:
                return False
        return True

    def _tell_leftovers(self, left: list[procfs.Stat], now: float) -> None:
        """After the command ended: stop what it left behind, as the command was (or TERM)."""
        sig = self.stop_signal or self.opts.remap.get(_signal.SIGTERM, _signal.SIGTERM)
        new = [p for p in left if p.pid not in self.told]
        if not new:
            return
        if self.stopped_at is None:
            self.stopped_at = now
        if self.opts.verbose:
            _say(f"the command left {len(new)} process(es) behind: sending {_name(sig)}")
        for p in new:
            self._send_by_identity(p, sig)
            self.told.add(p.pid)
            if self.budget is not None:
                self.budget.told(sig, p.pid, now)
        if self.kill_at is None and self.opts.timeout is not None:
            self.kill_at = now + self.opts.timeout

    def _kill_everything(self, now: float) -> list[procfs.Stat]:
        """SIGKILL the command's group and everything below us; again while any of it is left."""
        left = self._leftovers()
        if self.status is None:
            try:
                os.killpg(self.child, _signal.SIGKILL)  # the leader is unreaped: the group is ours
            except ProcessLookupError:
                pass
        for p in left:
            self._send_by_identity(p, _signal.SIGKILL)
        if self.budget is not None:
            self.budget.killed_now([p.pid for p in left], now)
        if self.killed_at is None:
            self.killed_at = now
            if not self.opts.quiet and left:
                since = now - (self.stopped_at if self.stopped_at is not None else now)
                after = _name(self.stop_signal or _signal.SIGTERM)
                _say(f"sent SIGKILL to {len(left)} process(es) running {since:.1f} s after {after}")
                if not self.opts.group and any(p.pid != self.child for p in left):
                    _say(
                        f"{after} went to the command (PID {self.child}) alone, not to its "
                        "children (a shell waits for its child before it runs a trap): "
                        "--group sends it to the command's whole process group"
                    )
        return left

    def _send_by_identity(self, p: procfs.Stat, sig: int) -> None:
        """Signal ``p`` only if it is still the process we saw (not a newcomer with its PID)."""
        from . import procfs

        if p.ppid == self.pid:
            try:
                os.kill(p.pid, sig)  # our unreaped child
            except ProcessLookupError:
                pass
            return
        fd = -1
        if hasattr(os, "pidfd_open"):
            try:
                fd = os.pidfd_open(p.pid)
            except OSError:
                return  # gone
        try:
            now = procfs.stat(p.pid)
            if now is None or (now.ppid, now.pgrp) != (p.ppid, p.pgrp):
                return  # not the process we saw (the pidfd, if any, now pins whatever it is)
            try:
                if fd >= 0:
                    _signal.pidfd_send_signal(fd, sig)
                else:
                    os.kill(p.pid, sig)
            except ProcessLookupError:
                pass
        finally:
            if fd >= 0:
                os.close(fd)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {_name(os.WTERMSIG(status))}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def supervise(opts: Options) -> int:
    """Run ``opts.command`` under a supervisor; return (or die by) what it ended with."""
    return Supervisor(opts).run()
