"""Issue 14: graceful.testing against real programs, real signals and real process trees.

The ``shutdown`` fixture comes from graceful's own pytest plugin (the ``pytest11`` entry point of
the installed package). The timeline reader is tested with tests/testing_programs/fake_timeline.py,
which writes the documented records itself.
"""

from __future__ import annotations

import os
import pickle
import re
import signal
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest

import graceful.testing
from backends_support import wait_dead
from graceful.testing import NotReady, Shutdown, ShutdownResult, start
from graceful.testing._launcher import stat
from helpers import TIMEOUT, Child

PROGRAMS = Path(__file__).parent / "testing_programs"

MAIN = """
import time, graceful
@graceful.main(OPTIONS)
def main():
    graceful.register(print, "cleanup ran")
    print("ready")
    time.sleep(60)
main()
"""


def main_program(options: str = "") -> str:
    return MAIN.replace("(OPTIONS)", f"({options})" if options else "")


def gone(pid: int, starttime: int) -> bool:
    """That very process no longer exists (its PID may belong to someone else by now)."""
    now = stat(pid)
    return now is None or now["starttime"] != starttime or now["state"] in ("Z", "X")


def failure(check: object) -> str:
    """The message of the AssertionError that ``check()`` raises."""
    with pytest.raises(AssertionError) as info:
        check()  # type: ignore[operator]
    return str(info.value)


# --- how it ended -------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", ["TERM", "SIGINT", signal.SIGHUP, 3], ids=str)
def test_main_program_dies_by_the_signal(shutdown: Shutdown, sig: object) -> None:
    result = shutdown.run(code=main_program(), ready="ready", signal=sig)
    result.died_by(sig).no_orphans().ended_within(2)  # type: ignore[arg-type]
    assert result.signal == graceful.testing._result.to_signal(sig)  # type: ignore[arg-type]
    assert result.exit_code is None
    assert result.stdout == "ready\ncleanup ran\n"
    assert [s.signal for s in result.signals_sent] == [result.signal]
    assert result.signals_sent[0].at == 0.0
    assert result.signals_sent[0].delivered
    assert 0 <= result.elapsed < 2


def test_exit_instead_of_reraise_is_named_in_the_failure(shutdown: Shutdown) -> None:
    result = shutdown.run(code=main_program('on_signal="exit"'), ready="ready")
    result.exited_with(143)
    message = failure(lambda: result.died_by(signal.SIGTERM))
    assert message.startswith(
        "expected the program to die by SIGTERM, but it exited with status 143 (128 + SIGTERM)"
    )
    assert "ended:   exited with status 143" in message
    assert "  | cleanup ran" in message  # the stdout tail
    assert "expected exit status 0, but it exited with 143" in failure(
        lambda: result.exited_with(0)
    )


def test_guard_and_asyncio_programs(shutdown: Shutdown) -> None:
    guarded = shutdown.start(
        code="""
        import time, graceful
        with graceful.guard() as g:
            g.register(print, "block cleanup")
            print("ready")
            time.sleep(60)
        """,
        ready="ready",
    )
    asynchronous = shutdown.start(
        code="""
        import asyncio, graceful

        async def serve():
            try:
                print("ready")
                await asyncio.sleep(60)
            finally:
                print("task unwound")

        @graceful.main
        def main():
            graceful.register(print, "cleanup after the loop")
            asyncio.run(serve())

        main()
        """,
        ready="ready",
    )
    guarded.stop().died_by(signal.SIGTERM)
    result = asynchronous.stop("INT").died_by("INT").no_orphans()
    assert guarded.result is not None
    assert guarded.result.stdout == "ready\nblock cleanup\n"
    assert result.stdout == "ready\ntask unwound\ncleanup after the loop\n"


