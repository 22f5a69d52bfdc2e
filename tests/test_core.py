"""Issue 2, the core: cleanups on HUP/INT/QUIT/TERM, then die by the same signal. Real processes."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from helpers import HANDLED, NO_CORE, TIMEOUT, Child, run, with_options

GUARDED = (
    NO_CORE
    + """
import time, graceful
graceful.register(print, "global 1")
graceful.register(print, "global 2")
with graceful.guard(**OPTIONS) as g:
    g.register(print, "block 1")
    g.register(print, "block 2")
    try:
        print("ready")
        time.sleep(60)
    finally:
        print("finally")
print("after the block")
"""
)


def guarded(**options: object) -> str:
    return with_options(GUARDED, **options)


@pytest.mark.parametrize("sig", HANDLED, ids=lambda s: s.name)
def test_signal_runs_cleanups_lifo_once_then_dies_by_it(sig: signal.Signals) -> None:
    child = run(guarded(), sig)
    assert child.proc.returncode == -sig, child.stderr
    assert child.lines == ["ready", "finally", "block 2", "block 1", "global 2", "global 1"]
    assert child.stderr == ""


def test_sigint_is_a_keyboard_interrupt_and_a_signalled() -> None:
    code = """
    import time, graceful
    with graceful.guard(on_signal="raise"):
        try:
            print("ready")
            time.sleep(60)
        except KeyboardInterrupt as exc:
            print(type(exc).__mro__[1].__name__, isinstance(exc, graceful.Signalled),
                  exc.signal.name)
            raise
    """
    child = run(
        "import graceful, sys\ntry:\n"
        + textwrap.indent(textwrap.dedent(code), "    ")
        + "\nexcept graceful.Signalled as e:\n    print('caught', e)\n",
        signal.SIGINT,
    )
    assert child.lines[1:] == ["Signalled True SIGINT", "caught received SIGINT"]
    assert child.proc.returncode == 0


def test_on_signal_exit_uses_128_plus_signum_or_exit_code() -> None:
    assert run(guarded(on_signal="exit"), signal.SIGTERM).proc.returncode == 128 + 15
    child = run(guarded(on_signal="exit", exit_code=3), signal.SIGHUP)
    assert child.proc.returncode == 3
    assert child.lines[-1] == "global 1"


def test_on_signal_raise_lets_signalled_propagate_after_cleanups() -> None:
    code = """
    import time, graceful
    graceful.register(print, "global")
    g = graceful.guard("TERM", on_signal="raise")
    try:
        with g:
            print("ready")
            time.sleep(60)
    except graceful.Signalled as exc:
        print("caught", exc.signal.name, g.signal.name, graceful.shutdown_event.is_set())
    print("still running")
    """
    child = run(code, signal.SIGTERM)
    assert child.lines == ["ready", "global", "caught SIGTERM SIGTERM False", "still running"]
    assert child.proc.returncode == 0


def test_guard_signal_is_none_after_a_normal_block_and_cleanups_run_at_block_end() -> None:
    code = """
    import graceful
    graceful.register(print, "at exit")
    with graceful.guard() as g:
        g.register(print, "block")
    print("signal", g.signal)
    """
    child = run(code)
    assert child.lines == ["block", "signal None", "at exit"]
    assert child.proc.returncode == 0


def test_a_block_that_swallows_signalled_still_ends_by_the_signal() -> None:
    code = """
    import time, graceful
    with graceful.guard():
        try:
            print("ready")
            time.sleep(60)
        except graceful.Signalled:
            print("swallowed")
    print("not reached")
    """
    child = run(code, signal.SIGTERM)
    assert child.lines == ["ready", "swallowed"]
    assert child.proc.returncode == -signal.SIGTERM


def test_nested_guards_inner_cleanups_first_and_outer_decides() -> None:
    code = """
    import signal, time, graceful
    outer = graceful.guard("TERM", "USR1", on_signal="exit", exit_code=7)
    with outer:
        outer.register(print, "outer cleanup")
        h_outer = signal.getsignal(signal.SIGTERM)
        with graceful.guard("TERM", on_signal="raise") as inner:
            inner.register(print, "inner cleanup")
            with graceful.guard("USR1"):
                pass
            print("ready")
            time.sleep(60)
    """
    # USR1 after the innermost guard ended: handled by the outer guard's handler, put back.
    child = run(code, signal.SIGUSR1)
    assert child.lines == ["ready", "inner cleanup", "outer cleanup"]
    assert child.proc.returncode == 7


def test_unhandled_signal_in_inner_guard_propagates_to_outer() -> None:
    code = """
    import time, graceful
    with graceful.guard("USR1") as outer:
        outer.register(print, "outer")
        with graceful.guard("USR2") as inner:
            inner.register(print, "inner")
            print("ready")
            time.sleep(60)
    """
    child = run(code, signal.SIGUSR1)
    assert child.lines == ["ready", "inner", "outer"]
    assert child.proc.returncode == -signal.SIGUSR1


def test_other_signals_can_be_named_and_defaults_exclude_them() -> None:
    child = run(guarded(), signal.SIGUSR1)  # not handled by default: Python's default kills
    assert child.proc.returncode == -signal.SIGUSR1
    assert child.lines == ["ready"]
    code = "OPTIONS = {}\n" + GUARDED.replace(
        "graceful.guard(**OPTIONS)", "graceful.guard('usr1', 'SIGXCPU', signal.SIGPWR)"
    )
    child = run("import signal\n" + code, signal.SIGPWR)
    assert child.proc.returncode == -signal.SIGPWR
    assert child.lines[-1] == "global 1"


# --- exact restore ----------------------------------------------------------------------------


def test_restores_python_handlers_sig_dfl_and_sig_ign_exactly() -> None:
    code = """
    import signal, graceful
    def mine(signum, frame): pass
    signal.signal(signal.SIGHUP, mine)
    signal.signal(signal.SIGQUIT, signal.SIG_IGN)
    catchable = [s for s in signal.Signals if s not in (signal.SIGKILL, signal.SIGSTOP)]
    before = {s: signal.getsignal(s) for s in catchable}
    with graceful.guard("HUP", "INT", "QUIT", "TERM", "USR1", override_ignored=True):
        print("inside", signal.getsignal(signal.SIGHUP) is mine,
              signal.getsignal(signal.SIGQUIT) == signal.SIG_IGN)
    after = {s: signal.getsignal(s) for s in before}
    print("same", before == after, before[signal.SIGINT] is signal.default_int_handler)
    """
    child = run(code)
    assert child.lines == ["inside False False", "same True True"], child.stderr


C_HANDLER = r"""
#include <signal.h>
#include <unistd.h>
static void on_usr1(int signum) { (void)signum; _exit(42); }
__attribute__((constructor)) static void install(void) { signal(SIGUSR1, on_usr1); }
"""


def test_restores_a_handler_installed_from_c(tmp_path: Path) -> None:
    # A handler installed from C before Python starts (as in an embedding application): Python
    # reports it as None and cannot put None back through signal.signal().
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.fail("this test needs a C compiler (cc or gcc) to build its LD_PRELOAD library")
    source = tmp_path / "handler.c"
    source.write_text(C_HANDLER)
    library = tmp_path / "libhandler.so"
    subprocess.run(
        [cc, "-shared", "-fPIC", "-o", str(library), str(source)], check=True, timeout=60
    )
    code = """
    import os, signal, graceful
    print("before", signal.getsignal(signal.SIGUSR1))
    with graceful.guard("USR1"):
        print("inside", callable(signal.getsignal(signal.SIGUSR1)))
    print("ready", flush=True)
    os.kill(os.getpid(), signal.SIGUSR1)  # the C handler is back: it calls _exit(42)
    print("not reached")
    """
    child = run(code, env={"LD_PRELOAD": str(library)})
    assert child.lines == ["before None", "inside True", "ready"], child.stderr
    assert child.proc.returncode == 42


def test_restore_happens_when_the_block_raises() -> None:
    code = """
    import signal, graceful
    try:
        with graceful.guard():
            raise ValueError("boom")
    except ValueError:
        pass
    print(all(signal.getsignal(s) == h for s, h in [
        (signal.SIGTERM, signal.SIG_DFL), (signal.SIGHUP, signal.SIG_DFL),
        (signal.SIGINT, signal.default_int_handler)]))
    print(signal.set_wakeup_fd(-1))
    """
    assert run(code).lines == ["True", "-1"]


# --- SIG_IGN stays ignored --------------------------------------------------------------------


def _ignoring(sig: signal.Signals) -> None:
    signal.signal(sig, signal.SIG_IGN)


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGINT], ids=lambda s: s.name)
def test_signal_ignored_at_entry_stays_ignored(sig: signal.Signals) -> None:
    # As under `nohup prog` (HUP) or a background job of a non-interactive shell (INT).
    code = """
    import sys, graceful
    with graceful.guard() as g:
        print("ready")
        sys.stdin.readline()
        print("survived")
    """
    with Child(code, stdin=True, preexec_fn=lambda: _ignoring(sig)) as child:
        child.wait_for("ready")
        child.send(sig)
        child.write("go\n")
        child.wait_for("survived")
        assert child.finish() == 0


def test_override_ignored_handles_an_ignored_signal_and_restores_sig_ign() -> None:
    code = """
    import signal, sys, graceful
    graceful.register(print, "cleanup")
    try:
        with graceful.guard("HUP", override_ignored=True, on_signal="exit"):
            print("ready")
            sys.stdin.readline()
    finally:  # the guard's SystemExit passes here, after the restore
        print("ignored again", signal.getsignal(signal.SIGHUP) == signal.SIG_IGN)
    """
    with Child(code, stdin=True, preexec_fn=lambda: _ignoring(signal.SIGHUP)) as child:
        child.wait_for("ready")
        child.send(signal.SIGHUP)
        assert child.finish() == 129
    assert child.lines == ["ready", "cleanup", "ignored again True"]


# --- without a guard, @main -------------------------------------------------------------------


@pytest.mark.parametrize("ending", ["return", "raise"])
def test_register_without_guard_runs_at_exit_lifo_once(ending: str) -> None:
    code = f"""
    import graceful
    def first(): print("first")
    graceful.register(first)
    graceful.register(print, "second", end="!\\n")
    graceful.register(first)
    graceful.unregister(first)
    @graceful.register
    def third(): print("third")
    if {ending!r} == "raise":
        raise SystemError("uncaught")
    """
    child = run(code)
    assert child.lines == ["third", "second!"]
    if ending == "raise":
        assert child.proc.returncode == 1
        assert "SystemError: uncaught" in child.stderr
    else:
        assert child.proc.returncode == 0


def test_repeated_unhashable_and_bound_method_registrations_keep_order_and_arguments() -> None:
    # The registry keys an entry by its function; a function registered again, an unhashable
    # callable and equal bound methods take other paths, and must behave like atexit's list.
    code = """
    import graceful
    class Unhashable:
        __hash__ = None
        def __init__(self, name): self.name = name
        def __eq__(self, other): return isinstance(other, Unhashable) and other.name == self.name
        def __call__(self): print("unhashable", self.name)
    class Conn:
        def close(self, how="close"): print("conn", how)
    conn = Conn()
    graceful.register(print, "one")
    graceful.register(Unhashable("a"))
    graceful.register(conn.close)
    graceful.register(print, "two", end="!\\n")
    graceful.register(Unhashable("b"))
    graceful.register(Unhashable("a"))
    graceful.register(conn.close, how="again")
    graceful.register(print, "three")
    graceful.unregister(Unhashable("a"))   # both of them, by ==
    graceful.unregister(conn.close)        # a new bound method, equal to the registered ones
    graceful.register(conn.close, "last")
    print("registered")
    """
    child = run(code)
    assert child.proc.returncode == 0, child.stderr
    assert child.lines == ["registered", "conn last", "three", "unhashable b", "two!", "one"]
    assert child.stderr == ""


MAIN = """
import sys, graceful
graceful.register(print, "cleanup")
@graceful.main
def main(arg):
    print("main", arg)
    return RESULT
