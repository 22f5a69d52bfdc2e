"""Tracked backends are broken (a signal), exited (pipes closed), waited, killed, reaped.

Real processes and real signals. In-process tests drive ``stopping.shutdown`` on their own list,
so pytest's own process-wide tracker stays empty; end-to-end tests run a guarded parent script.
Tests whose guarantee rests on a Linux part run again with that part hidden (GRACEFUL_DISABLE,
see the ``disabled`` fixture), so the fallback path meets the same guarantee.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import pytest

from backends_support import (
    GROUP_SWITCHES,
    PIDFD_SWITCHES,
    group_members,
    is_dead,
    needs_linux,
    proc_stat,
    stranger_with_pid,
    wait_dead,
)
from graceful._process import backends as _backends
from graceful._process.backend import Backend
from graceful._process.backends import track
from graceful._process.stopping import shutdown
from helpers import TIMEOUT, Child, run

PY = sys.executable
IGNORES_TERM = ["sh", "-c", "trap '' TERM; echo ready; exec sleep 60"]


def started(cmd: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
    """A child that has printed its readiness line (so its traps are in place)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, **kwargs)  # type: ignore[call-overload]
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    return proc  # type: ignore[no-any-return]


def reap(*procs: subprocess.Popen[bytes]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(TIMEOUT)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


# --- bad input ------------------------------------------------------------------------------


def test_track_rejects_what_it_cannot_stop() -> None:
    with pytest.raises(TypeError, match=r"subprocess\.Popen, a multiprocessing\.Process, a"):
        track(os.getpid())  # type: ignore[type-var]
    with pytest.raises(ValueError, match=r"call proc\.start\(\) first"):
        track(multiprocessing.get_context("spawn").Process(target=print))
    fake = subprocess.Popen.__new__(subprocess.Popen)
    for pid in (0, -1):
        fake.pid = pid
        fake.returncode = None
        with pytest.raises(ValueError, match="whole process group or every process"):
            track(fake)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"signal": "STOP"}, ValueError, "SIGSTOP does not end a process"),
        ({"signal": True}, TypeError, "a signal.Signals, an int or a name such as 'TERM'"),
        ({"signal": 0}, ValueError, "only probes"),
        ({"signal": 12345}, ValueError, "not a signal on this platform"),
        ({"timeout": -1}, ValueError, ">= 0 seconds"),
        ({"timeout": "5"}, TypeError, "number of seconds"),
        ({"group": 1}, TypeError, "True or False"),
    ],
)
def test_track_checks_its_options(kwargs: dict[str, object], error: type, match: str) -> None:
    proc = subprocess.Popen(["true"])
    try:
        with pytest.raises(error, match=match):
            track(proc, **kwargs)  # type: ignore[arg-type]
    finally:
        reap(proc)


def test_track_refuses_thread_pools_and_what_a_process_pool_cannot_do() -> None:
    import concurrent.futures
    from multiprocessing.pool import ThreadPool

    with (
        concurrent.futures.ThreadPoolExecutor(1) as threads,
        pytest.raises(TypeError, match="runs threads: there is nothing to signal"),
    ):
        track(threads)  # type: ignore[type-var]
    with ThreadPool(1) as thread_pool, pytest.raises(TypeError, match="runs threads"):
        track(thread_pool)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        with pytest.raises(ValueError, match=r"own terminate\(\), which sends SIGTERM"):
            track(pool, signal=signal.SIGINT)
        with pytest.raises(ValueError, match=r"workers of a multiprocessing\.Pool share"):
            track(pool, group=True)
        pool.terminate()
    assert _backends.tracker.pools() == []


def test_track_group_needs_a_group_leader_never_our_own_group() -> None:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        with pytest.raises(ValueError, match=r"leads its own process group.*own group\)"):
            track(proc, group=True)
    finally:
        reap(proc)


def test_track_accepts_sigkill_and_ignores_a_reaped_child() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait(TIMEOUT)
    before = _backends.tracker.snapshot()
    assert track(proc, signal=signal.SIGKILL) is proc
    assert _backends.tracker.snapshot() == before


