"""Issue 28 (items 1, 4, 7, 9) and issue 21 (defects 4, 7): graceful's own I/O never blocks a
shutdown, deadlines are disarmed when their work is done, a registration either runs or raises,
the log says what happened when it happened, one rule for signals and durations. Real processes,
real signals.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import graceful
from helpers import TIMEOUT, Child

#: A shutdown with a deadline of ``DEADLINE`` s must end within this, on a busy machine.
DEADLINE = 1.0
BOUND = DEADLINE + 8.0


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


# --- 28.1: no I/O of graceful's blocks a shutdown ------------------------------------------------


def test_a_timeline_fifo_without_reader_never_blocks_a_signals_shutdown(fifo: Path) -> None:
    code = f"""
    import time, graceful
    graceful.register(print, "cleanup")
    with graceful.guard(timeout={DEADLINE}):
        print("ready", flush=True)
        time.sleep(60)
    """
    with Child(code, env={"GRACEFUL_TIMELINE": str(fifo)}) as child:
        child.wait_for("ready")
        child.send(signal.SIGTERM)
        assert child.finish(BOUND) == -signal.SIGTERM, child.stderr
    assert child.lines == ["ready", "cleanup"]


def test_a_timeline_fifo_without_reader_never_blocks_mains_normal_end(fifo: Path) -> None:
    code = """
    import graceful
    graceful.register(print, "cleanup")
    @graceful.main(timeout=1)
    def main():
        print("ready", flush=True)
        return 0
    main()
    """
    with Child(code, env={"GRACEFUL_TIMELINE": str(fifo)}) as child:
        assert child.finish(BOUND) == 0, child.stderr
    assert child.lines == ["ready", "cleanup"]


def test_a_timeline_fifo_whose_reader_never_reads_never_blocks_a_shutdown(fifo: Path) -> None:
    # A reader that opened the FIFO and went to sleep: its pipe fills, and a write would block.
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        code = f"""
        import time, graceful
        for i in range(3000):  # 3000 records: far more than a pipe holds
            graceful.register(lambda: None)
        graceful.register(print, "oldest cleanup")
        with graceful.guard(timeout={DEADLINE}):
            print("ready", flush=True)
            time.sleep(60)
        """
        with Child(code, env={"GRACEFUL_TIMELINE": str(fifo)}) as child:
            child.wait_for("ready")
            child.send(signal.SIGTERM)
            assert child.finish(BOUND) == -signal.SIGTERM, child.stderr
        assert child.lines == ["ready", "oldest cleanup"]
    finally:
        os.close(reader)


#: Python source that fills the pipe on stderr, which nobody reads until the end: the next write
#: to it blocks.
FILL_STDERR = """
import fcntl, os
flags = fcntl.fcntl(2, fcntl.F_GETFL)
fcntl.fcntl(2, fcntl.F_SETFL, flags | os.O_NONBLOCK)
try:
    while True:
        os.write(2, b"x" * 4096)
except BlockingIOError:
    pass
fcntl.fcntl(2, fcntl.F_SETFL, flags)  # blocking again, and full
"""


def _full_stderr_then_sigterm(code: str) -> tuple[int, str, float]:
    """Run ``code`` with a pipe on stderr that is never read until the end; SIGTERM it once it
    prints "ready": its return code, its stdout, and the seconds from the signal to its end."""
    child = subprocess.Popen(
        [sys.executable, "-u", "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,  # never read until the end
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"
        sent = time.monotonic()
        child.send_signal(signal.SIGTERM)
        rc = child.wait(BOUND)
        took = time.monotonic() - sent
        out, _ = child.communicate(timeout=TIMEOUT)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    return rc, out, took


FULL_STDERR = f"""
import logging, os, sys, time, graceful
logging.basicConfig(level=logging.INFO, format="%(message)s")  # to stderr, a pipe nobody reads
{FILL_STDERR}graceful.register(print, "older cleanup", flush=True)
@graceful.register
def cleanup():
    print("cleanup", flush=True)
    logging.getLogger("app").warning("the program logs too")  # blocks on the full pipe
with graceful.guard(timeout={DEADLINE}):
    print("ready", flush=True)
    time.sleep(60)