main("x")
"""


@pytest.mark.parametrize(("result", "rc"), [("None", 0), ("0", 0), ("3", 3)])
def test_main_return_value_is_the_exit_status(result: str, rc: int) -> None:
    child = run(MAIN.replace("RESULT", result))
    assert child.proc.returncode == rc
    assert child.lines == ["main x", "cleanup"]


def test_main_uncaught_exception_runs_cleanups_and_exits_as_python_would() -> None:
    child = run(MAIN.replace("return RESULT", "raise LookupError('nope')"))
    assert child.proc.returncode == 1
    assert child.lines == ["main x", "cleanup"]
    assert "LookupError: nope" in child.stderr


def test_main_with_options_and_a_signal() -> None:
    code = """
    import time, graceful
    graceful.register(print, "cleanup")
    @graceful.main(signals=("TERM",), on_signal="exit", exit_code=42, timeout=None)
    def main():
        print("ready")
        time.sleep(60)
    main()
    """
    child = run(code, signal.SIGTERM)
    assert child.lines == ["ready", "cleanup"]
    assert child.proc.returncode == 42


@pytest.mark.parametrize(("mode", "next_printed"), [("reraise", False), ("exit", True)])
def test_bash_stops_after_ctrl_c_only_when_the_child_dies_by_sigint(
    mode: str, next_printed: bool, tmp_path: Path
) -> None:
    # Ctrl-C: the terminal sends SIGINT to the whole foreground process group.
    prog = textwrap.dedent(f"""
        import time, graceful
        @graceful.main(on_signal={mode!r})
        def main():
            print("ready", flush=True)
            time.sleep(60)
        main()
    """)
    (tmp_path / "prog.py").write_text(prog)
    script = f"{shlex.quote(sys.executable)} -u {shlex.quote(str(tmp_path / 'prog.py'))}; echo next"
    with Child(
        f"import os, sys\nos.execvp('bash', ['bash', '-c', {script!r}])", start_new_session=True
    ) as bash:
        bash.wait_for("ready")
        os.killpg(bash.pid, signal.SIGINT)
        rc = bash.finish()
    assert ("next" in bash.lines) is next_printed
    assert rc == (0 if next_printed else -signal.SIGINT)


# --- exactly once, owner --------------------------------------------------------------------------


def test_forked_child_never_runs_parent_cleanups() -> None:
    code = """
    import os, sys, graceful
    graceful.register(print, "parent cleanup", os.getpid())
    pid = os.fork()
    if pid == 0:
        graceful.register(print, "child cleanup")
        sys.exit(0)
    _, status = os.waitpid(pid, 0)
    print("child status", os.waitstatus_to_exitcode(status))
    """
    child = run(code)
    assert child.lines[:2] == ["child cleanup", "child status 0"]
    assert child.lines[2].startswith("parent cleanup")
    assert len(child.lines) == 3


def test_import_is_cheap() -> None:
    code = (
        "import sys, graceful\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('asyncio', 'subprocess', 'multiprocessing', 'ctypes')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT, check=True
    )
    assert out.stdout.strip() == "[]"


#: What an idle guard must not load (issue 16: idle RSS within 1 MiB of the same program without
#: graceful): threading and signal's enums bring functools and collections, most of a megabyte.
HEAVY = ("threading", "signal", "enum", "functools", "collections", "logging", "importlib")


def test_an_idle_guard_and_its_shutdown_load_nothing_heavy() -> None:
    code = f"""
    import os, sys, time, graceful
    def heavy():
        return sorted(m for m in {HEAVY!r} if m in sys.modules)
    with graceful.guard(on_signal="raise"):
        print("idle", heavy())
    try:
        with graceful.guard(on_signal="raise"):
            os.kill(os.getpid(), 15)
            time.sleep(5)
    except graceful.Signalled as exc:
        print("signalled", heavy())
        print("read", repr(exc.signal), str(exc))
    """
    child = run(code)
    assert child.lines == [
        "idle []",
        "signalled []",
        "read <Signals.SIGTERM: 15> received SIGTERM",
    ], child.stderr


def test_the_watcher_is_a_named_thread_when_the_program_uses_threading() -> None:
    code = """
    import threading, graceful
    with graceful.guard():
        print(sorted(t.name for t in threading.enumerate() if t.daemon))
    """
    assert run(code).lines == ["['graceful-watcher']"]


def test_shutdown_event_made_after_the_shutdown_began_is_set() -> None:
    code = """
    import os, sys, time, graceful
    from graceful._core import machine
    try:
        with graceful.guard(on_signal="exit", drain=30):
            os.kill(os.getpid(), 15)
            deadline = time.monotonic() + 10  # until the drain has begun (no event to wait on:
            while machine.machine.phase != machine.Phase.DRAINING:  # none may exist yet)
                assert time.monotonic() < deadline, "the drain did not begin"
            print("before", "threading" in sys.modules, machine._made == {})
            print("draining", graceful.draining.is_set(), graceful.shutdown_event.is_set())
            graceful.end_drain()
            time.sleep(5)
    finally:
        print("after", graceful.shutdown_event.is_set())
    """
    child = run(code)
    assert child.lines == ["before False True", "draining True False", "after True"], child.stderr


def test_reraise_runs_other_atexit_handlers_first_as_sys_exit_would() -> None:
    code = """
    import atexit, time, graceful
    atexit.register(print, "plain atexit")
    graceful.register(print, "graceful cleanup")
    with graceful.guard():
        print("ready")
        time.sleep(60)
    """
    child = run(code, signal.SIGTERM)
    assert child.lines == ["ready", "graceful cleanup", "plain atexit"]
    assert child.proc.returncode == -signal.SIGTERM


def test_forked_child_dying_in_its_own_guard_runs_no_inherited_atexit_handler() -> None:
    code = """
    import atexit, os, signal, sys, time, graceful
    atexit.register(print, "parent's plain atexit", os.getpid())
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        graceful.register(print, "child cleanup")
        with graceful.guard():
            os.write(w, b"x")
            time.sleep(60)
        os._exit(0)
    os.read(r, 1)
    os.kill(pid, signal.SIGTERM)
    _, status = os.waitpid(pid, 0)
    print("child", os.waitstatus_to_exitcode(status))
    """
    child = run(code)
    assert child.lines[:2] == ["child cleanup", "child -15"]
    assert len(child.lines) == 3  # and the parent's own atexit, in the parent only
    assert child.lines[2].startswith("parent's plain atexit")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_asyncio_run_inside_main_cancels_tasks_then_cleans_up(sig: signal.Signals) -> None:
    code = """
    import asyncio, graceful
    graceful.register(print, "cleanup")
    async def serve():
        try:
            print("ready")
            await asyncio.sleep(60)
        finally:
            print("task finally")
    @graceful.main
    def main():
        asyncio.run(serve())
    main()
    """
    child = run(code, sig)
    assert child.lines == ["ready", "task finally", "cleanup"]
    assert child.proc.returncode == -sig
    assert child.stderr == ""


# --- Issue 28 item 2, issue 22 item 1: one signal is never counted as a second one ---------------

SENT_TOGETHER = """
import os, signal, threading, time, graceful

