"""``spawn``'s fast launcher (``setpriv`` + ``/bin/sh``) keeps every guarantee of the Python one.

Each guarantee in real processes: the parent SIGKILLed at each step of the start (before the
``prctl``, between it and the shell's check, once the program runs), default dispositions and an
empty mask in the program, 8 busy threads in the parent, exec failures reported as before, and
every case where the fast path cannot keep them (the Python launcher runs instead).
"""

from __future__ import annotations

import ast
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from backends_support import needs_linux
from graceful._process import native_launch
from helpers import TIMEOUT, Child

pytestmark = [
    needs_linux,
    pytest.mark.skipif(
        sys.platform.startswith("linux") and not native_launch.setpriv(),
        reason="no util-linux setpriv with --pdeathsig (>= 2.33) here: spawn uses its launcher",
    ),
]
PY = sys.executable

# --- the parent SIGKILLed at each step --------------------------------------------------------

# Wrappers that stop the start at one step (they print where they are, then wait for a line on
# the FIFO), then go on with the real tool. The SETPRIV wrapper runs before the prctl; the SHELL
# wrapper after it (setpriv armed the signal and exec'd it) and before the shell's check.
SETPRIV_PAUSED = """#!/bin/sh
[ "$1" = --help ] && exec {setpriv} "$@"
echo at before-prctl
read go < {fifo}
exec {setpriv} "$@"
"""
SHELL_PAUSED = """#!/bin/sh
echo at after-prctl
read go < {fifo}
exec /bin/sh "$@"
"""
# The parent: spawns the program through the (wrapped) fast path, says so, and waits to die.
PARENT = """
import os, sys, time, graceful
from graceful._process import native_launch
step, fifo, wrapper = sys.argv[1:]
if step == "before-prctl":
    native_launch.SETPRIV_PATHS = (wrapper,)
elif step == "after-prctl":
    native_launch.SHELL = wrapper
fast = native_launch.command(
    sig=15, lifeline=-1, executable="sh", argv=["sh"], found=b"/bin/sh", env=None
)
proc = graceful.spawn(["sh", "-c", f"echo ran; read x < {fifo}"])
# One write per line: the program writes to the same pipe.
os.write(1, f"chain {proc.pid} {fast is not None}\\n".encode())
if step == "alive":
    os.write(1, f"status {proc.wait()}\\n".encode())
else:
    time.sleep(60)
"""
# A subreaper that runs the parent, kills it at the step, releases the wrapper and reaps the
# orphaned start: it reports the start's status and whether the program ran.
REAPER = """
import os, signal, subprocess, sys
from graceful._core.libc import set_child_subreaper
set_child_subreaper(True)
signal.alarm(30)
hold = os.open(fifo, os.O_RDWR)  # a writer for as long as we live: readers never block in open
r, w = os.pipe()
proc = subprocess.Popen([sys.executable, "-c", parent, step, fifo, wrapper], stdout=w)
os.close(w)
lines = os.fdopen(r)
got = []
def read_until(first):
    while not any(line.startswith(first) for line in got):
        line = lines.readline()
        assert line, got
        got.append(line.strip())
    return next(line for line in got if line.startswith(first))
chain_line = read_until("chain ")
chain = int(chain_line.split()[1])
print(chain_line, flush=True)
if step != "alive":
    print("seen", read_until(seen), flush=True)
    proc.kill()
    proc.wait()
os.write(hold, b"go\\ngo\\n")  # the wrapper goes on; a program that should not run ends too
if step == "alive":  # its parent reaps it
    print(read_until("status "), flush=True)
    proc.wait()
else:
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == chain:
            break
    print("status", os.waitstatus_to_exitcode(status), flush=True)
print("output", " ".join(got + lines.read().split()), flush=True)
"""


