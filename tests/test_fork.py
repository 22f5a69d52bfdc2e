"""Fork safety: a child never runs its parent's cleanups; `graceful.at_fork` hooks.

`at_fork` is tested in this process with a real `os.fork()`; the child always ends in
`os._exit` and reports through a pipe. Whole programs (guards, signals, `@main`,
multiprocessing) run as scripts in their own session, so no process can outlive a test; each
process appends "<what> <pid>" lines to a shared log with one O_APPEND write.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import pytest

import graceful
from helpers import LOG_FUNCTION, read_log, run_script

TIMEOUT = 20.0

# 3.12+ warns (an error here) when os.fork() runs with other threads alive; pytest's
# faulthandler_timeout keeps a watchdog thread. The children below only report and _exit.
fork_with_threads = pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded:DeprecationWarning"
)


def _fork(child: Callable[[], object]) -> tuple[int, Any]:
    """Fork; the child runs ``child()`` and sends back its JSON result. Returns (status, result)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(read_fd)
            os.write(write_fd, json.dumps(child()).encode())
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    os.close(write_fd)
    chunks = []
    try:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if select.select([read_fd], [], [], deadline - time.monotonic())[0]:
                chunk = os.read(read_fd, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
    finally:
        os.close(read_fd)
        status = _reap(pid)
    return status, json.loads(b"".join(chunks)) if chunks else None


def _reap(pid: int) -> int:
    """Wait for ``pid`` with a deadline; kill it if it overstays. Returns the exit code."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.005)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(f"forked child {pid} still running after {TIMEOUT} s")


@pytest.fixture
def hooks() -> Any:
    """Handles registered by a test, cancelled afterwards whatever happens."""
    handles: list[graceful.ForkHooks] = []

    def add(**kwargs: Any) -> graceful.ForkHooks:
        handles.append(graceful.at_fork(**kwargs))
        return handles[-1]

    yield add
    for handle in handles:
        handle.cancel()


# --- at_fork --------------------------------------------------------------------------------


@fork_with_threads
def test_at_fork_runs_before_newest_first_and_after_oldest_first(hooks: Any) -> None:
    events: list[str] = []
    for name in ("a", "b", "c"):
        hooks(
            before=lambda name=name: events.append(f"before {name}"),
            after_in_parent=lambda name=name: events.append(f"parent {name}"),
            after_in_child=lambda name=name: events.append(f"child {name}"),
        )
    status, child_events = _fork(lambda: events)
    assert status == 0
    befores = ["before c", "before b", "before a"]
    assert events == [*befores, "parent a", "parent b", "parent c"]
    assert child_events == [*befores, "child a", "child b", "child c"]


@fork_with_threads
def test_cancelled_hooks_do_not_run(hooks: Any) -> None:
    events: list[str] = []
    kept = hooks(before=lambda: events.append("kept"))
    dropped = hooks(before=lambda: events.append("dropped"), after_in_child=lambda: 1 / 0)
    with graceful.at_fork(after_in_parent=lambda: events.append("scoped")) as scoped:
        assert scoped.active
    dropped.cancel()
    dropped.cancel()  # idempotent
    assert not dropped.active
    assert not scoped.active
    assert kept.active
    status, _ = _fork(lambda: None)
    assert status == 0
    assert events == ["kept"]


@fork_with_threads
def test_a_raising_hook_is_logged_and_the_others_still_run(
    hooks: Any, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[str] = []

    def broken() -> None:
        raise RuntimeError("hook fails on purpose")

    hooks(before=lambda: events.append("first"), after_in_child=lambda: events.append("first"))
    hooks(before=broken, after_in_parent=broken, after_in_child=broken)
    hooks(before=lambda: events.append("third"), after_in_child=lambda: events.append("third"))

    def report() -> object:
        return [events, [(r.name, r.getMessage(), r.exc_info is not None) for r in caplog.records]]

    with caplog.at_level(logging.ERROR, logger="graceful"):
        status, (child_events, child_logs) = _fork(report)
    assert status == 0
    assert events == ["third", "first"]
    assert child_events == ["third", "first", "first", "third"]
    where = f"{__name__}.test_a_raising_hook_is_logged_and_the_others_still_run.<locals>.broken"
    message = f"graceful: at_fork before hook {where} raised; the remaining ones still run"
    before = ["graceful", message, True]
    in_child = ["graceful", before[1].replace("before hook", "after_in_child hook"), True]
    assert child_logs == [before, in_child]
    assert [(r.name, r.getMessage(), r.exc_info is not None) for r in caplog.records] == [
        tuple(before),
        ("graceful", before[1].replace("before hook", "after_in_parent hook"), True),
    ]
    assert "hook fails on purpose" in caplog.text


def test_at_fork_rejects_what_is_not_a_hook() -> None:
    with pytest.raises(TypeError, match=r"graceful\.at_fork\(before=\.\.\.\) expects a callable"):
        graceful.at_fork(before="conn.close")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"after_in_child=\.\.\.\) expects a callable.*int 3"):
        graceful.at_fork(after_in_child=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="needs at least one hook"):
        graceful.at_fork()
    with pytest.raises(TypeError, match=r"None.*not the result of calling it"):
        graceful.at_fork(before=print("oops"))  # type: ignore[func-returns-value]
    with pytest.raises(TypeError):
        graceful.at_fork(print)  # type: ignore[misc]  # keyword-only, as os.register_at_fork


def test_fork_hooks_repr_names_the_hooks(hooks: Any) -> None:
    handle = hooks(before=print)
    assert repr(handle) == "<graceful.ForkHooks before=builtins.print active>"
    handle.cancel()
    assert repr(handle) == "<graceful.ForkHooks before=builtins.print cancelled>"


def test_import_graceful_stays_light() -> None:
    code = (
        "import sys, graceful; "
        "print(sorted({'asyncio', 'subprocess', 'multiprocessing', 'ctypes'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT, check=True
    ).stdout
    assert out == "[]\n"


# --- whole programs -------------------------------------------------------------------------

PRELUDE = (
    """
import os, select, signal, sys, time
import graceful

LOG = sys.argv[1]

"""
    + LOG_FUNCTION
    + """

def fork_and_wait(child, sig=None):
    '''Fork; run child(ready) in the child. Signal it once ready; return its exit code.'''
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        child(lambda: os.write(ready_w, b"ready"))
        os._exit(97)  # only if child() returned: each must end by itself
    os.close(ready_w)
    if sig is not None:
        if not select.select([ready_r], [], [], 20)[0] or os.read(ready_r, 5) != b"ready":
            os.kill(pid, signal.SIGKILL)
            sys.exit(f"child {pid} never got ready")
        os.kill(pid, sig)
    os.close(ready_r)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
"""
)


def _script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "program.py"
    path.write_text(PRELUDE + textwrap.dedent(body))
    return path


# Child endings: each child registers its own cleanup ("mine"), and for its own guard its own
# break callback; then it ends as named. Expected: exit code, and whether its own cleanup runs.
CHILD_ENDS = {
    "return-from-main": (0, True),
    "sys-exit": (3, True),
    "exception": (1, True),
    "sigterm-in-own-guard": (-signal.SIGTERM, True),
    "sigterm-in-own-main": (-signal.SIGTERM, True),
    "sigint-no-guard": (-signal.SIGINT, True),  # KeyboardInterrupt, then exit by SIGINT
    "sigterm-no-guard": (-signal.SIGTERM, False),  # default action: nothing runs, as without us
    "os-exit": (5, False),
}

OWNERSHIP = """
END = sys.argv[2]

def child(ready):
    graceful.register(log, "mine", END)
    if END == "return-from-main":
        graceful.main(lambda: 0)()
    if END == "sys-exit":
        sys.exit(3)
    if END == "exception":
        raise RuntimeError("the child fails on purpose")
    if END == "sigterm-in-own-guard":
        graceful.register_break(log, "my-break", END)
        with graceful.guard() as g:
            g.register(log, "my-guard", END)
            ready()
            time.sleep(30)
    if END == "sigterm-in-own-main":
        @graceful.main
        def work():
            graceful.register_break(log, "my-break", END)
            ready()
            time.sleep(30)
        work()
    if END in ("sigint-no-guard", "sigterm-no-guard"):
        ready()
        time.sleep(30)
    if END == "os-exit":
        os._exit(5)

SIGNALS = {"sigint-no-guard": signal.SIGINT}
sig = SIGNALS.get(END, signal.SIGTERM) if "sig" in END else None

graceful.register(log, "parent", END)
graceful.register_break(log, "parent-break", END)
with graceful.guard() as g:
    g.register(log, "parent-guard", END)
    print("exit code", fork_and_wait(child, sig), flush=True)
log("parent-done", END)
"""


@pytest.mark.parametrize("end", list(CHILD_ENDS))
def test_a_forked_child_never_runs_the_parents_cleanups(tmp_path: Path, end: str) -> None:
    log = tmp_path / "log"
    rc, out, err = run_script([str(_script(tmp_path, OWNERSHIP)), str(log), end])
    assert rc == 0, (out, err)
    code, runs_own = CHILD_ENDS[end]
    assert out == f"exit code {code}\n", err
    entries = read_log(log)
    parent_pid = next(pid for what, *_, pid in entries if what == "parent-done")
    parents = [entry for entry in entries if entry[-1] == parent_pid]
    children = [entry for entry in entries if entry[-1] != parent_pid]
    # The parent ran its guard's cleanup, then its registered one; no break (no signal here).
    assert [what for what, *_ in parents] == ["parent-guard", "parent-done", "parent"]
    # The child ran only what it registered itself.
    expected = {
        "sigterm-in-own-guard": ["my-break", "my-guard", "mine"],
        "sigterm-in-own-main": ["my-break", "mine"],
    }.get(end, ["mine"] if runs_own else [])
    assert [what for what, *_ in children] == expected
    assert len({pid for *_, pid in children}) <= 1


SIGNALS_IN_CHILD = """
def mine(signum, frame):
    pass

signal.signal(signal.SIGHUP, mine)
signal.signal(signal.SIGQUIT, signal.SIG_IGN)
SIGNALS = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM)
before = {s.name: signal.getsignal(s) for s in SIGNALS}