def slow_cleanup():
    time.sleep(0.2)
    print("slow cleanup done")

graceful.register(slow_cleanup)
with graceful.guard():
    print("ready")
    # Sent by a thread that holds the GIL: both are pending before the main thread runs the
    # Python handlers, and Python runs them by number (HUP first), not in the order they came.
    def send():
        os.kill(os.getpid(), signal.FIRST)
        os.kill(os.getpid(), signal.SIGHUP)
    threading.Thread(target=send).start()
    time.sleep(30)
print("after the block")
"""


@pytest.mark.parametrize("first", [signal.SIGINT, signal.SIGQUIT, signal.SIGTERM], ids=str)
def test_a_hup_right_after_a_signal_is_not_a_second_one(first: signal.Signals) -> None:
    for _ in range(5):
        child = run(NO_CORE + SENT_TOGETHER.replace("FIRST", first.name))
        # Pending together, they come out of the kernel lowest number first: which one ends the
        # process cannot depend on the order they were sent in; neither is a second signal.
        assert child.proc.returncode in (-first, -signal.SIGHUP), child.stderr
        assert child.lines == ["ready", "slow cleanup done"], child.stderr
        assert f"second {first.name}" not in child.stderr, child.stderr
        assert "ending now" not in child.stderr, child.stderr


WATCHER_BEHIND = """
import os, signal, threading, time, graceful
from graceful._core import machine, watcher