def test_a_program_that_ends_by_itself(shutdown: Shutdown) -> None:
    result = shutdown.run(
        code="import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)", signal=None
    )
    result.exited_with(3).no_orphans().ended_within(5)
    assert (result.stdout, result.stderr, result.signals_sent) == ("out\n", "err\n", ())
    assert "no signal was sent" in result.report()
    assert "died by SIGTERM" not in failure(lambda: result.died_by("TERM"))


def test_send_then_wait(shutdown: Shutdown) -> None:
    program = shutdown.start(
        code="""
        import signal, sys, time
        signal.signal(signal.SIGUSR1, lambda *a: sys.exit(7))
        print("ready")
        time.sleep(60)
        """,
        ready="ready",
    )
    assert program.running
    assert program.send("USR1") is True
    result = program.wait()
    result.exited_with(7).ended_within(2)
    assert not program.running
    assert program.send("USR1") is False
    assert program.stop() is result  # ended: the same result, nothing sent


# --- readiness ------------------------------------------------------------------------------


def test_ready_regex_on_stderr_gives_the_match(shutdown: Shutdown) -> None:
    program = shutdown.start(
        code="""
        import sys, time
        print("starting")
        print("listening on port 8123", file=sys.stderr)
        time.sleep(60)
        """,
        ready=re.compile(r"port (\d+)"),
    )
    assert program.ready_match is not None
    assert program.ready_match.group(1) == "8123"
    assert program.stderr == "listening on port 8123\n"
    result = program.stop().died_by("TERM")
    assert result.stdout == "starting\n"  # stdout and stderr are read apart: compare at the end


def test_exact_line_timeout_kills_and_hints(shutdown: Shutdown) -> None:
    with pytest.raises(NotReady) as info:
        shutdown.start(
            code="import time; print('almost ready'); time.sleep(60)",
            ready="ready",
            ready_timeout=0.3,
        )
    message = str(info.value)
    assert message.startswith(
        "a line equal to 'ready' on stdout or stderr did not appear within 0.3 s; "
        "the harness killed the program\nhint: the stdout line 'almost ready' is close to 'ready'"
    )
    result = info.value.result
    assert result is not None
    assert result.timed_out
    assert result.returncode == -signal.SIGKILL
    assert "still running 0.3 s after the start; the harness SIGKILLed it" in message
    copy = pickle.loads(pickle.dumps(info.value))
    assert str(copy) == message
    assert copy.result == result


def test_the_near_miss_hint_judges_whole_lines(shutdown: Shutdown, tmp_path: Path) -> None:
    """Issue 23, defect 4: a traceback whose path contains the ready string is no near miss."""
    where = tmp_path / "ready_app"
    where.mkdir()
    (where / "app.py").write_text("raise SystemExit(f'failed in {__file__}')\n")
    with pytest.raises(NotReady) as info:
        shutdown.start(script=where / "app.py", ready="ready")
    assert "ready_app/app.py" in str(info.value)
    assert "hint:" not in str(info.value)
    for line, hint in [
        ("INFO:root: ready", True),
        ("ready on port 8000", True),
        ("Ready ", True),
        ("  File '/srv/ready/app.py', line 3", False),
        ("already", False),
        ("readying", False),
    ]:
        code = f"import sys; print({line!r}); sys.exit(1)"
        with pytest.raises(NotReady) as info:
            shutdown.start(code=code, ready="ready")
        assert ("hint: the stdout line" in str(info.value)) is hint, line


def test_long_arguments_are_shortened_in_the_middle(shutdown: Shutdown, tmp_path: Path) -> None:
    """Issue 23, defect 3: a long argument keeps its start and its end, a snippet its first line."""
    deep = tmp_path / ("d" * 70)
    deep.mkdir()
    (deep / "writer.py").write_text("import sys; sys.exit(2)\n")
    result = shutdown.run(script=deep / "writer.py", args=["raise"], signal=None)
    shown = result.report().splitlines()[0]
    assert re.fullmatch(r"program: \S+ -u /tmp/\S*\.\.\.d+/writer\.py raise \(pid \d+\)", shown), (
        shown
    )
    assert len(shown.split()[3]) == 60
    result = shutdown.run(code="\n\nimport sys\nsys.exit(2)\n", signal=None)
    assert " -c <code: import sys (2 lines)> (pid " in result.report().splitlines()[0]


