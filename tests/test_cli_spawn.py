"""``graceful.spawn(supervise=True)``: nothing a backend started outlives its parent's SIGKILL.

Plain ``spawn`` arms PR_SET_PDEATHSIG with ``signal`` (SIGTERM): a backend that ignores SIGTERM,
and the grandchildren of a ``group=True`` backend, outlive a SIGKILLed parent. Under the
supervisor they are gone within a second. Parent programs use the public names only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import graceful
from backends_support import is_dead, needs_linux, wait_dead
from cli_support import children_of, session_members
from helpers import TIMEOUT

pytestmark = needs_linux
PY = sys.executable


# A parent that spawns supervised backends, prints every PID it should not leave behind, says
# "ready" and waits to be killed. Backends ignore SIGTERM; the group one has two grandchildren
# that ignore it too.
STUBBORN = ["sh", "-c", "trap '' TERM; echo $$; exec sleep 60"]
# A group leader that ignores SIGTERM, with two grandchildren that ignore it too; once their
# traps are in place it prints the three PIDs, in one write.
FAMILY = f"""
import os, signal, subprocess, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
kids = [subprocess.Popen({STUBBORN!r}, stdout=subprocess.PIPE) for _ in range(2)]
for kid in kids:
    kid.stdout.readline()
os.write(1, f"{{os.getpid()}} {{kids[0].pid}} {{kids[1].pid}}\\n".encode())
time.sleep(60)
"""
PARENT = f"""
import subprocess, sys, time
import graceful

pids = []
for argv, group in (({STUBBORN!r}, False), ([sys.executable, "-c", {FAMILY!r}], True)):
    proc = graceful.spawn(argv, supervise=True, group=group, stdout=subprocess.PIPE, text=True)
    pids.append(proc.pid)  # the supervisor
    pids += [int(pid) for pid in proc.stdout.readline().split()]
print(*pids, flush=True)
print("ready", flush=True)
time.sleep(60)
"""


def test_sigkilled_parent_leaves_no_stubborn_backend_nor_grandchild(leftovers: list[int]) -> None:
    parent = subprocess.Popen(
        [PY, "-u", "-c", PARENT], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert parent.stdout is not None
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert parent.stdout.readline() == "ready\n"
        leftovers.extend(pids)
        assert len(pids) == 6  # 2 supervisors, a stubborn backend, a group leader, 2 grandkids
        for pid in pids:
            assert not is_dead(pid)
        parent.kill()
        parent.wait(TIMEOUT)
        took = wait_dead(pids, 1.0)
    finally:
        parent.kill()
        parent.wait(TIMEOUT)
        assert parent.stdout is not None
        parent.stdout.close()
    assert max(took.values()) < 1.0


def test_plain_spawn_cannot_do_it_a_stubborn_backend_outlives_a_sigkilled_parent(
    leftovers: list[int],
) -> None:
    """The gap supervise=True closes: PR_SET_PDEATHSIG sends SIGTERM, which this one ignores."""
    code = PARENT.replace("supervise=True", "supervise=False").replace(
        "pids.append(proc.pid)  # the supervisor", "pass"
    )
    parent = subprocess.Popen(
        [PY, "-u", "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert parent.stdout is not None
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert parent.stdout.readline() == "ready\n"
        leftovers.extend(pids)
        parent.kill()
        parent.wait(TIMEOUT)
        # The parent-death SIGTERM is ignored, and the grandchildren never get one: half a
        # second later (the kernel's signal takes microseconds) all are alive.
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            assert not any(is_dead(pid) for pid in pids)
            time.sleep(0.05)
    finally:
        parent.kill()
        parent.wait(TIMEOUT)
        assert parent.stdout is not None
        parent.stdout.close()


def test_supervised_backend_is_stopped_with_the_program_and_reports_its_status() -> None:
    code = """
import signal, subprocess, time, graceful

@graceful.main
def main():
    procs = []  # registered before spawn: runs after spawn's cleanup has stopped them
    graceful.register(lambda: print("codes", *[p.returncode for p in procs], flush=True))
    stubborn = graceful.spawn(["sh", "-c", "trap '' TERM; echo up; exec sleep 60"],
                              supervise=True, timeout=0.5, stdout=subprocess.PIPE)
    polite = graceful.spawn(["sleep", "60"], supervise=True)
    procs += [stubborn, polite]
    assert stubborn.stdout.readline() == b"up\\n"
    print("ready", flush=True)
    time.sleep(60)