def slow_cleanup():
    time.sleep(0.2)
    print("slow cleanup done")

graceful.register(slow_cleanup)
with graceful.guard():
    print("ready")
    # The watcher as a busy machine may leave it, between reading the pipe and reporting what it
    # read: the handler judges HUP before the watcher reports either signal, however long it
    # waits for it.
    held = watcher._watcher.read_lock
    held.acquire()
    def send():
        os.kill(os.getpid(), signal.FIRST)
        os.kill(os.getpid(), signal.SIGHUP)
        deadline = time.monotonic() + 10
        while machine.machine.signal is None and time.monotonic() < deadline:
            time.sleep(0.001)
        held.release()
    threading.Thread(target=send).start()
    time.sleep(30)
print("after the block")
"""


@pytest.mark.parametrize("first", [signal.SIGINT, signal.SIGQUIT], ids=str)
def test_a_signal_sent_with_the_first_is_not_a_second_one_when_the_watcher_is_behind(
    first: signal.Signals,
) -> None:
    child = run(NO_CORE + WATCHER_BEHIND.replace("FIRST", first.name))
    assert child.proc.returncode in (-first, -signal.SIGHUP), child.stderr
    assert child.lines == ["ready", "slow cleanup done"], child.stderr
    assert "ending now" not in child.stderr, child.stderr


READ_BETWEEN = """
import os, signal, threading, time, graceful
from graceful._core import machine

