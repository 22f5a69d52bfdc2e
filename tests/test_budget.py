"""One stop budget from the orchestrator to the last child (``graceful run --grace``,
``GRACEFUL_DEADLINE``), in real process trees stopped by real signals.

Timings: ``--grace 6 --drain 2`` (margin 0.5): the supervisor forwards at 2.0 s and SIGKILLs at
5.5 s; the app (level 1) ends itself at 5.25 s; its backend (level 2) at 4.75 s and is SIGKILLed
by the app at 5.0 s. The bounds below leave room for a busy machine on the late side only where
a late answer is still inside the grace.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Callable, Optional

import pytest

from backends_support import needs_linux, session_members, wait_dead
from budget_support import NotifySocket, Tree, kubelet, systemd_stop
from cli_support import GRACEFUL, PY, kill_session
from helpers import TIMEOUT

pytestmark = needs_linux

GRACE, DRAIN, MARGIN = 6.0, 2.0, 0.5
FORWARD = DRAIN
SUPERVISOR_KILL = GRACE - MARGIN  # 5.5
APP_DEADLINE = SUPERVISOR_KILL - 0.25  # 5.25
BACKEND_DEADLINE = SUPERVISOR_KILL - 0.5 - 0.25  # 4.75
#: How late a step may be on a busy machine (each bound below stays inside the grace).
LATE = 0.6


@pytest.fixture
def trees() -> Iterator[list[Tree]]:
    made: list[Tree] = []
    yield made
    for tree in made:
        kill_session(tree.pid)
        tree.child.__exit__(None, None, None)


def wait_for_file(path: Path) -> None:
    """The supervisor writes the readiness file once it knows the exec worked: a moment after
    the command may have printed its own readiness line. Bounded."""
    deadline = time.monotonic() + TIMEOUT
    while not path.exists():
        assert time.monotonic() < deadline, f"no {path}"
        time.sleep(0.01)


def start_tree(trees: list[Tree], tmp_path: Path, **env: str) -> Tree:
    options = ["--grace", str(GRACE), "--drain", str(DRAIN)]
    tree = Tree(tmp_path, options, env=env)
    trees.append(tree)
    return tree


def test_three_levels_finish_every_cleanup_within_the_grace(
    trees: list[Tree], tmp_path: Path
) -> None:
    tree = start_tree(trees, tmp_path)
    sent, _ended, killed = kubelet(tree.child.proc, GRACE)
    assert not killed, "the orchestrator had to SIGKILL"
    assert tree.child.proc.returncode == -signal.SIGTERM  # the app died by the signal it got
    marks = tree.marks()
    for what in ("app-cleanup-done", "backend-cleanup-done"):
        assert what in marks, marks
        assert marks[what] - sent < GRACE
    # Nothing was forwarded during the drain: the cleanups began after it.
    assert marks["app-cleanup-start"] - sent >= FORWARD - 0.05
    assert marks["backend-cleanup-start"] - sent >= FORWARD - 0.05
    assert session_members(tree.pid) == []

    receipts = tree.receipts()
    assert [r["who"] for r in receipts] == ["graceful", "graceful", "graceful run"]
    backend, app, supervisor = receipts
    assert supervisor["pid"] == tree.pid
    assert app["ppid"] == tree.pid
    assert backend["ppid"] == app["pid"]
    # The supervisor: the drain, the forward, no SIGKILL, how the command ended, what was left.
    assert supervisor["drain"]["planned"] == DRAIN
    assert supervisor["drain"]["ended_by"] == "time"
    signals = supervisor["signals"]
    assert [(s["event"], s["signal"]) for s in signals] == [
        ("received", "SIGTERM"),
        ("forwarded", "SIGTERM"),
    ]
    assert DRAIN <= signals[1]["t"] < DRAIN + LATE
    assert supervisor["budget"]["kill_at"] == pytest.approx(SUPERVISOR_KILL)
    assert supervisor["killed"] == []
    assert supervisor["ended"] == [
        {
            "pid": app["pid"],
            "role": "command",
            "t": supervisor["ended"][0]["t"],
            "how": "signal",
            "signal": "SIGTERM",
            "killed": False,
        }
    ]
    assert 0 < supervisor["left"] < GRACE - DRAIN
    # Each graceful program: its budget (a level apart), its cleanup, its end.
    for receipt, name, deadline in (
        (app, "app_cleanup", APP_DEADLINE),
        (backend, "backend_cleanup", BACKEND_DEADLINE),
    ):
        cleanups = receipt["cleanups"]
        names = [c["name"] for c in cleanups]
        assert f"__main__.{name}" in names, cleanups
        assert all(c["ok"] for c in cleanups)
        assert receipt["end"]["how"] == "reraise"
        budget = receipt["budget"]
        # Its deadline, on the shared clock, where the supervisor put it.
        at = receipt["t0"] + budget["deadline_in"]
        assert at - supervisor["t0"] == pytest.approx(deadline, abs=0.01)
        assert receipt["left"] > 0
    assert "less=0.5" in backend["budget"]["source"]
    assert "less" not in app["budget"]["source"]
    assert [b["backend_pid"] for b in app["backends"]] == [backend["pid"]]


def test_a_hung_cleanup_at_the_bottom_is_cut_at_each_level_in_turn(
    trees: list[Tree], tmp_path: Path
) -> None:
    tree = start_tree(trees, tmp_path, BACKEND_SLOW="60")
    sent, ended, killed = kubelet(tree.child.proc, GRACE)
    assert not killed, "the orchestrator had to SIGKILL"
    assert session_members(tree.pid) == []
    backend, app, supervisor = tree.receipts()
    # The backend's own deadline cut its cleanup, before the app would have SIGKILLed it.
    cut = backend["t0"] + backend["end"]["t"] - supervisor["t0"]
    assert backend["end"]["how"] == "deadline"
    assert BACKEND_DEADLINE - 0.05 <= cut < BACKEND_DEADLINE + LATE
    assert "backend-cleanup-done" not in tree.marks()
    # The app finished its own cleanup and saw its backend end, within its own deadline.
    assert app["end"]["how"] == "reraise"
    assert all(c["ok"] for c in app["cleanups"])
    # The supervisor SIGKILLed nothing, and ended before its grace.
    assert supervisor["killed"] == []
    assert ended - sent < SUPERVISOR_KILL


def test_a_hung_cleanup_in_the_app_is_cut_by_its_deadline(
    trees: list[Tree], tmp_path: Path
) -> None:
    tree = start_tree(trees, tmp_path, APP_SLOW="60")
    sent, ended, killed = kubelet(tree.child.proc, GRACE)
    assert not killed
    assert session_members(tree.pid) == []
    backend, app, supervisor = tree.receipts()
    assert backend["end"]["how"] == "reraise"  # broken at the app's signal, done long before
    cut = app["t0"] + app["end"]["t"] - supervisor["t0"]
    assert app["end"]["how"] == "deadline"
    assert APP_DEADLINE - 0.05 <= cut < APP_DEADLINE + LATE
    assert supervisor["killed"] == []
    assert ended - sent < SUPERVISOR_KILL + LATE


STUBBORN = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
while True:
    time.sleep(1)
"""


