"""Children die with their parent, even when the parent is SIGKILLed or crashes.

Real processes: a parent script starts the children, the test kills the parent, then polls /proc
for the children with a deadline (orphans belong to init, which may reap them late: a zombie is
dead). What a Python child's cleanup did is read from the file it wrote. The tests of what
graceful does run again with pidfds and PR_SET_PDEATHSIG hidden (GRACEFUL_DISABLE), so the
lifeline and polling fallbacks meet the same guarantee.
"""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from backends_support import (
    PARENT_SWITCHES,
    PIDFD_SWITCHES,
    is_dead,
    needs_linux,
    wait_dead,
)
from graceful._process import launcher as _launcher
from graceful._process import parent_death as _parent_death
from graceful._process.parent_death import die_with_parent, read_marker, watch_parent
from helpers import NO_CORE, TIMEOUT, Child, run

PY = sys.executable
LINUX = sys.platform.startswith("linux")


def launcher_armed(pid: int, timeout: float = 10.0) -> int:
    """The parent-death signal spawn's launcher armed for ``pid`` (0: none), from the note it
    left in the program's environment (spawn returns before the launcher execs: wait for it)."""
    deadline = time.monotonic() + timeout
    while True:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
        note = env.get(_launcher.ENV.encode())
        if note is not None:
            return int(note.split(b":")[2])
        assert time.monotonic() < deadline, f"PID {pid}: the launcher did not exec in {timeout} s"
        time.sleep(0.005)


# A Python backend: its guard turns the parent-death signal into its own cleanups. The cleanup
# takes a while on purpose: a duplicate signal during it would end the child at once
# (on_second_signal="force") and the file would never be written.
BACKEND = """
import os, sys, time, graceful
from graceful import die_with_parent

out = sys.argv[1]

@graceful.register
def cleanup():
    time.sleep(0.2)
    with open(out, "w") as f:
        f.write(f"cleaned {time.monotonic()}")

with graceful.guard():
    die_with_parent()
    print("ready", flush=True)
    time.sleep(60)
"""


def parent_of_backends(tmp_path: Path, crash: str) -> str:
    return NO_CORE + textwrap.dedent(f"""
        import subprocess, sys, time
        from graceful import spawn

        BACKEND = {BACKEND!r}
        # Not on our pipes: without the parent-death signal it outlives the parent, and must
        # not keep the test's pipes open while it does.
        sleeper = spawn(["sleep", "60"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        spawned = spawn([sys.executable, "-c", BACKEND, {str(tmp_path / "spawned")!r}],
                        stdout=subprocess.PIPE)
        plain = subprocess.Popen([sys.executable, "-c", BACKEND, {str(tmp_path / "plain")!r}],
                                 stdout=subprocess.PIPE)
        for proc in (spawned, plain):
            assert proc.stdout.readline() == b"ready\\n"
        print(sleeper.pid, spawned.pid, plain.pid)
        print("ready", flush=True)
        sys.stdin.readline()
        {crash}
        time.sleep(60)
    """)


def cleaned_at(path: Path, deadline: float = 2.0) -> float:
    """When the backend's cleanup finished (time.monotonic(), same clock in every process)."""
    end = time.monotonic() + deadline
    while not path.exists() or not path.read_text():
        assert time.monotonic() < end, f"{path.name}: cleanup did not run"
        time.sleep(0.005)
    word, stamp = path.read_text().split()
    assert word == "cleaned"
    return float(stamp)