def describe(handler):
    return {mine: "mine", signal.default_int_handler: "default_int_handler"}.get(
        handler, getattr(handler, "name", type(handler).__name__))

def child(ready):
    now = {name: describe(signal.getsignal(getattr(signal, name))) for name in before}
    wakeup = signal.set_wakeup_fd(-1)
    with graceful.guard():
        ours = signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    after = {name: describe(signal.getsignal(getattr(signal, name))) for name in before}
    print("child", now, wakeup, ours, after == now, flush=True)
    sys.exit(0)

with graceful.guard():
    in_guard = {name: signal.getsignal(getattr(signal, name)) is before[name] for name in before}
    print("parent in guard, unchanged:", in_guard, flush=True)
    code = fork_and_wait(child)
    print("parent still guarded:", signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL)
print("exit code", code)
"""


def test_a_child_gets_back_the_dispositions_the_parents_guard_replaced(tmp_path: Path) -> None:
    rc, out, err = run_script([str(_script(tmp_path, SIGNALS_IN_CHILD)), str(tmp_path / "log")])
    assert rc == 0, err
    assert out.splitlines() == [
        # The guard replaced HUP, INT and TERM; QUIT was ignored, so it was left alone.
        "parent in guard, unchanged: "
        "{'SIGHUP': False, 'SIGINT': False, 'SIGQUIT': True, 'SIGTERM': False}",
        # The child sees what was there before the guard, no wakeup fd, and can guard itself.
        "child {'SIGHUP': 'mine', 'SIGINT': 'default_int_handler', 'SIGQUIT': 'SIG_IGN', "
        "'SIGTERM': 'SIG_DFL'} -1 True True",
        "parent still guarded: True",
        "exit code 0",
    ]


MULTIPROCESSING = """
import multiprocessing