def test_a_command_without_graceful_is_killed_at_the_grace_less_the_margin(
    trees: list[Tree], tmp_path: Path
) -> None:
    tree = Tree(tmp_path, ["--grace", "3", "--drain", "1"], app=STUBBORN)
    trees.append(tree)
    sent, ended, killed = kubelet(tree.child.proc, 3.0)
    assert not killed
    assert tree.child.proc.returncode == -signal.SIGKILL
    (supervisor,) = tree.receipts()
    assert [k["t"] for k in supervisor["killed"]] == [pytest.approx(2.5, abs=0.05)]
    assert supervisor["ended"][0]["killed"] is True
    assert 2.5 <= ended - sent < 3.0


def test_the_readiness_file_goes_at_the_first_signal_and_the_command_still_runs(
    trees: list[Tree], tmp_path: Path
) -> None:
    ready = tmp_path / "ready"
    tree = Tree(tmp_path, ["--grace", "4", "--drain", "1.5", "--ready-file", str(ready)])
    trees.append(tree)
    wait_for_file(ready)
    assert ready.read_text() == "ready\n"
    tree.child.send(signal.SIGTERM)
    deadline = time.monotonic() + 1.0
    while ready.exists():  # bounded: the supervisor removes it as it takes the signal
        assert time.monotonic() < deadline, "the readiness file is still there"
        time.sleep(0.01)
    assert "app-cleanup-start" not in tree.marks()  # draining: nothing forwarded yet
    assert tree.child.finish(TIMEOUT) == -signal.SIGTERM
    assert not ready.exists()