def slow_cleanup():
    time.sleep(0.2)
    print("slow cleanup done")


def in_read(tid, fd):
    # /proc's view of a thread: the system call it is blocked in, and its arguments (read(2)'s
    # are the fd, the buffer and the count: os.read(fd, 1) has 1).
    with open(f"/proc/self/task/{tid}/syscall") as f:
        fields = f.read().split()
    return fields[0] != "running" and int(fields[1], 16) == fd and int(fields[3], 16) == 1


graceful.register(slow_cleanup)
r, w = os.pipe()
with graceful.guard():
    print("ready")
    # The interleaving of issue 28.2(a), made certain: the watcher reads the first signal's byte
    # alone, then the second one's, and only then does the main thread run Python code (its
    # handlers). The main thread waits in os.read with the signals blocked (so their C handlers
    # run in the sender thread); the sender begins once it is in there, and lets it go on once
    # the watcher has heard both.
    main = threading.main_thread().native_id

    def send():
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.FIRST, signal.SECOND})  # inherited
        deadline = time.monotonic() + 10
        while not in_read(main, r) and time.monotonic() < deadline:
            time.sleep(0.001)
        os.kill(os.getpid(), signal.FIRST)
        while machine.machine.signal is None and time.monotonic() < deadline:
            time.sleep(0.001)
        os.kill(os.getpid(), signal.SECOND)
        while not machine.machine._unsettled and time.monotonic() < deadline:
            time.sleep(0.001)
        os.write(w, b"x")

    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.FIRST, signal.SECOND})
    threading.Thread(target=send).start()
    os.read(r, 1)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    time.sleep(30)