# --- stopping children, in process ------------------------------------------------------------


@needs_linux
@pytest.mark.parametrize("disabled", PIDFD_SWITCHES, indirect=True)
def test_break_is_sent_once_and_closing_stdin_lets_the_child_exit(
    tmp_path: Path, disabled: frozenset[str]
) -> None:
    log = tmp_path / "log"
    code = f"""
        import signal, sys
        out = open({str(log)!r}, "a", buffering=1)
        signal.signal(signal.SIGTERM, lambda *a: out.write("TERM\\n"))
        print("ready", flush=True)
        sys.stdin.read()
        out.write("EOF\\n")
    """
    proc = started([PY, "-c", textwrap.dedent(code)], stdin=subprocess.PIPE)
    b = Backend(proc, signal.SIGTERM, 5.0, False)
    assert (b.pidfd is None) == ("pidfd" in disabled)
    notes: list[str] = []
    b.break_(notes)  # as the break callback would, from its helper thread
    b.break_(notes)
    start = time.monotonic()
    shutdown([b])
    assert time.monotonic() - start < 2.0
    assert proc.returncode == 0
    assert log.read_text().splitlines() == ["TERM", "EOF"]
    assert notes == []
    assert proc.stdin is not None
    assert proc.stdin.closed
    assert proc.stdout is not None
    assert proc.stdout.closed
    assert proc_stat(proc.pid) is None  # reaped: no zombie


@pytest.mark.parametrize("disabled", PIDFD_SWITCHES, indirect=True)
def test_an_exited_child_is_only_reaped(disabled: frozenset[str]) -> None:
    proc = subprocess.Popen(["true"])
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped
    assert proc_stat(proc.pid) is not None
    b = Backend(proc, signal.SIGTERM, 5.0, False)
    shutdown([b])
    assert b.broken_at is None  # no signal was sent
    assert proc.returncode == 0
    assert proc_stat(proc.pid) is None


@needs_linux
@pytest.mark.parametrize("disabled", PIDFD_SWITCHES, indirect=True)
def test_200_stubborn_children_share_one_deadline(
    leftovers: list[int], disabled: frozenset[str]
) -> None:
    procs = []
    try:
        for _ in range(200):
            procs.append(started(IGNORES_TERM))
            leftovers.append(procs[-1].pid)
        backends = [Backend(p, signal.SIGTERM, 1.0, False) for p in procs]
        start = time.monotonic()
        with pytest.warns(RuntimeWarning, match="1 s after SIGTERM; sent SIGKILL"):
            shutdown(backends)
        took = time.monotonic() - start
    finally:
        reap(*procs)
    print(f"200 children that ignore SIGTERM, timeout=1, without {sorted(disabled)}: {took:.3f} s")
    assert 0.95 <= took < 3.0
    assert [p.returncode for p in procs] == [-signal.SIGKILL] * 200
    assert all(proc_stat(p.pid) is None for p in procs)


@needs_linux
@pytest.mark.parametrize("disabled", PIDFD_SWITCHES, indirect=True)
def test_a_reader_thread_blocked_on_the_pipe_does_not_stall_shutdown(
    disabled: frozenset[str],
) -> None:
    proc = started(IGNORES_TERM)
    assert proc.stdout is not None
    stdout = proc.stdout
    reader = threading.Thread(target=stdout.read, daemon=True)  # holds the buffer's lock
    reader.start()
    b = Backend(proc, signal.SIGTERM, 0.5, False)
    start = time.monotonic()
    try:
        with pytest.warns(RuntimeWarning, match="sent SIGKILL"):
            shutdown([b])
    finally:
        reap(proc)
    assert time.monotonic() - start < 2.5
    reader.join(TIMEOUT)
    assert not reader.is_alive()
    assert proc.returncode == -signal.SIGKILL