@pytest.mark.parametrize(
    ("step", "seen", "ran"),
    [
        ("alive", None, True),
        ("before-prctl", "at before-prctl", False),
        ("after-prctl", "at after-prctl", False),
        ("after-exec", "ran", True),
    ],
)
def test_a_parent_sigkilled_at_any_step_takes_the_program_with_it(
    tmp_path: Path, step: str, seen: str | None, ran: bool
) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    wrapper = tmp_path / "wrapper"
    template = SETPRIV_PAUSED if step == "before-prctl" else SHELL_PAUSED
    wrapper.write_text(template.format(setpriv=native_launch.setpriv(), fifo=fifo))
    wrapper.chmod(0o755)
    given = (step, str(fifo), str(wrapper), PARENT, seen)
    with Child(f"step, fifo, wrapper, parent, seen = {given!r}\n{REAPER}") as reaper:
        assert reaper.finish(timeout=TIMEOUT) == 0, reaper.stderr
    lines = dict(line.split(" ", 1) for line in reaper.lines)
    assert lines["chain"].split()[1] == "True", reaper.lines  # the fast path was taken
    if seen is not None:
        assert lines["seen"] == seen, reaper.lines
    if step == "alive":
        assert lines["status"] == "0", reaper.lines
    else:
        assert lines["status"] == str(-signal.SIGTERM), reaper.lines
    program_ran = "ran" in lines["output"].split()
    assert program_ran == ran, reaper.lines


# --- what the program inherits ----------------------------------------------------------------

STATUS = """
import subprocess, graceful
from graceful._process import native_launch
fast = native_launch.command(
    sig=15, lifeline=-1, executable="sh", argv=["sh"], found=b"/bin/sh", env=None
)
cmd = ["grep", "-E", "^(Sig(Blk|Ign)|Cap|NoNewPrivs|Seccomp:)", "/proc/self/status"]
print("fast", fast is not None)
print("popen", sorted(subprocess.run(cmd, capture_output=True, text=True).stdout.split("\\n")))
proc = graceful.spawn(cmd, stdout=subprocess.PIPE, text=True)
print("spawn", sorted(proc.stdout.read().split("\\n")))
proc.stdout.close()
print("status", proc.wait())
"""


def test_the_program_gets_default_signals_an_empty_mask_and_the_same_privileges() -> None:
    # SIGPIPE and SIGXFSZ are ignored by Python itself: Popen's restore_signals resets them.
    with Child(STATUS) as parent:
        assert parent.finish() == 0, parent.stderr
    lines = dict(line.split(" ", 1) for line in parent.lines)
    assert lines["fast"] == "True", parent.lines
    assert lines["status"] == "0", parent.lines
    popen, spawned = ast.literal_eval(lines["popen"]), ast.literal_eval(lines["spawn"])
    fields = dict(line.split(":\t") for line in spawned if line)
    # Signals 32 and 33 belong to the C library: on 3.13 a program exec'd by another one can
    # inherit them as ignored, through either launcher (see test_parent_death), and no program
    # can reset them. Every other signal is at its default, and none is blocked.
    libc_owned = (1 << 31) | (1 << 32)
    assert int(fields["SigBlk"], 16) == 0, spawned
    assert int(fields["SigIgn"], 16) & ~libc_owned == 0, spawned
    same = [line for line in spawned if not line.startswith("SigIgn")]
    assert same == [line for line in popen if not line.startswith("SigIgn")]  # setpriv changed
    # no capability, no_new_privs, no seccomp filter


