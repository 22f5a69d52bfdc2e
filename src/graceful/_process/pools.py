"""Process pools as backends: ``concurrent.futures.ProcessPoolExecutor`` and
``multiprocessing.Pool``.

A pool replaces workers that exit and its own shutdown waits for them, so tracking workers one by
one cannot work: a main thread blocked in ``with ProcessPoolExecutor() as ex: ex.map(...)`` sits
in ``shutdown(wait=True)`` until every running task ends. At the break, graceful therefore
(1) makes the pool stop taking and starting work, in a helper thread since that may block on the
pool's own locks; (2) signals the workers at once (an executor; a ``Pool`` is signalled by its
own ``terminate()``, see below); (3) starts a thread that waits for the workers on the shared
deadline, SIGKILLs the stubborn ones and reaps them. The pool's own threads see their workers
die, so the ``with`` block unwinds long before the guard's deadline.

Why a ``Pool``'s workers are not signalled directly: an idle worker waits for tasks holding the
pool's inqueue lock (a semaphore), and one killed while holding it leaves ``Pool.terminate()``
blocked forever on that lock. ``terminate()`` first takes the lock itself, then sends SIGTERM.

An executor's exit deadlock, CPython gh-125451 (3.12.0 to 3.12.7 and 3.13.0; fixed in 3.12.8 and
3.13.1). The executor hands tasks to its workers through a call queue whose feeder thread pickles
each task and writes it to a pipe. When the feeder fails on a task (it cannot be pickled: an
argument that refuses, or a function of a ``__main__`` that ``runpy.run_path`` has already put
back), its error handler takes the executor's ``_shutdown_lock`` to wake the manager thread. But
when the workers die (graceful has stopped them, or a crash) the manager thread runs
``terminate_broken()``, which holds that same lock while it closes the call queue and joins the
feeder thread; its normal exit (``join_executor_internals()``) does the same. If the feeder fails
in between, each waits for the other forever: ``shutdown(wait=True)`` (the ``with`` block's exit)
or the interpreter's exit, which joins the manager thread, hangs. The test suite's stress run hit
it once or twice in 150 loaded runs of one test on 3.12.1 and 3.13.0: the program ended while a
task queued beyond the running ones was still being fed, and it could no longer be pickled. Since
the feeder's handler needs that lock only to guard the wakeup pipe, and the manager closes that
pipe only after the feeder has exited, graceful's ``track()`` gives the call queue a lock of its
own (``_call_queue.shutdown_lock``, which the feeder reads at each error) on these Pythons: the
feeder's error handling then never waits for the manager, which is what the fix in 3.12.8 and
3.13.1 amounts to (there the wakeup pipe has its own lock and the call queue no such attribute, so
graceful changes nothing). Python 3.9 to 3.11 join the feeder without that lock held.

This reads private attributes of both classes, checked at ``track()`` for Python 3.9 to 3.13:
``ProcessPoolExecutor._processes`` (the live ``{pid: Process}`` dict its manager thread also
uses; the executor drops its reference at shutdown, the dict lives on), ``_shutdown_lock``,
``_shutdown_thread``, ``_cancel_pending_futures``, ``_executor_manager_thread_wakeup`` and, on
3.12.0 to 3.13.0 only, ``_call_queue.shutdown_lock`` (replaced, see above); ``Pool._pool`` (the
live list of worker Processes) and ``Pool._state``.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # the C module, as in _core: no enums
import os
import sys
import threading
import time
import weakref

from . import stopping as _stopping
from .backend import KILL_NOW_LOCK_WAIT, Backend

TYPE_CHECKING = False  # typing costs import time; annotations are strings here
if TYPE_CHECKING:
    from typing import Any, Callable, Optional

#: Bound on how long the stopping thread keeps looking for workers a pool starts late.
LATE_WORKERS_GRACE = 2.0

_EXECUTOR_ATTRS = (
    "_processes",
    "_shutdown_lock",
    "_shutdown_thread",
    "_cancel_pending_futures",
    "_executor_manager_thread_wakeup",
)
_POOL_ATTRS = ("_pool", "_state", "terminate")


def pool_kind(obj: object) -> Optional[str]:
    """ "executor", "pool", or None for anything that is not a process pool.

    Raises TypeError for thread pools, which have no processes to stop. Never imports
    concurrent.futures or multiprocessing: an object of theirs means they are loaded.
    """
    futures_process = sys.modules.get("concurrent.futures.process")
    if futures_process is not None and isinstance(obj, futures_process.ProcessPoolExecutor):
        return "executor"
    futures_thread = sys.modules.get("concurrent.futures.thread")
    mp_pool = sys.modules.get("multiprocessing.pool")
    thread_pools = tuple(
        cls
        for cls in (
            getattr(futures_thread, "ThreadPoolExecutor", None),
            getattr(mp_pool, "ThreadPool", None),
        )
        if cls is not None
    )
    if thread_pools and isinstance(obj, thread_pools):
        raise TypeError(
            f"graceful.track() stops processes, and a {type(obj).__name__} runs threads: there "
            "is nothing to signal. Let its tasks watch graceful.shutdown_event and return, and "
            "shut the pool down in a cleanup (graceful.register(pool.shutdown)), or use a "
            "ProcessPoolExecutor or multiprocessing.Pool"
        )
    if mp_pool is not None and isinstance(obj, mp_pool.Pool):
        return "pool"
    return None


def check(pool: Any, kind: str, sig: int, group: bool) -> None:
    """Refuse at ``track()`` what cannot work, saying what to do instead."""
    what = "ProcessPoolExecutor" if kind == "executor" else "multiprocessing.Pool"
    needed = _EXECUTOR_ATTRS if kind == "executor" else _POOL_ATTRS
    missing = [name for name in needed if not hasattr(pool, name)]
    if missing:
        raise TypeError(
            f"graceful.track() does not know the {what} of Python "
            f"{sys.version_info[0]}.{sys.version_info[1]} (missing {', '.join(missing)}; "
            "3.9 to 3.13 are supported): stop it in your own cleanup instead, e.g. "
            "graceful.register(pool.shutdown, wait=False, cancel_futures=True) or "
            "graceful.register(pool.terminate)"
        )
    if group:
        raise ValueError(
            f"graceful.track(group=True) needs a child that leads its own process group; the "
            f"workers of a {what} share this program's group. Track the pool without group="
        )
    if kind == "pool" and sig != _signal.SIGTERM:
        raise ValueError(
            f"graceful.track(): a multiprocessing.Pool is stopped by its own terminate(), which "
            f"sends SIGTERM, not {sig!r} (signalling its workers directly can leave terminate() "
            "blocked on a lock a killed worker held); leave signal= out, or use a "
            "ProcessPoolExecutor, which takes any signal"
        )
    parents = {getattr(w, "_parent_pid", os.getpid()) for w in _worker_list(pool, kind)}
    if parents - {os.getpid()}:
        raise ValueError(
            f"graceful.track(): this {what} was started by process {min(parents)}, not by this "
            "one; only the process that started a pool can stop and reap its workers"
        )


def _worker_list(pool: Any, kind: str) -> list[Any]:
    return _current(pool._processes if kind == "executor" else pool._pool)


def _current(source: Any) -> list[Any]:
    """The workers in a pool's live container (a dict by PID, or a list), as a snapshot."""
    return list(source.values()) if isinstance(source, dict) else list(source or ())


