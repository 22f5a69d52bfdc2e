"""Issue 3, shutdown under pressure: break callbacks, the deadline, the second signal, threads."""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest

from helpers import Child, run, timed, timed_second

DEADLINE_SLACK = 1.5  # seconds allowed past a deadline on a loaded 2-core machine


def test_hung_cleanup_is_cut_off_by_the_deadline_with_the_same_signal() -> None:
    code = """
    import threading, graceful
    graceful.register(print, "ran first")
    @graceful.register
    def hang():
        print("hanging")
        threading.Event().wait()
    with graceful.guard(timeout=1):
        print("ready")
        threading.Event().wait()
    """
    child, elapsed = timed(code, signal.SIGTERM)
    assert child.proc.returncode == -signal.SIGTERM
    assert child.lines == ["ready", "hanging"]
    assert 1.0 <= elapsed < 1.0 + DEADLINE_SLACK
    assert "deadline of 1 s passed after SIGTERM" in child.stderr
    assert "__main__.hang was still running" in child.stderr
    # Then every thread's stack (faulthandler), naming the function the cleanup hung in.
    assert " in hang\n" in child.stderr


def test_deadline_with_on_signal_exit_uses_the_exit_code() -> None:
    code = """
    import threading, graceful
    graceful.register(threading.Event().wait)
    with graceful.guard(timeout=0.5, on_signal="exit", exit_code=9):
        print("ready")
        threading.Event().wait()
    """
    child, elapsed = timed(code, signal.SIGHUP)
    assert child.proc.returncode == 9
    assert elapsed < 0.5 + DEADLINE_SLACK


def test_main_thread_that_swallows_signalled_and_keeps_looping() -> None:
    code = """
    import time, graceful
    with graceful.guard(timeout=1):
        while True:
            try:
                print("ready")
                while True:
                    time.sleep(0.05)
            except graceful.Signalled:
                print("swallowed")
    """
    child, elapsed = timed(code, signal.SIGTERM)
    assert child.proc.returncode == -signal.SIGTERM
    assert child.lines == ["ready", "swallowed", "ready"]
    assert 1.0 <= elapsed < 1.0 + DEADLINE_SLACK
    assert "the main thread was at" in child.stderr


def test_second_sigint_during_slow_cleanup_forces_the_exit() -> None:
    code = """
    import threading, graceful
    graceful.register(print, "skipped")
    @graceful.register
    def slow():
        print("slow cleanup")
        threading.Event().wait()
    with graceful.guard(timeout=None):
        print("ready")
        threading.Event().wait()
    """
    child, elapsed = timed_second(code, signal.SIGINT, during="slow cleanup")
    assert child.proc.returncode == -signal.SIGINT
    assert elapsed < 1.0
    assert "skipped" not in child.lines
    assert "second SIGINT during the shutdown: ending now" in child.stderr
    assert "Traceback" not in child.stderr


STORM = """
import os, signal, threading, graceful
count = {"a": 0, "b": 0, "c": 0}
def cleanup(name):
    count[name] += 1
    print("cleanup", name, count[name])
    if name == "b":
        # the storm arrives while this cleanup runs
        print("storm", flush=True)
        assert done.wait(30)
done = threading.Event()
for name in "abc":
    graceful.register(cleanup, name)
with graceful.guard(on_second_signal=MODE, timeout=20):
    print("ready")
    threading.Event().wait()
"""


def test_storm_of_500_signals_during_cleanup_runs_every_cleanup_once() -> None:
    # With "ignore" the storm is absorbed; the storm's end is announced through stdin.
    code = STORM.replace("MODE", "'ignore'").replace(
        "assert done.wait(30)", "import sys; sys.stdin.readline()"
    )
    with Child(code, stdin=True) as child:
        child.wait_for("ready")
        child.send(signal.SIGTERM)
        child.wait_for("storm")
        for i in range(500):
            child.send((signal.SIGTERM, signal.SIGINT, signal.SIGHUP)[i % 3])
        child.write("storm over\n")
        assert child.finish() == -signal.SIGTERM
    assert child.lines == ["ready", "cleanup c 1", "cleanup b 1", "storm", "cleanup a 1"]
    assert child.stderr == ""