@needs_linux
@pytest.mark.parametrize("disabled", GROUP_SWITCHES, indirect=True)
def test_group_leader_exits_but_stubborn_grandchild_is_killed_with_the_group(
    leftovers: list[int], disabled: frozenset[str]
) -> None:
    script = "sleep 60 & echo $!; (trap '' TERM; echo ready; exec sleep 60) & echo $!; wait"
    proc = subprocess.Popen(["sh", "-c", script], stdout=subprocess.PIPE, start_new_session=True)
    assert proc.stdout is not None
    lines = [proc.stdout.readline() for _ in range(3)]
    assert b"ready\n" in lines  # the stubborn grandchild's trap is in place
    grandchildren = [int(line) for line in lines if line != b"ready\n"]
    leftovers.extend([proc.pid, *grandchildren])
    b = Backend(proc, signal.SIGTERM, 0.5, True)
    start = time.monotonic()
    try:
        if "proc" in disabled:
            shutdown([b])  # members unseen: SIGKILL at once, as documented, and no warning
        else:
            with pytest.warns(RuntimeWarning, match="still had members"):
                shutdown([b])
    finally:
        reap(proc)
    took = time.monotonic() - start
    assert proc.returncode == -signal.SIGTERM  # the leader obeyed at once
    if "proc" in disabled:
        assert took < 0.45  # the cost: the rest of the group loses its timeout
    else:
        assert 0.45 <= took < 2.0  # ... and the group was given its full timeout
    wait_dead(grandchildren, 1.0)
    assert group_members(proc.pid) == []


@needs_linux
@pytest.mark.parametrize("disabled", GROUP_SWITCHES, indirect=True)
def test_a_group_whose_leader_already_exited_is_still_stopped(
    leftovers: list[int], disabled: frozenset[str]
) -> None:
    script = "(trap '' TERM; echo ready; exec sleep 60) & echo $!"  # the leader exits at once
    proc = subprocess.Popen(["sh", "-c", script], stdout=subprocess.PIPE, start_new_session=True)
    assert proc.stdout is not None
    lines = [proc.stdout.readline() for _ in range(2)]
    assert b"ready\n" in lines
    member = next(int(line) for line in lines if line != b"ready\n")
    leftovers.extend([proc.pid, member])
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # the leader is a zombie now
    try:
        if "proc" in disabled:
            shutdown([Backend(proc, signal.SIGTERM, 0.3, True)])
        else:
            with pytest.warns(RuntimeWarning, match="still had members"):
                shutdown([Backend(proc, signal.SIGTERM, 0.3, True)])
    finally:
        reap(proc)
    assert proc.returncode == 0
    wait_dead([member], 1.0)


@needs_linux
@pytest.mark.parametrize("disabled", GROUP_SWITCHES, indirect=True)
def test_cooperative_group_ends_without_waiting_for_init_to_reap(
    leftovers: list[int], disabled: frozenset[str]
) -> None:
    script = "sleep 60 & echo $!; sleep 60 & echo $!; echo ready; wait"
    proc = subprocess.Popen(["sh", "-c", script], stdout=subprocess.PIPE, start_new_session=True)
    assert proc.stdout is not None
    grandchildren = [int(proc.stdout.readline()), int(proc.stdout.readline())]
    leftovers.extend([proc.pid, *grandchildren])
    assert proc.stdout.readline() == b"ready\n"
    start = time.monotonic()
    try:
        shutdown([Backend(proc, signal.SIGTERM, 5.0, True)])
    finally:
        reap(proc)
    assert time.monotonic() - start < 1.0  # dead grandchildren are zombies of init: not waited for
    wait_dead(grandchildren, 1.0)


@needs_linux
@pytest.mark.parametrize("disabled", PIDFD_SWITCHES, indirect=True)
def test_a_reused_pid_is_never_signalled_nor_reaped(disabled: frozenset[str]) -> None:
    old = subprocess.Popen(["sleep", "60"])
    reaped_by_hand = False
    try:
        b = Backend(old, signal.SIGTERM, 1.0, False)
        assert (b.pidfd is None) == ("pidfd" in disabled)
        old.kill()
        os.waitpid(old.pid, 0)  # reaped behind Popen's back: old.returncode stays None
        reaped_by_hand = True
        assert old.returncode is None
        with stranger_with_pid(old.pid) as stranger:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                shutdown([b])
            assert b.reaped
            assert old.returncode is None  # we never waitpid()ed the number
            assert stranger.untouched()  # not signalled, not reaped
    finally:
        if reaped_by_hand:
            old.returncode = -signal.SIGKILL  # what our waitpid collected; Popen must not poll
        else:
            reap(old)