@needs_linux
@pytest.mark.parametrize("disabled", PARENT_SWITCHES, indirect=True)
@pytest.mark.parametrize(
    ("crash", "dies_by"),
    [
        ("", signal.SIGKILL),  # the test sends it
        ("import ctypes; ctypes.string_at(0)", signal.SIGSEGV),
    ],
    ids=["SIGKILL", "SIGSEGV"],
)
def test_children_die_with_their_parent(
    tmp_path: Path, leftovers: list[int], crash: str, dies_by: int, disabled: frozenset[str]
) -> None:
    with Child(parent_of_backends(tmp_path, crash), stdin=True) as parent:
        parent.wait_for("ready")
        pids = [int(word) for word in parent.lines[0].split()]
        leftovers.extend(pids)
        sleeper, pythons = pids[0], pids[1:]
        # A program that is not Python has only the kernel's signal, which spawn's launcher
        # arms unless GRACEFUL_DISABLE hides it (see docs/portability.md).
        armed = launcher_armed(sleeper)
        start = time.monotonic()
        if dies_by == signal.SIGKILL:
            parent.send(signal.SIGKILL)
        else:
            parent.write("crash now\n")
        took = wait_dead(pythons, 1.0)  # counted from now, not from when we reap the parent
        if armed:
            took.update(wait_dead([sleeper], 1.0))
        rc = parent.finish()
    assert rc == -dies_by, parent.stderr
    for name in ("spawned", "plain"):
        assert cleaned_at(tmp_path / name) - start < 1.0
    if not armed:  # no PR_SET_PDEATHSIG: the documented gap for programs that are not Python
        assert "pdeathsig" in disabled
        assert not is_dead(sleeper)
    print(f"parent {signal.Signals(dies_by).name}, without {sorted(disabled)}: dead after", took)


THREAD_PARENT = """
import os, subprocess, sys, threading, time
from graceful import spawn

ECHO = "import sys\\nprint('ready', flush=True)\\nfor line in sys.stdin: print(line, end='')"
box = []
worker = threading.Thread(target=lambda: box.append(spawn(
    [sys.executable, "-u", "-c", ECHO], stdin=subprocess.PIPE, stdout=subprocess.PIPE)))
worker.start()
worker.join()
deadline = time.monotonic() + 10
while os.path.exists(f"/proc/self/task/{worker.native_id}"):  # the OS thread is gone too
    assert time.monotonic() < deadline
    time.sleep(0.001)
child = box[0]
assert child.stdout.readline() == b"ready\\n"
child.stdin.write(b"ping\\n")
child.stdin.flush()
print(child.stdout.readline().decode().strip(), child.poll(), child.pid)
print("ready", flush=True)
time.sleep(60)
"""


@needs_linux
def test_spawn_from_a_thread_that_ends_child_lives_on_and_dies_with_the_process(
    leftovers: list[int],
) -> None:
    with Child(THREAD_PARENT) as parent:
        parent.wait_for("ready")
        answer, poll, pid = parent.lines[0].split()
        leftovers.append(int(pid))
        assert (answer, poll) == ("ping", "None")
        parent.send(signal.SIGKILL)
        wait_dead([int(pid)], 1.0)
        parent.finish()