def test_a_second_stop_signal_ends_the_drain_and_is_not_forwarded_twice(
    trees: list[Tree], tmp_path: Path
) -> None:
    tree = Tree(tmp_path, ["--grace", "30", "--drain", "20"])
    trees.append(tree)
    sent = time.monotonic()
    tree.child.send(signal.SIGTERM)
    tree.child.wait_for_stderr("draining 20 s")
    tree.child.send(signal.SIGTERM)
    assert tree.child.finish(TIMEOUT) == -signal.SIGTERM
    assert time.monotonic() - sent < 10
    _backend, app, supervisor = tree.receipts()
    assert supervisor["drain"]["ended_by"] == "second signal"
    assert [s["event"] for s in supervisor["signals"]] == [
        "received",
        "received",
        "forwarded",
    ]
    assert app["end"]["how"] == "reraise"  # one SIGTERM: the app's cleanups were not forced
    assert all(c["ok"] for c in app["cleanups"])


def test_systemd_gets_the_real_remaining_budget_and_never_kills(
    trees: list[Tree], tmp_path: Path
) -> None:
    """TimeoutStopSec=3 under a grace of 6 with a hung backend (4.8 s): EXTEND_TIMEOUT_USEC
    from the supervisor (the main PID) covers it; systemd never SIGKILLs."""
    notify = NotifySocket(tmp_path / "notify")
    try:
        tree = start_tree(trees, tmp_path, BACKEND_SLOW="60", NOTIFY_SOCKET=notify.path)
        sent, ended, killed, messages = systemd_stop(tree.child.proc, notify, 3.0)
    finally:
        notify.close()
    assert not killed, messages
    assert ended - sent > 3.0  # it needed the extension
    main = [(fields, at) for pid, fields, at in messages if pid == tree.pid]
    assert main, messages
    fields, at = main[0]
    assert fields["STOPPING"] == "1"
    # What was really left: until the SIGKILL at 5.5 s, plus the margin, counted from when the
    # supervisor took the signal (a moment after it was sent, longer on a busy machine).
    extend = int(fields["EXTEND_TIMEOUT_USEC"]) / 1e6
    assert extend <= SUPERVISOR_KILL + MARGIN
    assert at + extend >= sent + SUPERVISOR_KILL + MARGIN - 0.05
    assert session_members(tree.pid) == []


def test_nested_supervisors_compose(trees: list[Tree], tmp_path: Path) -> None:
    """An inner ``graceful run --grace 30`` under an outer ``--grace 4``: the inner one SIGKILLs
    its stubborn command at the outer's SIGKILL time less its margin (3.0 s)."""
    inner = [*GRACEFUL, "run", "--grace", "30", "--", PY, "-u", "-c", STUBBORN]
    app = f"import os; os.execvp({inner[0]!r}, {inner!r})"
    tree = Tree(tmp_path, ["--grace", "4"], app=app)
    trees.append(tree)
    sent, ended, killed = kubelet(tree.child.proc, 4.0)
    assert not killed
    inner_receipt, outer = tree.receipts()
    assert inner_receipt["who"] == "graceful run"
    assert inner_receipt["budget"]["inherited"].startswith("expect=3.5,file=")
    assert inner_receipt["budget"]["kill_at"] == pytest.approx(3.0, abs=0.1)
    assert outer["killed"] == []  # the inner one did it
    assert ended - sent < 3.5


# --- the library under a budget ------------------------------------------------------------------

PROGRAM = """
import os, sys, time, graceful
@graceful.register
def slow():
    time.sleep(60)
@graceful.main{args}
def main():
    print("ready", flush=True)
    while True:
        time.sleep(1)
main()
"""