REAPED_BY_HAND = """
import os, subprocess, sys
import graceful

@graceful.main
def main():
    p = subprocess.Popen(["true"])
    os.waitpid(p.pid, 0)  # user code reaps it behind Popen's back: p.returncode stays None
    print(p.pid, flush=True)
    print("ready", flush=True)
    sys.stdin.readline()  # meanwhile the test gives the number to a stranger
    try:
        graceful.track(p)
    except ChildProcessError as exc:
        print("refused:", exc, flush=True)
    return 0

main()
"""


@needs_linux
@pytest.mark.parametrize("disabled", PIDFD_SWITCHES, indirect=True)
def test_track_refuses_a_child_whose_pid_a_stranger_took(disabled: frozenset[str]) -> None:
    """Issue 10 item 4: at exit the stranger would have got SIGTERM; track() now refuses."""
    with Child(REAPED_BY_HAND, stdin=True) as program:
        program.wait_for("ready")
        pid = int(program.lines[0])
        with stranger_with_pid(pid) as stranger:
            program.write("go\n")
            rc = program.finish()
            assert rc == 0, program.stderr
            assert program.lines[-1].startswith(
                f"refused: [Errno 10] graceful.track(): PID {pid} is not an unreaped child of "
                "this process"
            ), program.lines
            assert "proc.wait(), proc.poll(), process.join()" in program.lines[-1]
            assert stranger.untouched()


# --- end to end: a guarded parent ---------------------------------------------------------------

THREE_BACKENDS = """
import json, os, subprocess, sys, time
import graceful
from graceful import track

PIPE = subprocess.PIPE
procs = {}


@graceful.register  # registered before any track(): runs after the backends are stopped
def report():
    state = {n: [p.returncode, os.path.exists(f"/proc/{p.pid}")] for n, p in procs.items()}
    print(json.dumps(state), flush=True)


with graceful.guard():
    procs["cooperative"] = track(subprocess.Popen(
        [sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(60)"],
        stdout=PIPE), timeout=1)
    procs["ignores_term"] = track(subprocess.Popen(
        ["sh", "-c", "trap '' TERM; echo ready; exec sleep 60"], stdout=PIPE), timeout=1)
    procs["exits_on_eof"] = track(subprocess.Popen(
        ["sh", "-c", "trap '' TERM; echo ready; exec cat"], stdin=PIPE, stdout=PIPE), timeout=5)
    dead = subprocess.Popen(["true"])
    os.waitid(os.P_PID, dead.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
    procs["already_dead"] = track(dead)
    for name in ("cooperative", "ignores_term", "exits_on_eof"):
        assert procs[name].stdout.readline() == b"ready\\n"
    print(open(f"/proc/{dead.pid}/stat").read().split(") ")[1][0])
    print("ready", flush=True)
    time.sleep(60)
"""


@needs_linux
@pytest.mark.parametrize("disabled", PIDFD_SWITCHES, indirect=True)
def test_sigterm_to_parent_stops_three_backends_and_parent_dies_by_sigterm(
    disabled: frozenset[str],
) -> None:
    with Child(THREE_BACKENDS) as parent:
        parent.wait_for("ready")
        start = time.monotonic()
        parent.send(signal.SIGTERM)
        rc = parent.finish()
        took = time.monotonic() - start
    assert rc == -signal.SIGTERM, parent.stderr
    assert parent.lines[0] == "Z"
    report = json.loads(parent.lines[-1])
    assert report == {
        "cooperative": [-signal.SIGTERM, False],
        "ignores_term": [-signal.SIGKILL, False],
        "exits_on_eof": [0, False],
        "already_dead": [0, False],
    }
    assert 0.95 <= took < 3.0
    assert "was still running 1 s after SIGTERM; sent SIGKILL" in parent.stderr