def test_storm_with_force_dies_at_once_without_running_anything_twice() -> None:
    with Child(STORM.replace("MODE", "'force'")) as child:
        child.wait_for("ready")
        child.send(signal.SIGTERM)
        child.wait_for("storm")
        for _ in range(500):
            try:
                child.send(signal.SIGTERM)
            except ProcessLookupError:
                break
        assert child.finish() == -signal.SIGTERM
    assert child.lines == ["ready", "cleanup c 1", "cleanup b 1", "storm"]
    assert "Traceback" not in child.stderr


def test_children_started_during_shutdown_get_default_dispositions_and_no_mask() -> None:
    code = """
    import subprocess, sys, graceful
    probe = (
        "import signal; print(signal.getsignal(signal.SIGTERM) == signal.SIG_DFL,"
        " signal.getsignal(signal.SIGINT) is signal.default_int_handler,"
        " sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])))"
    )
    @graceful.register
    def start_a_child():
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
        print(out.stdout.strip())
    with graceful.guard(on_second_signal="ignore"):
        print("ready")
        import threading; threading.Event().wait()
    """
    child = run(code, signal.SIGTERM)
    assert child.lines == ["ready", "True True []"]
    assert child.proc.returncode == -signal.SIGTERM


def test_non_daemon_thread_that_never_ends_does_not_hang_the_exit() -> None:
    code = """
    import threading, graceful
    threading.Thread(target=threading.Event().wait, daemon=False).start()
    def polite():
        graceful.shutdown_event.wait()
        print("worker saw shutdown_event")
    worker = threading.Thread(target=polite)
    worker.start()
    graceful.register(worker.join, 5)  # the polite worker is waited for; the other one is not
    with graceful.guard(timeout=3):
        print("ready")
        threading.Event().wait()
    """
    child, elapsed = timed(code, signal.SIGTERM)
    assert child.proc.returncode == -signal.SIGTERM
    assert "worker saw shutdown_event" in child.lines
    assert elapsed < 1.0  # re-raising does not wait for threads; the deadline is not needed


def test_non_daemon_thread_with_on_signal_exit_is_cut_off_by_the_deadline() -> None:
    # sys.exit() joins non-daemon threads before atexit: the deadline still holds.
    code = """
    import threading, graceful
    threading.Thread(target=threading.Event().wait, daemon=False).start()
    with graceful.guard(timeout=1, on_signal="exit"):
        print("ready")
        threading.Event().wait()
    """
    child, elapsed = timed(code, signal.SIGTERM)
    assert child.proc.returncode == 128 + signal.SIGTERM
    assert elapsed < 1.0 + DEADLINE_SLACK


def test_shutdown_event_is_set_while_the_main_thread_is_stuck() -> None:
    # The main thread is stuck in C (a query that never ends). A worker waiting on
    # shutdown_event interrupts it: only the watcher thread can have set the event so soon.
    code = """
    import sqlite3, threading, graceful
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    def worker():
        graceful.shutdown_event.wait()
        conn.interrupt()
    threading.Thread(target=worker, daemon=True).start()
    conn.create_function("announce", 0, lambda: print("ready") or 1)
    with graceful.guard(timeout=10):
        conn.execute(
            "WITH RECURSIVE c(x) AS (SELECT announce() UNION ALL SELECT x + 1 FROM c) "
            "SELECT count(*) FROM c"
        ).fetchone()
    """
    child, elapsed = timed(code, signal.SIGTERM)
    assert child.proc.returncode == -signal.SIGTERM
    assert elapsed < 1.0, "the query was not interrupted: the deadline ended it"


def test_break_callbacks_run_once_newest_first_and_a_failing_one_is_logged() -> None:
    code = """
    import os, sqlite3, graceful
    def say(text):  # one write per line: the break thread and the main thread both print
        os.write(1, (text + "\\n").encode())
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    graceful.register_break(conn.interrupt)
    @graceful.register_break
    def broken():
        raise RuntimeError("break failed")
    graceful.register_break(say, "break 2")
    graceful.register_break(say, "dropped")
    graceful.unregister_break(say)
    graceful.register_break(say, "break 3")
    conn.create_function("announce", 0, lambda: say("ready") or 1)
    with graceful.guard():
        try:
            conn.execute(
                "WITH RECURSIVE c(x) AS (SELECT announce() UNION ALL SELECT x + 1 FROM c) "
                "SELECT count(*) FROM c"
            ).fetchone()
        except sqlite3.OperationalError as exc:
            say(f"query: {exc}")
    """
    child, elapsed = timed(code, signal.SIGTERM)
    assert child.lines[0] == "ready"
    assert child.lines.count("break 3") == 1
    assert "break 2" not in child.lines  # unregister_break(say) dropped both
    assert elapsed < 1.0  # conn.interrupt ran although broken() raised before it
    assert "RuntimeError: break failed" in child.stderr
    assert child.proc.returncode == -signal.SIGTERM


