"""One tracked child: how to signal, watch and reap it without ever hitting a stranger.

The child is named by a pidfd where there is one, else by PID after a ``waitid(WNOWAIT)`` check
that the PID is still our unreaped child (see ``children``). Every use of the pidfd holds the
backend's lock, and the pidfd is closed under it, so no thread can use a closed (and maybe
reused) descriptor number.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # the C module, as in _core: no enums
import errno
import os
import sys
import threading
import time

from .._core import signals as _signals
from . import children as _children
from . import pidfd as _pidfd

TYPE_CHECKING = False  # typing costs import time; annotations are strings here
if TYPE_CHECKING:
    from typing import IO, Any, Optional

#: Serialises break_() across threads: the break signal goes out once.
_break_lock = threading.Lock()
#: How long a dying process waits for one backend's lock before it skips that backend.
KILL_NOW_LOCK_WAIT = 0.05


def signal_name(sig: int) -> str:
    return _signals.name(sig)


#: The process objects of async libraries that wrap another one, and where they keep it: anyio's
#: (a trio.Process, or an asyncio.subprocess.Process) and trio's (a subprocess.Popen).
_WRAPPERS = {
    "anyio._backends._trio": "_process",
    "anyio._backends._asyncio": "_process",
    "trio": "_proc",  # trio.Process says it is trio's (trio._subprocess defines it)
    "trio._subprocess": "_proc",
}


def unwrap(proc: Any) -> Any:
    """The object graceful can stop under a ``trio.Process`` or an anyio ``Process``: stopped by
    PID and reaped through its ``Popen`` (trio's own ``wait()`` then returns the status), or the
    asyncio process under anyio's. Anything else is returned as it is."""
    while type(proc).__name__ == "Process" and type(proc).__module__ in _WRAPPERS:
        inner = getattr(proc, _WRAPPERS[type(proc).__module__], None)
        if inner is None:
            raise TypeError(
                f"graceful.track(): this {type(proc).__module__} Process does not hold the "
                "process it runs (an unknown version?); stop it in your own cleanup instead: "
                "graceful.register(proc.terminate) and await proc.wait()"
            )
        proc = inner
    return proc


def kind(proc: object) -> str:
    """ "popen", "process" or "asyncio"; TypeError for anything else (pools: ``pools``)."""
    subprocess = sys.modules.get("subprocess")
    if subprocess is not None and isinstance(proc, subprocess.Popen):
        return "popen"
    process = sys.modules.get("multiprocessing.process")
    if process is not None and isinstance(proc, process.BaseProcess):
        return "process"
    if type(proc).__module__ == "asyncio.subprocess":
        return "asyncio"
    raise TypeError(
        "graceful.track() takes a subprocess.Popen, a multiprocessing.Process, a "
        "concurrent.futures.ProcessPoolExecutor or a multiprocessing.Pool, got "
        f"{type(proc).__name__} {proc!r}; start the child with subprocess.Popen or "
        "graceful.spawn()"
    )


class NotOurChild(ChildProcessError):
    """The PID is not an unreaped child of this process: it must never be signalled."""


class Backend:
    """One child of this process, tracked until it is reaped.

    ``direct`` children are reaped by ``waitpid`` (Popen, and multiprocessing's fork and spawn
    methods); a forkserver child is the fork server's, and only its Process object can tell
    when it has ended. With ``send_break`` False, ``break_`` only starts the clock: the owner
    (``multiprocessing.Pool.terminate``) sends the signal itself, at a safe moment.
    """

    def __init__(
        self,
        proc: Any,
        sig: int,
        timeout: Optional[float],
        group: bool,
        *,
        send_break: bool = True,
    ) -> None:
        #: An asyncio.subprocess.Process: its loop's child watcher reaps it, never graceful.
        self.aproc: Any = None
        if kind(proc) == "asyncio":
            self.aproc, proc = proc, _popen_of(proc)
        self.proc = proc
        self.pid: int = proc.pid
        self.signal = sig
        self.timeout = timeout
        self.group = group
        self.send_break = send_break
        self.is_popen = kind(proc) == "popen"
        self.direct = self.is_popen or not _is_forkserver_child(proc)
        self.broken_at: Optional[float] = None
        self.killed = False
        self.reaped = False
        #: Not our child when tracked: a stranger had its number (never touched).
        self.foreign = False
        self._lock = threading.RLock()
        self.pidfd = _pidfd.open_pidfd(self.pid)
        # Opened before these checks: if the owner has not reaped the child and the kernel says
        # it is our child, the pidfd (or the PID) names it and not a process that reused it.
        if self.returncode_known():
            self._close()
            self.reaped = True
        elif self.direct and _children.state(self.pid, self.pidfd) == _children.NOT_OURS:
            self._close()
            self.reaped = self.foreign = True

    def __repr__(self) -> str:
        args = getattr(self.proc, "args", None) or getattr(self.proc, "name", "")
        return f"{args!r} (PID {self.pid}{', group' if self.group else ''})"

    def refuse_if_foreign(self, what: str) -> None:
        """Raise NotOurChild at the call that tried to track a stranger's number."""
        if self.foreign:
            raise NotOurChild(
                errno.ECHILD,
                f"{what}: PID {self.pid} is not an unreaped child of this process, so the "
                "number may belong to another process by now and graceful will not signal it. "
                "The child was reaped behind its owner's back (os.waitpid(), os.wait(), or "
                "SIGCHLD set to SIG_IGN) while its owner still reports it running; reap "
                "children only through their owner (proc.wait(), proc.poll(), "
                "process.join()), and track them before they can exit",
            )

    @property
    def deadline(self) -> Optional[float]:
        if self.broken_at is None or self.timeout is None:
            return None
        return self.broken_at + self.timeout

    def returncode_known(self) -> bool:
        """True once the owning object has reaped the child (its PID may be reused from then on)."""
        if self.aproc is not None and self.aproc.returncode is not None:
            return True
        if self.is_popen:
            return self.proc.returncode is not None
        popen = getattr(self.proc, "_popen", None)
        return popen is None or popen.returncode is not None

    def _state(self) -> str:
        return _children.state(self.pid, self.pidfd)

    def exited(self) -> bool:
        """True once the child has exited, reaped or not; never reaps a direct child."""
        with self._lock:
            if self.reaped:
                return True
            if self.pidfd is not None:
                return _pidfd.has_exited(self.pidfd)
            if self.returncode_known():
                return True
            if not self.direct:
                self.proc.join(0)  # reads the fork server's report; it reaped the child itself
                return self.proc.exitcode is not None
            # NOT_OURS: reaped elsewhere, gone for us. UNKNOWN (no waitid): assume it runs.
            return self._state() in (_children.EXITED, _children.NOT_OURS)

    def _still_ours(self) -> bool:
        """The child has not been reaped by anyone (so its PID, and group ID, are still its)."""
        if self.returncode_known() or not self.direct:
            return False
        return self._state() != _children.NOT_OURS

    def send(self, sig: int) -> None:
        """Signal the child (or its group); a child that is gone is silently skipped."""
        with self._lock:
            if self.reaped or self.pid <= 0:
                return
            if self.group:
                self._send_group(sig)
            elif self.pidfd is not None:
                _pidfd.send(self.pidfd, sig)
            elif self._may_kill_by_number():
                try:
                    os.kill(self.pid, sig)
                except ProcessLookupError:
                    pass

    def _send_group(self, sig: int) -> None:
        if self.pidfd is not None and _pidfd.send_group(self.pidfd, sig) is not None:
            return
        # killpg by number is safe only while the leader is our unreaped child: its PID, and so
        # the group ID, cannot be reused until it is reaped.
        if self._still_ours() and self.pid != os.getpgrp():
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                pass

    def _may_kill_by_number(self) -> bool:
        """Without a pidfd: only while the owner and the kernel agree the child still runs."""
        if self.returncode_known():
            return False
        if self.direct:
            return self._state() in (_children.RUNNING, _children.UNKNOWN)
        return not self.exited()

    def break_(self, notes: list[str], at: Optional[float] = None) -> None:
        """Send the break signal once, however many threads ask; the timeout counts from
        ``at`` (a ``time.monotonic()`` value; default: now)."""
        with _break_lock:
            if self.broken_at is not None:
                return
            self.broken_at = time.monotonic() if at is None else at
        if not self.send_break:
            return
        try:
            self.send(self.signal)
        except OSError as exc:
            notes.append(f"could not send {signal_name(self.signal)} to {self!r}: {exc}")

    def kill(self, notes: Optional[list[str]], why: str) -> None:
        """SIGKILL, noted with ``why`` (``notes`` None: quietly, unless it fails)."""
        self.killed = True
        try:
            self.send(_signal.SIGKILL)
        except OSError as exc:
            if notes is not None:
                notes.append(f"could not send SIGKILL to {self!r}: {exc}")
            return
        if notes is not None:
            notes.append(f"{self!r} {why}; sent SIGKILL")

    def kill_now(self) -> None:
        """SIGKILL now unless it is seen gone, quietly, waiting for no lock more than a moment
        (the process is dying: ``Tracker.kill_now``)."""
        if not self._lock.acquire(True, KILL_NOW_LOCK_WAIT):
            return  # its owner holds it (mid-reap): it is being taken care of
        try:
            if not self.reaped and (self.group or not self.returncode_known()):
                self.kill(None, "still running as the process dies")
        except OSError:
            pass
        finally:
            self._lock.release()

    def reap(self) -> bool:
        """Collect the exit status through the owning object; True once nothing is left."""
        with self._lock:
            if self.reaped:
                return True
            if self.direct and not self.returncode_known():
                current = self._state()
                if current == _children.RUNNING:
                    return False
                if current == _children.NOT_OURS:
                    # Someone else collected it: never waitpid() a number that may be a
                    # stranger's now.
                    self._finish()
                    return True
            if self.aproc is not None:
                done = self.exited()  # asyncio's child watcher collects it, in its loop
            elif self.is_popen:
                done = self.proc.poll() is not None
            else:
                self.proc.join(0)
                done = self.proc.exitcode is not None
            if done:
                self._finish()
            return done

    def _finish(self) -> None:
        self.reaped = True
        self._close()

    def _close(self) -> None:
        _pidfd.close(self.pidfd)
        self.pidfd = None

    def streams(self) -> list[IO[Any]]:
        """The pipes the caller opened to a Popen child, stdin first (EOF is the polite "exit")."""
        if self.aproc is not None:  # its stdin is a StreamWriter; closing it sends EOF
            stdin = self.aproc.stdin
            return [stdin] if stdin is not None and not stdin.is_closing() else []
        if not self.is_popen:
            return []
        found = (self.proc.stdin, self.proc.stdout, self.proc.stderr)
        return [s for s in found if s is not None and not s.closed]

    def forget(self) -> None:
        """In a forked child: drop the pidfd without the lock (its holder may not exist here)."""
        self._close()


def _popen_of(aproc: Any) -> Any:
    """The ``subprocess.Popen`` under an ``asyncio.subprocess.Process`` (its transport's)."""
    transport = getattr(aproc, "_transport", None)
    popen = None if transport is None else transport.get_extra_info("subprocess")
    if popen is None:
        raise TypeError(
            "graceful.track(): this asyncio.subprocess.Process has no subprocess transport "
            "(its event loop is not asyncio's own, or it has ended); stop it in your own "
            "cleanup instead: graceful.register(proc.terminate) and await proc.wait()"
        )
    return popen


def _is_forkserver_child(proc: Any) -> bool:
    forkserver = sys.modules.get("multiprocessing.popen_forkserver")
    popen = getattr(proc, "_popen", None)
    return forkserver is not None and isinstance(popen, forkserver.Popen)