@needs_linux
def test_the_thread_trap_is_real_prctl_fires_when_the_forking_thread_ends() -> None:
    """Why spawn forks from a long-lived thread: plain prctl() from a short-lived one kills."""
    code = (
        "import ctypes, sys\n"
        "assert ctypes.CDLL(None).prctl(1, 15, 0, 0, 0) == 0\n"
        "print('ready', flush=True)\n"
        "sys.stdin.read()\n"
    )
    box: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        box.append(
            subprocess.Popen([PY, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        )
        assert box[0].stdout is not None
        assert box[0].stdout.readline() == b"ready\n"  # armed while this thread still lives

    worker = threading.Thread(target=start)
    worker.start()
    worker.join()
    proc = box[0]
    try:
        assert proc.wait(TIMEOUT) == -signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(TIMEOUT)
        for stream in (proc.stdin, proc.stdout):
            assert stream is not None
            stream.close()


@needs_linux
def test_launcher_sees_a_parent_that_died_before_prctl() -> None:
    """The recorded parent PID is not our parent any more: signal ourselves, exec nothing."""
    read_end, write_end = os.pipe()
    recorded = os.getppid()  # any PID but our real parent's stands for "the parent is gone"
    launcher = os.path.abspath(_launcher.__file__)
    cmd = [PY, "-I", "-S", launcher, str(recorded), str(int(signal.SIGTERM)), "0"]
    cmd += [str(write_end), "-1", "sleep", "--", "sleep", "60"]
    proc = subprocess.Popen(cmd, pass_fds=(write_end,))
    os.close(write_end)
    try:
        assert proc.wait(TIMEOUT) == -signal.SIGTERM
        assert os.read(read_end, 100) == b""  # no exec error: it never tried
    finally:
        os.close(read_end)
        if proc.poll() is None:
            proc.kill()
            proc.wait(TIMEOUT)


LATE_CHILD = """
import os, signal, sys, time, graceful
from graceful._process.parent_death import watch_parent

ppid, go, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
graceful.register(lambda: open(out, "w").write("cleaned"))
with graceful.guard():
    print("ready", flush=True)
    os.read(go, 1)  # the test writes once our parent is dead
    watch_parent(signal.SIGTERM, expected=ppid)  # ppid: what spawn records before the fork
    time.sleep(60)
"""


@needs_linux
@pytest.mark.parametrize("disabled", PIDFD_SWITCHES, indirect=True)
def test_a_parent_dead_before_the_call_is_noticed_at_once(
    tmp_path: Path, leftovers: list[int], disabled: frozenset[str]
) -> None:
    go_read, go_write = os.pipe()
    out = tmp_path / "out"
    parent_code = f"""
        import os, subprocess, sys, time
        child = subprocess.Popen(
            [sys.executable, "-c", {LATE_CHILD!r}, str(os.getpid()), "{go_read}", {str(out)!r}],
            pass_fds=({go_read},), stdout=subprocess.PIPE,
            stderr=open({str(tmp_path / "stderr")!r}, "w"))  # not ours: it outlives the parent
        assert child.stdout.readline() == b"ready\\n"
        print(child.pid)
        print("ready", flush=True)
        time.sleep(60)
    """
    try:
        with Child(parent_code, pass_fds=(go_read,)) as parent:
            parent.wait_for("ready")
            pid = int(parent.lines[0])
            leftovers.append(pid)
            parent.send(signal.SIGKILL)
            parent.finish()
        assert not is_dead(pid)  # no pdeathsig was armed: the orphan lives on ...
        os.write(go_write, b"g")
        wait_dead([pid], 2.0)  # ... until it looks
        assert out.read_text() == "cleaned", (tmp_path / "stderr").read_text()
    finally:
        os.close(go_read)
        os.close(go_write)


METHOD_CHILD = """
import os, signal, sys, time, graceful
from graceful._process.parent_death import watch_parent

method, lifeline, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
graceful.register(lambda: open(out, "w").write(f"cleaned {time.monotonic()}"))
with graceful.guard():
    try:
        assert watch_parent(signal.SIGTERM, method=method, lifeline=lifeline) == method
    except ValueError as exc:
        print("refused:", exc, flush=True)
        sys.exit(0)
    print("ready", flush=True)
    time.sleep(60)
"""


@needs_linux
@pytest.mark.parametrize("disabled", PIDFD_SWITCHES, indirect=True)
@pytest.mark.parametrize("method", ["pidfd", "lifeline", "poll"])
def test_each_detection_method_notices_a_sigkilled_parent(
    tmp_path: Path, leftovers: list[int], method: str, disabled: frozenset[str]
) -> None:
    out = tmp_path / "out"
    if method == "pidfd" and "pidfd" in disabled:
        program = run(
            METHOD_CHILD.replace("sys.argv[1], int(sys.argv[2]), sys.argv[3]", "'pidfd', -1, ''")
        )
        assert program.proc.returncode == 0, program.stderr
        assert program.lines == [
            "refused: the pidfd method needs pidfds (Linux >= 5.3), hidden by "
            "GRACEFUL_DISABLE=pidfd; use method='lifeline' or 'poll', or None for the best "
            "available"
        ]
        return
    parent_code = f"""
        import os, subprocess, sys, time
        lifeline, keep = os.pipe()  # we hold the write end until we die
        child = subprocess.Popen(
            [sys.executable, "-c", {METHOD_CHILD!r}, {method!r}, str(lifeline), {str(out)!r}],
            pass_fds=(lifeline,), stdout=subprocess.PIPE)
        assert child.stdout.readline() == b"ready\\n"
        print(child.pid)
        print("ready", flush=True)
        time.sleep(60)
    """
    with Child(parent_code) as parent:
        parent.wait_for("ready")
        pid = int(parent.lines[0])
        leftovers.append(pid)
        start = time.monotonic()
        parent.send(signal.SIGKILL)
        parent.finish()
    latency = cleaned_at(out) - start
    wait_dead([pid], 1.0)
    print(f"{method}: cleanup done {latency * 1000:.1f} ms after the parent's SIGKILL")
    limit = 0.5 + (_parent_death.POLL_INTERVAL if method == "poll" else 0.0)
    assert latency < limit


DISPOSITIONS = (
    NO_CORE
    + """
import signal, subprocess
from graceful import spawn

signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGUSR1, signal.SIG_IGN)
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM, signal.SIGUSR2])
cmd = ["grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"]
print("plain", subprocess.run(cmd, capture_output=True).stdout.split())
proc = spawn(cmd, stdout=subprocess.PIPE)
print("spawn", proc.stdout.read().split())
proc.wait()
"""
)


@needs_linux
def test_spawned_children_start_with_default_signals_and_an_empty_mask() -> None:
    with Child(DISPOSITIONS) as parent:
        assert parent.finish() == 0, parent.stderr
    plain, spawned = (ast.literal_eval(line.split(" ", 1)[1]) for line in parent.lines)
    # Signals 32 and 33 belong to the C library (thread cancellation, setxid), which takes them
    # over when it needs them; 3.13 children can inherit them as ignored, and libc refuses to
    # let a program reset them.
    libc_owned = (1 << 31) | (1 << 32)
    plain_masks = [int(plain[1], 16), int(plain[3], 16) & ~libc_owned]
    spawned_masks = [int(spawned[1], 16), int(spawned[3], 16) & ~libc_owned]
    assert spawned[0::2] == [b"SigBlk:", b"SigIgn:"]
    assert all(plain_masks)  # what Popen alone passes on: the parent's mask and SIG_IGNs
    assert spawned_masks == [0, 0]


def test_die_with_parent_checks_its_signal() -> None:
    with pytest.raises(TypeError, match=r"a signal\.Signals, an int or a name such as 'TERM'"):
        die_with_parent(1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="SIGCONT does not end a process"):
        die_with_parent("CONT")
    with pytest.raises(ValueError, match="only probes"):
        die_with_parent(0)
    with pytest.raises(ValueError, match="method must be one of"):
        watch_parent(signal.SIGTERM, method="telepathy")


def test_the_launcher_note_is_read_only_by_the_process_it_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(_launcher.ENV, f"{os.getpid()}:1234:15:-1")
    assert read_marker() == _parent_death.Marker(1234, 15, None)
    assert _launcher.ENV not in os.environ  # our own children do not inherit it
    monkeypatch.setenv(_launcher.ENV, f"{os.getpid() + 1}:1234:15:7")
    assert read_marker() is None


def test_a_forked_child_drops_the_lifeline_write_end() -> None:
    _parent_death.lifeline_for_child()
    assert _parent_death._lifeline is not None
    write_end = _parent_death._lifeline[2]
    pid = os.fork()
    if pid == 0:
        try:
            os.fstat(write_end)
        except OSError:
            os._exit(0)
        os._exit(1)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    os.fstat(write_end)  # still open here