print("after the block")
"""


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (signal.SIGHUP, signal.SIGINT),
        (signal.SIGHUP, signal.SIGQUIT),
        (signal.SIGTERM, signal.SIGINT),
    ],
    ids=str,
)
def test_a_signal_read_after_the_first_but_before_the_handler_ran_came_with_it(
    first: signal.Signals, second: signal.Signals
) -> None:
    """Both were sent before the program ran any code: neither is a second signal, whatever
    order the watcher read them in (before the anchor on the handler's run, INT here was judged
    a second SIGINT, 5 of 5 runs)."""
    program = READ_BETWEEN.replace("FIRST", first.name).replace("SECOND", second.name)
    child = run(NO_CORE + program)
    assert child.proc.returncode == -first, child.stderr
    assert child.lines == ["ready", "slow cleanup done"], child.stderr
    assert "ending now" not in child.stderr, child.stderr


DRAIN_THEN_SECOND = """
import os, signal, time, graceful

def slow_cleanup():
    time.sleep(0.2)
    print("slow cleanup done")

graceful.register(slow_cleanup)
with graceful.guard(drain=5):
    print("ready")
    os.kill(os.getpid(), signal.SIGTERM)
    deadline = time.monotonic() + 5
    while not graceful.draining.is_set() and time.monotonic() < deadline:
        time.sleep(0.001)
    print("draining")
    os.kill(os.getpid(), signal.SECOND)  # ends the drain, and only that
    time.sleep(30)