GUARD_DEADLINE = """
import json, os, subprocess, time
import graceful
from graceful import track

@graceful.register
def report():
    print(json.dumps([proc.returncode, time.monotonic() - heard[0]]), flush=True)

heard = []
graceful.register_break(lambda: heard.append(time.monotonic()))
with graceful.guard(timeout=1.0):
    proc = track(subprocess.Popen(["sh", "-c", "trap '' TERM; echo ready; exec sleep 60"],
                                  stdout=subprocess.PIPE), timeout=30)
    assert proc.stdout.readline() == b"ready\\n"
    print("ready", flush=True)
    time.sleep(60)
"""


@needs_linux
@pytest.mark.parametrize("disabled", PIDFD_SWITCHES, indirect=True)
def test_sigkill_goes_out_before_the_guards_own_deadline(disabled: frozenset[str]) -> None:
    parent = run(GUARD_DEADLINE, signal.SIGTERM)
    assert parent.proc.returncode == -signal.SIGTERM, parent.stderr
    returncode, after = json.loads(parent.lines[-1])
    assert returncode == -signal.SIGKILL
    assert 0.5 < after < 1.0


GROUP_PARENT = """
import os, subprocess, time
import graceful
from graceful import spawn

with graceful.guard():
    script = "sleep 60 & echo $!; (trap '' TERM; echo ready; exec sleep 60) & echo $!; wait"
    proc = spawn(["sh", "-c", script], group=True, timeout=0.5, stdout=subprocess.PIPE)
    lines = [proc.stdout.readline() for _ in range(3)]
    assert b"ready\\n" in lines
    print(proc.pid, *(int(line) for line in lines if line != b"ready\\n"))
    print("ready", flush=True)
    time.sleep(60)
"""


@needs_linux
@pytest.mark.parametrize("disabled", GROUP_SWITCHES, indirect=True)
def test_spawned_group_with_grandchildren_is_gone_after_sigterm(
    leftovers: list[int], disabled: frozenset[str]
) -> None:
    with Child(GROUP_PARENT) as parent:
        parent.wait_for("ready")
        pids = [int(word) for word in parent.lines[0].split()]
        leftovers.extend(pids)
        assert {proc_stat(pid)[2] for pid in pids} == {pids[0]}  # type: ignore[index]
        parent.send(signal.SIGTERM)
        rc = parent.finish()
    assert rc == -signal.SIGTERM, parent.stderr
    wait_dead(pids, 1.0)
    assert group_members(pids[0]) == []


MP_PARENT = """
import json, multiprocessing, os, signal, time
import graceful
from graceful import track

def cooperative(ready):
    ready.set()
    time.sleep(60)

def stubborn(ready):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    ready.set()
    time.sleep(60)

ctx = multiprocessing.get_context("fork")
procs = {}
for target in (cooperative, stubborn):
    ready = ctx.Event()
    procs[target.__name__] = proc = ctx.Process(target=target, args=(ready,))
    proc.start()
    assert ready.wait(10)

@graceful.register
def report():
    print(json.dumps({n: [p.exitcode, os.path.exists(f"/proc/{p.pid}")] for n, p in procs.items()}))

for proc in procs.values():
    track(proc, timeout=0.5)
with graceful.guard():
    print("ready", flush=True)
    time.sleep(60)
"""


@needs_linux
@pytest.mark.parametrize("disabled", PIDFD_SWITCHES, indirect=True)
def test_multiprocessing_children_are_tracked_the_same_way(disabled: frozenset[str]) -> None:
    parent = run(MP_PARENT, signal.SIGTERM)
    assert parent.proc.returncode == -signal.SIGTERM, parent.stderr
    assert json.loads(parent.lines[-1]) == {
        "cooperative": [-signal.SIGTERM, False],
        "stubborn": [-signal.SIGKILL, False],
    }


