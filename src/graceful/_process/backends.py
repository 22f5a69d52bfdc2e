"""``graceful.track``: children and process pools stopped when this program ends.

One process-wide tracker registers a single ``graceful.register`` cleanup, so all children share
one deadline, and a ``graceful.register_break`` callback, so the break signal goes out as soon as
a handled signal arrives, while the main thread is still unwinding. Once the cleanup has run (an
``on_signal="raise"`` episode, say) it is registered again by the next ``track()``, so a child
tracked after that is stopped at the end too. One child is ``backend.Backend``; stopping many
on one deadline is ``stopping``; pools are ``pools``.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # the C module, as in _core: no enums
import os
import sys
import threading

from .._core import ending as _ending
from .._core import registry as _registry
from .._core.checks import check_signal, check_timeout
from . import stopping as _stopping
from .backend import Backend, kind, unwrap
from .pools import PoolBackend, pool_kind
from .pools import check as _check_pool

TYPE_CHECKING = False  # typing costs import time; annotations are strings here
if TYPE_CHECKING:
    from typing import Any, Optional, Union

    from .._core.signals import SignalLike

if TYPE_CHECKING:
    import subprocess
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing.pool import Pool
    from multiprocessing.process import BaseProcess


def _guard_deadline() -> Optional[float]:
    """When the outermost guard's shutdown deadline ends this process (``time.monotonic()``),
    or None: backends get SIGKILL just before it. The one place that asks the core."""
    from .._core.machine import machine

    return machine.deadline


if TYPE_CHECKING:
    from typing import TypeVar

    _P = TypeVar("_P", bound="Union[subprocess.Popen[Any], BaseProcess, ProcessPoolExecutor, Pool]")


class Tracker:
    """The children and pools this process tracks; forgotten in a forked child, which does not
    own them."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._backends: list[Backend] = []
        self._pools: list[PoolBackend] = []
        self._pid = os.getpid()
        #: The cleanup is registered and has not run yet.
        self._hooked = False
        #: The break callback is registered (it stays registered across shutdowns).
        self._break_hooked = False

    def _adopt_after_fork(self) -> None:
        if self._pid != os.getpid():
            for b in self._backends:
                b.forget()
            for pool in self._pools:
                pool.forget()
            self._backends = []
            self._pools = []
            self._hooked = self._break_hooked = False
            self._pid = os.getpid()

    def add(self, backend: Backend) -> None:
        with self._lock:
            self._adopt_after_fork()
            self._prune()
            self._backends = [b for b in self._backends if b.proc is not backend.proc]
            self._backends.append(backend)
        self._hook()

    def add_pool(self, pool: PoolBackend, obj: object) -> None:
        with self._lock:
            self._adopt_after_fork()
            self._prune()
            if any(p.owns(obj) for p in self._pools):
                return
            self._pools.append(pool)
        self._hook()

    def _prune(self) -> None:
        keep = []
        for b in self._backends:
            if b.reaped or (b.returncode_known() and not b.group):
                b.forget()
            else:
                keep.append(b)
        self._backends = keep
        self._pools = [p for p in self._pools if not p.finished()]

    def _hook(self) -> None:
        """Register the cleanup unless it is registered and has not run yet; the break callback
        once (break callbacks stay registered)."""
        with self._lock:
            hook, self._hooked = not self._hooked, True
            hook_break, self._break_hooked = not self._break_hooked, True
        try:
            if hook_break:
                _registry.register_break(self.break_all)
            if hook:
                _registry.register(self.stop_all)
        except BaseException:
            with self._lock:
                self._hooked = self._hooked and not hook
                self._break_hooked = self._break_hooked and not hook_break
            raise

    def snapshot(self) -> list[Backend]:
        with self._lock:
            self._adopt_after_fork()
            return list(self._backends)

    def pools(self) -> list[PoolBackend]:
        with self._lock:
            self._adopt_after_fork()
            return list(self._pools)

    def break_all(self) -> None:
        """The ``register_break`` callback: break every pool and live child now."""
        notes: list[str] = []
        deadline = _guard_deadline()
        for pool in self.pools():
            pool.break_(notes, deadline)
        for b in self.snapshot():
            if b.group or not b.exited():
                b.break_(notes)
        _stopping.warn(notes)

    def kill_now(self) -> None:
        """The process dies at once (a forced end, the deadline): SIGKILL every tracked child
        and pool worker not seen to exit, without waiting for anything (``ending.on_death``).
        No lock is waited for long: the main thread may hold them, stopped mid-cleanup."""
        for pool in list(self._pools):
            pool.kill_now()
        for b in list(self._backends):
            b.kill_now()

    def stop_all(self) -> None:
        """The ``register`` cleanup: stop every tracked child and pool on one shared deadline.

        Children tracked while it runs (by another thread) are stopped too. Once it is done the
        cleanup is no longer registered; the next ``track()`` registers it again.
        """
        notes: list[str] = []
        done_b: set[int] = set()
        done_p: set[int] = set()
        while True:
            with self._lock:
                self._adopt_after_fork()
                backends = [b for b in self._backends if id(b) not in done_b]
                pools = [p for p in self._pools if id(p) not in done_p]
                if not backends and not pools:
                    self._backends = [b for b in self._backends if not b.reaped]
                    self._pools = [p for p in self._pools if not p.finished()]
                    self._hooked = False  # consumed by the registry: the next add() hooks again
                    break
            done_b.update(id(b) for b in backends)
            done_p.update(id(p) for p in pools)
            deadline = _guard_deadline()
            for pool in pools:
                pool.break_(notes, deadline)
            try:
                _stopping.stop(backends, notes, deadline)
            finally:
                for pool in pools:
                    pool.finish(notes, deadline)
        _stopping.warn(notes)


