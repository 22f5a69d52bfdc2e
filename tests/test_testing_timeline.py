"""Issue 14: the shutdown timeline (carried over the file $GRACEFUL_TIMELINE names), cleanups_ran.

tests/testing_programs/fake_timeline.py writes the records in the documented format itself, so the
reader and the assertions are tested independently of graceful's writer.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from graceful.testing import Shutdown, ShutdownResult
from graceful.testing._timeline import format_record, name_matches, parse

FAKE = Path(__file__).parent / "testing_programs" / "fake_timeline.py"


def fake(shutdown: Shutdown, *args: str) -> ShutdownResult:
    return shutdown.run(script=FAKE, args=args, ready="ready")


def failure(check: object) -> str:
    with pytest.raises(AssertionError) as info:
        check()  # type: ignore[operator]
    return str(info.value)


def test_records_arrive_with_their_fields(shutdown: Shutdown) -> None:
    result = fake(shutdown, "app.close_db", "Worker.stop")
    result.died_by("TERM")
    assert [r["event"] for r in result.timeline] == ["signal", "cleanup", "cleanup", "end"]
    signal_record, *_, end = result.timeline
    assert signal_record["signal"] == "SIGTERM"
    assert signal_record["signum"] == 15
    assert {r["pid"] for r in result.timeline} == {result.pid}
    assert end["how"] == "reraise"
    assert end["total"] >= 0
    assert [r["name"] for r in result.cleanups] == ["Worker.stop", "app.close_db"]
    assert result.events("end") == [end]
    assert result.timeline_problems == ()


def test_cleanups_ran_in_order_by_suffix(shutdown: Shutdown) -> None:
    result = fake(shutdown, "app.close_db", "main.<locals>.flush", "Worker.stop")
    result.cleanups_ran(["Worker.stop", "flush", "close_db"])
    result.cleanups_ran(["stop", "app.close_db"])  # others may run in between
    result.cleanups_ran(["stop", "flush", "close_db"], only=True)
    result.cleanups_ran([])

    message = failure(lambda: result.cleanups_ran(["close_db", "flush"]))
    assert message.startswith(
        "expected cleanups ['close_db', 'flush'] in this order, but 'flush' ran before "
        "'close_db'; ran: ['Worker.stop', 'main.<locals>.flush', 'app.close_db']"
    )
    message = failure(lambda: result.cleanups_ran(["db"]))  # a suffix on a dot only
    assert message.startswith("expected cleanups ['db'], but 'db' did not run; ran: [")
    message = failure(lambda: result.cleanups_ran(["stop", "close_db"], only=True))
    assert message.startswith("expected only the cleanups ['stop', 'close_db'], but these ran:")


def test_a_failed_cleanup(shutdown: Shutdown) -> None:
    result = fake(shutdown, "close_db", "stop_worker!")
    message = failure(lambda: result.cleanups_ran(["stop_worker", "close_db"]))
    assert message.startswith(
        "expected cleanup 'stop_worker' to succeed, but stop_worker failed: ValueError: boom"
    )
    assert "cleanup stop_worker: FAILED: ValueError: boom (0.000 s)" in message
    result.cleanups_ran(["stop_worker"], ok=False).cleanups_ran(
        ["stop_worker", "close_db"], ok=None
    )
    assert "to fail, but close_db succeeded" in failure(
        lambda: result.cleanups_ran(["close_db"], ok=False)
    )


def test_the_failure_message_shows_the_timeline(shutdown: Shutdown) -> None:
    result = fake(shutdown, "close_db")
    message = failure(lambda: result.exited_with(0))
    lines = message.splitlines()
    start = lines.index("timeline (3 records, from $GRACEFUL_TIMELINE):")
    # The durations are the machine's (a few ms on a busy one): the test reads their form only.
    shown = [line.split("]", 1)[1] for line in lines[start + 1 : start + 4]]
    assert [re.sub(r"\d+\.\d{3} s", "N s", line) for line in shown] == [
        "  signal SIGTERM",
        "  cleanup close_db: ok (N s)",
        "  end: reraise SIGTERM, total N s",
    ]
    assert lines[start + 1].lstrip().startswith("+0.000 s  [")


def test_records_from_several_processes_and_bad_lines(shutdown: Shutdown) -> None:
    result = fake(shutdown, "--fork", "--garbage", "close_db")
    assert len({r["pid"] for r in result.timeline}) == 2
    result.cleanups_ran(["child.close", "close_db"])
    assert result.timeline_problems[0].startswith("line 5 is not JSON")
    assert "  timeline problem: line 5 is not JSON" in result.report()


def test_no_timeline_says_why(shutdown: Shutdown) -> None:
    result = shutdown.run(code="pass", signal=None)
    assert result.timeline == ()
    message = failure(lambda: result.cleanups_ran(["close_db"]))
    assert (
        "'close_db' did not run; ran: [] (the timeline is empty: the program must run graceful"
        in (message)
    )
    assert "timeline: no records ($GRACEFUL_TIMELINE was set;" in message


def test_parse_and_format_never_raise() -> None:
    records, problems = parse('{"event": "x", "t": 0, "pid": 1, "k": 2}\n[1]\n{"t": 1}\n\n')
    assert [format_record(r) for r in records] == ['  +0.000 s  [1]  x {"k": 2}']
    assert problems == [
        "line 2 lacks event, t or pid: '[1]'",
        "line 3 lacks event, t or pid: '{\"t\": 1}'",
    ]
    for record in (
        {"event": "cleanup"},
        {"event": "backend", "t": "?", "backend_pid": 7, "how": "exited 0", "duration": 0.5},
        {"event": "end", "how": "exit", "signal": None, "exit_code": 143, "total": 1},
        {"event": "second_signal", "signal": "SIGINT", "action": "forced"},
        {"event": "drain_start"},
        {"event": "breaks_done"},
    ):
        assert format_record(record)
    assert format_record({"event": "end", "how": "exit", "exit_code": 143, "total": 1}).endswith(
        "end: exit, status 143, total 1.000 s"
    )
    assert name_matches("app.close_db", "close_db")
    assert not name_matches("app.reclose_db", "close_db")
    assert not name_matches(None, "x")


# --- graceful's own writer (src/graceful/_core/timeline.py) ---------------------------------


def test_graceful_main_writes_the_documented_records(shutdown: Shutdown) -> None:
    result = shutdown.run(
        code="""
        import time, graceful

        def close_db():
            print("db closed")

        def stop_worker():
            raise ValueError("boom")

        @graceful.main
        def main():
            graceful.register(close_db)
            graceful.register(stop_worker)
            print("ready")
            time.sleep(60)

        main()
        """,
        ready="ready",
    )
    result.died_by("TERM").no_orphans()
    result.cleanups_ran(["stop_worker"], ok=False).cleanups_ran(["close_db"])
    result.cleanups_ran(["stop_worker", "close_db"], ok=None, only=True)
    signals = result.events("signal")  # see test_the_signal_record_is_always_written
    assert [r["event"] for r in result.timeline] == ["signal"] * len(signals) + [
        "cleanup",
        "cleanup",
        "end",
    ]
    failed, closed, end = result.timeline[len(signals) :]
    assert {r["pid"] for r in result.timeline} == {result.pid}
    assert [(r["signal"], r["signum"]) for r in signals] in ([], [("SIGTERM", 15)])
    assert 0 <= failed["t"] <= closed["t"] <= end["t"]
    assert failed["name"] == "__main__.stop_worker"
    assert (failed["ok"], failed["error"]) == (False, "ValueError: boom")
    assert (closed["ok"], closed["error"]) == (True, None)
    assert closed["duration"] >= 0
    assert (end["how"], end["signal"], end["exit_code"]) == ("reraise", "SIGTERM", None)
    assert end["total"] >= closed["t"]
    message = failure(lambda: result.cleanups_ran(["close_db", "stop_worker"], ok=None))
    assert "'stop_worker' ran before 'close_db'" in message
    assert "cleanup __main__.stop_worker: FAILED: ValueError: boom" in message


SIGNAL_RECORD = """
import time, graceful
@graceful.main
def main():
    print("ready")
    time.sleep(60)