def test_every_signal_has_a_name_setpriv_takes() -> None:
    tool = native_launch.setpriv()
    for sig in sorted(signal.valid_signals()):
        name = native_launch.signal_name(sig)
        out = subprocess.run(
            [tool, "--pdeathsig", name, "--", "/bin/sh", "-c", "exit 0"],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert out.returncode == 0, (sig, name, out.stderr)


BUSY = """
import subprocess, threading, graceful
from graceful._process import native_launch
stop = threading.Event()
def spin():
    n = 0
    while not stop.is_set():
        n += 1
def start(many, out):
    for _ in range(many):
        proc = graceful.spawn(["sh", "-c", "echo $GRACEFUL_PARENT"], stdout=subprocess.PIPE)
        out.append((proc.stdout.readline().decode().strip(), proc.wait()))
        proc.stdout.close()
spinners = [threading.Thread(target=spin) for _ in range(8)]
for t in spinners:
    t.start()
print("fast", native_launch.command(
    sig=15, lifeline=-1, executable="sh", argv=["sh"], found=b"/bin/sh", env=None
) is not None, flush=True)
results = []
starters = [threading.Thread(target=start, args=(3, results)) for _ in range(3)]
for t in starters:
    t.start()
start(10, results)
for t in starters:
    t.join()
stop.set()
for t in spinners:
    t.join()
# The note the shell wrote: PID:PARENT:SIGNAL:LIFELINE, the parent being us.
bad = [r for r in results if r[1] != 0 or r[0].split(":")[1:3] != [str(os.getpid()), "15"]]
print("started", len(results), "bad", bad, flush=True)
"""


def test_eight_busy_threads_in_the_parent_do_not_disturb_the_start() -> None:
    code = "import os\n" + BUSY
    with Child(code) as parent:
        assert parent.finish(timeout=60) == 0, parent.stderr
    assert parent.lines == ["fast True", "started 19 bad []"], parent.lines


# --- where the fast path cannot keep a guarantee, the Python launcher runs --------------------

REFUSALS = """
import os, signal, sys
from graceful._process import native_launch as n
tmp = sys.argv[1] if len(sys.argv) > 1 else TMP
def fast(executable="sh", argv=("sh",), found=b"/bin/sh", env=None, sig=15):
    got = n.command(
        sig=sig, lifeline=-1, executable=executable, argv=list(argv), found=found, env=env
    )
    return "native" if got and got[0][0] == n.setpriv() else "popen" if got else "launcher"
print("clean", fast())
import ctypes  # a command name with ") " in it: /proc/self/stat is read past the last ")"
ctypes.CDLL(None).prctl(15, b"x) 1 2 (y", 0, 0, 0)  # PR_SET_NAME
print("odd name", fast())
print("no die_with_parent", fast(sig=0))
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
print("a blocked signal", fast(), fast(sig=0))
signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGUSR1])
signal.signal(signal.SIGHUP, signal.SIG_IGN)
print("an ignored signal", fast(), fast(sig=0))
signal.signal(signal.SIGHUP, signal.SIG_DFL)
print("executable= not argv[0]", fast(executable="/bin/sh", argv=["dash"]))
print("env without PATH", fast(env={"A": "1"}), fast(env={"PATH": "/bin"}))
print("env without PATH, a path", fast(executable="/bin/sh", argv=["/bin/sh"], env={"A": "1"}))
for name in ("garbage", "foreign", "text", "bad-interpreter", "script", "unreadable"):
    print(name, fast(executable=name, argv=[name], found=os.path.join(tmp, name).encode()))
"""


def _programs(tmp_path: Path) -> None:
    (tmp_path / "garbage").write_bytes(b"\x7fELF not really\n")
    true = Path(shutil.which("true") or "/bin/true").read_bytes()
    (tmp_path / "foreign").write_bytes(true[:18] + b"\xff\xfe" + true[20:])  # e_machine
    (tmp_path / "text").write_text("echo run by a shell, not by execve\n")
    (tmp_path / "bad-interpreter").write_text("#!/no/such/interpreter\n")
    (tmp_path / "script").write_text("#!/bin/sh\nexit 7\n")
    (tmp_path / "unreadable").write_text("#!/bin/sh\nexit 7\n")
    for path in tmp_path.iterdir():
        path.chmod(0o755)
    (tmp_path / "unreadable").chmod(0o111)


def test_what_the_fast_path_refuses(tmp_path: Path) -> None:
    _programs(tmp_path)
    with Child(f"TMP = {str(tmp_path)!r}\n{REFUSALS}") as child:
        assert child.finish() == 0, child.stderr
    unreadable = "launcher" if os.geteuid() != 0 else "native"  # root reads anything
    assert child.lines == [
        "clean native",
        "odd name native",
        "no die_with_parent popen",
        "a blocked signal launcher launcher",
        "an ignored signal launcher launcher",
        "executable= not argv[0] launcher",
        "env without PATH launcher native",
        "env without PATH, a path native",
        "garbage launcher",
        "foreign launcher",
        "text launcher",
        "bad-interpreter launcher",
        "script native",
        f"unreadable {unreadable}",
    ], child.lines


def test_setpriv_can_be_hidden() -> None:
    code = "import graceful._process.native_launch as n\n" + (
        "print(n.command(sig=15, lifeline=-1, executable='sh', argv=['sh'], found=b'/bin/sh',"
        " env=None))"
    )
    with Child(code, env={"GRACEFUL_DISABLE": "setpriv"}) as child:
        assert child.finish() == 0, child.stderr
    assert child.lines == ["None"]


EXEC_FAILURES = """
import subprocess, sys, graceful
for name in sys.argv[1:]:
    proc = graceful.spawn([name], stderr=subprocess.PIPE)
    print(name, proc.wait(), proc.stderr.read().decode().strip(), flush=True)
    proc.stderr.close()
for name in sys.argv[1:]:
    try:
        graceful.spawn([name], die_with_parent=False).wait()
    except OSError as exc:  # Popen's own child: Popen raises what the exec said
        print(name, type(exc).__name__, exc.errno, flush=True)
"""


def test_exec_failures_are_reported_as_before(tmp_path: Path) -> None:
    _programs(tmp_path)
    names = [str(tmp_path / n) for n in ("garbage", "foreign", "text", "bad-interpreter")]
    out = subprocess.run(
        [PY, "-c", EXEC_FAILURES, *names], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    reasons = ["Exec format error"] * 3 + ["No such file or directory"]
    for line, name, reason in zip(lines, names, reasons):
        assert line == f"{name} 127 graceful.spawn: cannot run {name!r}: {reason}", lines
    errnos = ["8", "8", "8", "2"]
    kinds = ["OSError"] * 3 + ["FileNotFoundError"]
    assert lines[4:] == [f"{n} {k} {e}" for n, k, e in zip(names, kinds, errnos)], lines


ENVIRONMENTS = """
import os, subprocess, graceful
show = ["sh", "-c", "env | LC_ALL=C sort"]
def environment(**kwargs):
    proc = graceful.spawn(show, stdout=subprocess.PIPE, errors="surrogateescape", **kwargs)
    lines = proc.stdout.read().splitlines()
    proc.stdout.close()
    proc.wait()
    note = [l for l in lines if l.startswith("GRACEFUL_PARENT=")]
    assert len(note) == 1 and note[0].split("=")[1].split(":")[1] == str(os.getpid()), note
    return [l for l in lines if not l.startswith(("GRACEFUL_PARENT=", "PWD=", "SHLVL=", "_="))]
def expected(env):
    return sorted(f"{k}={v}" for k, v in env.items() if k not in ("PWD", "SHLVL", "_"))
os.environ.pop("LC_ALL", None)
print(environment() == expected(os.environ))
os.environ["LC_ALL"] = "C.UTF-8"
print(environment() == expected(os.environ))
given = {"PATH": os.environ["PATH"], "A": "1", "LC_ALL": ""}
print(environment(env=given) == expected(given))
given = {b"PATH": os.environb[b"PATH"], b"B": b"\\xff", b"LC_ALL": b"fr_FR.UTF-8 x"}
as_given = ["PATH=" + os.environ["PATH"], "B=\\udcff", "LC_ALL=fr_FR.UTF-8 x"]
print(environment(env=given) == sorted(as_given))
"""


def test_the_program_gets_exactly_its_environment_and_the_note() -> None:
    # setpriv runs with LC_ALL=C (faster); the shell puts the program's LC_ALL back, or unsets it.
    with Child(ENVIRONMENTS) as child:
        assert child.finish() == 0, child.stderr
    assert child.lines == ["True"] * 4, (child.lines, child.stderr)
