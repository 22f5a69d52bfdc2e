"""Issue 23: ``sweep``, a signal at every line of the user's own code, each run checked.

Real programs, real signals: the tracer runs inside each program and signals its own process at
one line; the harness checks how every run ended.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import sys
import textwrap
from pathlib import Path

import pytest

import graceful.testing
from graceful.testing import Shutdown, ShutdownResult, SweepFailed, SweepRun

pytest_plugins = ["pytester"]

#: A sweep's time budget where every point must run, however busy the machine (each run is
#: bounded by its own timeout).
EVERY_POINT = 900.0

BANK = """\
import os, sqlite3
import graceful

DB = os.path.join(os.environ["GRACEFUL_SWEEP_DIR"], "bank.db")


@graceful.main
def main():
    db = sqlite3.connect(DB, isolation_level=None)
    db.execute("CREATE TABLE account (name TEXT PRIMARY KEY, balance INT)")
    db.execute("INSERT INTO account VALUES ('alice', 100), ('bob', 0)")
    for _ in range(3):
        BEGIN
        db.execute("UPDATE account SET balance = balance - 10 WHERE name = 'alice'")
        db.execute("UPDATE account SET balance = balance + 10 WHERE name = 'bob'")
        COMMIT
    db.close()


main()
"""


def bank(tmp_path: Path, transaction: bool) -> Path:
    text = BANK.replace("BEGIN", 'db.execute("BEGIN")' if transaction else "pass")
    text = text.replace("COMMIT", 'db.execute("COMMIT")' if transaction else "pass")
    (tmp_path / "bank.py").write_text(text)
    return tmp_path / "bank.py"


def money_is_kept(result: ShutdownResult, run: SweepRun) -> None:
    result.died_by("TERM").no_orphans()
    db = sqlite3.connect(os.path.join(run.dir, "bank.db"))
    try:
        (total,) = db.execute("SELECT sum(balance) FROM account").fetchone()
    except sqlite3.OperationalError:  # signalled before the table was made
        return
    finally:
        db.close()
    assert total in (None, 100), f"money appeared or vanished: the accounts hold {total}"


def test_a_half_written_transfer_is_found_and_named(shutdown: Shutdown, tmp_path: Path) -> None:
    script = bank(tmp_path, transaction=False)
    with pytest.raises(SweepFailed) as info:
        shutdown.sweep(script=script, where="main", check=money_is_kept, budget=EVERY_POINT)
    message = str(info.value)
    lines = message.splitlines()
    # Grouped by line: three failing runs (the loop ran it three times) read as one line.
    assert re.fullmatch(
        r"sweep: 3 of \d+ runs failed, at 1 line \(SIGTERM at each line of main\(\)\):", lines[0]
    )
    assert lines[1] == (
        "  bank.py:15 in main: "
        "`db.execute(\"UPDATE account SET balance = balance + 10 WHERE name = 'bob'\")`"
    )
    assert lines[2] == "      3 runs (#1, #2, #3; SIGTERM)"
    assert lines[3] == "      check said: money appeared or vanished: the accounts hold 90"
    assert lines[4] == 're-run one point: only="bank.py:15#1"'
    assert "signals: SIGTERM sent by the program to itself at +0.000 s" in message
    assert "timeline (2 records, from $GRACEFUL_TIMELINE):" in message
    result = info.value.result
    assert result is not None
    assert [r.point.id for r in result.failures] == [f"bank.py:15#{k}" for k in (1, 2, 3)]
    assert all(r.reached for r in result.runs)
    assert len(result.runs) == len(result.points)
    assert {p.line for p in result.points} >= set(range(9, 18)) - {13, 16}  # 3.9: no `pass`
    assert [p.k for p in result.points if p.line == 15] == [1, 2, 3]
    assert {p.function for p in result.points} == {"main"}

    # One point again, alone.
    with pytest.raises(SweepFailed) as info:
        shutdown.sweep(script=script, check=money_is_kept, only="bank.py:15#2")
    assert info.value.result is not None
    assert [r.point.id for r in info.value.result.runs] == ["bank.py:15#2"]

    # The fix: one transaction per transfer. Every line now keeps the money.
    fixed = shutdown.sweep(
        script=bank(tmp_path, transaction=True),
        where="main",
        check=money_is_kept,
        budget=EVERY_POINT,
    )
    assert not fixed.failures
    assert fixed.not_covered == []
    assert "not covered: nothing, every point ran" in fixed.summary()


GUARDED = """\
import graceful, time