def target(method):
    graceful.register(log, "mine", method)

if __name__ == "__main__":
    graceful.register(log, "parent", "all")
    for method in sys.argv[2].split(","):
        process = multiprocessing.get_context(method).Process(target=target, args=(method,))
        process.start()
        process.join(20)
        print(method, process.exitcode, flush=True)
"""


def test_multiprocessing_children_run_only_their_own_cleanups(tmp_path: Path) -> None:
    """fork and forkserver children end by os._exit; spawn children are fresh interpreters."""
    methods = ["fork", "forkserver", "spawn"]
    log = tmp_path / "log"
    rc, out, err = run_script(
        [str(_script(tmp_path, MULTIPROCESSING)), str(log), ",".join(methods)]
    )
    assert rc == 0, err
    assert out.splitlines() == [f"{method} 0" for method in methods]
    entries = read_log(log)
    mine = [entry for entry in entries if entry[0] == "mine"]
    assert [method for _, method, _ in mine] == methods
    assert [entry[0] for entry in entries if entry[0] != "mine"] == ["parent"]
    assert entries[-1][0] == "parent"
    assert entries[-1][2] not in {pid for *_, pid in mine}


SIGNAL_DURING_HOOK = """
WHEN = sys.argv[2]
graceful.register(log, "cleanup")

def hook():
    log("hook-start")
    os.kill(os.getpid(), signal.SIGTERM)
    deadline = time.monotonic() + 0.2
    while time.monotonic() < deadline:
        pass  # plenty of bytecodes at which the handler could raise
    log("hook-end")