"""


def test_a_full_stderr_pipe_never_keeps_the_deadline_from_ending_the_process() -> None:
    rc, out, took = _full_stderr_then_sigterm(FULL_STDERR)
    assert rc == -signal.SIGTERM
    assert out.startswith("cleanup\n")
    assert took < BOUND


def _full_datagram_socket(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sender.setblocking(False)
    try:
        while True:
            sender.sendto(b"x" * 1024, str(path))
    except BlockingIOError:
        pass
    finally:
        sender.close()
    return sock


@pytest.mark.parametrize("kind", ["full socket", "fifo", "directory", "stream socket"])
def test_a_hostile_notify_socket_never_blocks_a_shutdown(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "notify"
    keep: Any = None
    if kind == "full socket":
        keep = _full_datagram_socket(path)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        keep = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        keep.bind(str(path))
        keep.listen(1)
    code = f"""
    import time, graceful
    graceful.register(print, "cleanup")
    with graceful.guard(timeout={DEADLINE}, drain=0.1):
        print("ready", graceful.notify_ready(), flush=True)
        time.sleep(60)
    """
    try:
        with Child(code, env={"NOTIFY_SOCKET": str(path)}) as child:
            child.wait_for_prefix("ready")
            child.send(signal.SIGTERM)
            assert child.finish(BOUND) == -signal.SIGTERM, child.stderr
        assert child.lines[1:] == ["cleanup"]
    finally:
        if keep is not None:
            keep.close()


# --- 28.4: graceful.shutdown() disarms its deadline once its work is done ------------------------


@pytest.mark.parametrize("call", ["graceful.shutdown(timeout=0.3)", "asyncio.run(hook())"])
def test_shutdown_from_a_frameworks_hook_leaves_no_deadline_armed(call: str) -> None:
    code = f"""
    import asyncio, time, graceful
    graceful.register(print, "cleanup")
    async def hook():
        await graceful.ashutdown(timeout=0.3)
    {call}  # the framework's hook
    print("hook done", flush=True)
    time.sleep(1.0)  # the framework ends its own way, after more than the deadline
    print("framework done", flush=True)
    """
    with Child(code) as child:
        assert child.finish() == 0, child.stderr
    assert child.lines == ["cleanup", "hook done", "framework done"]
    assert "deadline" not in child.stderr


def test_shutdown_still_bounds_its_own_cleanups() -> None:
    code = """
    import time, graceful
    graceful.register(time.sleep, 60)
    graceful.shutdown(timeout=0.3)
    print("never", flush=True)
    """
    with Child(code) as child:
        assert child.finish() == -signal.SIGTERM
    assert child.lines == []
    assert "shutdown deadline of 0.3 s passed after graceful.shutdown()" in child.stderr


# --- 28.7: a registration either runs or raises ---------------------------------------------------

SWEEP = r"""
import sys, threading, graceful
from graceful._core import registry

def sweep(at):
    registry.cleanups = reg = registry.Registry("cleanup")
    ran, outcome = [], []
    reg.add(ran.append, ("first",), {})
    def other_thread():
        try:
            graceful.register(ran.append, "late")  # the inline add, from another thread
        except graceful.RegistrationClosed:
            outcome.append("raised")
        else:
            outcome.append("returned")
    count = [0]
    thread = threading.Thread(target=other_thread)
    def tracer(frame, event, arg):
        if frame.f_code.co_filename != registry.__file__:
            return None
        if event == "line":
            count[0] += 1
            if count[0] == at:
                thread.start()
                thread.join(0.2)  # it may wait for the lock this thread holds: let it
        return tracer
    sys.settrace(tracer)
    try:
        reg.run_all(final="the test closes it")
    finally:
        sys.settrace(None)
    if count[0] < at:
        return None  # past the last line: the sweep is complete
    thread.join(10)
    returned = outcome == ["returned"]
    if returned and "late" not in ran:
        return f"line event {at}: register() returned and the cleanup never ran"
    if not returned and outcome != ["raised"]:
        return f"line event {at}: {outcome}"
    return "ok"

at = 1
while True:
    result = sweep(at)
    if result is None:
        break
    if result != "ok":
        print(result, flush=True)
    at += 1