print("after the block")
"""


@pytest.mark.parametrize("second", [signal.SIGINT, signal.SIGHUP, signal.SIGUSR1], ids=str)
def test_a_second_signal_during_the_drain_only_ends_the_drain(second: signal.Signals) -> None:
    code = DRAIN_THEN_SECOND.replace("SECOND", second.name)
    if second == signal.SIGUSR1:
        code = code.replace("guard(drain=5)", "guard('TERM', 'USR1', drain=5)")
    for _ in range(8):
        child = run(NO_CORE + code)
        assert child.proc.returncode == -signal.SIGTERM, child.stderr
        assert child.lines == ["ready", "draining", "slow cleanup done"], child.stderr
        assert "ending now" not in child.stderr, child.stderr


REPLAYING_SERVER = """
import os, signal, sys, time, graceful

def slow_cleanup():
    time.sleep(0.2)
    print("slow cleanup done")

graceful.register(slow_cleanup)

def serve():
    # What uvicorn's Server.capture_signals does: own the signals while serving, then put the
    # previous handlers back and raise again every signal it captured.
    captured = []
    previous = {s: signal.signal(s, lambda n, f: captured.append(n)) for s in SIGNALS}
    print("ready")
    deadline = time.monotonic() + 10
    reported = 0
    while reported < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
        if len(captured) > reported:
            reported += 1
            print("captured", reported)
    print("server stopped")
    for s, handler in previous.items():
        signal.signal(s, handler)
    for s in captured:
        signal.raise_signal(s)

if ASYNC:
    import asyncio

    @graceful.main
    async def main():  # uvicorn's case: the handler cancels the task, the replay goes on
        serve()
        await asyncio.sleep(5)
        print("after the replay")
else:
    @graceful.main
    def main():
        serve()
        time.sleep(5)
        print("after the replay")

main()
"""


@pytest.mark.parametrize("is_async", [False, True], ids=["sync main", "async main"])
@pytest.mark.parametrize(
    "signals",
    [(signal.SIGTERM, signal.SIGTERM), (signal.SIGINT, signal.SIGINT)],
    ids=["TERM twice", "INT twice"],
)
def test_a_signal_a_server_replays_continues_the_shutdown(
    signals: tuple[signal.Signals, signal.Signals], is_async: bool
) -> None:
    code = REPLAYING_SERVER.replace("SIGNALS", "(signal.SIGINT, signal.SIGTERM)")
    code = f"ASYNC = {is_async}\n" + code
    for _ in range(3):
        with Child(NO_CORE + code) as child:
            child.wait_for("ready")
            child.send(signals[0])
            child.wait_for("captured 1")  # two signals, not one coalesced pending one
            child.send(signals[1])
            child.finish()
        assert child.proc.returncode == -signals[0], child.stderr
        expected = ["ready", "captured 1", "captured 2", "server stopped", "slow cleanup done"]
        assert child.lines == expected, child.stderr
        assert "ending now" not in child.stderr, child.stderr


# --- Issue 21, defect 3: a loop of protected calls sees the signal -----------------------------

PROTECTED_LOOP = """
import time, graceful
graceful.register(print, "cleanup")

@graceful.main(timeout=3)
def main():
    for i in range(100000):
        CALL
        if i == 30:
            print("ready")  # well into a loop that is nearly all protected calls
