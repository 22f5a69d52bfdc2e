"""Issue 14: the pytest plugin, tested with pytest's own pytester: user tests in a fresh directory.

The plugin is loaded the way users get it: through the ``pytest11`` entry point of the installed
package, not with ``-p``.
"""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pytest

from graceful.testing._launcher import stat

pytest_plugins = ["pytester"]

PROGRAMS = Path(__file__).parent / "testing_programs"


@pytest.fixture
def programs(pytester: pytest.Pytester) -> Path:
    """The test programs, copied next to the user's tests."""
    for name in ("service.py", "fake_timeline.py", "daemonize.py"):
        shutil.copy(PROGRAMS / name, pytester.path / name)
    return pytester.path


def test_a_user_test_passes(pytester: pytest.Pytester, programs: Path) -> None:
    pytester.makepyfile(
        """
        import re, signal, urllib.request

        def test_service_ends_well(shutdown):
            app = shutdown.start(script="service.py", ready=re.compile(r"listening on port (\\d+)"))
            port = app.ready_match.group(1)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
                assert response.status == 200
            result = app.stop(signal.SIGTERM)
            result.died_by(signal.SIGTERM).no_orphans().ended_within(2)
            result.cleanups_ran(["flush_stats", "close_server"])

        def test_run_in_one_call(shutdown):
            result = shutdown.run(script="fake_timeline.py", args=["close_db"], ready="ready")
            result.died_by("TERM").cleanups_ran(["close_db"])
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_a_failing_user_test_says_what_went_wrong(
    pytester: pytest.Pytester, programs: Path
) -> None:
    pytester.makepyfile(
        """
        import signal

        PROGRAM = '''
        import os, signal, subprocess, sys, time
        subprocess.Popen(["sleep", "300"])
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
        print("connection refused: db", file=sys.stderr)
        print("ready")
        time.sleep(60)
        '''

        def test_dies_by_sigterm(shutdown):
            result = shutdown.run(code=PROGRAM, ready="ready")
            result.died_by(signal.SIGTERM)

        def test_cleanups(shutdown):
            result = shutdown.run(script="fake_timeline.py", args=["stop_worker!", "close_db"],
                                  ready="ready")
            result.cleanups_ran(["close_db", "stop_worker"])

        def test_never_ready(shutdown):
            shutdown.start(code="import sys; print('no database', file=sys.stderr); sys.exit(2)",
                           ready="ready")
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(
        [
            "*_ test_dies_by_sigterm _*",
            "E *AssertionError: expected the program to die by SIGTERM, but it exited with status "
            "143 (128 + SIGTERM): it caught the signal and exited instead of dying by it*",
            "E *program: * -u -c <code: import os, signal, * (6 lines)> (pid *)",
            "E *ended:   exited with status 143, * s after the first signal",
            "E *signals: SIGTERM to the process at +0.000 s",
            "E *timeline: no records*",
            "E *left alive (1, killed by the harness since):",
            "E *pid * `sleep 300`: re-parented to the harness's subreaper when its parent*",
            "E *stderr:",
            "E *| connection refused: db",
            "*_ test_cleanups _*",
            "E *AssertionError: expected cleanup 'stop_worker' to succeed, but stop_worker "
            "failed: ValueError: boom",
            "E *timeline (4 records, from $GRACEFUL_TIMELINE):",
            "E *+0.000 s  [[]*]  signal SIGTERM",
            "E *+0.*s  [[]*]  cleanup close_db: ok (0.000 s)",
            "E *+0.*s  [[]*]  cleanup stop_worker: FAILED: ValueError: boom (0.000 s)",
            "E *+0.*s  [[]*]  end: reraise SIGTERM, total 0.* s",
            "E *left alive: nothing",
            "*_ test_never_ready _*",
            "E *graceful.testing.NotReady: the program ended before a line equal to "
            "'ready' on stdout or stderr appeared",
            "E *ended:   exited with status 2, * s after it started (no signal was sent)",
            "E *| no database",
        ]
    )
    # The harness's own frames are hidden: the traceback ends in the user's test.
    assert "_result.py" not in result.stdout.str()
    assert "_program.py" not in result.stdout.str()


def test_the_fixture_kills_what_a_test_left_running(
    pytester: pytest.Pytester, programs: Path
) -> None:
    pytester.makepyfile(
        """
        import re
        import graceful.testing

        def test_forgets_to_stop(shutdown):
            a = shutdown.start(script="daemonize.py", args=["--wait"], ready="ready")
            b = graceful.testing.start(code="import time; print('up'); time.sleep(60)", ready="up")
            daemon = re.findall(r"daemon (\\d+)", a.stdout)[0]
            with open("pids", "w") as f:
                f.write(f"{a.pid} {daemon} {b.pid}")
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    for pid in map(int, (pytester.path / "pids").read_text().split()):
        info = stat(pid)
        assert info is None or info["state"] in ("Z", "X"), f"pid {pid} was left: {info}"


def test_the_plugin_is_inert_until_used(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import signal, sys, threading

        def test_nothing_loaded():
            assert "graceful.testing.plugin" in sys.modules  # loaded by the entry point
            assert [m for m in sys.modules if m.startswith("graceful.testing.")] == [
                "graceful.testing.plugin"
            ]
            assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
            assert signal.getsignal(signal.SIGCHLD) == signal.SIG_DFL
            assert threading.active_count() == 1
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--trace-config")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*graceful*graceful/testing/plugin.py*"])


def test_the_fixture_is_listed_and_can_be_disabled(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_uses(shutdown): pass")
    fixtures = pytester.runpytest("--fixtures", "-p", "no:cacheprovider")
    fixtures.stdout.fnmatch_lines(["shutdown -- *plugin.py:*", "    Start programs, signal them*"])
    disabled = pytester.runpytest("-p", "no:graceful", "-p", "no:cacheprovider")
    disabled.assert_outcomes(errors=1)
    disabled.stdout.fnmatch_lines(["*fixture 'shutdown' not found*"])


def test_signal_module_untouched_in_the_test_process(shutdown: object) -> None:
    """Using the fixture changes nothing in the process that runs the tests."""
    assert signal.getsignal(signal.SIGCHLD) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_the_readme_example_passes(pytester: pytest.Pytester) -> None:
    """README.md's "Testing your shutdown": its service and its test, verbatim, pass."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("## Testing your shutdown", 1)[1].split("\n## ", 1)[0]
    blocks = [b.split("```", 1)[0] for b in section.split("```python\n")[1:]]
    files = {b.splitlines()[0].removeprefix("# "): b for b in blocks}  # "# service.py" first
    assert sorted(files) == ["service.py", "test_bank.py", "test_service.py"]
    del files["test_bank.py"]  # the sweep's: test_testing_sweep.py runs it
    for name, text in files.items():
        (pytester.path / name).write_text(text)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