def test_ended_before_ready(shutdown: Shutdown) -> None:
    with pytest.raises(NotReady) as info:
        shutdown.start(
            code="import sys; print('boom', file=sys.stderr); sys.exit(3)", ready="ready"
        )
    message = str(info.value)
    assert message.startswith("the program ended before a line equal to 'ready'")
    assert "exited with status 3" in message
    assert "  | boom" in message
    assert info.value.result is not None
    assert info.value.result.exit_code == 3


def test_ready_file(shutdown: Shutdown, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    program = shutdown.start(
        code=f"import time; open({str(ready)!r}, 'w').close(); time.sleep(60)", ready_file=ready
    )
    assert ready.exists()
    program.stop().died_by("TERM")
    with pytest.raises(FileExistsError, match="remove it first"):
        shutdown.start(code="pass", ready_file=ready)
    with pytest.raises(NotReady, match=r"the file '.*never' did not appear within 0\.2 s"):
        shutdown.start(
            code="import time; time.sleep(60)", ready_file=tmp_path / "never", ready_timeout=0.2
        )


def test_wait_for_a_later_line(shutdown: Shutdown) -> None:
    program = shutdown.start(
        code="""
        import sys
        print("ready")
        for line in ["one", "two"]:
            print(line)
        sys.stdin.read()
        """,
        ready="ready",
    )
    assert program.wait_for(re.compile("t(wo)")).group(1) == "wo"
    with pytest.raises(NotReady, match="ended before a line equal to 'one'"):
        program.wait_for("one", timeout=5)  # already consumed; stdin is /dev/null: it ends


# --- several signals --------------------------------------------------------------------------

SLOW_CLEANUP = """
import sys, time, graceful
@graceful.main(OPTIONS)
def main():
    def slow():
        print("cleaning", flush=True)
        sys.stdin = open("/dev/null")
        time.sleep(30)
        print("cleaned")
    graceful.register(slow)
    print("ready")
    time.sleep(60)
main()
"""


def test_second_signal_after_a_line_forces_the_end(shutdown: Shutdown) -> None:
    code = SLOW_CLEANUP.replace("(OPTIONS)", "(timeout=None)")
    result = shutdown.run(code=code, ready="ready", signal=["INT", "INT"], after="cleaning")
    result.died_by("INT").ended_within(5)
    assert result.stdout == "ready\ncleaning\n"
    _first, second = result.signals_sent
    assert second.at > 0
    assert second.delivered
    assert second.signal == signal.SIGINT


def test_signals_spaced_by_an_interval(shutdown: Shutdown) -> None:
    result = shutdown.run(
        code="""
        import signal, time
        signal.signal(signal.SIGUSR1, lambda *a: print("usr1"))
        print("ready")
        while True:
            time.sleep(60)
        """,
        ready="ready",
        signal=["USR1", "TERM"],
        interval=0.2,
    )
    result.died_by("TERM")
    assert result.signals_sent[1].at >= 0.2


def test_no_more_signals_once_it_ended(shutdown: Shutdown) -> None:
    result = shutdown.run(
        code=main_program(), ready="ready", signal=["TERM", "TERM"], after="never printed"
    )
    result.died_by("TERM")
    assert len(result.signals_sent) == 1


# --- timing -------------------------------------------------------------------------------------


def test_ended_within_fails_with_the_time_taken(shutdown: Shutdown) -> None:
    code = SLOW_CLEANUP.replace("time.sleep(30)", "time.sleep(0.3)").replace("(OPTIONS)", "")
    result = shutdown.run(code=code, ready="ready")
    result.died_by("TERM").ended_within(5)
    message = failure(lambda: result.ended_within(0.1))
    match = re.match(
        r"expected the program to end within 0\.1 s of the first signal; took (\d+\.\d+) s",
        message,
    )
    assert match, message
    # The time counts from just before kill(): the 0.3 s cleanup cannot start before it (when
    # it counted from just after, a run measured 0.299 s). A loaded machine may take longer.
    assert 0.3 <= float(match.group(1)) < 5, message


def test_a_program_that_ignores_the_signal_is_killed_at_the_timeout(shutdown: Shutdown) -> None:
    result = shutdown.run(
        code="import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready');"
        " time.sleep(60)",
        ready="ready",
        timeout=0.3,
    )
    assert result.timed_out
    assert result.returncode == -signal.SIGKILL
    message = failure(lambda: result.died_by("TERM"))
    assert message.startswith("expected the program to die by SIGTERM, but it did not end in time")
    assert "ended:   still running 0.3 s after SIGTERM; the harness SIGKILLed it" in message
    assert "did not end in time" in failure(lambda: result.ended_within(10))


# --- what it leaves behind ------------------------------------------------------------------


def test_orphans_are_reported_then_killed(shutdown: Shutdown) -> None:
    result = shutdown.run(command=["sh", "-c", "sleep 300 & echo ready; wait"], ready="ready")
    result.died_by("TERM")
    (orphan,) = result.orphans
    assert orphan.cmdline == ("sleep", "300")
    assert "re-parented to the harness's subreaper" in orphan.found
    assert orphan.sid == orphan.pgid == result.pid
    assert gone(orphan.pid, orphan.starttime)
    message = failure(result.no_orphans)
    assert "expected no processes left alive, but the program left 1" in message
    assert (
        f"left alive (1, killed by the harness since):\n  pid {orphan.pid} `sleep 300`" in message
    )


def test_signal_to_the_group_leaves_nothing(shutdown: Shutdown) -> None:
    result = shutdown.run(
        command=["sh", "-c", "sleep 300 & echo ready; wait"], ready="ready", to="group"
    )
    result.died_by("TERM").no_orphans()
    assert "to the process group" in str(result.signals_sent[0])


def test_a_daemonized_grandchild_is_found(shutdown: Shutdown) -> None:
    program = shutdown.start(script=PROGRAMS / "daemonize.py", ready="ready")
    daemon = int(re.findall(r"daemon (\d+)", program.stdout)[0])
    result = program.stop()
    (orphan,) = result.orphans
    assert orphan.pid == daemon
    assert orphan.sid == orphan.pgid != result.pid
    assert "left the program's session (setsid: daemonized)" in orphan.found
    assert gone(orphan.pid, orphan.starttime)


def test_graceful_spawn_leaves_nothing(shutdown: Shutdown) -> None:
    result = shutdown.run(
        code="""
        import subprocess, time, graceful
        @graceful.main
        def main():
            graceful.spawn(["sleep", "300"])
            stubborn = [
                graceful.spawn(["sh", "-c", "trap '' TERM; echo up; exec sleep 300"],
                               timeout=0.2, stdout=subprocess.PIPE),
                graceful.spawn(["sh", "-c", "trap '' TERM; echo up; sleep 300"],
                               timeout=0.2, group=True, stdout=subprocess.PIPE),
            ]
            for proc in stubborn:
                proc.stdout.readline()  # the trap is in place
            print("ready")
            time.sleep(60)
        main()
        """,
        ready="ready",
    )
    result.died_by("TERM").no_orphans().ended_within(3)
    assert "still running 0.2 s after SIGTERM; sent SIGKILL" in result.stderr


def test_a_stranger_is_never_touched(shutdown: Shutdown) -> None:
    stranger = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        result = shutdown.run(
            command=["sh", "-c", f"sleep 300 & echo ready; echo {stranger.pid}; wait"],
            ready="ready",
        )
        assert [o.cmdline for o in result.orphans] == [("sleep", "300")]
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait(TIMEOUT)


def test_the_block_ending_by_an_exception_kills_everything() -> None:
    seen: dict[str, object] = {}

    def failing_test() -> None:
        with start(script=PROGRAMS / "daemonize.py", args=["--wait"], ready="ready") as program:
            seen["program"] = program
            seen["daemon"] = stat(int(re.findall(r"daemon (\d+)", program.stdout)[0]))
            raise KeyError("the test failed here")

    with pytest.raises(KeyError):
        failing_test()
    program, daemon = seen["program"], seen["daemon"]
    assert isinstance(program, graceful.testing.Program)
    assert isinstance(daemon, dict)
    assert program.result is not None
    assert program.result.returncode == -signal.SIGKILL
    assert gone(daemon["pid"], daemon["starttime"])


def test_a_killed_harness_takes_the_tree_with_it() -> None:
    harness = f"""
    import re, sys
    from graceful.testing import start
    program = start(script={str(PROGRAMS / "daemonize.py")!r}, args=["--wait"], ready="ready")
    daemon = re.search(r"daemon (\\d+)", program.stdout).group(1)
    print(program.pid, daemon, program._channel.proc.pid)  # the program, its daemon, the launcher
    print(program._timeline_path)
    print("ready")
    sys.stdin.read()
    """
    with Child(harness, stdin=True) as child:
        child.wait_for("ready")
        pids = [int(p) for p in child.lines[-3].split()]
        timeline = Path(child.lines[-2])
        assert timeline.exists()
        child.send(signal.SIGKILL)
        child.finish()
    wait_dead(pids, TIMEOUT)
    assert not timeline.exists()  # the launcher removed it: nobody else would


def test_a_group_kill_of_the_test_process_leaks_nothing() -> None:
    """Issue 23, defect 1: `timeout -s KILL 8 pytest` or a CI runner kills the test process's
    whole process group; the launcher is not in it, so it survives to kill the program's tree."""
    harness = f"""
    import re, sys
    from graceful.testing import start
    program = start(script={str(PROGRAMS / "daemonize.py")!r}, args=["--wait"], ready="ready")
    daemon = re.search(r"daemon (\\d+)", program.stdout).group(1)
    print(program.pid, daemon, program._channel.proc.pid)  # the program, its daemon, the launcher
    print(program._timeline_path)
    print("ready")
    sys.stdin.read()
    """
    with Child(harness, stdin=True, start_new_session=True) as child:
        child.wait_for("ready")
        pids = [int(p) for p in child.lines[-3].split()]
        timeline = Path(child.lines[-2])
        assert timeline.exists()
        os.killpg(child.pid, signal.SIGKILL)  # the whole group, as `timeout -s KILL` does
        child.finish()
    wait_dead(pids, TIMEOUT)
    assert not timeline.exists()


def test_no_signal_is_ignored_not_even_glibcs_own() -> None:
    """Issue 23, defect 2: glibc's posix_spawn left signals 32 and 33 ignored in the program."""
    result = graceful.testing.run(command=["grep", "^Sig", "/proc/self/status"], signal=None)
    fields = dict(line.split(":\t") for line in result.stdout.splitlines())
    assert fields["SigIgn"] == "0000000000000000", result.stdout
    assert fields["SigBlk"] == "0000000000000000", result.stdout


def test_the_program_starts_with_default_dispositions_and_no_blocked_signal() -> None:
    harness = f"""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])
    from graceful.testing import run
    run(code={main_program()!r}, ready="ready", signal="INT").died_by("INT")
    run(code={main_program()!r}, ready="ready", signal="TERM").died_by("TERM")
    print("ok")
    """
    with Child(harness) as child:
        assert child.finish() == 0, child.stderr
        assert child.lines == ["ok"]


# --- how programs are named -----------------------------------------------------------------


def test_script_module_command_and_args(shutdown: Shutdown, tmp_path: Path) -> None:
    (tmp_path / "echo_args.py").write_text("import sys; print(sys.argv[1:])\n")
    by_script = shutdown.run(script=tmp_path / "echo_args.py", args=["a", "b c"], signal=None)
    by_module = shutdown.run(module="echo_args", args=["x"], cwd=tmp_path, signal=None)
    by_command = shutdown.run(command="sh -c 'echo \"$0\"' hi", signal=None)
    assert by_script.stdout == "['a', 'b c']\n"
    assert by_module.stdout == "['x']\n"
    assert by_command.stdout == "hi\n"
    assert by_command.command == ("sh", "-c", 'echo "$0"', "hi")


def test_env_replaces_the_environment_but_the_timeline_is_always_set(shutdown: Shutdown) -> None:
    result = shutdown.run(
        code="import os; print(sorted(k for k in os.environ if k != 'LC_CTYPE'))",
        env={"ONLY": "1"},
        signal=None,
    )
    assert result.stdout == "['GRACEFUL_TIMELINE', 'ONLY', 'PYTHONUNBUFFERED']\n"


def test_the_web_service_example(shutdown: Shutdown) -> None:
    app = shutdown.start(
        script=PROGRAMS / "service.py", ready=re.compile(r"listening on port (\d+)")
    )
    assert app.ready_match is not None
    url = f"http://127.0.0.1:{app.ready_match.group(1)}/"
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        assert response.read() == b"hello\n"
    result = app.stop(signal.SIGTERM)
    result.died_by(signal.SIGTERM).no_orphans().ended_within(2)
    result.cleanups_ran(["flush_stats", "close_server"])
    assert result.stdout.splitlines()[1:] == ["stats flushed", "server closed"]
    assert '"GET / HTTP/1.1" 200' in result.stderr


# --- mistakes -----------------------------------------------------------------------------------


def test_mistakes_fail_at_the_call_and_say_what_to_do(shutdown: Shutdown) -> None:
    with pytest.raises(TypeError, match=r"exactly one of script=.*got none"):
        shutdown.start()
    with pytest.raises(TypeError, match=r"got \['script', 'code'\]"):
        shutdown.start(script="x.py", code="pass")
    with pytest.raises(FileNotFoundError, match=r"cannot start 'no-such-program-here'.*PATH"):
        shutdown.start(command=["no-such-program-here"])
    with pytest.raises(ValueError, match="unknown signal name 'NOPE'"):
        shutdown.run(code="pass", signal="NOPE")
    with pytest.raises(TypeError, match=r"a str .* or a compiled pattern"):
        shutdown.start(code="pass", ready=b"ready")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="merged by the kernel"):
        shutdown.run(code=main_program(), ready="ready", signal=["TERM", "TERM"])
    result = shutdown.run(code="pass", signal=None)
    with pytest.raises(TypeError, match=r"cleanups_ran\(\['close'\]\)"):
        result.cleanups_ran("close")


def test_the_public_names() -> None:
    for name in graceful.testing.__all__:
        assert getattr(graceful.testing, name) is not None
    assert graceful.testing.ShutdownResult is ShutdownResult
    assert set(graceful.testing.__all__) <= set(dir(graceful.testing))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        graceful.testing.nope  # type: ignore[attr-defined]  # noqa: B018


def test_import_graceful_does_not_import_the_harness() -> None:
    code = textwrap.dedent(
        """
        import sys, graceful, graceful.testing, graceful.testing.plugin
        print(sorted(m for m in sys.modules if m.startswith("graceful.testing")))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT, check=True
    ).stdout
    assert out == "['graceful.testing', 'graceful.testing.plugin']\n"
    out = subprocess.run(
        [sys.executable, "-c", "import sys, graceful; print('graceful.testing' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    ).stdout
    assert out == "False\n"
    assert os.environ.get("GRACEFUL_TIMELINE") is None