print("swept", at - 1, flush=True)
"""


def test_a_registration_racing_the_final_close_either_runs_or_raises() -> None:
    with Child(SWEEP) as child:
        assert child.finish(60) == 0, child.stderr
    assert child.lines[-1].startswith("swept ")
    assert int(child.lines[-1].split()[1]) > 5
    assert child.lines[:-1] == []


# --- 21.4: registrations during the shutdown never starve the earlier cleanups --------------------


def test_a_thread_registering_in_a_loop_never_starves_the_older_cleanups() -> None:
    code = """
    import functools, threading, time, graceful
    def noop(i):
        pass
    def busy():
        i = 0
        while True:
            i += 1
            try:
                graceful.register(functools.partial(noop, i))  # a per-request cleanup
            except graceful.RegistrationClosed as exc:
                print("closed", flush=True)
                print(exc, flush=True)
                return
    graceful.register(print, "close_db", flush=True)  # registered first: runs last
    @graceful.register
    def slow():
        time.sleep(0.2)  # the other thread keeps registering meanwhile
    with graceful.guard(timeout=5):
        threading.Thread(target=busy, daemon=True).start()
        print("ready", flush=True)
        time.sleep(60)
    """
    with Child(code) as child:
        child.wait_for("ready")
        child.send(signal.SIGTERM)
        assert child.finish() == -signal.SIGTERM, child.stderr
    assert "close_db" in child.lines
    assert "closed" in child.lines
    assert any(
        line.startswith("graceful: this process is running its final cleanups (from another ")
        for line in child.lines
    ), child.lines
    assert "deadline" not in child.stderr


def test_a_cleanup_may_register_more_cleanups_during_the_final_run() -> None:
    code = """
    import time, graceful
    @graceful.register
    def first():
        graceful.register(print, "registered by a cleanup")
        print("first", flush=True)
    with graceful.guard():
        print("ready", flush=True)
        time.sleep(60)
    """
    with Child(code) as child:
        child.wait_for("ready")
        child.send(signal.SIGTERM)
        assert child.finish() == -signal.SIGTERM, child.stderr
    assert child.lines == ["ready", "first", "registered by a cleanup"]


# --- 21.7: each record is logged when its event happens ------------------------------------------


def test_a_signal_is_logged_when_it_arrives_not_when_the_drain_ends() -> None:
    code = """
    import logging, sys, time, graceful
    logging.basicConfig(
        level=logging.INFO, format="%(created).6f %(threadName)s %(message)s", stream=sys.stdout
    )
    with graceful.guard(drain=30, timeout=2):
        print("ready", flush=True)
        sys.stdin.readline()  # the drain goes on until the test says
        graceful.end_drain()
        time.sleep(60)
    """
    with Child(code, stdin=True) as child:
        child.wait_for("ready")
        sent = time.time()
        child.send(signal.SIGTERM)
        child.wait_for_line(lambda text: "SIGTERM received" in text, "SIGTERM received")
        line = child.lines[-1]
        arrived = time.time()
        child.write("go\n")
        assert child.finish() == -signal.SIGTERM, child.stderr
    created = float(line.split()[0])
    assert sent - 0.001 <= created <= arrived
    assert any("drain over" in line for line in child.lines)


def test_record_created_is_the_events_time_when_logged_later() -> None:
    # The main thread is the only one that could log, and it is busy: the watcher's records are
    # logged with the time the event happened.
    code = """
    import logging, sys, time, graceful
    logging.basicConfig(level=logging.INFO, format="%(created).6f %(message)s", stream=sys.stdout)
    graceful.register(time.sleep, 0.5)
    with graceful.guard(timeout=5):
        print("ready", time.time(), flush=True)
        time.sleep(60)
    """
    with Child(code) as child:
        child.wait_for_prefix("ready")
        sent = time.time()
        child.send(signal.SIGTERM)
        assert child.finish() == -signal.SIGTERM, child.stderr
    (received,) = [line for line in child.lines if "SIGTERM received" in line]
    (done,) = [line for line in child.lines if "time.sleep: ok" in line]
    assert float(received.split()[0]) >= sent - 0.001
    assert float(done.split()[0]) - float(received.split()[0]) >= 0.45


# --- 28.9: one rule for signals and durations ---------------------------------------------------


def test_end_drain_returns_true_once_per_drain() -> None:
    code = """
    import threading, time, graceful
    results = []
    def ender():  # a thread: Signalled (due once the drain ends) never interrupts it
        results.extend(graceful.end_drain() for _ in range(3))
    ending = threading.Thread(target=ender)
    @graceful.register
    def report():
        ending.join()
        print("calls", results, flush=True)
    with graceful.guard(drain=30, timeout=2):
        print("before", graceful.end_drain(), flush=True)
        print("ready", flush=True)
        while not graceful.draining.is_set():
            time.sleep(0.001)
        ending.start()
        time.sleep(60)
    """
    with Child(code) as child:
        child.wait_for("ready")
        child.send(signal.SIGTERM)
        assert child.finish() == -signal.SIGTERM, child.stderr
    assert child.lines == ["before False", "ready", "calls [True, False, False]"]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: graceful.guard(drain=-1), ValueError, "drain must be >= 0 seconds (0 for none)"),
        (lambda: graceful.guard(drain=None), TypeError, "drain must be a number of seconds"),
        (lambda: graceful.guard(drain=math.inf), ValueError, "drain must be finite"),
        (lambda: graceful.guard(drain=math.nan), ValueError, "drain must be >= 0 seconds"),
        (lambda: graceful.guard(timeout=-1), ValueError, ">= 0 seconds, or None for no deadline"),
        (lambda: graceful.guard(timeout=math.nan), ValueError, "got nan"),
        (lambda: graceful.guard(timeout="5"), TypeError, "a number of seconds or None"),
        (lambda: graceful.guard(timeout=1e300), ValueError, "pass None for no deadline"),
        (lambda: graceful.shutdown(timeout=-1), ValueError, "graceful.shutdown(): timeout"),
        (lambda: graceful.track(_popen(), signal="STOP"), ValueError, "SIGSTOP does not end"),
        (lambda: graceful.track(_popen(), signal=signal.SIGCONT), ValueError, "SIGCONT does not"),
        (lambda: graceful.track(_popen(), signal=signal.SIGCHLD), ValueError, "SIGCHLD does not"),
        (lambda: graceful.track(_popen(), signal="NOPE"), ValueError, "unknown signal name"),
        (lambda: graceful.track(_popen(), signal=0), ValueError, "signal 0 only probes"),
        (lambda: graceful.track(_popen(), signal=1.5), TypeError, "a name such as 'TERM'"),
        (lambda: graceful.track(_popen(), timeout=-1), ValueError, "graceful.track(): timeout"),
        (lambda: graceful.die_with_parent("STOP"), ValueError, "SIGSTOP does not end"),
        (lambda: graceful.die_with_parent(True), TypeError, "got bool True"),
        (lambda: graceful.spawn(["true"], signal="TSTP"), ValueError, "SIGTSTP does not end"),
    ],
)
def test_every_refusal_says_what_to_do(call: Any, error: type, message: str) -> None:
    with pytest.raises(error) as info:
        call()
    assert message in str(info.value)
    if "drain" in message:  # None is refused for a drain: its messages never offer it
        assert "None" not in str(info.value).replace("got NoneType None", "")


_children: list[subprocess.Popen[bytes]] = []


def _popen() -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(["sleep", "30"])
    _children.append(proc)
    return proc


@pytest.fixture(autouse=True)
def _reap() -> Iterator[None]:
    yield
    while _children:
        proc = _children.pop()
        proc.kill()
        proc.wait(TIMEOUT)


def test_track_and_die_with_parent_accept_the_names_guard_accepts() -> None:
    code = """
    import subprocess, graceful
    proc = subprocess.Popen(["sleep", "30"])
    graceful.track(proc, signal="KILL")
    graceful.track(subprocess.Popen(["sleep", "30"]), signal="sigterm")
    graceful.die_with_parent("TERM")
    print("ok", flush=True)
    """
    with Child(code) as child:
        assert child.finish() == 0, child.stderr
    assert child.lines == ["ok"]


def test_no_deadline_has_one_spelling_in_the_api_and_the_cli() -> None:
    assert graceful.guard(timeout=None).timeout is None
    with pytest.raises(ValueError, match=r"timeout=inf .*; pass None for no deadline"):
        graceful.guard(timeout=math.inf)

    def cli(value: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "graceful", "run", "-t", value, "--", "true"],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )

    assert cli("none").returncode == 0
    for value in ("inf", "1e300"):
        refused = cli(value)
        assert refused.returncode == 2, refused.stderr
        assert "pass 'none' for no deadline" in refused.stderr
    refused = cli("-1")
    assert refused.returncode == 2
    assert ">= 0 seconds, or 'none' for no deadline" in refused.stderr


WATCHER_ERROR_FULL_STDERR = f"""
import os, sys, time, graceful
from graceful._core.machine import machine
{FILL_STDERR}def broken_listener(event, facts):
    raise RuntimeError("an integration's listener fails")  # the watcher reports it on stderr
machine.add_listener(broken_listener)
graceful.register(time.sleep, 60)  # a hung cleanup: only the deadline ends the process
with graceful.guard(timeout={DEADLINE}):
    print("ready", flush=True)
    time.sleep(60)
"""


def test_the_watcher_never_blocks_on_a_full_stderr_pipe() -> None:
    # No logging configured: the watcher's own error report goes to stderr, a full pipe.
    rc, _, _ = _full_stderr_then_sigterm(WATCHER_ERROR_FULL_STDERR)
    assert rc == -signal.SIGTERM
