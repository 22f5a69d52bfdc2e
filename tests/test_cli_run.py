"""``graceful run``: a supervisor for any command, against real commands and real signals.

Each supervisor runs in a session of its own (``sessions`` kills what is left of it); commands
print a readiness line once their handlers are in place, and every wait has a deadline.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends_support import is_dead, needs_linux, proc_stat, wait_dead
from cli_support import (
    GRACEFUL,
    PY,
    children_of,
    last_pid,
    need_pid_namespaces,
    read_to_eof,
    sessions_fixture,
    skip_outside_ci,
    supervisor_child,
)
from helpers import TIMEOUT, Child

pytestmark = needs_linux


@pytest.fixture
def sessions() -> Iterator[list[int]]:
    yield from sessions_fixture()


# A command that reports every signal it gets; INT, QUIT and TERM end it (exit 0).
ECHO = """
import os, signal, sys, time
def on(sig, frame):
    print(signal.Signals(sig).name, flush=True)
    if sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM):
        sys.exit(0)
for s in ("HUP", "INT", "QUIT", "TERM", "USR1", "USR2", "WINCH"):
    signal.signal(getattr(signal, "SIG" + s), on)
print("pid", os.getpid(), flush=True)
print("ready", flush=True)
while True:
    time.sleep(1)
"""


def ready_pid(child: Child) -> int:
    """Wait for the command's "ready" line; return the PID from its "pid N" line before it."""
    child.wait_for("ready")
    return last_pid(child.lines)


