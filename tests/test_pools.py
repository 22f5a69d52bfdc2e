"""Issue 10 item 7: process pools tracked like any backend.

``graceful.track()`` takes a ``concurrent.futures.ProcessPoolExecutor`` or a
``multiprocessing.Pool``. At the signal their workers are broken (and SIGKILLed at the track
timeout), so the ``with`` block unwinds instead of waiting in ``shutdown(wait=True)`` for the
tasks, the cleanups run, and the program dies by SIGTERM with no worker left. Each program is a
real file (multiprocessing's spawn and forkserver methods import it again in the workers), run
under ``@graceful.main`` in its own session, so whatever it started can be found in /proc.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from backends_support import (
    kill_by_pidfd,
    needs_linux,
    proc_stat,
    session_members,
    wait_dead,
)
from helpers import TIMEOUT, Child

PROGRAM = """
import faulthandler, json, multiprocessing, os, signal, sys, threading, time, warnings
import graceful

faulthandler.register(signal.SIGUSR2, all_threads=True)  # the test asks for stacks if it hangs

KIND, METHOD, STUBBORN, ENDING = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4]
FEEDING = threading.Event()  # set by the feeder thread inside FailsLate.__reduce__
CALL_QUEUE = None
# 3.12+ warns about forking a process with threads (graceful's helper thread is one).
warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)


def init(started, stubborn):
    global STARTED
    STARTED = started
    if stubborn:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


def task(i):
    STARTED.put(os.getpid())
    time.sleep(60)
    return i


def process_main(started, stubborn):
    init(started, stubborn)
    task(0)


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def announce(workers, started, then=None):
    workers.extend(started.get(timeout=30) for _ in range(2))  # both tasks are running
    if then is not None:
        then()
    print("workers", *workers, flush=True)
    print("ready", flush=True)


class FailsLate:
    # An argument that the call queue's feeder thread fails to pickle, at the worst moment:
    # once the executor's manager thread has closed that queue and is joining the feeder (on
    # 3.12.0-3.12.7 and 3.13.0 it holds the executor's shutdown lock meanwhile, gh-125451).
    def __reduce__(self):
        FEEDING.set()
        deadline = time.monotonic() + 10
        while not CALL_QUEUE._closed and time.monotonic() < deadline:
            time.sleep(0.001)  # polls the manager's progress; there is nothing to wait on
        raise RuntimeError("FailsLate cannot be pickled")


def feeding_fails_late(pool):
    # Give the feeder a FailsLate to pickle, and return once it is inside __reduce__.
    global CALL_QUEUE
    CALL_QUEUE = pool._call_queue  # read by FailsLate; graceful itself needs no such thing
    pool.submit(id, FailsLate())
    if not FEEDING.wait(30):
        raise SystemExit("the feeder thread never started pickling FailsLate")


def run_pool(ctx, started, workers):
    if KIND in ("executor", "feeder-error"):
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(
            2, mp_context=ctx, initializer=init, initargs=(started, STUBBORN)
        )
        graceful.track(pool, timeout=1)
        results = pool.map(task, range(2 if KIND == "feeder-error" else 4))
        then = (lambda: feeding_fails_late(pool)) if KIND == "feeder-error" else None
        announce(workers, started, then)
        if ENDING == "return":
            return  # tasks still running: graceful stops the pool at the end
        with pool:
            list(results)
    elif KIND == "pool":
        pool = ctx.Pool(2, initializer=init, initargs=(started, STUBBORN))
        graceful.track(pool, timeout=1)
        result = pool.map_async(task, range(4))
        announce(workers, started)
        if ENDING == "return":
            return
        with pool:
            result.get()
    else:
        for _ in range(2):
            proc = ctx.Process(target=process_main, args=(started, STUBBORN))
            proc.start()
            graceful.track(proc, timeout=1)
        announce(workers, started)
        time.sleep(60)


@graceful.main
def main():
    ctx = multiprocessing.get_context(METHOD)
    started = ctx.Queue()
    workers = []
    graceful.register(lambda: print("cleanup", json.dumps([alive(p) for p in workers]), flush=True))
    try:
        run_pool(ctx, started, workers)
    finally:
        print("unwound", flush=True)  # the with block is left: its exit did not hang


if __name__ == "__main__":
    main()
