"""Issue 10, items 2, 5, 6: the shutdown still ends well when the machine itself is failing.

No thread can start (``threading.stack_size`` too large for any stack: ``pthread_create`` really
fails), no file descriptor is left (``RLIMIT_NOFILE``), a break callback hangs. Real processes.
"""

from __future__ import annotations

import signal

from helpers import Child, run, timed

NO_THREADS = "threading.stack_size(1 << 40)  # from here on, pthread_create fails\n"


def test_break_callbacks_run_in_the_main_thread_when_no_thread_can_start() -> None:
    code = (
        """
    import threading, time, graceful
    graceful.register_break(print, "break ran")
    graceful.register(print, "cleanup ran")
    with graceful.guard(timeout=5):
        """
        + NO_THREADS
        + """
        print("ready", flush=True)
        time.sleep(60)
    """
    )
    child = run(code, signal.SIGTERM)
    assert child.proc.returncode == -signal.SIGTERM, child.stderr
    assert child.lines == ["ready", "break ran", "cleanup ran"]
    assert "Traceback" not in child.stderr


def test_the_deadline_still_ends_the_process_when_no_thread_can_start() -> None:
    code = (
        """
    import threading, time, graceful
    @graceful.register
    def hang():
        print("hanging", flush=True)
        threading.Event().wait()
    with graceful.guard(timeout=1):
        """
        + NO_THREADS
        + """
        print("ready", flush=True)
        time.sleep(60)
    """
    )
    child, elapsed = timed(code, signal.SIGTERM)
    assert child.proc.returncode == -signal.SIGTERM
    assert child.lines == ["ready", "hanging"]
    assert 1.0 <= elapsed < 3.0, elapsed
    # The last words went straight to stderr: no thread could write them.
    assert "shutdown deadline of 1 s passed after SIGTERM" in child.stderr


def test_a_guard_that_cannot_start_its_thread_is_not_entered_at_all() -> None:
    code = (
        """
    import signal, sys, threading, graceful
    """
        + NO_THREADS
        + """
    try:
        with graceful.guard():
            print("entered")
    except RuntimeError as exc:
        print("refused:", exc)
    print("handler back:", signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)
    print("ready", flush=True)
    sys.stdin.readline()
    """
    )
    with Child(code, stdin=True) as child:
        child.wait_for("ready")
        child.send(signal.SIGTERM)  # outside any guard: the default action, no traceback
        assert child.finish() == -signal.SIGTERM
    assert child.lines[0].startswith("refused: graceful.guard(): could not start its watcher")
    assert "can't start new thread" in child.lines[0]
    assert child.lines[1:] == ["handler back: True", "ready"]
    assert "Traceback" not in child.stderr


def test_a_guard_entered_with_no_file_descriptor_left_changes_nothing() -> None:
    code = """
    import os, resource, signal, sys, graceful
    resource.setrlimit(resource.RLIMIT_NOFILE, (16, 16))
    hoard = []
    while True:
        try:
            hoard.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            break
    try:
        with graceful.guard():
            print("entered")
    except OSError as exc:
        print("refused:", exc.strerror)
    print("handler back:", signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)
    print("ready", flush=True)
    sys.stdin.readline()
    """
    with Child(code, stdin=True) as child:
        child.wait_for("ready")
        child.send(signal.SIGTERM)
        assert child.finish() == -signal.SIGTERM
    assert child.lines == ["refused: Too many open files", "handler back: True", "ready"]
    assert "Traceback" not in child.stderr


def test_a_hung_break_callback_gets_its_share_of_the_deadline_then_cleanups_start() -> None:
    code = """
    import threading, time, graceful
    graceful.register_break(threading.Event().wait)  # a conn.cancel() stuck on the network
    graceful.register(print, "cleanup ran", flush=True)
    with graceful.guard(timeout=2):
        print("ready", flush=True)
        time.sleep(60)
    """
    child, elapsed = timed(code, signal.SIGTERM)
    assert child.proc.returncode == -signal.SIGTERM
    assert child.lines == ["ready", "cleanup ran"]
    # A quarter of the 2 s deadline for the break callbacks, then the cleanups, then the end.
    assert 0.5 <= elapsed < 1.8, elapsed
    assert "break callbacks still running after 0.5 s" in child.stderr