# --- exit status ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("exit 7", 7),
        ("kill -USR1 $$", -signal.SIGUSR1),
        ("ulimit -c 0; kill -QUIT $$", -signal.SIGQUIT),
        ("kill -KILL $$", -signal.SIGKILL),
    ],
    ids=["code", "USR1", "QUIT-core", "KILL"],
)
def test_ends_exactly_as_the_command_did(script: str, expected: int) -> None:
    out = subprocess.run(
        [*GRACEFUL, "run", "--", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert out.returncode == expected, out.stderr


def test_a_command_that_cannot_run_exits_like_a_shell(tmp_path: Path) -> None:
    missing = subprocess.run(
        [*GRACEFUL, "run", "--", str(tmp_path / "nosuch")],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert missing.returncode == 127
    assert "cannot run" in missing.stderr
    assert "No such file" in missing.stderr
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o644)
    denied = subprocess.run(
        [*GRACEFUL, "run", "--", str(script)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert denied.returncode == 126
    assert "Permission denied" in denied.stderr


def test_the_command_is_searched_along_path_as_execvp_does(tmp_path: Path) -> None:
    """The launcher searches PATH itself (os.execvp imports warnings first): a directory that is
    missing or holds a file it may not execute is passed over, and if nothing runs, a file it
    may not execute says so (126) before "not found" (127)."""
    missing, denied, found = tmp_path / "missing", tmp_path / "denied", tmp_path / "found"
    for directory, mode, status in ((denied, 0o644, 1), (found, 0o755, 5)):
        directory.mkdir()
        (directory / "tool").write_text(f"#!/bin/sh\nexit {status}\n")
        (directory / "tool").chmod(mode)

    def run(*path: Path) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PATH": os.pathsep.join(map(str, path))}
        return subprocess.run(
            [*GRACEFUL, "run", "--", "tool"],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
            env=env,
        )

    assert run(missing, denied, found).returncode == 5
    out = run(missing, denied)
    assert (out.returncode, "Permission denied" in out.stderr) == (126, True)
    out = run(missing)
    assert (out.returncode, "No such file" in out.stderr) == (127, True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--map", "TERM"], "expected FROM:TO"),
        (["--signals", "KILL"], "cannot be caught"),
        (["--signals", "CHLD"], "needs SIGCHLD itself"),
        (["--signals", "NOPE"], "unknown signal name"),
        (["--timeout", "-1"], "must be >= 0"),
        (["--timeout", "soon"], "expected seconds"),
    ],
)
def test_bad_options_say_what_to_write_instead(args: list[str], message: str) -> None:
    out = subprocess.run(
        [*GRACEFUL, "run", *args, "--", "true"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert out.returncode == 2
    assert message in out.stderr


def test_no_command_is_an_error() -> None:
    out = subprocess.run(
        [*GRACEFUL, "run", "--"], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert out.returncode == 2
    assert "no command given" in out.stderr


# --- forwarding -----------------------------------------------------------------------------


def test_forwards_each_signal_and_ends_as_the_command_did() -> None:
    with supervisor_child([], ECHO) as child:
        ready_pid(child)
        for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH):
            child.send(sig)
            child.wait_for(sig.name)
        child.send(signal.SIGTERM)
        child.wait_for("SIGTERM")
        assert child.finish() == 0  # the command exited 0 on SIGTERM: so does the supervisor


def test_signals_not_in_the_list_are_dropped() -> None:
    with supervisor_child(["--signals", "TERM"], ECHO) as child:
        ready_pid(child)
        child.send(signal.SIGUSR1)  # dropped: it would be handled before the TERM sent after it
        child.send(signal.SIGTERM)
        assert child.finish() == 0
    assert child.lines[2:] == ["SIGTERM"]


def test_map_rewrites_a_signal_on_the_way() -> None:
    with supervisor_child(["--map", "TERM:QUIT", "--map", "USR1:USR2"], ECHO) as child:
        ready_pid(child)
        child.send(signal.SIGUSR1)
        child.wait_for("SIGUSR2")
        child.send(signal.SIGTERM)
        assert child.finish() == 0
    assert child.lines[2:] == ["SIGUSR2", "SIGQUIT"]


# A command with a grandchild in its process group; both report USR1 and TERM with their PID.
FAMILY = """
import os, signal, subprocess, sys, time
def on(sig, frame):
    os.write(1, f"{signal.Signals(sig).name} {os.getpid()}\\n".encode())  # one write: no mixing
    if sig == signal.SIGTERM:
        os._exit(0)
if len(sys.argv) > 1:  # the grandchild
    signal.signal(signal.SIGUSR1, on)
    signal.signal(signal.SIGTERM, on)
    os.write(1, f"kid {os.getpid()}\\n".encode())
    os.write(int(sys.argv[1]), b"x")
    while True:
        time.sleep(1)
r, w = os.pipe()
kid = subprocess.Popen([sys.executable, "-u", "-c", CODE, str(w)], pass_fds=(w,))
os.read(r, 1)
signal.signal(signal.SIGUSR1, on)
signal.signal(signal.SIGTERM, on)
os.write(1, f"pid {os.getpid()}\\nready\\n".encode())
while True:
    time.sleep(1)
"""


def family_code() -> str:
    return f"CODE = {textwrap.dedent(FAMILY)!r}\n" + textwrap.dedent(FAMILY)


@pytest.mark.parametrize("group", [True, False], ids=["group", "command-only"])
def test_group_forwards_to_the_whole_process_group(group: bool) -> None:
    with supervisor_child(["--group"] if group else [], family_code()) as child:
        command = ready_pid(child)
        kid = last_pid(child.lines, "kid")
        assert (proc_stat(kid) or ("", 0, 0))[2] == command  # one group, led by the command
        child.send(signal.SIGUSR1)
        # Both, before TERM: a TERM that lands while the kid's USR1 handler runs would run its
        # own handler inside that one, and os._exit() before the USR1 line is written.
        expected = {f"SIGUSR1 {command}"} | ({f"SIGUSR1 {kid}"} if group else set())
        while not expected <= set(child.lines):
            child.wait_for_line(lambda line: line in expected, f"each of {sorted(expected)}")
        child.send(signal.SIGTERM)
        assert child.finish() == 0
    heard = {line for line in child.lines if line.startswith("SIG")}
    if group:
        assert f"SIGUSR1 {kid}" in heard
        assert f"SIGTERM {kid}" in heard
    else:
        assert f"SIGUSR1 {kid}" not in heard  # USR1 went to the command only
    assert f"SIGTERM {command}" in heard
    wait_dead([command, kid], TIMEOUT)


# --- escalation -----------------------------------------------------------------------------

STUBBORN = """
import os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("pid", os.getpid(), flush=True)
print("ready", flush=True)
while True:
    time.sleep(1)
"""


def test_timeout_escalates_to_sigkill() -> None:
    with supervisor_child(["--timeout", "1"], STUBBORN) as child:
        command = ready_pid(child)
        sent = time.monotonic()
        child.send(signal.SIGTERM)
        rc = child.finish()
        took = time.monotonic() - sent
    assert rc == -signal.SIGKILL  # the command died by SIGKILL: so does the supervisor
    assert 1.0 <= took < 4.0
    assert "sent SIGKILL to 1 process(es) running 1.0 s after SIGTERM" in child.stderr
    assert is_dead(command)


# STUBBORN that also says when it hears SIGUSR1.
STUBBORN_ECHO = STUBBORN.replace(
    'print("pid"',
    'signal.signal(signal.SIGUSR1, lambda sig, frame: print("SIGUSR1", flush=True))\nprint("pid"',
)


def test_signals_forwarded_one_after_another_do_not_hold_up_the_countdown() -> None:
    """USR1 is sent on in the wait itself, which keeps waiting: only until the SIGKILL is due."""
    with supervisor_child(["--timeout", "0.5"], STUBBORN_ECHO) as child:
        command = ready_pid(child)
        sent = time.monotonic()
        child.send(signal.SIGTERM)
        echoes = 0
        while time.monotonic() - sent < 4.0:
            child.send(signal.SIGUSR1)  # the next one only once the last was heard: none merge
            try:
                child.wait_for("SIGUSR1")
            except AssertionError:
                break  # the supervisor ended: the command was SIGKILLed
            echoes += 1
        rc = child.finish()
        took = time.monotonic() - sent
    assert rc == -signal.SIGKILL
    assert 0.5 <= took < 4.0
    assert echoes > 0
    assert is_dead(command)


QUICK_CLEANUP = """
import os, signal, sys, time
def on(sig, frame):
    time.sleep(0.2)  # a short cleanup
    sys.exit(3)
signal.signal(signal.SIGTERM, on)
print("pid", os.getpid(), flush=True)
print("ready", flush=True)
while True:
    time.sleep(1)
"""


def test_the_grace_period_ends_as_soon_as_the_command_is_gone() -> None:
    with supervisor_child(["--timeout", "30"], QUICK_CLEANUP) as child:
        ready_pid(child)
        sent = time.monotonic()
        child.send(signal.SIGTERM)
        rc = child.finish()
        took = time.monotonic() - sent
    assert rc == 3
    assert took < 3.0  # not 30 s


def test_hup_is_forwarded_but_does_not_start_the_countdown() -> None:
    code = """
import os, signal, sys, time
def on(sig, frame):
    print(signal.Signals(sig).name, flush=True)
    time.sleep(0.6)  # twice the timeout: a countdown started by HUP would SIGKILL us here
    print("alive", flush=True)
signal.signal(signal.SIGHUP, on)
print("pid", os.getpid(), flush=True)
print("ready", flush=True)
while True:
    time.sleep(1)
"""
    with supervisor_child(["--timeout", "0.3"], code) as child:
        ready_pid(child)
        child.send(signal.SIGHUP)
        child.wait_for("SIGHUP")
        child.wait_for("alive")
        child.send(signal.SIGTERM)  # TERM: default action, and the countdown
        assert child.finish() == -signal.SIGTERM


# --- what the command leaves behind -----------------------------------------------------------

# The command starts a daemon (double fork + setsid: it leaves the group and the session) that
# writes what ended it to a file, then the command exits.
DAEMONIZE = """
import os, signal, sys, time
out, ignore_term, stay = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1"
r, w = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        def on(sig, frame):
            open(out, "w").write(signal.Signals(sig).name)
            os._exit(0)
        signal.signal(signal.SIGTERM, signal.SIG_IGN if ignore_term else on)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):  # as a daemon does: it holds none of our pipes
            os.dup2(null, fd)
        os.write(w, str(os.getpid()).encode())
        while True:
            time.sleep(1)
    os._exit(0)
os.wait()
print("daemon", os.read(r, 20).decode(), flush=True)
if stay:
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
print("pid", os.getpid(), flush=True)
print("ready", flush=True)
while stay:
    time.sleep(1)
"""


def daemonizing(out: Path, ignore_term: bool, stay: bool) -> str:
    args = [str(out), "1" if ignore_term else "0", "1" if stay else "0"]
    return f"import sys; sys.argv[1:] = {args!r}\n" + textwrap.dedent(DAEMONIZE)


def daemon_pid(child: Child) -> int:
    return last_pid(child.lines, "daemon")


def test_an_adopted_daemon_is_told_to_stop_when_the_command_ends(
    leftovers: list[int], tmp_path: Path
) -> None:
    out = tmp_path / "daemon"
    with supervisor_child([], daemonizing(out, False, False)) as child:
        ready_pid(child)
        daemon = daemon_pid(child)
        leftovers.append(daemon)
        rc = child.finish()
    assert rc == 0  # the command's status, once the daemon it left is gone too
    assert out.read_text() == "SIGTERM"
    wait_dead([daemon], TIMEOUT)


def test_an_adopted_daemon_that_ignores_sigterm_is_killed_after_the_timeout(
    leftovers: list[int], tmp_path: Path
) -> None:
    out = tmp_path / "daemon"
    with supervisor_child(["--timeout", "0.5"], daemonizing(out, True, False)) as child:
        ready_pid(child)
        daemon = daemon_pid(child)
        leftovers.append(daemon)
        started = time.monotonic()
        rc = child.finish()
        took = time.monotonic() - started
    assert rc == 0
    assert 0.4 <= took < 3.0
    assert "sent SIGKILL to 1 process(es)" in child.stderr
    assert not out.exists()
    wait_dead([daemon], TIMEOUT)


def test_a_stop_signal_reaches_adopted_orphans_too(leftovers: list[int], tmp_path: Path) -> None:
    out = tmp_path / "daemon"
    with supervisor_child([], daemonizing(out, False, True)) as child:
        command = ready_pid(child)
        daemon = daemon_pid(child)
        leftovers.append(daemon)
        assert proc_stat(daemon) is not None
        assert proc_stat(daemon)[1] == child.pid
        child.send(signal.SIGTERM)
        assert child.finish() == 0
    assert out.read_text() == "SIGTERM"
    wait_dead([command, daemon], TIMEOUT)


def test_without_subreaper_a_daemon_escapes(leftovers: list[int], tmp_path: Path) -> None:
    """What tini without -s and dumb-init do: the daemon is init's, and outlives the supervisor."""
    out = tmp_path / "daemon"
    with supervisor_child(["--no-subreaper"], daemonizing(out, False, False)) as child:
        ready_pid(child)
        daemon = daemon_pid(child)
        leftovers.append(daemon)
        assert child.finish() == 0
    assert proc_stat(daemon) is not None
    assert not is_dead(daemon)
    assert not out.exists()


# --- dying with the supervisor, and with the parent -------------------------------------------


def test_the_command_dies_with_a_sigkilled_supervisor() -> None:
    with supervisor_child([], STUBBORN) as child:
        command = ready_pid(child)
        child.send(signal.SIGKILL)
        assert child.finish() == -signal.SIGKILL
        wait_dead([command], 1.0)


PARENT = """
import os, subprocess, sys, time
sup = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, text=True)
for _ in range(2):
    print(sup.stdout.readline(), end="", flush=True)
print("parent ready", sup.pid, flush=True)
time.sleep(60)
"""

# A command that ignores SIGTERM and has a grandchild (in its group) that ignores it too.
STUBBORN_FAMILY = """
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
kid = subprocess.Popen(["sh", "-c", "trap '' TERM; echo kid $$; exec sleep 60"],
                       stdout=subprocess.PIPE, text=True)
print(kid.stdout.readline(), end="", flush=True)
print("pid", os.getpid(), flush=True)
while True:
    time.sleep(1)
"""


def test_die_with_parent_stops_the_whole_tree_when_the_parent_is_sigkilled(
    sessions: list[int], leftovers: list[int]
) -> None:
    command = [*GRACEFUL, "run", "--die-with-parent", "--group", "--", PY, "-u", "-c"]
    argv = [PY, "-u", "-c", PARENT, *command, textwrap.dedent(STUBBORN_FAMILY)]
    parent = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, start_new_session=True)
    sessions.append(parent.pid)
    try:
        assert parent.stdout is not None
        kid = int(parent.stdout.readline().split()[1])
        cmd = int(parent.stdout.readline().split()[1])
        supervisor = int(parent.stdout.readline().split()[2])
        leftovers.extend([kid, cmd, supervisor])
        parent.kill()
        parent.wait(TIMEOUT)
        took = wait_dead([supervisor, cmd, kid], 1.0)  # orphan timeout 0.5 s, then SIGKILL
        assert max(took.values()) >= 0.3  # SIGTERM first, and the grace period
    finally:
        parent.kill()
        parent.wait(TIMEOUT)
        assert parent.stdout is not None
        parent.stdout.close()


# --- stdio, terminal, inherited dispositions --------------------------------------------------


def test_the_supervisor_lets_go_of_stdout(sessions: list[int]) -> None:
    """A reader sees EOF when the command closes its stdout, though the supervisor lives on."""
    code = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
print("ready", flush=True)
os.close(1)
while True:
    time.sleep(1)
"""
    argv = [*GRACEFUL, "run", "--", PY, "-u", "-c", code]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, start_new_session=True)
    sessions.append(proc.pid)
    with proc:
        assert proc.stdout is not None
        assert read_to_eof(proc.stdout.fileno(), TIMEOUT) == b"ready\n"
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(TIMEOUT) == 0


def test_nohup_keeps_sighup_ignored_in_the_command_and_unforwarded() -> None:
    code = """
import os, signal, sys, time
print("hup ignored", signal.getsignal(signal.SIGHUP) == signal.SIG_IGN, flush=True)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
print("ready", flush=True)
while True:
    time.sleep(1)
"""
    with supervisor_child([], code, ("nohup",)) as child:
        child.wait_for("ready")
        assert "hup ignored True" in child.lines
        child.send(signal.SIGHUP)  # ignored by the supervisor too: would kill neither
        child.send(signal.SIGTERM)
        assert child.finish() == 0


def test_the_command_starts_with_default_signals_and_an_empty_mask() -> None:
    """Nothing of the supervisor leaks: not its blocked signals, not Python's ignored ones."""
    out = subprocess.run(
        [*GRACEFUL, "run", "--", "grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    )
    masks = dict(line.split(":\t") for line in out.stdout.splitlines())
    valid = {int(s) for s in signal.valid_signals()}
    for name in ("SigBlk", "SigIgn"):
        bits = int(masks[name], 16)
        # Not glibc's two internal signals (32, 33): its posix_spawn, which Python 3.13's
        # subprocess uses to start the supervisor here, leaves them ignored, and no program can
        # set them back through glibc; glibc installs its own handlers when it needs them.
        assert [n for n in valid if bits >> (n - 1) & 1] == [], (name, masks[name])


# --- PID 1 --------------------------------------------------------------------------------------

PID1_COMMAND = """
import os, signal, sys, time
out = sys.argv[1]
# Orphans that exit at once: zombies, until PID 1 reaps them.
orphans_r, orphans_w = os.pipe()
for _ in range(5):
    if os.fork() == 0:
        grandchild = os.fork()
        if grandchild == 0:
            os._exit(0)
        os.write(orphans_w, b"%d\\n" % grandchild)
        os._exit(0)
    os.wait()
os.close(orphans_w)
with os.fdopen(orphans_r) as f:
    orphans = [int(line) for line in f]
# A daemon that leaves the session and writes what stopped it.
r, w = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        def on(sig, frame):
            open(out, "w").write(signal.Signals(sig).name)
            os._exit(0)
        signal.signal(signal.SIGTERM, on)
        os.write(w, b"x")
        while True:
            time.sleep(1)
    os._exit(0)
os.wait()
os.read(r, 1)  # its handler is in place
def left():  # the orphans not reaped yet (a zombie, or one still on its way out)
    return [pid for pid in orphans if os.path.exists(f"/proc/{pid}")]
deadline = time.monotonic() + 10
while left() and time.monotonic() < deadline:
    time.sleep(0.01)  # polling PID 1's reaping, bounded by the deadline
print("pid", os.getpid(), "ppid", os.getppid(), "zombies", len(left()), flush=True)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(int(sys.argv[2])))
print("ready", flush=True)
while True:
    time.sleep(1)
"""


def test_as_pid1_it_reaps_every_zombie_and_stops_what_was_left(tmp_path: Path) -> None:
    need_pid_namespaces()
    out = tmp_path / "daemon"
    code = f"import sys; sys.argv[1:] = [{str(out)!r}, '3']\n" + textwrap.dedent(PID1_COMMAND)
    prefix = ("unshare", "--pid", "--fork", "--mount-proc")
    with supervisor_child([], code, prefix) as child:
        child.wait_for("ready")
        # unshare forks PID 1 of the new namespace: our supervisor; signal it from outside.
        (supervisor,) = children_of(child.pid)
        os.kill(supervisor, signal.SIGTERM)
        rc = child.finish()
    assert child.lines[0] == "pid 2 ppid 1 zombies 0"
    assert rc == 3  # the command's exit code, through PID 1 and unshare
    assert "running as PID 1" in child.stderr
    assert out.read_text() == "SIGTERM"  # stopped by the supervisor, not killed by the kernel


def test_as_pid1_a_command_killed_by_a_signal_gives_128_plus_n() -> None:
    """PID 1 cannot die by its own signal: the kernel drops it. 128 + n is what docker says."""
    need_pid_namespaces()
    code = """
import time
print("ready", flush=True)
time.sleep(60)
"""
    prefix = ("unshare", "--pid", "--fork", "--mount-proc")
    with supervisor_child([], code, prefix) as child:
        child.wait_for("ready")
        (supervisor,) = children_of(child.pid)
        os.kill(supervisor, signal.SIGTERM)  # a PID 1 with no handler would ignore it
        rc = child.finish()
    assert rc == 128 + signal.SIGTERM


def test_verbose_says_what_it_forwards() -> None:
    with supervisor_child(["-v", "--map", "HUP:USR2"], ECHO) as child:
        command = ready_pid(child)
        child.send(signal.SIGUSR1)  # forwarded on the spot, in the wait itself
        child.wait_for("SIGUSR1")
        child.send(signal.SIGHUP)
        child.wait_for("SIGUSR2")
        child.send(signal.SIGTERM)
        assert child.finish() == 0
    assert f"forwarded SIGUSR1 to PID {command}" in child.stderr
    assert f"forwarded SIGHUP as SIGUSR2 to PID {command}" in child.stderr
    assert f"forwarded SIGTERM to PID {command}" in child.stderr
    assert f"command PID {command} ended (exit status 0)" in child.stderr


def test_python_m_graceful_run_is_the_same_program() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "graceful", "run", "--help"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    )
    assert "graceful run [options] -- COMMAND" in out.stdout
    assert "--die-with-parent" in out.stdout
    assert "--report-fd" not in out.stdout  # internal to graceful.spawn


def test_the_command_gets_the_terminal_and_ctrl_c_goes_straight_to_it(sessions: list[int]) -> None:
    """In a terminal the command's group is the foreground, as a shell makes a job's."""
    import select

    if shutil.which("setsid") is None:
        skip_outside_ci("needs setsid(1) from util-linux")
    code = """
import os, sys, time
print("foreground", os.tcgetpgrp(0) == os.getpgrp(), flush=True)
print("ready", flush=True)
time.sleep(60)
"""
    master, slave = os.openpty()
    argv = ["setsid", "--ctty", *GRACEFUL, "run", "--", PY, "-u", "-c", code]
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    sessions.append(proc.pid)
    try:
        seen = b""
        deadline = time.monotonic() + TIMEOUT
        while b"ready" not in seen:
            assert time.monotonic() < deadline, seen
            if select.select([master], [], [], 0.5)[0]:
                seen += os.read(master, 1024)
        assert b"foreground True" in seen
        os.write(master, b"\x03")  # Ctrl-C: SIGINT to the terminal's foreground group
        deadline = time.monotonic() + TIMEOUT
        while proc.poll() is None:  # keep reading: a full terminal would block the command
            assert time.monotonic() < deadline, seen
            if select.select([master], [], [], 0.05)[0]:
                try:
                    seen += os.read(master, 1024)
                except OSError:  # EIO: every slave end is closed
                    break
        assert proc.wait(TIMEOUT) == -signal.SIGINT, seen
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(TIMEOUT)
        os.close(master)