"""

KINDS = ["executor", "pool", "process"]
METHODS = ["fork", "spawn", "forkserver"]


def run_program(
    tmp_path: Path, leftovers: list[int], *args: str
) -> tuple[int, list[str], str, list[int], float, list[int]]:
    """Run PROGRAM with ``args`` in its own session; SIGTERM it once its tasks run (unless it
    returns by itself). Returns its return code, stdout lines, stderr, its workers, the seconds
    from SIGTERM (or "ready") to its end, and what was left of its session afterwards."""
    script = tmp_path / "program.py"
    script.write_text(PROGRAM)
    code = (
        "import runpy, sys\n"
        f"sys.argv = [{str(script)!r}, *{list(args)!r}]\n"
        f"runpy.run_path({str(script)!r}, run_name='__main__')\n"
    )
    with Child(code, start_new_session=True) as program:
        try:
            program.wait_for("ready", timeout=30)
            workers = [int(w) for w in program.lines[-2].split()[1:]]
            leftovers.extend(workers)
            start = time.monotonic()
            if args[3] == "signal":
                program.send(signal.SIGTERM)
            rc = program.finish(stacks_signal=signal.SIGUSR2)
            took = time.monotonic() - start
            left = _settle(program.pid)
        finally:
            for pid in session_members(program.pid):
                kill_by_pidfd(pid)  # never a PID of another session: listed just now
    return rc, program.lines, program.stderr, workers, took, left


def _settle(sid: int, timeout: float = 5.0) -> list[int]:
    """Session members still alive after ``timeout``: multiprocessing's helpers (the resource
    tracker, the fork server) end by themselves once the program and its workers are gone."""
    deadline = time.monotonic() + timeout
    while True:
        left = session_members(sid)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.01)


def check_ending(
    rc: int, lines: list[str], stderr: str, workers: list[int], left: list[int]
) -> None:
    assert "unwound" in lines, (lines, stderr)
    assert lines[-1] == "cleanup [false, false]", (lines, stderr)  # after the tracker's stop
    assert "shutdown deadline" not in stderr, stderr  # not "deadline": a path may hold it
    assert left == [], [(pid, proc_stat(pid)) for pid in left]
    wait_dead(workers, 1.0)


@needs_linux
@pytest.mark.parametrize("stubborn", [False, True], ids=["cooperative", "ignores-TERM"])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind", KINDS)
def test_sigterm_unwinds_the_with_block_and_leaves_no_worker(
    tmp_path: Path, leftovers: list[int], kind: str, method: str, stubborn: bool
) -> None:
    rc, lines, stderr, workers, took, left = run_program(
        tmp_path, leftovers, kind, method, "1" if stubborn else "0", "signal"
    )
    assert rc == -signal.SIGTERM, stderr
    check_ending(rc, lines, stderr, workers, left)
    print(f"{kind} {method} {'ignores TERM' if stubborn else 'cooperative'}: {took:.3f} s")
    if stubborn:
        assert 0.95 <= took < 3.0  # SIGKILL at the track timeout (1 s), not the 5 s deadline
        assert "1 s after SIGTERM; sent SIGKILL" in stderr
    else:
        assert took < 0.9


@needs_linux
@pytest.mark.parametrize("disabled", ["pidfd"], indirect=True)
@pytest.mark.parametrize("method", ["fork", "forkserver"])
@pytest.mark.parametrize("kind", KINDS)
def test_without_pidfds_the_same(
    tmp_path: Path, leftovers: list[int], kind: str, method: str, disabled: frozenset[str]
) -> None:
    rc, lines, stderr, workers, took, left = run_program(
        tmp_path, leftovers, kind, method, "1", "signal"
    )
    assert rc == -signal.SIGTERM, stderr
    check_ending(rc, lines, stderr, workers, left)
    assert 0.95 <= took < 3.0


@needs_linux
@pytest.mark.parametrize("kind", ["executor", "pool"])
def test_a_pool_still_running_at_a_normal_end_is_stopped(
    tmp_path: Path, leftovers: list[int], kind: str
) -> None:
    rc, lines, stderr, workers, took, left = run_program(
        tmp_path, leftovers, kind, "fork", "0", "return"
    )
    assert rc == 0, stderr
    check_ending(rc, lines, stderr, workers, left)
    assert took < TIMEOUT


@needs_linux
@pytest.mark.parametrize("ending", ["signal", "return"])
def test_a_feeder_error_while_the_executor_breaks_does_not_hang_it(
    tmp_path: Path, leftovers: list[int], ending: str
) -> None:
    """CPython gh-125451, forced: the executor's feeder thread fails to pickle a task while
    the manager thread, seeing the workers die, holds the shutdown lock and joins that feeder.
    On 3.12.0-3.12.7 and 3.13.0 the feeder's error handler then waits for that lock forever,
    and the ``with`` block (or the interpreter's exit) waits for the manager: graceful gives
    the feeder a lock of its own at ``track()``, as the fixed CPython does."""
    rc, lines, stderr, workers, took, left = run_program(
        tmp_path, leftovers, "feeder-error", "fork", "0", ending
    )
    assert rc == (-signal.SIGTERM if ending == "signal" else 0), stderr
    check_ending(rc, lines, stderr, workers, left)
    assert took < 3.0


@needs_linux
def test_session_members_sees_this_session() -> None:
    assert os.getpid() in session_members(os.getsid(0))


CHURN = """
import multiprocessing, os, subprocess, warnings
import graceful

warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)