FORK_PARENT = """
import json, os, subprocess, time
import graceful
from graceful import track
from graceful._process.backends import tracker  # an internal hook: the child's own cleanup

@graceful.register
def report():
    print(json.dumps([proc.returncode, os.path.exists(f"/proc/{proc.pid}")]), flush=True)

proc = track(subprocess.Popen(["sleep", "60"]))
pid = os.fork()
if pid == 0:
    try:
        tracker.stop_all()  # what the child's own exit would run: must not touch our backend
        graceful._core.registry.cleanups.run_all()
    finally:
        os._exit(0)
assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
print(open(f"/proc/{proc.pid}/stat").read().split(") ")[1][0], proc.poll(), flush=True)
"""


@needs_linux
@pytest.mark.parametrize("disabled", PIDFD_SWITCHES, indirect=True)
def test_a_forked_child_never_stops_its_parents_backends_and_normal_exit_does(
    disabled: frozenset[str],
) -> None:
    with Child(FORK_PARENT) as parent:
        rc = parent.finish()
    assert rc == 0, parent.stderr
    state, poll = parent.lines[0].split()
    assert state in ("S", "R")
    assert poll == "None"
    assert json.loads(parent.lines[-1]) == [-signal.SIGTERM, False]


AFTER_A_RAISE_EPISODE = """
import json, os, subprocess, sys, time
import graceful

SLEEPER = [sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(60)"]
procs = {}

def started():
    proc = subprocess.Popen(SLEEPER, stdout=subprocess.PIPE)
    assert proc.stdout.readline() == b"ready\\n"
    return proc

@graceful.register  # before any track(): runs after the backends are stopped
def report():
    state = {n: [p.returncode, os.path.exists(f"/proc/{p.pid}")] for n, p in procs.items()}
    print(json.dumps(state), flush=True)

procs["first"] = graceful.track(started())
try:
    with graceful.guard(on_signal="raise"):
        print("ready", flush=True)
        time.sleep(60)
except graceful.Signalled:
    print("first episode over:", procs["first"].returncode, flush=True)
graceful.register(report)  # the episode ran every cleanup, the tracker's and this one
procs["second"] = graceful.track(started())
if sys.argv[1] == "signal":
    with graceful.guard():  # a second episode
        print("ready again", flush=True)
        time.sleep(60)
print("ending normally", flush=True)
"""


@needs_linux
@pytest.mark.parametrize("ending", ["exit", "signal"])
def test_a_backend_tracked_after_a_raise_episode_is_still_stopped(ending: str) -> None:
    """Issue 10 item 1: the first episode consumed the tracker's cleanup; track() re-registers."""
    code = f"import sys; sys.argv[1:] = [{ending!r}]\n" + AFTER_A_RAISE_EPISODE
    with Child(code) as program:
        program.wait_for("ready")
        program.send(signal.SIGTERM)
        if ending == "signal":
            program.wait_for("ready again")
            program.send(signal.SIGTERM)
        rc = program.finish()
    assert rc == (0 if ending == "exit" else -signal.SIGTERM), program.stderr
    assert f"first episode over: {-signal.SIGTERM}" in program.lines
    assert json.loads(program.lines[1]) == {"first": [-signal.SIGTERM, False]}
    assert json.loads(program.lines[-1]) == {
        "first": [-signal.SIGTERM, False],
        "second": [-signal.SIGTERM, False],
    }, (program.lines, program.stderr)