graceful.at_fork(**{WHEN: hook})
with graceful.guard():
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    log("forked")
    try:
        time.sleep(5)  # the signal is raised here, once the fork is over
    finally:
        os.waitpid(pid, 0)
        log("raised-after", round(time.monotonic() - start, 1))
log("not-reached")
"""


@pytest.mark.parametrize("when", ["before", "after_in_parent"])
def test_a_signal_during_a_fork_hook_is_not_lost(tmp_path: Path, when: str) -> None:
    """CPython swallows what a fork hook raises: the signal must wait until the fork is over."""
    log = tmp_path / "log"
    rc, out, err = run_script([str(_script(tmp_path, SIGNAL_DURING_HOOK)), str(log), when])
    assert rc == -signal.SIGTERM, (out, err)
    assert "Traceback" not in err, err
    entries = read_log(log)
    assert [what for what, *_ in entries] == [
        "hook-start",
        "hook-end",
        "forked",
        "raised-after",
        "cleanup",
    ]
    assert float(entries[3][1]) < 2.0


SIGNAL_DURING_FORK_WARNING = """
import warnings
warned = []

def showwarning(message, category, filename, lineno, file=None, line=None):
    warned.append(str(message))
    log("warned")
    os.kill(os.getpid(), signal.SIGTERM)
    deadline = time.monotonic() + 0.2
    while time.monotonic() < deadline:
        pass  # plenty of bytecodes at which the handler could raise
    log("warned-end")

warnings.showwarning = showwarning
warnings.simplefilter("always", DeprecationWarning)
graceful.register(log, "cleanup")
with graceful.guard():
    start = time.monotonic()
    pid = os.fork()  # from 3.12: "multi-threaded" (the watcher), shown after the fork hooks
    if pid == 0:
        os._exit(0)
    log("forked")
    try:
        if not warned:
            os.kill(os.getpid(), signal.SIGTERM)  # before 3.12 nothing warns: the plain case
        time.sleep(5)  # the signal is raised here
    finally:
        os.waitpid(pid, 0)
        log("raised-after", round(time.monotonic() - start, 1))
log("not-reached")
"""


def test_a_signal_during_the_fork_warning_is_not_lost(tmp_path: Path) -> None:
    """From 3.13 os.fork() shows its "multi-threaded" warning after the fork hooks and clears
    what showwarning raised: a Signalled raised in there was lost (a deadline kill, no cleanup)."""
    log = tmp_path / "log"
    rc, out, err = run_script([str(_script(tmp_path, SIGNAL_DURING_FORK_WARNING)), str(log)])
    assert rc == -signal.SIGTERM, (out, err)
    assert "Traceback" not in err, err
    entries = read_log(log)
    whats = [what for what, *_ in entries]
    # 3.13 warns after the fork hooks (the watcher runs again); 3.12.1 before them (it is paused).
    warns = sys.version_info >= (3, 13) or "warned" in whats
    warned = ["warned", "warned-end"] if warns else []
    assert whats == [*warned, "forked", "raised-after", "cleanup"]
    assert float(entries[-2][1]) < 2.0


SIGNALLED_AS_IT_FORKS = """
import functools, os, signal, sys, warnings

warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)
# Registered before graceful's own fork hooks, so it runs first in the child: a SIGTERM that
# reaches the child before graceful has reset it (a pool's break stopping a worker it has just
# forked). raise_signal is C: no bytecode of the child runs before the signal is sent.
os.register_at_fork(after_in_child=functools.partial(signal.raise_signal, signal.SIGTERM))
import graceful


@graceful.main
def main():
    graceful.register(print, "cleanup", flush=True)
    for _ in range(20):
        pid = os.fork()
        if pid == 0:
            os._exit(0)  # not reached: the SIGTERM ends the child first
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode")
              else -os.WTERMSIG(status), flush=True)
    print("parent goes on", flush=True)


main()
"""


@fork_with_threads
def test_a_signal_a_child_gets_as_it_forks_never_reaches_the_parent(tmp_path: Path) -> None:
    """A forked child shares its parent's wakeup pipe until graceful resets it: a signal it got
    before that wrote its byte into the parent's pipe, and the parent heard it as its own (the
    CI failure of test_pools' executor test on 3.12: a forced end, the cleanups skipped). Each
    child here gets SIGTERM at once; the parent must hear none of them."""
    script = tmp_path / "program.py"
    script.write_text(SIGNALLED_AS_IT_FORKS)
    rc, out, err = run_script([str(script)])
    assert (rc, err) == (0, "")
    assert out.splitlines() == [f"child {-signal.SIGTERM}"] * 20 + ["parent goes on", "cleanup"]