def fds():
    return len(os.listdir("/proc/self/fd"))


def pid(_):
    return os.getpid()


@graceful.main
def main():
    # Not fork: a worker the pool's thread forks while Popen runs would inherit Popen's
    # exec-error pipe, and Popen would wait for that worker to exit.
    ctx = multiprocessing.get_context("forkserver")
    with ctx.Pool(2, maxtasksperchild=1) as pool:
        graceful.track(pool)
        # chunksize given: Pool.map divides by len(pool._pool), which is 0 for a moment while
        # maxtasksperchild workers are replaced (a CPython race, not graceful's)
        pool.map(pid, range(4), chunksize=1)
        before = fds()
        seen = set()
        for _ in range(10):
            seen.update(pool.map(pid, range(4), chunksize=1))
            graceful.track(subprocess.Popen(["true"])).wait()  # track() looks at the pool
        print("workers", len(seen), "fds", before, fds(), flush=True)
    return 0

if __name__ == "__main__":
    main()
"""


@needs_linux
def test_a_pool_that_replaces_its_workers_costs_no_descriptor_per_worker(tmp_path: Path) -> None:
    script = tmp_path / "churn.py"
    script.write_text(CHURN)
    code = f"import runpy; runpy.run_path({str(script)!r}, run_name='__main__')"
    with Child(code) as program:
        rc = program.finish(timeout=60)
    assert rc == 0, program.stderr
    words = program.lines[-1].split()
    assert words[0] == "workers"
    assert int(words[1]) >= 20  # maxtasksperchild=1: the pool kept replacing its workers
    before, after = int(words[3]), int(words[4])
    # Not one pidfd per worker it ever had (that would be 20 or more): at most those of the
    # few workers being replaced right now (their sentinels and pidfds; more on a loaded machine).
    assert after <= before + 8, program.lines


FORKING = """
import functools, multiprocessing, os, signal, sys, time, warnings
from concurrent.futures import ProcessPoolExecutor
import graceful

# 3.12+ warns about forking a process with threads (graceful's helper thread is one).
warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)


def task(i):
    time.sleep(60)  # only the signal ends it: a signal lost at the fork leaves the program hanging
    return i


@graceful.main
def main():
    graceful.register(print, "cleanup", flush=True)
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"))
    graceful.track(pool, timeout=1)
    # SIGTERM at the moment the pool forks its worker: sent in this process, by a hook that runs
    # no bytecode (a C function), as fork() returns in the parent; so Python runs the handler at
    # the very next bytecode, between the worker's start and the pool's record of it.
    os.register_at_fork(after_in_parent=functools.partial(os.kill, os.getpid(), signal.SIGTERM))
    print("ready", flush=True)
    with pool:
        print("result", pool.submit(task, 1).result(), flush=True)
    print("after the pool", flush=True)


main()
"""


@needs_linux
def test_a_sigterm_while_the_executor_forks_a_worker_leaves_no_worker(
    tmp_path: Path, leftovers: list[int]
) -> None:
    script = tmp_path / "forking.py"
    script.write_text(FORKING)
    code = f"import runpy; runpy.run_path({str(script)!r}, run_name='__main__')\n"
    with Child(code, start_new_session=True) as program:
        try:
            rc = program.finish(stacks_signal=None)
            left = _settle(program.pid)
        finally:
            for pid in session_members(program.pid):
                kill_by_pidfd(pid)  # never a PID of another session: listed just now
    assert rc == -signal.SIGTERM, program.stderr
    assert program.lines == ["ready", "cleanup"], program.stderr
    assert left == [], [(pid, proc_stat(pid)) for pid in left]