tracker = Tracker()
_ending.on_death(tracker.kill_now)


def track(
    proc: _P,
    *,
    signal: SignalLike = _signal.SIGTERM,
    timeout: Optional[float] = 5.0,
    group: bool = False,
) -> _P:
    """Stop ``proc`` when this program ends: ``signal``, close its pipes, wait, SIGKILL, reap.

    ``proc`` is a started ``subprocess.Popen`` or ``multiprocessing.Process`` of this process (or
    an ``asyncio.subprocess.Process``, a ``trio.Process``, an anyio ``Process``), or
    a ``concurrent.futures.ProcessPoolExecutor`` or ``multiprocessing.Pool`` (all its workers,
    present and future). Returns ``proc``. A child that its owner has already reaped is not
    tracked; one reaped behind its owner's back raises ``ChildProcessError``.
    """
    try:
        return _track(proc, signal, timeout, group)
    except (TypeError, ValueError) as exc:
        # The caller started proc before calling us: a refusal leaves it running, untracked.
        note = _still_running(proc)
        if note is not None:
            exc.args = (f"{exc}; {note}", *exc.args[1:])
        raise


def _still_running(proc: object) -> Optional[str]:
    """What a refusal must add when ``proc`` is a child that is still running: that it is."""
    pid = getattr(proc, "pid", None)
    running = getattr(proc, "returncode", None) is None and getattr(proc, "_popen", 1) is not None
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0 or not running:
        return None
    try:
        os.kill(pid, 0)
    except OSError:
        return None
    return (
        f"PID {pid} was started, is still running and is not tracked: stop it yourself "
        "(proc.kill(), then proc.wait() or proc.join()), or call track() as it asks"
    )


def _track(proc: _P, signal: object, timeout: Optional[float], group: bool) -> _P:
    _check_platform()
    sig = check_signal(signal, "graceful.track()")
    wait = check_timeout(timeout, "graceful.track()")
    if not isinstance(group, bool):
        raise TypeError(f"graceful.track(): group must be True or False, got {group!r}")
    pkind = pool_kind(proc)
    if pkind is not None:
        _check_pool(proc, pkind, sig, group)
        if pkind == "executor" and getattr(proc, "_processes", None) is None:
            return proc  # shut down already: its workers are gone
        tracker.add_pool(PoolBackend(proc, pkind, sig, wait), proc)
        return proc
    given, proc = proc, unwrap(proc)  # a trio.Process or an anyio Process: what it runs
    what = kind(proc)
    pid = getattr(proc, "pid", None)
    if what == "process":
        if pid is None:
            raise ValueError(
                "graceful.track() needs a started process: call proc.start() first, then track it"
            )
        parent = getattr(proc, "_parent_pid", os.getpid())
        if parent != os.getpid():
            raise ValueError(
                f"graceful.track(): {proc!r} was started by process {parent}, not by this one; "
                "only the process that started a child can stop and reap it"
            )
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        raise ValueError(
            f"graceful.track() refuses PID {pid!r}: kill() with 0 or a negative PID signals a "
            "whole process group or every process; pass a started child"
        )
    backend = Backend(proc, sig, wait, group)
    try:
        backend.refuse_if_foreign("graceful.track()")
        if group and not backend.reaped:
            _check_group_leader(pid)
    except BaseException:
        backend.forget()
        raise
    if not backend.reaped:
        tracker.add(backend)
    return given


def _check_platform() -> None:
    """Stopping children needs POSIX signals and ``waitpid``; say what to use elsewhere."""
    if os.name != "posix":
        raise NotImplementedError(
            "graceful.track() needs POSIX process control (signals such as SIGTERM and SIGKILL "
            f"sent to a PID, process groups), which {sys.platform} does not have. Stop the "
            "child in your own cleanup instead: "
            "graceful.register(proc.terminate) (on Windows: TerminateProcess), and put children "
            "in a Job object with JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE so that none outlives "
            "this program (see `graceful docs portability`)"
        )


def _check_group_leader(pid: int) -> None:
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return  # already reaped: nothing will be signalled
    if pgid != pid:
        ours = " (this program's own group)" if pgid == os.getpgrp() else ""
        raise ValueError(
            f"graceful.track(group=True) needs a child that leads its own process group, but PID "
            f"{pid} is in group {pgid}{ours}; start it with graceful.spawn(..., group=True), "
            "subprocess.Popen(..., start_new_session=True) or, on 3.11+, process_group=0"
        )