def test_import_graceful_loads_no_heavy_modules() -> None:
    code = (
        "import sys, graceful, graceful._process.backends, graceful._process.spawn\n"
        "import graceful._process.parent_death\n"
        "heavy = ('asyncio', 'ctypes', 'multiprocessing', 'subprocess', 'concurrent.futures')\n"
        "print([m for m in heavy if m in sys.modules])"
    )
    out = subprocess.run(
        [PY, "-c", code], check=False, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert out.stdout.strip() == "[]", out.stderr


def test_dead_helper_reports_zombies_as_dead() -> None:
    proc = subprocess.Popen(["true"])
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    assert is_dead(proc.pid)
    reap(proc)


# --- spawn returns as Popen does ----------------------------------------------------------


SPAWN_ERRORS = """
import os, subprocess, sys
import graceful
tmp = sys.argv[1]
cases = {
    "missing on PATH": (["no-such-program-here"], {}),
    "missing path": ([os.path.join(tmp, "nosuch")], {}),
    "not executable": ([os.path.join(tmp, "script")], {}),
    "a directory": ([tmp], {}),
    "found on env's PATH": (["prog"], {"env": {"PATH": os.path.join(tmp, "bin")}}),
    "relative to cwd": (["./prog"], {"cwd": os.path.join(tmp, "bin")}),
    "not on env's PATH": (["prog"], {"env": {"PATH": tmp}}),
}
for name, (argv, kwargs) in cases.items():
    outcomes = []
    for start in (subprocess.Popen, graceful.spawn):
        try:
            outcomes.append(f"status {start(argv, **kwargs).wait()}")
        except OSError as exc:
            outcomes.append(f"{type(exc).__name__} {exc.errno} {exc.filename}")
    print(name, "|", " | ".join(outcomes), flush=True)
"""


def test_spawn_raises_at_the_call_what_popen_raises(tmp_path: Path) -> None:
    # spawn returns before its launcher execs the program (a second interpreter start is 60x a
    # Popen): it looks the program up first, as the launcher's execvp will, with env and cwd.
    (tmp_path / "script").write_text("#!/bin/sh\n")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "prog").write_text("#!/bin/sh\nexit 7\n")
    (tmp_path / "bin" / "prog").chmod(0o755)
    out = subprocess.run(
        [PY, "-c", SPAWN_ERRORS, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 7, out
    for line in lines:
        _name, popen, spawned = line.split(" | ")
        assert popen == spawned, line
    assert lines[0].endswith("FileNotFoundError 2 no-such-program-here")
    assert "PermissionError 13" in lines[2]
    assert "PermissionError 13" in lines[3]
    assert lines[4].endswith("status 7")
    assert lines[5].endswith("status 7")
    assert "FileNotFoundError 2" in lines[6]


def test_an_exec_that_fails_after_spawn_returned_is_status_127_with_the_reason(
    tmp_path: Path,
) -> None:
    # Executable but not a program (no #!): the look-up passes, the launcher's exec fails.
    bad = tmp_path / "garbage"
    bad.write_bytes(b"\x7fELF not really\n")
    bad.chmod(0o755)
    code = f"""
    import subprocess, graceful
    proc = graceful.spawn([{str(bad)!r}], stderr=subprocess.PIPE)
    print("status", proc.wait(), flush=True)
    print(proc.stderr.read().decode().strip(), flush=True)
    """
    with Child(code) as child:
        assert child.finish() == 0, child.stderr
    assert child.lines[0] == "status 127"
    assert child.lines[1] == f"graceful.spawn: cannot run {str(bad)!r}: Exec format error"


def test_a_signal_right_after_spawn_ends_the_child_by_that_signal() -> None:
    # It may reach the launcher before its exec: the default action still ends it (SIGINT too,
    # which the launcher's interpreter would otherwise turn into a KeyboardInterrupt).
    code = """
    import signal, graceful
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP) * 3:
        proc = graceful.spawn(["sleep", "60"])
        proc.send_signal(sig)
        print(proc.wait() == -sig, flush=True)
    """
    with Child(code) as child:
        assert child.finish() == 0, child.stderr
    assert child.lines == ["True"] * 9, (child.lines, child.stderr)
    assert "Traceback" not in child.stderr


def test_spawn_group_exists_when_spawn_returns() -> None:
    code = """
    import os, graceful
    for _ in range(5):
        proc = graceful.spawn(["sleep", "60"], group=True)
        print(os.getpgid(proc.pid) == proc.pid, flush=True)
        proc.kill()
        proc.wait()
    """
    with Child(code) as child:
        assert child.finish() == 0, child.stderr
    assert child.lines == ["True"] * 5, (child.lines, child.stderr)