def _reaped_by_owner(proc: Any) -> bool:
    popen = getattr(proc, "_popen", None)
    return popen is None or popen.returncode is not None


class PoolBackend:
    """A tracked process pool: its workers (tracked as they appear) and how to stop it."""

    def __init__(self, pool: Any, kind: str, sig: int, timeout: Optional[float]) -> None:
        self.kind = kind
        #: An executor's workers are signalled by graceful; a Pool's by its own terminate().
        self.sends = kind == "executor"
        self.signal = sig
        self.timeout = timeout
        self.name = f"{type(pool).__name__} at {id(pool):#x}"
        self._pool = weakref.ref(pool)
        if kind == "executor":
            _untangle_feeder(pool)
        # The live containers the pool itself mutates; they outlive the executor's reference.
        self._source: Any = pool._processes if kind == "executor" else pool._pool
        self._workers: dict[int, Backend] = {}
        self._lock = threading.Lock()
        self.broken_at: Optional[float] = None
        self.deadline: Optional[float] = None
        self.notes: list[str] = []
        self._stopper: Optional[threading.Thread] = None
        self._enforcer: Optional[threading.Thread] = None

    def __repr__(self) -> str:
        return self.name

    def owns(self, obj: object) -> bool:
        return self._pool() is obj

    # --- workers ---------------------------------------------------------------------------

    def workers(self) -> list[Backend]:
        """Every worker seen so far. New ones are tracked now (one gone already is skipped) and,
        once the pool is broken, broken at once against the pool's deadline."""
        current = _current(self._source)
        new: list[Backend] = []
        with self._lock:
            timeout = self.timeout
            if self.broken_at is not None and self.deadline is not None:
                timeout = self.deadline - self.broken_at
            for proc in current:
                if id(proc) in self._workers or getattr(proc, "_popen", None) is None:
                    continue
                # A worker the pool's own thread has reaped is tracked as already reaped.
                worker = Backend(proc, self.signal, timeout, False, send_break=self.sends)
                self._workers[id(proc)] = worker
                new.append(worker)
            found = list(self._workers.values())
            broken_at = self.broken_at
        if broken_at is not None:
            for worker in new:
                worker.break_(self.notes, at=broken_at)
        return found

    def kill_now(self) -> None:
        """The process dies at once: SIGKILL every worker not seen to exit, tracked yet or not
        (``Tracker.kill_now``)."""
        if self._lock.acquire(True, KILL_NOW_LOCK_WAIT):
            self._lock.release()
            workers = self.workers()
        else:
            workers = list(self._workers.values())
        for worker in workers:
            worker.kill_now()

    def forget(self) -> None:
        """In a forked child: close the workers' pidfds (the pool is the parent's)."""
        for worker in list(self._workers.values()):
            worker.forget()

    def finished(self) -> bool:
        """Nothing left to stop: the pool is stopped (or gone) and every worker is reaped.

        Before the break, only the pool's own Process objects are read: no worker is tracked
        (no pidfd held) while the pool runs, however many workers it replaces.
        """
        if self._enforcer is not None and self._enforcer.is_alive():
            return False
        if self.broken_at is not None:
            return all(w.reaped or w.returncode_known() for w in self.workers())
        pool = self._pool()
        if pool is not None and _accepting(pool, self.kind):
            return False
        return all(_reaped_by_owner(proc) for proc in _current(self._source))

    # --- the break: at once, from the break callback; never blocks ------------------------

    def break_(self, notes: list[str], guard_deadline: Optional[float]) -> None:
        """Stop the pool taking work, signal its workers, start enforcing the deadline."""
        with self._lock:
            if self.broken_at is not None:
                return
            self.broken_at = now = time.monotonic()
            if self.timeout is not None:
                self.deadline = now + self.timeout
            if guard_deadline is not None:
                cap = guard_deadline - _stopping.DEADLINE_MARGIN
                self.deadline = cap if self.deadline is None else min(self.deadline, cap)
        pool = self._pool()
        if pool is not None:
            stop_pool = _stop_executor if self.kind == "executor" else _terminate_pool
            self._stopper = self._start(f"graceful-stop-{self.kind}", stop_pool, pool)
        for worker in self.workers():
            worker.timeout = None if self.deadline is None else self.deadline - now
            worker.break_(notes, at=now)
        self._enforcer = self._start("graceful-stop-pool-workers", self._enforce)

    def _start(
        self, name: str, target: Callable[..., None], *args: Any
    ) -> Optional[threading.Thread]:
        def run() -> None:
            try:
                target(*args)
            except BaseException as exc:  # a helper thread must not die with a traceback
                self.notes.append(f"{name} for {self.name}: {type(exc).__name__}: {exc}")

        thread = threading.Thread(target=run, name=name, daemon=True)
        try:
            thread.start()
        except RuntimeError as exc:  # no threads (limits, interpreter shutdown): see finish()
            self.notes.append(f"{name} for {self.name} could not start: {exc}")
            return None
        return thread

    def _enforce(self) -> None:
        """Wait for the workers on the deadline, SIGKILL, reap; then look for late ones.

        A pool may start a worker while it is being stopped (an executor replacing one, a
        ``Pool`` before ``terminate()`` took effect): once every worker seen is reaped, this
        keeps looking while the pool's own stop runs, for at most ``LATE_WORKERS_GRACE``.
        """
        cap = None if self.deadline is None else self.deadline + _stopping.DEADLINE_MARGIN
        tried: set[int] = set()  # stopped once: one that could not be reaped is not retried
        quiet_since = time.monotonic()
        while True:
            stopper = self._stopper
            stopped = stopper is None or not stopper.is_alive()  # looked at before the workers
            pending = [w for w in self.workers() if not w.reaped and id(w) not in tried]
            if pending:
                tried.update(id(w) for w in pending)
                _stopping.stop(pending, self.notes, cap)
                quiet_since = time.monotonic()
                continue
            if stopped or stopper is None:
                return  # the pool starts no more workers, and none seen is left
            if time.monotonic() - quiet_since > LATE_WORKERS_GRACE:
                return  # the pool's own stop is still busy, but no worker of it is left
            stopper.join(_stopping.POLL_INTERVAL * 5)

    # --- at the end: from the tracker's cleanup ------------------------------------------

    def finish(self, notes: list[str], guard_deadline: Optional[float]) -> None:
        """Break (if no signal did), wait until the workers are stopped, report."""
        self.break_(notes, guard_deadline)
        enforcer = self._enforcer
        if enforcer is None:
            self._enforce()  # no helper thread could be started: do it here
        else:
            bound = None
            if self.deadline is not None:
                bound = max(0.0, self.deadline - time.monotonic())
                bound += 2 * _stopping.KILL_GRACE + LATE_WORKERS_GRACE + 1.0
            enforcer.join(bound)
            if enforcer.is_alive():
                notes.append(f"{self.name}: its workers are still being stopped")
        notes.extend(self.notes)
        self.notes.clear()