def close():
    print("closed", flush=True)

with graceful.guard() as g:
    g.register(close)
    total = 0
    for i in range(4):
        total += i
    print("total", total, flush=True)
print("after the block", flush=True)
"""


def test_every_line_of_a_guarded_block_ends_by_the_signal(shutdown: Shutdown) -> None:
    seen: list[ShutdownResult] = []

    def check(result: ShutdownResult, run: SweepRun) -> None:
        seen.append(result)
        result.died_by("TERM").no_orphans().ended_within(5)
        registered = run.point.line > 7  # at line 7 the signal comes before register() runs
        assert result.stdout.count("closed") == registered, result.stdout

    result = shutdown.sweep(code=GUARDED, where=range(7, 12), check=check, budget=EVERY_POINT)
    assert len(seen) == len(result.runs) == len(result.points)
    ids = [p.id for p in result.points]
    assert ids == [  # in the order the lines first ran, each line's runs together
        "<string>:7#1", "<string>:8#1", "<string>:9#1", "<string>:9#2", "<string>:9#3",
        "<string>:9#4", "<string>:9#5", "<string>:10#1", "<string>:10#2", "<string>:10#3",
        "<string>:10#4", "<string>:11#1",
    ]  # fmt: skip
    assert result.points[0].source == "g.register(close)"
    assert result.points[0].function == "<module>"
    for shutdown_result in seen:
        assert [s.to for s in shutdown_result.signals_sent] == ["self"]
        assert "after the block" not in shutdown_result.stdout
    assert result.count_result is not None
    assert result.count_result.stdout.endswith("after the block\n")
    # The `with` line: its entry is a point. Its exit (the __exit__ call) is one only where the
    # interpreter checks for signals there (3.10); from 3.11 it does so inside __exit__ only.
    if sys.version_info[:2] != (3, 10):
        whole = shutdown.sweep(code=GUARDED, where=range(6, 7), check=check)
        assert [p.id for p in whole.points] == ["<string>:6#1"]
        return
    # 3.10: a signal there is real, and it escapes the guard (test_sweep_graceful.py's finding).
    with pytest.raises(SweepFailed) as info:
        shutdown.sweep(code=GUARDED, where=range(6, 7), check=check)
    assert info.value.result is not None
    assert [p.id for p in info.value.result.points] == ["<string>:6#1", "<string>:6#2"]
    assert [r.point.id for r in info.value.result.failures] == ["<string>:6#2"]


def test_where_a_file_a_range_or_a_function(shutdown: Shutdown, tmp_path: Path) -> None:
    (tmp_path / "helper.py").write_text("def helper():\n    x = 1\n    return x\n")
    (tmp_path / "app.py").write_text(
        "import helper\n\ndef work():\n    a = helper.helper()\n    return a\n\nwork()\n"
    )
    everything = shutdown.sweep(script=tmp_path / "app.py")
    assert {p.shown for p in everything.points} == {"app.py", "helper.py"}
    one_file = shutdown.sweep(script=tmp_path / "app.py", where="helper.py")
    assert [p.id for p in one_file.points] == ["helper.py:1#1", "helper.py:2#1", "helper.py:3#1"]
    lines = shutdown.sweep(script=tmp_path / "app.py", where="app.py:4-5")
    assert [p.id for p in lines.points] == ["app.py:4#1", "app.py:5#1"]
    function = shutdown.sweep(script=tmp_path / "app.py", where=["helper", "app.py:7"])
    assert [p.id for p in function.points] == ["app.py:7#1", "helper.py:2#1", "helper.py:3#1"]
    assert function.what == "SIGTERM at each line of helper(), app.py:7"


def test_several_signals_and_a_second_one(shutdown: Shutdown) -> None:
    code = """\
    import graceful

    @graceful.main
    def main():
        @graceful.register
        def close():
            x = 1
            print("closing", flush=True)
        y = 2
        return 0

    main()
    """
    both = shutdown.sweep(code=code, where="main", signal=("TERM", "INT"), budget=EVERY_POINT)
    assert sorted({r.signal for r in both.runs}) == [signal.SIGINT, signal.SIGTERM]
    assert len(both.runs) == 2 * len(both.points)

    def check(result: ShutdownResult, run: SweepRun) -> None:
        assert run.then == signal.SIGINT
        sent = [s.signal for s in result.signals_sent]
        if run.then_at is None:  # the program had ended before a second line ran
            assert sent == [signal.SIGTERM]
        else:
            assert sent == [signal.SIGTERM, signal.SIGINT]
            assert run.then_at in ("<string>:7", "<string>:8")
        assert result.signal in (signal.SIGTERM, signal.SIGINT)

    every = shutdown.sweep(code=code, where="main", then=("INT", "every"), check=check)
    assert {r.then_at for r in every.runs} >= {"<string>:7", "<string>:8"}
    after = shutdown.sweep(code=code, where="main", then=("INT", 8), check=check)
    assert {r.then_at for r in after.runs} <= {"<string>:8", None}

    def second_is_fatal(result: ShutdownResult, run: SweepRun) -> None:
        assert run.then_at is None, "a second signal came"

    with pytest.raises(SweepFailed) as info:
        shutdown.sweep(code=code, where="main", then="INT", check=second_is_fatal)
    assert "; SIGTERM; then SIGINT at <string>:7)" in str(info.value)


def test_threads_and_forks(shutdown: Shutdown) -> None:
    code = """\
    import os, threading
    import graceful

    def work():
        a = 1
        b = 2

    with graceful.guard():
        t = threading.Thread(target=work)
        t.start()
        t.join()
        pid = os.fork()
        if pid == 0:
            c = 3
            os._exit(0)
        os.waitpid(pid, 0)
    """
    result = shutdown.sweep(code=code, where="work")
    assert [p.id for p in result.points] == ["<string>:5#1", "<string>:6#1"]
    for run in result.runs:  # signalled in the thread: the main thread's guard ends it
        run.result.died_by("TERM")
    with pytest.raises(SweepFailed, match="ran no line to sweep"):
        shutdown.sweep(code=code, where=range(14, 16))  # only the child runs them: not traced


def test_bounded_by_max_points_and_budget(shutdown: Shutdown) -> None:
    code = """\
    total = 0
    for i in range(200):
        total += i
    print(total)
    """
    capped = shutdown.sweep(code=code, max_points=10)
    assert len(capped.points) == 1 + 201 + 200 + 1
    assert len(capped.runs) == 10
    lines = {(r.point.line, r.point.k) for r in capped.runs}
    assert {1, 2, 3, 4} <= {line for line, _ in lines}  # every line at least once
    assert len(capped.not_covered) == len(capped.points) - 10
    summary = capped.summary()
    assert "393 points (beyond max_points=10); lines never signalled: none" in summary
    try:
        tight = shutdown.sweep(code=code, budget=2.0, jobs=1)
    except SweepFailed as exc:  # a machine so busy that the counting run took the whole budget
        assert "the budget of 2 s ran out before the first run" in str(exc)  # noqa: PT017  (either outcome bounds it)
    else:  # 403 runs cannot fit in 2 s on one core
        assert len(tight.runs) < len(tight.points)
        assert re.search(r"not covered: \d+ points \((beyond what the budget of 2 s allows|past "
                         r"the time budget)\)", tight.summary())  # fmt: skip


def test_the_program_runs_as_it_would_without_the_sweep(shutdown: Shutdown, tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(
        "import os\nos.environ['REAL_SITECUSTOMIZE'] = '1'\n"
    )
    (tmp_path / "show.py").write_text(
        textwrap.dedent(
            """\
            import os, signal, sys
            print(sys.argv, sys.path[0], __file__)
            print(os.environ.get("PYTHONPATH"), os.environ.get("REAL_SITECUSTOMIZE"))
            print([k for k in os.environ if k.startswith("GRACEFUL_SWEEP")])
            print(sorted(sys.modules)[:0], "sitecustomize" in sys.modules)
            print([n for n in range(1, 65) if n not in (9, 19, 32, 33)
                   and signal.getsignal(n) not in (signal.SIG_DFL, signal.default_int_handler)])
            print(sys.gettrace(), sys.getprofile())
            """
        )
    )
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    plain = shutdown.run(script=tmp_path / "show.py", args=["a"], env=env, signal=None)
    swept = shutdown.sweep(script=tmp_path / "show.py", args=["a"], env=env, where="show.py:2")
    assert swept.count_result is not None
    counted = swept.count_result.stdout.splitlines()
    expected = plain.stdout.splitlines()
    assert counted[0] == expected[0]
    assert counted[0].endswith(f" {tmp_path} {tmp_path / 'show.py'}")
    assert counted[1] == expected[1] == f"{tmp_path} 1"  # PYTHONPATH is the user's again
    assert counted[2] == "['GRACEFUL_SWEEP_DIR']"  # the run's own directory, nothing else
    assert counted[3] == expected[3] == "[] True"  # the real sitecustomize ran, in both
    assert counted[4] == expected[4]  # the same signal dispositions
    if sys.version_info >= (3, 12):  # before, sys.gettrace() shows the tracer
        assert counted[5] == expected[5] == "None None"


def test_a_module_and_a_command(shutdown: Shutdown, tmp_path: Path) -> None:
    package = tmp_path / "app"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text("from app import work\nwork.run()\n")
    (package / "work.py").write_text("def run():\n    x = 1\n    return x\n")
    by_module = shutdown.sweep(module="app", cwd=tmp_path, where="run")
    assert [p.id for p in by_module.points] == ["app/work.py:2#1", "app/work.py:3#1"]
    by_command = shutdown.sweep(command=[sys.executable, str(package / "work.py")], where="work.py")
    assert [p.id for p in by_command.points] == ["work.py:1#1"]  # the def line; run() is not called
    for run in by_module.runs + by_command.runs:
        run.result.died_by("TERM")


def test_each_run_has_its_own_directory(shutdown: Shutdown) -> None:
    code = "import os, sys\nopen(os.path.join(sys.argv[1], 'mark'), 'w').close()\nx = 1\n"
    dirs: list[str] = []

    def check(result: ShutdownResult, run: SweepRun) -> None:
        result.died_by("TERM")
        assert result.command[-1] == run.dir
        assert os.path.exists(os.path.join(run.dir, "mark")) == (run.point.line == 3)
        dirs.append(run.dir)

    swept = shutdown.sweep(code=code, args=[graceful.testing.RUN_DIR], check=check)
    assert len(set(dirs)) == len(dirs) == len(swept.runs) == 3
    assert not any(os.path.exists(d) for d in dirs)  # removed after each check


def test_refusals_say_what_to_do(shutdown: Shutdown, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"SIGKILL: it cannot be caught"):
        shutdown.sweep(code="pass", signal="KILL")
    with pytest.raises(ValueError, match="signal= is empty"):
        shutdown.sweep(code="pass", signal=())
    with pytest.raises(TypeError, match=r"exactly one of script="):
        shutdown.sweep(code="pass", script="x.py")
    with pytest.raises(ValueError, match="neither a file"):
        shutdown.sweep(code="pass", where="not a name")
    with pytest.raises(FileNotFoundError, match=r"no file 'nope\.py'"):
        shutdown.sweep(code="pass", where="nope.py:3")
    with pytest.raises(ValueError, match=r"only='x': a point as a failure names it"):
        shutdown.sweep(code="pass", only="x")
    with pytest.raises(ValueError, match="max_points= must be at least 1"):
        shutdown.sweep(code="pass", max_points=0)
    with pytest.raises(ValueError, match=r"a line is 42 or 'app.py:42', or 'every'"):
        shutdown.sweep(code="pass", then=("INT", "later"))
    with pytest.raises(ValueError, match=r"command= has no \.py file"):
        shutdown.sweep(command=["sleep", "0"])
    with pytest.raises(SweepFailed, match=r"the budget of 0\.001 s ran out before the first"):
        shutdown.sweep(code="x = 1\n", budget=0.001)
    with pytest.raises(SweepFailed, match=r"the counting run .* ran no line to sweep"):
        shutdown.sweep(code="x = 1\n", where=range(5, 6))


def test_a_user_test_in_under_ten_lines(pytester: pytest.Pytester, tmp_path: Path) -> None:
    bank(pytester.path, transaction=False)
    pytester.makepyfile(
        test_bank="""
        import contextlib, os, sqlite3

        def test_sigterm_anywhere_keeps_the_money(shutdown):
            def check(result, run):
                result.died_by("TERM")
                with contextlib.closing(sqlite3.connect(os.path.join(run.dir, "bank.db"))) as db:
                    total = db.execute("SELECT sum(balance) FROM account").fetchone()[0]
                assert total == 100, f"money appeared or vanished: {total}"
            shutdown.sweep(script="bank.py", where="bank.py:12-16", check=check)
        """
    )
    outcome = pytester.runpytest("-p", "no:cacheprovider")
    outcome.assert_outcomes(failed=1)
    outcome.stdout.fnmatch_lines(
        [
            "E *SweepFailed: sweep: 3 of * runs failed, at 1 line (SIGTERM at each line of "
            "bank.py:12-16):",
            'E *  bank.py:15 in main: `db.execute("UPDATE account SET balance = balance + 10 *',
            "E *      check said: money appeared or vanished: 90",
        ]
    )


def test_the_public_names() -> None:
    assert graceful.testing.sweep is graceful.testing.Shutdown.sweep
    assert graceful.testing.RUN_DIR == "{run_dir}"
    assert issubclass(graceful.testing.SweepFailed, AssertionError)
    assert sys.modules["graceful.testing._tracer"] is not None  # the harness imports it


def test_the_docs_worked_example_finds_the_bug_and_passes_once_fixed(
    pytester: pytest.Pytester,
) -> None:
    docs = (Path(__file__).parent.parent / "docs" / "testing.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", docs, re.DOTALL)
    program = next(b for b in blocks if b.startswith("# bank.py: move"))
    test = next(b for b in blocks if b.startswith("# test_bank.py"))
    fix = next(b for b in blocks if 'db.execute("BEGIN")' in b)
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert f"```python\n{test}```" in readme  # the README shows the same test
    pytester.makepyfile(bank=program, test_bank=test)
    outcome = pytester.runpytest("-p", "no:cacheprovider")
    outcome.assert_outcomes(failed=1)
    shown = re.findall(r"```text\n(.*?)```", docs, re.DOTALL)
    expected = next(b for b in shown if "money appeared or vanished" in b).splitlines()
    outcome.stdout.fnmatch_lines(["E *" + line[4:].strip() for line in expected[:5]])
    loop = program[program.index("    for _ in range(3):") : program.index("    db.close()")]
    pytester.makepyfile(bank=program.replace(loop, fix))
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