def test_an_existing_wakeup_fd_keeps_working_and_is_put_back() -> None:
    code = """
    import os, signal, socket, graceful
    a, b = socket.socketpair()
    a.setblocking(False)
    signal.signal(signal.SIGUSR1, lambda *_: None)
    signal.set_wakeup_fd(a.fileno())
    with graceful.guard():
        os.kill(os.getpid(), signal.SIGUSR1)
        b.settimeout(10)
        print("forwarded", b.recv(1)[0] == signal.SIGUSR1)
    print("put back", signal.set_wakeup_fd(-1) == a.fileno())
    """
    assert run(code).lines == ["forwarded True", "put back True"]


def test_a_wakeup_fd_set_inside_the_guard_stays_and_a_closed_loop_leaves_none() -> None:
    """Restore policy for the wakeup fd, as for the dispositions: one set inside the block is
    theirs. asyncio sets -1 as its loop's last signal handler goes (an async guard's exit removes
    its own): putting the loop's fd back left it installed after asyncio.run closed it, and the
    next guard failed with EBADF (found by the drivers helper; 3.9 and 3.13 alike)."""
    code = """
    import asyncio, os, signal, socket, graceful

    async def main():
        async with graceful.guard():
            pass

    asyncio.run(main())
    print("after asyncio.run", signal.set_wakeup_fd(-1))
    with graceful.guard():
        pass
    print("plain guard ok")
    a, b = socket.socketpair()
    a.setblocking(False)
    with graceful.guard():
        signal.set_wakeup_fd(a.fileno())  # inside the block: theirs
    print("theirs stays", signal.set_wakeup_fd(-1) == a.fileno())
    """
    child = run(code)
    assert child.lines == ["after asyncio.run -1", "plain guard ok", "theirs stays True"], child
    assert child.stderr == "", child.stderr


def _wait_until_running(server: Any, application_name: str) -> None:
    """Readiness from the server itself: the child's query is executing."""
    import psycopg

    deadline = time.monotonic() + 15
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                "AND state = 'active' AND query LIKE 'SELECT pg_sleep%%'",
                (application_name,),
            ).fetchone()
            if row and row[0]:
                return
            time.sleep(0.01)  # polling the server, bounded by the deadline above
    raise AssertionError(f"{application_name}: query never started")


PG_SLEEP = """
import psycopg2, graceful
conn = psycopg2.connect(DSN)
BREAK
graceful.register(conn.close)
with graceful.guard(timeout=TIMEOUT):
    print("connected")
    conn.cursor().execute("SELECT pg_sleep(30)")
"""


def _pg_sleep(server: Any, name: str, brk: str, timeout: float) -> tuple[Child, float]:
    code = (
        PG_SLEEP.replace("DSN", repr(server.conninfo(application_name=name)))
        .replace("BREAK", brk)
        .replace("TIMEOUT", repr(timeout))
    )
    with Child(code) as child:
        child.wait_for("connected")
        _wait_until_running(server, name)
        start = time.monotonic()
        child.send(signal.SIGTERM)
        child.finish()
        return child, time.monotonic() - start


def test_break_callback_ends_a_long_postgres_query_within_a_second(postgres_server: Any) -> None:
    child, elapsed = _pg_sleep(
        postgres_server, "graceful-break", "graceful.register_break(conn.cancel)", 10
    )
    assert child.proc.returncode == -signal.SIGTERM, child.stderr
    assert elapsed < 1.0


def test_without_a_break_callback_the_deadline_ends_a_long_postgres_query(
    postgres_server: Any,
) -> None:
    # psycopg2 waits in libpq, which retries on EINTR: no Python handler runs until the deadline.
    child, elapsed = _pg_sleep(postgres_server, "graceful-nobreak", "", 1)
    assert child.proc.returncode == -signal.SIGTERM
    assert 1.0 <= elapsed < 1.0 + DEADLINE_SLACK
    assert "the main thread was at" in child.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM])