def stop_once_ready(
    code: str, env: dict[str, str], before_signal: Optional[Callable[[], object]] = None
) -> tuple[int, str, str, float]:
    """Run ``code``, SIGTERM it after its "ready" line (and ``before_signal()``): (rc, stdout
    after it, stderr, seconds from the signal to its end)."""
    proc = subprocess.Popen(
        [PY, "-u", "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        if before_signal is not None:
            before_signal()
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=TIMEOUT)
        return proc.returncode, out, err, time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def run_program(env: dict[str, str], args: str = "") -> tuple[int, str, float]:
    """A graceful program with a hung cleanup, SIGTERMed once ready: (rc, stderr, seconds)."""
    rc, _, err, took = stop_once_ready(PROGRAM.format(args=args), env)
    return rc, err, took


def output(code: str, deadline: str = "") -> str:
    """What ``python -c code`` prints with ``GRACEFUL_DEADLINE=deadline`` (unset if empty)."""
    env = {k: v for k, v in os.environ.items() if k != "GRACEFUL_DEADLINE"}
    if deadline:
        env["GRACEFUL_DEADLINE"] = deadline
    proc = subprocess.run(
        [PY, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=TIMEOUT,
        check=True,
    )
    return proc.stdout


def test_a_default_timeout_fits_an_absolute_deadline() -> None:
    # at= is fixed before the program starts: a slow start eats into it, never past it.
    at = time.monotonic() + 6.0  # this process's share ends there; its own deadline 0.25 s before
    rc, err, took = run_program({"GRACEFUL_DEADLINE": f"at={at:.6f},less=4"})
    assert rc == -signal.SIGTERM, err
    assert "shutdown deadline of" in err
    assert took < 1.75 + LATE  # 6 - 4 - 0.25, less the start-up


def test_a_default_timeout_fits_a_deadline_published_at_the_stop(tmp_path: Path) -> None:
    deadline = tmp_path / "deadline"

    def publish() -> None:  # as graceful run does: after the program started, before the signal
        deadline.write_text(f"{time.monotonic() + 1.5:.6f}\n")

    rc, _, err, took = stop_once_ready(
        PROGRAM.format(args=""), {"GRACEFUL_DEADLINE": f"file={deadline}"}, publish
    )
    assert rc == -signal.SIGTERM, err
    assert "shutdown deadline of 1." in err  # 1.5 - 0.25, less the moment to the signal
    assert 1.0 < took < 1.25 + LATE


def test_an_explicit_timeout_wins_and_a_warning_says_it_does_not_fit() -> None:
    at = time.monotonic() + 3.0
    rc, err, took = run_program({"GRACEFUL_DEADLINE": f"at={at:.6f}"}, args="(timeout=4)")
    assert "explicit timeout=4 (drain=0) does not fit" in err
    assert rc == -signal.SIGTERM
    assert took >= 4.0


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("soon", "is not key=value"),
        ("at=tomorrow", "at='tomorrow' is not a number of seconds"),
        ("at=1,file=/x", "needs exactly one of at= and file="),
        ("less=1", "needs exactly one of at= and file="),
        ("file=relative/path", "file= must be an absolute path"),
        ("at=1", "lies"),  # one second after boot: long past
        ("at=nan", "is not a number of seconds"),
    ],
)
def test_a_bad_deadline_is_a_warning_and_the_program_keeps_its_own_timeout(
    value: str, says: str
) -> None:
    rc, err, took = run_program({"GRACEFUL_DEADLINE": value}, args="(timeout=1)")
    assert says in err
    assert "using its own 1 s" in err
    assert rc == -signal.SIGTERM
    assert 1.0 <= took < 1.0 + 2 * LATE + 1.0


def test_a_deadline_file_that_holds_no_time_is_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "deadline"
    path.write_text("soon\n")
    rc, err, _took = run_program({"GRACEFUL_DEADLINE": f"file={path}"}, args="(timeout=1)")
    assert "holds b'soon\\n', not a time in seconds" in err
    assert rc == -signal.SIGTERM


def test_a_fifo_named_as_the_deadline_file_never_blocks(tmp_path: Path) -> None:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    rc, err, took = run_program({"GRACEFUL_DEADLINE": f"file={path}"}, args="(timeout=1)")
    assert "is not a regular file" in err
    assert rc == -signal.SIGTERM
    assert took < 1.0 + 2 * LATE + 1.0


def test_no_budget_no_change() -> None:
    code = "import graceful; print(graceful.budget_remaining(7), graceful.deadline())"
    assert output(code).split() == ["7", "None"]


def test_budget_remaining_before_the_stop_is_what_a_server_should_be_given() -> None:
    code = "import graceful; print(graceful.budget_remaining(30), graceful.deadline())"
    deadline = "expect=5.5,less=0.5,file=/nonexistent/x"
    assert output(code, deadline).split() == ["4.75", "None"]


# --- the supervisor refuses a budget that cannot hold ------------------------------------------