main()
"""


def test_the_signal_record_is_always_written(shutdown: Shutdown) -> None:
    # Written where the signal is first heard (the handler, or the watcher), not later.
    for _ in range(20):
        result = shutdown.run(code=SIGNAL_RECORD, ready="ready").died_by("TERM")
        assert [r["event"] for r in result.timeline] == ["signal", "end"], result.report()


def test_guard_asyncio_and_a_normal_end(shutdown: Shutdown) -> None:
    guarded = shutdown.run(
        code="""
        import time, graceful
        def global_cleanup(): pass
        def block_cleanup(): pass
        graceful.register(global_cleanup)
        with graceful.guard(on_signal="exit") as g:
            g.register(block_cleanup)
            print("ready")
            time.sleep(60)
        """,
        ready="ready",
    )
    guarded.exited_with(143).cleanups_ran(["block_cleanup", "global_cleanup"])
    assert guarded.events("end")[-1]["how"] == "exit"
    assert guarded.events("end")[-1]["exit_code"] == 143
    asynchronous = shutdown.run(
        code="""
        import asyncio, graceful
        async def serve():
            print("ready")
            await asyncio.sleep(60)
        def close_pool(): pass
        @graceful.main
        def main():
            graceful.register(close_pool)
            asyncio.run(serve())
        main()
        """,
        ready="ready",
        signal="INT",
    )
    asynchronous.died_by("INT").cleanups_ran(["close_pool"])
    normal = shutdown.run(
        code="""
        import graceful
        def flush(): pass
        @graceful.main
        def main():
            graceful.register(flush)
            return 3
        main()
        """,
        signal=None,
    )
    normal.exited_with(3).cleanups_ran(["flush"])
    assert [r["event"] for r in normal.timeline] == ["cleanup", "end"]
    assert (normal.timeline[-1]["how"], normal.timeline[-1]["exit_code"]) == ("normal", 3)


def test_a_second_signal_is_on_the_timeline(shutdown: Shutdown) -> None:
    result = shutdown.run(
        code="""
        import sys, time, graceful
        def slow():
            print("cleaning")
            time.sleep(30)
        @graceful.main(timeout=None)
        def main():
            graceful.register(slow)
            print("ready")
            time.sleep(60)
        main()
        """,
        ready="ready",
        signal=["INT", "INT"],
        after="cleaning",
    )
    result.died_by("INT").ended_within(5)
    (second,) = result.events("second_signal")
    assert (second["signal"], second["action"]) == ("SIGINT", "forced")
    assert result.events("end")[0]["how"] == "forced"


def test_async_main_and_graceful_run(shutdown: Shutdown, tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text(
        "import asyncio, graceful\n"
        "async def close_pool():\n"
        "    await asyncio.sleep(0)\n"
        "graceful.register(close_pool)\n"
        "@graceful.main\n"
        "async def main():\n"
        "    print('ready', flush=True)\n"
        "    await asyncio.sleep(60)\n"
        "main()\n"
    )
    # @graceful.main on an async def: the async cleanup is awaited in the program's loop.
    shutdown.run(script=str(app), ready="ready").died_by("TERM").cleanups_ran(["close_pool"])
    # The same program under the supervisor: it forwards the signal and dies as the app did;
    # the timeline records come from the app's own process.
    supervised = shutdown.run(
        command=[sys.executable, "-m", "graceful", "run", "--", sys.executable, str(app)],
        ready="ready",
    )
    supervised.died_by("TERM").cleanups_ran(["close_pool"]).no_orphans()