def test_guard_exit_costs_are_restored_after_shutdown_with_raise(sig: int) -> None:
    code = """
    import signal, time, graceful
    for round in range(2):
        try:
            with graceful.guard(on_signal="raise"):
                print("ready")
                time.sleep(60)
        except graceful.Signalled:
            print("round", round, graceful.shutdown_event.is_set())
    """
    with Child(code) as child:
        for _ in range(2):
            child.wait_for("ready")
            child.send(sig)
        assert child.finish() == 0
    assert child.lines == ["ready", "round 0 False", "ready", "round 1 False"]


def test_a_retry_loop_sleeping_in_an_except_block_is_interrupted_at_once() -> None:
    # Issue 9, defect 3: code that waits inside `except` is interrupted as KeyboardInterrupt
    # would be, not after the block (which here never ends before the deadline).
    code = """
    import time, graceful
    graceful.register(print, "cleanup")
    with graceful.guard(timeout=60):
        attempt = 0
        while True:
            try:
                attempt += 1
                raise ConnectionError("database down")
            except ConnectionError:
                if attempt == 1:
                    print("ready", flush=True)
                time.sleep(30)  # SIGTERM arrives here
    """
    child, elapsed = timed(code, signal.SIGTERM)
    assert child.proc.returncode == -signal.SIGTERM
    assert child.lines == ["ready", "cleanup"]
    assert elapsed < 1.0, elapsed  # not when the except block ends (30 s), nor at the deadline
    assert child.stderr == ""


def test_exception_propagating_while_the_signal_is_pending_still_ends_by_the_signal() -> None:
    # The break callback makes the query fail; the Python handler is still pending while that
    # exception propagates through the with statement (on 3.9 it could skip the guard's exit).
    code = """
    import os, signal, sqlite3, threading, graceful
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    graceful.register_break(conn.interrupt)
    graceful.register(print, "cleanup")
    def started():
        print("ready")
        return 1
    conn.create_function("started", 0, started)
    with graceful.guard():
        conn.execute(
            "WITH RECURSIVE c(x) AS (SELECT started() UNION ALL SELECT x + 1 FROM c) "
            "SELECT count(*) FROM c"
        ).fetchone()
    """
    for _ in range(5):
        child = run(code, signal.SIGTERM)
        assert child.proc.returncode == -signal.SIGTERM, child.stderr
        assert child.lines[-1] == "cleanup"
        assert "Traceback" not in child.stderr


def test_register_from_many_threads_while_signals_arrive() -> None:
    # Four threads register 500 cleanups each while the main thread registers too; SIGTERM lands
    # while any of them may hold the registry lock. Every cleanup runs exactly once.
    code = """
    import collections, threading, graceful
    ran = collections.Counter()
    def note(key):
        ran[key] += 1
    @graceful.register
    def report():
        print("ran", len(ran), max(ran.values()))
    def add(t):
        for i in range(500):
            graceful.register(note, (t, i))
            graceful.register_break(note, ("break", t, i))
    workers = [threading.Thread(target=add, args=(t,)) for t in range(4)]
    with graceful.guard(timeout=10):
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        i = 0
        while True:
            graceful.register(note, ("main", i))
            i += 1
            if i == 1000:
                print("ready")  # only once the main thread has registered some too
    """
    child = run(code, signal.SIGTERM)
    assert child.proc.returncode == -signal.SIGTERM, child.stderr
    ran, count, most = child.lines[-1].split()
    assert ran == "ran"
    assert int(count) > 4000  # 2000 cleanups, 2000 breaks, and the main thread's
    assert most == "1"


def test_second_signal_ends_by_the_signal_even_with_on_signal_exit() -> None:
    code = """
    import threading, graceful
    graceful.register(lambda: (print("slow cleanup"), threading.Event().wait()))
    with graceful.guard(on_signal="exit", exit_code=3, timeout=None):
        print("ready")
        threading.Event().wait()
    """
    with Child(code) as child:
        child.wait_for("ready")
        child.send(signal.SIGTERM)
        child.wait_for("slow cleanup")
        child.send(signal.SIGINT)
        assert child.finish() == -signal.SIGINT