main()
"""
    proc = subprocess.Popen(
        [PY, "-u", "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(TIMEOUT)
    assert proc.returncode == -signal.SIGTERM, err
    # The supervisor ends as its backend did: SIGKILL after 0.5 s, SIGTERM at once.
    assert out.splitlines() == [f"codes {-signal.SIGKILL} {-signal.SIGTERM}"]
    assert "RuntimeWarning" not in err  # the supervisor escalated, not graceful's tracker
    assert session_members(proc.pid) == []


def test_supervised_pipes_work_like_popen() -> None:
    proc = graceful.spawn(
        ["cat"], supervise=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        out, _ = proc.communicate("hello\n", timeout=TIMEOUT)  # EOF reaches cat, not the supervisor
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(TIMEOUT)
    assert out == "hello\n"
    assert proc.returncode == 0


def test_supervised_exit_code_and_signal_pass_through() -> None:
    code = graceful.spawn(["sh", "-c", "exit 5"], supervise=True)
    killed = graceful.spawn(["sh", "-c", "kill -USR1 $$"], supervise=True)
    assert code.wait(TIMEOUT) == 5
    assert killed.wait(TIMEOUT) == -signal.SIGUSR1


def test_supervised_spawn_raises_what_popen_raises(tmp_path: Path) -> None:
    before = set(children_of(os.getpid()))
    with pytest.raises(FileNotFoundError):
        graceful.spawn([str(tmp_path / "nosuch")], supervise=True)
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(PermissionError):
        graceful.spawn([str(script)], supervise=True)
    assert set(children_of(os.getpid())) <= before  # the supervisor was reaped, not left over


def test_a_sigkill_break_signal_reaches_the_backend_through_the_supervisor() -> None:
    proc = graceful.spawn(["sleep", "60"], supervise=True, signal=signal.SIGKILL)
    try:
        proc.send_signal(signal.SIGTERM)  # what graceful's tracker sends it: mapped to SIGKILL
        assert proc.wait(TIMEOUT) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(TIMEOUT)


def test_spawned_from_a_thread_that_ends_it_lives_on_and_still_dies_with_the_parent(
    leftovers: list[int],
) -> None:
    code = """
import subprocess, sys, threading, time
import graceful

box = []
t = threading.Thread(target=lambda: box.append(graceful.spawn(
    ["sh", "-c", "trap '' TERM; echo $$; exec sleep 60"], supervise=True,
    stdout=subprocess.PIPE, text=True)))
t.start()
t.join()
proc = box[0]
backend = int(proc.stdout.readline())
time.sleep(0.3)  # the spawning thread is gone: a thread-bound parent-death signal has fired
print(proc.pid, backend, proc.poll(), flush=True)
print("ready", flush=True)
time.sleep(60)
"""
    parent = subprocess.Popen(
        [PY, "-u", "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert parent.stdout is not None
        supervisor, backend, poll = parent.stdout.readline().split()
        assert parent.stdout.readline() == "ready\n"
        pids = [int(supervisor), int(backend)]
        leftovers.extend(pids)
        assert poll == "None"  # still running
        parent.kill()
        parent.wait(TIMEOUT)
        wait_dead(pids, 1.0)
    finally:
        parent.kill()
        parent.wait(TIMEOUT)
        assert parent.stdout is not None
        parent.stdout.close()


# --- bad input ------------------------------------------------------------------------------


def test_preexec_fn_is_refused_with_what_to_use_instead() -> None:
    for supervise in (False, True):
        with pytest.raises(TypeError) as info:
            graceful.spawn(["true"], preexec_fn=os.setsid, supervise=supervise)
        message = str(info.value)
        assert message.startswith("graceful.spawn() does not take preexec_fn")
        for hint in ("group=True", "die_with_parent=True", "graceful.track()", "deadlock"):
            assert hint in message


def test_supervise_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="supervise must be True or False"):
        graceful.spawn(["true"], supervise="yes")  # type: ignore[arg-type]


def test_the_supervisor_command_line_says_what_spawn_was_told() -> None:
    proc = graceful.spawn(
        ["sleep", "60"], supervise=True, timeout=2.5, group=True, signal=signal.SIGUSR1
    )
    try:
        with open(f"/proc/{proc.pid}/cmdline", "rb") as f:
            argv = f.read().rstrip(b"\0").decode().split("\0")
        text = " ".join(argv)
        for part in ("standalone.py --quiet", "--timeout 2.5", "--group", "--die-with-parent"):
            assert part in text
        assert f"--parent-pid {os.getpid()}" in text
        assert "--stop-signals INT,QUIT,TERM,USR1" in text  # the break signal is a stop
        assert text.endswith("-- sleep 60")
        proc.send_signal(signal.SIGUSR1)
        assert proc.wait(TIMEOUT) == -signal.SIGUSR1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(TIMEOUT)


def test_cost_is_documented() -> None:
    """docs/cli.md states the measured cost of a supervised spawn; keep the claim in place."""
    docs = (Path(__file__).parent.parent / "docs" / "cli.md").read_text()
    assert "supervise=True" in docs
    assert "benchmarks/cli_costs.py" in docs


@pytest.mark.parametrize("supervise", [False, True])
def test_arguments_that_look_like_placeholders_reach_the_program(supervise: bool) -> None:
    proc = graceful.spawn(
        ["echo", "{errfd}", "--", "-1"], supervise=supervise, stdout=subprocess.PIPE, text=True
    )
    out, _ = proc.communicate(timeout=TIMEOUT)
    assert out == "{errfd} -- -1\n"
    assert proc.returncode == 0