@pytest.mark.parametrize(
    ("options", "env", "says"),
    [
        (["--grace", "6", "--drain", "6"], None, "--drain 6 leaves nothing of --grace 6"),
        (["--grace", "6", "--drain", "5.5"], None, "--drain 5.5 leaves nothing of --grace 6"),
        (["--grace", "0.3"], None, "--grace 0.3 is not longer than the margin (0.5 s"),
        (["--grace", "2", "--margin", "2"], None, "is not longer than the margin (2 s"),
        (["--grace", "6", "--timeout", "3"], None, "--grace and --timeout: give one"),
        (["--grace", "none"], None, "expected seconds such as 6 or 0.5"),
        (["--grace", "-1"], None, "seconds must be >= 0, got '-1'"),
        (["--grace", "inf"], None, "a budget is a finite number of seconds, got 'inf'"),
        (["--drain", "soon"], None, "expected seconds such as 6 or 0.5, got 'soon'"),
        (["--report", ""], None, "expected a file name"),
        ([], "soon", "GRACEFUL_DEADLINE='soon': 'soon' is not key=value"),
        ([], "at=1", "GRACEFUL_DEADLINE='at=1' lies in the past"),
        ([], "file=x", "file= must be an absolute path"),
    ],
)
def test_the_supervisor_refuses_a_budget_that_cannot_hold(
    options: list[str], env: str, says: str, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    full = {k: v for k, v in os.environ.items() if k != "GRACEFUL_DEADLINE"}
    if env is not None:
        full["GRACEFUL_DEADLINE"] = env
    started = time.monotonic()
    proc = subprocess.run(
        [*GRACEFUL, "run", *options, "--", PY, "-c", f"open({str(marker)!r}, 'w')"],
        capture_output=True,
        text=True,
        env=full,
        timeout=TIMEOUT,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert says in proc.stderr
    assert not marker.exists()
    assert time.monotonic() - started < TIMEOUT


def test_the_supervisor_refuses_a_deadline_file_that_holds_no_time(tmp_path: Path) -> None:
    path = tmp_path / "deadline"
    path.write_text("later")
    proc = subprocess.run(
        [*GRACEFUL, "run", "--", PY, "-c", "pass"],
        capture_output=True,
        text=True,
        env={**os.environ, "GRACEFUL_DEADLINE": f"file={path}"},
        timeout=TIMEOUT,
        check=False,
    )
    assert proc.returncode == 2
    assert "not a time in seconds" in proc.stderr


def test_spawn_passes_the_budget_a_level_down() -> None:
    code = """
        import subprocess, sys, graceful
        show = [sys.executable, "-c", "import os; print(os.environ['GRACEFUL_DEADLINE'])"]
        p = graceful.spawn(show, stdout=subprocess.PIPE, text=True)
        print(p.stdout.read().strip())
        p.wait()
        env = {"GRACEFUL_DEADLINE": "at=9"}
        q = graceful.spawn(show, stdout=subprocess.PIPE, text=True, env=env)
        print(q.stdout.read().strip())
        q.wait()
        """
    lines = output(code, "expect=3,less=0.5,file=/a,b").splitlines()
    assert lines == ["expect=3,less=1,file=/a,b", "at=9"]


def test_nothing_is_left_in_the_session_after_a_stop(trees: list[Tree], tmp_path: Path) -> None:
    tree = start_tree(trees, tmp_path, BACKEND_SLOW="60", APP_SLOW="60")
    members = session_members(tree.pid)
    assert len(members) >= 3  # supervisor, app, backend (and spawn's helpers)
    sent, ended, killed = kubelet(tree.child.proc, GRACE)
    assert not killed
    wait_dead(members, 1.0)
    backend, app, _supervisor = tree.receipts()
    assert backend["end"]["how"] == app["end"]["how"] == "deadline"
    assert ended - sent < SUPERVISOR_KILL + LATE
    assert sys.platform.startswith("linux")


@pytest.mark.parametrize("kind", ["flat", "main"])  # the two others cost a minute each
def test_a_signal_at_every_step_under_a_budget_ends_by_it(
    tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """test_every_step's sweep, with a budget to read and fit and a receipt to write: the new
    steps on the signal's way (``budget.fit``, the file read, the receipt) lose no signal."""
    import test_every_step as every_step

    deadline = tmp_path / "deadline"
    deadline.write_text(f"{time.monotonic() + 600:.6f}\n")
    report = tmp_path / "receipts.jsonl"
    monkeypatch.setenv("GRACEFUL_DEADLINE", f"expect=30,file={deadline}")
    monkeypatch.setenv("GRACEFUL_REPORT", str(report))
    every_step.test_a_signal_at_every_step_ends_by_it(tmp_path, kind)
    from graceful.testing import read_receipts

    receipts = read_receipts(report)
    assert len(receipts) > 20
    budgets = [r["budget"] for r in receipts if r["budget"] is not None]
    assert budgets, "no run fitted the budget"


SUPERVISED_STUBBORN = f"""
import subprocess, sys, time, graceful
backend = graceful.spawn(
    [sys.executable, "-u", "-c", {STUBBORN!r}], supervise=True, stdout=subprocess.PIPE, text=True
)
assert backend.stdout.readline() == "ready\\n"

@graceful.main
def main():
    print("ready", flush=True)
    while True:
        time.sleep(1)

main()
"""


def test_a_supervised_backend_is_killed_by_its_own_supervisor_a_level_earlier(
    trees: list[Tree], tmp_path: Path
) -> None:
    """``--grace 4``: the outer supervisor SIGKILLs at 3.5 s; the app's supervised backend gets
    the budget a level down (3.0 s) and its supervisor SIGKILLs the stubborn backend at its
    margin before that (2.5 s), before the app's own deadline (3.25 s) or its tracker would."""
    tree = Tree(tmp_path, ["--grace", "4"], app=SUPERVISED_STUBBORN)
    trees.append(tree)
    sent, ended, killed = kubelet(tree.child.proc, 4.0)
    assert not killed
    inner, app, outer = tree.receipts()
    assert (inner["who"], app["who"], outer["who"]) == ("graceful run", "graceful", "graceful run")
    assert "less=0.5" in inner["budget"]["inherited"]
    cut = inner["t0"] + inner["budget"]["kill_at"] - outer["t0"]
    assert cut == pytest.approx(2.5, abs=0.05)
    assert [k["t"] for k in inner["killed"]] == [pytest.approx(inner["budget"]["kill_at"], abs=0.1)]
    assert app["end"]["how"] == "reraise"
    assert outer["killed"] == []
    assert ended - sent < 3.5


def test_a_deadline_that_passed_by_the_signal_leaves_the_own_timeout(tmp_path: Path) -> None:
    """No file at the guard's entry (no stop yet); by the signal it holds a time already past:
    the program keeps its own timeout, and its timeline says why."""
    deadline = tmp_path / "deadline"
    timeline = tmp_path / "timeline.jsonl"
    code = f"""
import time, graceful
graceful.register(print, "cleanup ran", flush=True)
with graceful.guard():
    open({str(deadline)!r}, "w").write(f"{{time.monotonic() - 1:.6f}}\\n")
    print("ready", flush=True)
    time.sleep(60)
"""
    env = {"GRACEFUL_DEADLINE": f"file={deadline}", "GRACEFUL_TIMELINE": str(timeline)}
    rc, out, err, _ = stop_once_ready(code, env)
    assert rc == -signal.SIGTERM, err
    assert out == "cleanup ran\n"
    assert err == ""  # nothing to warn about at the entry: the stop had not begun
    records = [json.loads(line) for line in timeline.read_text().splitlines()]
    (budget,) = [r for r in records if r["event"] == "budget"]
    assert "the deadline passed" in budget["refused"]


def test_budget_remaining_during_the_stop_counts_down_to_the_deadline(tmp_path: Path) -> None:
    deadline = tmp_path / "deadline"
    code = """
    import time, graceful
    @graceful.register
    def show():
        print(round(graceful.deadline() - time.monotonic(), 1), graceful.budget_remaining() > 4)
    @graceful.main
    def main():
        print("ready", flush=True)
        time.sleep(60)
    main()
    """
    rc, out, err, _ = stop_once_ready(
        code,
        {"GRACEFUL_DEADLINE": f"file={deadline}"},
        lambda: deadline.write_text(f"{time.monotonic() + 5:.6f}"),
    )
    assert rc == -signal.SIGTERM, err
    left, more_than_4 = out.split()
    assert 4.0 < float(left) <= 4.75
    assert more_than_4 == "True"


LEAVES_A_DAEMON = """
import os, signal, sys, time
if os.fork() == 0:  # the daemon: its parent exits at once, the supervisor adopts it
    if os.fork() == 0:
        signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
        print("ready", flush=True)
        time.sleep(60)
        os._exit(1)
    os._exit(0)
os.wait()
time.sleep(60)
"""


def test_the_receipt_says_who_was_told_to_stop_without_a_budget(
    trees: list[Tree], tmp_path: Path
) -> None:
    """``--report`` and ``--ready-file`` alone: the old countdown, and a receipt of it."""
    ready = tmp_path / "ready"
    tree = Tree(tmp_path, ["--ready-file", str(ready)], app=LEAVES_A_DAEMON)
    trees.append(tree)
    wait_for_file(ready)
    tree.child.send(signal.SIGTERM)
    assert tree.child.finish(TIMEOUT) == -signal.SIGTERM
    assert not ready.exists()
    (receipt,) = tree.receipts()
    events = [(s["event"], s["signal"]) for s in receipt["signals"]]
    assert events[:2] == [("received", "SIGTERM"), ("forwarded", "SIGTERM")]
    assert ("told", "SIGTERM") in events  # the adopted daemon
    assert receipt["budget"]["kill_at"] == pytest.approx(8.0)
    assert receipt["budget"]["passed_down"] is None
    roles = sorted(e["role"] for e in receipt["ended"])
    assert roles == ["command", "orphan"], receipt


@pytest.mark.parametrize("option", ["--ready-file", "--report"])
def test_a_fifo_named_as_a_file_of_the_supervisor_never_blocks(option: str, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    proc = subprocess.run(
        [*GRACEFUL, "run", option, str(fifo), "--", PY, "-c", "print('ran')"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "ran\n"
    assert "No such device or address" in proc.stderr


def test_graceful_shutdown_from_a_servers_hook_fits_the_budget(tmp_path: Path) -> None:
    """uvicorn's lifespan, gunicorn's on_exit: ``graceful.shutdown()`` with no guard entered
    fits its deadline to the budget too (here 1.25 s, not its own 5 s)."""
    deadline = tmp_path / "deadline"
    code = f"""
import time, graceful
graceful.register(time.sleep, 60)  # hung
open({str(deadline)!r}, "w").write(f"{{time.monotonic() + 1.5:.6f}}")  # the stop began above
graceful.shutdown()
"""
    started = time.monotonic()
    proc = subprocess.run(
        [PY, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "GRACEFUL_DEADLINE": f"file={deadline}"},
        timeout=TIMEOUT,
        check=False,
    )
    assert proc.returncode == -signal.SIGTERM, proc.stderr
    assert "shutdown deadline of 1.2" in proc.stderr
    assert "after graceful.shutdown()" in proc.stderr
    assert time.monotonic() - started < 5.0


def test_the_warning_comes_once_however_many_guards_arm() -> None:
    code = """
import graceful
for _ in range(3):
    with graceful.guard(timeout=4):
        with graceful.guard(timeout=4):
            pass
graceful.register(print, "cleanup ran")  # the exit's own guard arms once more
"""
    proc = subprocess.run(
        [PY, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "GRACEFUL_DEADLINE": f"at={time.monotonic() + 3:.6f}"},
        timeout=TIMEOUT,
        check=True,
    )
    assert proc.stdout == "cleanup ran\n"
    assert proc.stderr.count("does not fit") == 1, proc.stderr


def test_read_receipts_refuses_a_line_that_is_not_a_receipt(tmp_path: Path) -> None:
    from graceful.testing import read_receipts

    path = tmp_path / "receipts.jsonl"
    assert read_receipts(path) == []
    path.write_text('{"who": "graceful"}\n\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"receipts.jsonl:3: not a JSON object: '\[1, 2\]'"):
        read_receipts(path)
    path.write_text('{"who": "graceful"}\n{"who": \n')
    with pytest.raises(ValueError, match=r"receipts.jsonl:2: not a JSON receipt"):
        read_receipts(path)


def test_an_unusable_budget_is_not_passed_on_and_a_supervised_spawn_still_starts() -> None:
    code = """
    import subprocess, sys, graceful
    show = [sys.executable, "-c", "import os; print(os.environ.get('GRACEFUL_DEADLINE'))"]
    for supervise in (False, True):
        p = graceful.spawn(show, stdout=subprocess.PIPE, text=True, supervise=supervise)
        print(p.stdout.read().strip(), p.wait())
    """
    assert output(code, "soon").splitlines() == ["None 0", "None 0"]