def _accepting(pool: Any, kind: str) -> bool:
    if kind == "executor":
        return not (pool._shutdown_thread or getattr(pool, "_broken", False))
    return bool(pool._state == "RUN")


def _untangle_feeder(executor: Any) -> None:
    """CPython gh-125451 (see the module's docstring): on 3.12.0 to 3.12.7 and 3.13.0, let the
    call queue's feeder thread guard its wakeup of the manager thread with a lock of its own
    instead of the executor's ``_shutdown_lock``, which the manager holds while joining it."""
    if sys.version_info < (3, 12):
        return  # the manager joins the feeder without the lock held
    call_queue = getattr(executor, "_call_queue", None)
    shared = getattr(call_queue, "shutdown_lock", None)
    if shared is not None and shared is getattr(executor, "_shutdown_lock", None):
        call_queue.shutdown_lock = threading.Lock()


def _stop_executor(executor: Any) -> None:
    """What ``shutdown(wait=False, cancel_futures=True)`` does, minus dropping the executor's
    references: the main thread may be inside ``shutdown(wait=True)`` using them right now."""
    with executor._shutdown_lock:
        executor._cancel_pending_futures = True
        executor._shutdown_thread = True
        wakeup = executor._executor_manager_thread_wakeup
        if wakeup is not None:
            wakeup.wakeup()


def _terminate_pool(pool: Any) -> None:
    """``Pool.terminate()``: stop repopulating, drain, SIGTERM the workers, join them. Only its
    first call does the work, so the main thread's own ``with`` exit then returns at once."""
    pool.terminate()