main()
"""


@pytest.mark.parametrize(
    "call",
    ['graceful.spawn(["sleep", "30"])', "graceful.register(print, 'never')"],
    ids=["spawn", "register"],
)
def test_a_signal_deferred_by_a_protected_call_is_raised_as_it_returns(call: str) -> None:
    with Child(NO_CORE + PROTECTED_LOOP.replace("CALL", call)) as child:
        child.wait_for("ready")
        started = time.monotonic()
        child.send(signal.SIGTERM)
        child.finish()
        took = time.monotonic() - started
    assert child.proc.returncode == -signal.SIGTERM, child.stderr
    assert child.lines[-1] == "cleanup", child.stderr
    assert "deadline" not in child.stderr, child.stderr
    assert took < 2.5, took  # the deadline (3 s) never ends it


# --- Issue 21, defect 5: shutdown_event means "the program is ending", however it ends ---------

WORKER_UNTIL_SHUTDOWN = """
import threading, graceful

def worker():
    while not graceful.shutdown_event.wait(0.01):
        pass
    print("worker stopped")

def join_worker():
    thread.join(5)
    print("cleanup", "after the worker" if not thread.is_alive() else "worker still running")

@graceful.main
def main():
    global thread
    thread = threading.Thread(target=worker)  # not a daemon: Python joins it at exit
    thread.start()
    graceful.register(join_worker)
    print("ready")
    ENDING
main()
"""


@pytest.mark.parametrize(
    ("ending", "rc"), [("return 3", 3), ("raise LookupError('no')", 1)], ids=["return", "raise"]
)
def test_shutdown_event_is_set_when_main_ends_normally(ending: str, rc: int) -> None:
    child = run(WORKER_UNTIL_SHUTDOWN.replace("ENDING", ending))
    assert child.proc.returncode == rc, child.stderr
    assert child.lines == ["ready", "worker stopped", "cleanup after the worker"], child.stderr


# --- Issue 21, defect 6: a forced end still SIGKILLs the tracked backends -------------------------

POOL_IGNORING_TERM = """
import os, signal, sys, time, graceful
from concurrent.futures import ProcessPoolExecutor

def ignore_term():
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

def work(x):
    time.sleep(60)

@graceful.main(timeout=20)
def main():
    pool = ProcessPoolExecutor(2, initializer=ignore_term)
    graceful.track(pool)
    graceful.register_break(print, "breaking")
    for i in range(2):
        pool.submit(work, i)
    deadline = time.monotonic() + 10
    while len(pool._processes) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    print("workers", *pool._processes)
    time.sleep(60)
main()
"""


def _dead(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_forced_end_sigkills_the_tracked_workers_that_ignore_term() -> None:
    with Child(NO_CORE + POOL_IGNORING_TERM) as child:
        workers = [int(pid) for pid in child.wait_for_prefix("workers ").split()[1:]]
        try:
            child.send(signal.SIGTERM)
            child.wait_for("breaking")
            child.send(signal.SIGTERM)  # forced end: no waiting for the workers
            child.finish()
            assert child.proc.returncode == -signal.SIGTERM, child.stderr
            assert "ending now" in child.stderr, child.stderr
            limit = time.monotonic() + TIMEOUT
            while not all(_dead(pid) for pid in workers) and time.monotonic() < limit:
                time.sleep(0.01)
            assert all(_dead(pid) for pid in workers), workers
        finally:
            for pid in workers:
                if not _dead(pid):
                    os.kill(pid, signal.SIGKILL)


# --- Issue 28, item 3: after a drain, the break callbacks still come first ------------------------

DRAIN_THEN_BREAK = """
import time, graceful

def break_connections():
    time.sleep(0.3)
    print("break done")

graceful.register(print, "cleanup")
graceful.register_break(break_connections)

@graceful.main(drain=1, timeout=2)  # the drain is half the deadline: the breaks' share is 0.5 s
def main():
    print("ready")
    time.sleep(60)
main()
"""


def test_the_break_share_counts_from_the_end_of_the_drain() -> None:
    child = run(NO_CORE + DRAIN_THEN_BREAK, signal.SIGTERM)
    assert child.proc.returncode == -signal.SIGTERM, child.stderr
    assert child.lines == ["ready", "break done", "cleanup"], child.stderr
    assert "still running" not in child.stderr, child.stderr
